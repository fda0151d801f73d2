//! A run's log as Server-Sent Events: each line one event (`id: <seq>`,
//! `data: <LogLineView JSON>`), then `event: end` once the run has finished
//! and every line was sent. A reconnecting client resumes after its
//! `Last-Event-ID`. The stream polls the store (several servers may share
//! it, so a process-local signal would miss other servers' lines), sends a
//! keep-alive comment every 15 s, and holds no task of its own: when the
//! client goes away the response body, and with it the stream, is dropped.
//!
//! The portal serves the same stream without a token at `/runs/{id}/stream`
//! (its pages, logs included, are public); the API route needs a viewer.

use super::runs::LogLineView;
use crate::auth::{Auth, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_core::Stream;
use serde::Deserialize;
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

/// How often an idle stream looks at the store.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// A comment line this often keeps proxies from closing an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a client waits before reconnecting after the stream broke.
const RETRY: Duration = Duration::from_secs(2);
/// Most lines read from the store at once.
const PAGE: i64 = 1_000;

/// Where to start the stream.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct StreamQuery {
    /// Only lines with a greater seq (default 0: from the start). A
    /// `Last-Event-ID` header, sent by reconnecting clients, wins over it.
    pub after: Option<i64>,
}

/// The seq to resume after: `Last-Event-ID` when present, else `?after=`.
pub fn start_after(query: &StreamQuery, headers: &HeaderMap) -> ApiResult<i64> {
    let resumed =
        match headers.get("last-event-id") {
            Some(value) => {
                let text = value.to_str().unwrap_or("").trim();
                if text.is_empty() {
                    None
                } else {
                    Some(text.parse::<i64>().map_err(|_| {
                        ApiError::bad_request("Last-Event-ID must be a log line's seq")
                    })?)
                }
            }
            None => None,
        };
    let after = resumed.or(query.after).unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("after must be >= 0"));
    }
    Ok(after)
}

/// The SSE response for a run's log after `after`, or 404 when there is no such run.
pub async fn open(state: AppState, run_id: String, after: i64) -> ApiResult<Sse<LogStream>> {
    if state.store.get_run(&run_id).await?.is_none() {
        return Err(ApiError::not_found(format!("no run `{run_id}`")));
    }
    Ok(Sse::new(LogStream::new(state, run_id, after)))
}

/// Follow a run's log live (Server-Sent Events).
///
/// Each log line is one event: `id` is its seq, `data` a `LogLineView` as
/// JSON. After the run has finished and every line was sent, an
/// `event: end` (data: the run's `status` and `outcome`) closes the stream.
/// Reconnecting clients send `Last-Event-ID` and continue after it. A
/// comment keeps an idle stream open every 15 seconds.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs/stream", tag = "runs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "run id"), StreamQuery,
           ("Last-Event-ID" = Option<i64>, Header, description = "resume after this seq (sent by reconnecting clients)")),
    responses((status = 200, description = "`text/event-stream`: one event per log line (id = seq, data = LogLineView JSON), then `event: end`",
               content_type = "text/event-stream", body = String),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn stream_logs(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let after = start_after(&query, &headers)?;
    Ok(open(state, id, after).await?.keep_alive(keep_alive()))
}

/// The keep-alive every log stream uses.
pub fn keep_alive() -> KeepAlive {
    KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")
}

/// Where a stream is: the run, the last seq sent, and whether it is over.
struct Cursor {
    state: AppState,
    run_id: String,
    after: i64,
    done: bool,
}

type Fetch = Pin<Box<dyn Future<Output = (Vec<Event>, Cursor)> + Send>>;

/// The events of one run's log, fetched from the store as they come.
pub struct LogStream {
    ready: VecDeque<Event>,
    cursor: Option<Cursor>,
    fetch: Option<Fetch>,
}

impl LogStream {
    fn new(state: AppState, run_id: String, after: i64) -> LogStream {
        LogStream {
            ready: VecDeque::from([Event::default().retry(RETRY)]),
            cursor: Some(Cursor {
                state,
                run_id,
                after,
                done: false,
            }),
            fetch: None,
        }
    }
}

impl Stream for LogStream {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if this.fetch.is_none() {
                match this.cursor.take() {
                    Some(cursor) if !cursor.done => this.fetch = Some(Box::pin(next(cursor))),
                    _ => return Poll::Ready(None),
                }
            }
            let Some(fetch) = this.fetch.as_mut() else {
                return Poll::Ready(None);
            };
            match fetch.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready((events, cursor)) => {
                    this.fetch = None;
                    this.ready.extend(events);
                    this.cursor = Some(cursor);
                }
            }
        }
    }
}

/// Waits for the next lines (or the end) of the run.
async fn next(mut cursor: Cursor) -> (Vec<Event>, Cursor) {
    loop {
        if cursor.state.draining.load(Ordering::Relaxed) {
            // Shutting down: close without `end`; the client reconnects.
            cursor.done = true;
            return (Vec::new(), cursor);
        }
        // Read the status before the lines: once a finished run has no
        // lines after `after`, it never will.
        let run = match cursor.state.store.get_run(&cursor.run_id).await {
            Ok(run) => run,
            Err(e) => return broken(cursor, &e),
        };
        let lines = match cursor
            .state
            .store
            .read_logs(&cursor.run_id, cursor.after, Some(PAGE))
            .await
        {
            Ok(lines) => lines,
            Err(e) => return broken(cursor, &e),
        };
        if !lines.is_empty() {
            let events = lines
                .into_iter()
                .filter_map(|line| {
                    cursor.after = cursor.after.max(line.seq);
                    let seq = line.seq;
                    let data = serde_json::to_string(&LogLineView::from(line)).ok()?;
                    Some(Event::default().id(seq.to_string()).data(data))
                })
                .collect();
            return (events, cursor);
        }
        match run {
            Some(run) if run.status != "finished" => {}
            run => {
                let data = match run {
                    Some(r) => json!({ "status": r.status, "outcome": r.outcome }),
                    None => json!({ "status": "gone", "outcome": null }),
                };
                cursor.done = true;
                return (
                    vec![Event::default().event("end").data(data.to_string())],
                    cursor,
                );
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A store error ends the stream without `end`: the client reconnects
/// (with `Last-Event-ID`) after the retry delay.
fn broken(mut cursor: Cursor, error: &pave_store::StoreError) -> (Vec<Event>, Cursor) {
    tracing::warn!(run = %cursor.run_id, "log stream: {error}");
    cursor.done = true;
    (Vec::new(), cursor)
}
