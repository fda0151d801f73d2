//! Shared state of the HTTP server.

use crate::read_cache::ReadCache;
use crate::token_cache::TokenCache;
use pave_store::Store;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub tokens: Arc<TokenCache>,
    /// Cached answers of hot list endpoints (see `read_cache`).
    pub read_cache: Arc<ReadCache>,
    /// Set when shutdown begins; `/readyz` then answers 503.
    pub draining: Arc<AtomicBool>,
}

impl AppState {
    /// State over a store.
    pub fn new(store: Store) -> AppState {
        AppState {
            store,
            tokens: Arc::new(TokenCache::default()),
            read_cache: Arc::new(ReadCache::default()),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }
}
