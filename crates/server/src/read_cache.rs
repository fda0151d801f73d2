//! Cached JSON answers of the hot list endpoints. An entry is valid while
//! the event log's head has not moved: every state change appends an event,
//! so one single-row query tells whether anything changed — on any server
//! sharing the database.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

/// At most this many cached answers; the cache is cleared when full.
const MAX_ENTRIES: usize = 256;

/// `request key -> (head seq when computed, JSON body)`.
#[derive(Default)]
pub struct ReadCache {
    entries: Mutex<HashMap<String, (i64, Bytes)>>,
}

impl ReadCache {
    fn get(&self, key: &str, seq: i64) -> Option<Bytes> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(at, _)| *at == seq)
            .map(|(_, body)| body.clone())
    }

    fn put(&self, key: String, seq: i64, body: Bytes) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (seq, body));
        }
    }
}

/// Answers from the cache when the log has not moved since `key` was
/// computed; otherwise computes, caches and answers.
pub async fn cached_json<T, Fut>(state: &AppState, key: String, compute: Fut) -> ApiResult<Response>
where
    T: Serialize,
    Fut: Future<Output = ApiResult<T>>,
{
    // Read the head before computing: a change landing in between leaves an
    // entry tagged with the older seq, which the next request recomputes.
    let seq = state.store.head_seq().await?;
    let body = match state.read_cache.get(&key, seq) {
        Some(body) => body,
        None => {
            let value = compute.await?;
            let body = Bytes::from(serde_json::to_vec(&value).map_err(ApiError::internal)?);
            state.read_cache.put(key, seq, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
