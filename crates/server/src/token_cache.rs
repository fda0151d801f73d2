//! A short-lived cache of token lookups, so a busy read API does not hit the
//! database for every request. Revocations through this server clear it at
//! once; revocations through another server sharing the database take effect
//! within `TTL`.

use pave_store::{Store, StoreError, TokenRow};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a lookup is trusted.
pub const TTL: Duration = Duration::from_secs(2);

/// Cache of `secret hash -> token` (including negative answers).
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Option<TokenRow>, Instant)>>,
}

impl TokenCache {
    /// The live token with this hash, from cache or store.
    pub async fn lookup(&self, store: &Store, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        if let Ok(entries) = self.entries.lock()
            && let Some((row, at)) = entries.get(hash)
            && at.elapsed() < TTL
        {
            return Ok(row.clone());
        }
        let row = store.find_token(hash).await?;
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 10_000 {
                entries.clear();
            }
            entries.insert(hash.to_string(), (row.clone(), Instant::now()));
        }
        Ok(row)
    }

    /// Forgets everything (after a revocation).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
