//! API tokens resolved to their principals, cached per replica.
//!
//! A bearer check is on every call; without the cache it is two database reads. Entries are
//! keyed by the token's hash (the secret is never kept) and dropped — on every replica — as
//! soon as any token is revoked or a principal removed (a `TokensChanged` notice, and locally
//! before the revoking call returns), and whenever change notices may have been lost. An entry
//! also lapses after [`TTL`], so nothing outlives a missed notice for long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::Principal;

const TTL: Duration = Duration::from_secs(30);
/// Beyond this many live tokens the cache starts over rather than grow.
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl TokenCache {
    pub fn get(&self, token_hash: &str) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(token_hash)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(principal, _)| principal.clone())
    }

    pub fn insert(&self, token_hash: String, principal: Principal) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(token_hash, (principal, Instant::now()));
    }

    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
