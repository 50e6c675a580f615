//! Opaque ids and secrets.
//!
//! Ids are `prefix_` + 26 Crockford base32 characters: 48 bits of milliseconds then 80 random
//! bits, so ordering by id roughly follows creation and listings page stably by id.

use rand::RngCore;
use sha2::{Digest, Sha256};

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

pub fn new_id(prefix: &str) -> String {
    let millis = crate::clock::now_millis().max(0) as u128;
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    let mut value: u128 = millis << 80;
    for (i, byte) in random.iter().enumerate() {
        value |= (*byte as u128) << (8 * (9 - i));
    }
    let mut text = [0u8; 26];
    for (i, slot) in text.iter_mut().enumerate() {
        let shift = 5 * (25 - i);
        *slot = CROCKFORD[((value >> shift) & 0x1f) as usize];
    }
    let encoded = std::str::from_utf8(&text).unwrap_or_default();
    format!("{prefix}_{encoded}")
}

/// What a malformed id is told: the shape [`new_id`] gives every id.
pub const ID_SHAPE: &str =
    "is not a valid id (a lowercase prefix, '_', then 26 letters and digits)";

/// Whether `id` has the shape of an id this server issues: `prefix_` (2–8 lowercase letters)
/// then 26 Crockford base32 characters. Anything else cannot name an object.
pub fn is_valid_id(id: &str) -> bool {
    let Some((prefix, body)) = id.split_once('_') else {
        return false;
    };
    (2..=8).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_lowercase())
        && body.len() == 26
        && body.bytes().all(|b| CROCKFORD.contains(&b))
}

/// A random secret of `bytes` bytes from the OS CSPRNG, URL-safe base64 without padding.
pub fn new_secret(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// How secrets (API tokens, join tokens) are stored: SHA-256, hex. The secrets are 256 random
/// bits, so a fast hash is enough; there is nothing to brute-force.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `text` could be an id this control plane issued: a short prefix, `_`, and
/// lowercase base32. Anything else cannot name a row, so it need not reach the database.
pub fn looks_like_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.contains('_')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_unique_and_sortable_by_time() {
        let a = new_id("svc");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("svc");
        assert!(a.starts_with("svc_") && a.len() == 30, "{a}");
        assert_ne!(a, b);
        assert!(a < b, "{a} !< {b}");
    }

    #[test]
    fn only_ids_of_the_issued_shape_are_valid() {
        assert!(is_valid_id(&new_id("rsl")));
        assert!(is_valid_id(&new_id("node")));
        for bad in [
            "",
            "rsl_",
            "rsl_nope",
            "RSL_01arz3ndektsv4rrffq69g5fav",
            "rsl_01arz3ndektsv4rrffq69g5fau",
            "rsl_01arz3ndektsv4rrffq69g5fa\0",
            "r_01arz3ndektsv4rrffq69g5fav0",
            "rsl-01arz3ndektsv4rrffq69g5fav",
        ] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn secrets_are_hashed_not_kept() {
        let secret = new_secret(32);
        assert_eq!(secret.len(), 43);
        let hash = hash_secret(&secret);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&secret));
        assert_eq!(hash, hash_secret(&secret));
    }
}
