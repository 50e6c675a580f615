//! Random and garbage requests for the public API, built from its descriptors so every method
//! and every field is covered, new ones included.

use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, MethodDescriptor, Value};
use rand::rngs::StdRng;
use rand::{Rng, RngCore};

/// Every method of the public API (`castplane.v1`).
pub fn public_methods() -> Vec<MethodDescriptor> {
    castplane_proto::reflect::pool()
        .services()
        .filter(|s| s.package_name() == "castplane.v1")
        .flat_map(|s| s.methods().collect::<Vec<_>>())
        .collect()
}

/// `/package.Service/Method`.
pub fn path(method: &MethodDescriptor) -> String {
    format!("/{}/{}", method.parent_service().full_name(), method.name())
}

/// What random strings are drawn from, besides noise: values that name real objects (so
/// requests reach the rules, not only the boundary) and the classics of hostile input.
pub struct Strings {
    pub known: Vec<String>,
}

impl Strings {
    fn pick(&self, rng: &mut StdRng) -> String {
        match rng.random_range(0..12) {
            0 if !self.known.is_empty() => {
                self.known[rng.random_range(0..self.known.len())].clone()
            }
            1 => String::new(),
            2 => "a\0b".to_owned(),
            3 => "\u{1b}[2J\r\n".to_owned(),
            4 => "x".repeat(rng.random_range(150..2000)),
            5 => "AAAA".to_owned(),
            6 => "'; DROP TABLE resellers; --".to_owned(),
            7 => "</location><hostname>x</hostname>".to_owned(),
            8 => "café 🎵 ｆｕｌｌ".to_owned(),
            9 => format!("svc_{}", "0".repeat(26)),
            10 => "%%%".to_owned(),
            _ => (0..rng.random_range(1..24))
                .map(|_| char::from(rng.random_range(b' '..=b'~')))
                .collect(),
        }
    }
}

fn number(rng: &mut StdRng) -> i128 {
    match rng.random_range(0..8) {
        0 => 0,
        1 => 1,
        2 => -1,
        3 => i64::MAX as i128,
        4 => i64::MIN as i128,
        5 => u64::MAX as i128,
        6 => rng.random_range(0..100_000),
        _ => rng.random::<i64>() as i128,
    }
}

fn scalar(kind: &Kind, rng: &mut StdRng, strings: &Strings, depth: usize) -> Value {
    match kind {
        Kind::String => Value::String(strings.pick(rng)),
        Kind::Bytes => {
            let mut bytes = vec![0u8; rng.random_range(0..32)];
            rng.fill_bytes(&mut bytes);
            Value::Bytes(bytes.into())
        }
        Kind::Bool => Value::Bool(rng.random()),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(number(rng) as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(number(rng) as i64),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(number(rng) as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(number(rng) as u64),
        Kind::Float => Value::F32(rng.random()),
        Kind::Double => Value::F64(rng.random()),
        Kind::Enum(e) => {
            let values: Vec<i32> = e.values().map(|v| v.number()).collect();
            Value::EnumNumber(if rng.random_bool(0.8) && !values.is_empty() {
                values[rng.random_range(0..values.len())]
            } else {
                rng.random_range(-5..100)
            })
        }
        Kind::Message(m) => Value::Message(message(m, rng, strings, depth + 1)),
    }
}

/// A random message: each field set or not, with values drawn to hit edges.
pub fn message(
    descriptor: &MessageDescriptor,
    rng: &mut StdRng,
    strings: &Strings,
    depth: usize,
) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    if depth > 3 {
        return message;
    }
    for field in descriptor.fields() {
        if field.is_map() || !rng.random_bool(0.6) {
            continue;
        }
        let kind = field.kind();
        let value = if field.is_list() {
            Value::List(
                (0..rng.random_range(0..4))
                    .map(|_| scalar(&kind, rng, strings, depth))
                    .collect(),
            )
        } else {
            scalar(&kind, rng, strings, depth)
        };
        message.set_field(&field, value);
    }
    message
}

/// One request body for `method`: a random message, a corrupted one, or noise.
pub fn body(method: &MethodDescriptor, rng: &mut StdRng, strings: &Strings) -> Vec<u8> {
    match rng.random_range(0..10) {
        0 | 1 => {
            let mut bytes = vec![0u8; rng.random_range(0..64)];
            rng.fill_bytes(&mut bytes);
            bytes
        }
        2 | 3 => {
            let mut bytes = message(&method.input(), rng, strings, 0).encode_to_vec();
            for _ in 0..rng.random_range(1..4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => bytes[at] ^= 1 << rng.random_range(0..8),
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, 0xff),
                }
            }
            bytes
        }
        _ => message(&method.input(), rng, strings, 0).encode_to_vec(),
    }
}
