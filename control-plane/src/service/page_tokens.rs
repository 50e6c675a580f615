//! Page tokens: opaque, tamper-evident, and bound to the listing they came from.
//!
//! A token carries the last id of the page it ends and an HMAC-SHA256 over that id and the
//! listing's identity (which listing, whose, with which filters). The key lives in the
//! database (`cluster_state`), so a token issued by one replica is accepted by every other;
//! a token that was altered, forged, or taken from another listing (or another caller's, or
//! the same listing with other filters) is refused with INVALID_ARGUMENT.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ServiceError;
use crate::persistence::{Persistence, PersistenceError, cluster};

const KEY_NAME: &str = "page_token_key";
const VERSION: u8 = 1;
/// A truncated HMAC-SHA256 (128 bits): enough to make forging hopeless, short in URLs.
const MAC_BYTES: usize = 16;

#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(<key redacted>)")
    }
}

fn not_ours() -> ServiceError {
    ServiceError::invalid_field(
        "page_token",
        "not a token this server issued for this listing (page tokens only continue the listing, with the same filters, that returned them)",
    )
}

impl PageTokens {
    /// The cluster's key, created by the first replica to start.
    pub async fn load_or_create(persistence: &Persistence) -> Result<Self, PersistenceError> {
        let candidate = hex::encode(rand::random::<[u8; 32]>());
        let stored = cluster::get_or_insert(persistence.db(), KEY_NAME, candidate).await?;
        let key = hex::decode(stored.trim())
            .ok()
            .filter(|k| k.len() >= 16)
            .ok_or_else(|| PersistenceError::Corrupt(format!("cluster_state {KEY_NAME}")))?;
        Ok(PageTokens { key })
    }

    pub fn from_key(key: Vec<u8>) -> Self {
        PageTokens { key }
    }

    fn mac(&self, listing: &str, last_id: &str) -> [u8; MAC_BYTES] {
        // A key of any length is accepted by HMAC; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&[VERSION]);
        mac.update(&(listing.len() as u64).to_be_bytes());
        mac.update(listing.as_bytes());
        mac.update(last_id.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    /// The token continuing `listing` after `last_id`.
    pub fn encode(&self, listing: &str, last_id: &str) -> String {
        let mut bytes = Vec::with_capacity(1 + MAC_BYTES + last_id.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.mac(listing, last_id));
        bytes.extend_from_slice(last_id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Where `token` continues `listing`: `None` for the first page.
    pub fn decode(&self, listing: &str, token: &str) -> Result<Option<String>, ServiceError> {
        if token.is_empty() {
            return Ok(None);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| not_ours())?;
        if bytes.len() <= 1 + MAC_BYTES || bytes[0] != VERSION {
            return Err(not_ours());
        }
        let (mac, last_id) = bytes[1..].split_at(MAC_BYTES);
        let last_id = std::str::from_utf8(last_id).map_err(|_| not_ours())?;
        let expected = self.mac(listing, last_id);
        // Constant time: a forger learns nothing from how long a refusal takes.
        let same = mac
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if same {
            Ok(Some(last_id.to_owned()))
        } else {
            Err(not_ours())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::from_key(vec![7; 32])
    }

    #[test]
    fn a_token_continues_only_its_own_listing() {
        let t = tokens();
        let token = t.encode("resellers|admin", "rsl_1");
        assert_eq!(
            t.decode("resellers|admin", &token)
                .expect("ours")
                .as_deref(),
            Some("rsl_1")
        );
        assert!(t.decode("customers|admin|", &token).is_err());
        assert!(t.decode("resellers|reseller:rsl_2", &token).is_err());
        assert_eq!(t.decode("anything", "").expect("first page"), None);
    }

    #[test]
    fn forged_and_altered_tokens_are_refused() {
        let t = tokens();
        // What the old format accepted: any base64url string, e.g. "AAAA".
        assert!(t.decode("resellers|admin", "AAAA").is_err());
        assert!(
            t.decode("resellers|admin", &URL_SAFE_NO_PAD.encode("rsl_1"))
                .is_err()
        );
        let token = t.encode("resellers|admin", "rsl_1");
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(
            t.decode("resellers|admin", &URL_SAFE_NO_PAD.encode(bytes))
                .is_err()
        );
        let other_key = PageTokens::from_key(vec![8; 32]);
        assert!(other_key.decode("resellers|admin", &token).is_err());
    }
}
