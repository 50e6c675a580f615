//! `-o json` and `-o yaml`: the API's messages, written from their descriptors.
//!
//! Every field of every message is printed — one added to the API later included — with the
//! proto field names; enums are their proto names (`SERVICE_TYPE_ICECAST`); timestamps are
//! RFC 3339 strings; 64-bit numbers stay numbers; fields without presence are printed even at
//! their default (so `"deleting": false` is there to read), while an absent message or an
//! unset `optional` is left out (an unlimited `Limit` is `{}`).

use castplane_proto::reflect;
use prost::{Message, Name};
use prost_reflect::SerializeOptions;
use serde_json::Value;

fn options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false)
}

pub trait ToJson {
    fn to_json(&self) -> Value;
}

impl<M: Message + Name> ToJson for M {
    fn to_json(&self) -> Value {
        // Only a message type missing from the compiled descriptors has no JSON.
        reflect::to_dynamic(self)
            .and_then(|dynamic| {
                dynamic
                    .serialize_with_options(serde_json::value::Serializer, &options())
                    .ok()
            })
            .unwrap_or(Value::Null)
    }
}

/// A listing, all pages merged: `{"<key>": [...]}`.
pub fn list<T: ToJson>(key: &str, items: &[T]) -> Value {
    let mut map = serde_json::Map::new();
    map.insert(
        key.to_owned(),
        Value::Array(items.iter().map(ToJson::to_json).collect()),
    );
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use castplane_proto::v1 as pb;
    use serde_json::json;

    use super::*;

    #[test]
    fn messages_become_named_json() {
        let reseller = pb::Reseller {
            id: "rsl_1".into(),
            limits: Some(pb::ResellerLimits {
                customers: Some(pb::Limit { max: Some(3) }),
                services: Some(pb::Limit { max: None }),
                ..Default::default()
            }),
            allowed_service_types: vec![1, 3],
            create_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let v = reseller.to_json();
        assert_eq!(v["limits"]["customers"]["max"], 3);
        assert_eq!(v["limits"]["services"], json!({}));
        assert_eq!(v["limits"].get("disk_mb"), None);
        assert_eq!(
            v["allowed_service_types"],
            json!(["SERVICE_TYPE_ICECAST", "SERVICE_TYPE_VIDEO"])
        );
        assert_eq!(v["default_service_type"], "SERVICE_TYPE_UNSPECIFIED");
        assert_eq!(v["create_time"], "2023-11-14T22:13:20Z");
        assert_eq!(v.get("update_time"), None);
        assert_eq!(v["display_name"], "");
    }

    #[test]
    fn every_field_is_printed_and_numbers_stay_numbers() {
        let node = pb::Node {
            bind_address: "192.0.2.1".into(),
            ..Default::default()
        };
        let v = node.to_json();
        // A field added after the hand-written JSON was: it is there without anyone adding it.
        assert_eq!(v["bind_address"], "192.0.2.1");
        let service = pb::MediaService {
            disk_quota_mb: u64::MAX,
            ..Default::default()
        };
        let v = service.to_json();
        assert_eq!(v["disk_quota_mb"], json!(u64::MAX));
        assert_eq!(v["deleting"], false);
        // Every field the descriptor has, by its proto name.
        let descriptor = reflect::descriptor::<pb::MediaService>().expect("descriptor");
        for field in descriptor.fields() {
            if field.supports_presence() {
                continue;
            }
            assert!(v.get(field.name()).is_some(), "{} missing", field.name());
        }
    }
}
