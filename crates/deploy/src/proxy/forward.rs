//! Forwarding one request: find the route by Host, choose the release and
//! instance, rewrite the headers, send it over the pooled client and stream
//! the response back. Connect failures are retried (see [`forward`]).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::{Client, Error as ClientError, connect::HttpConnector};

use super::body::{BodySlot, UpstreamBody};
use super::metrics::ProxyMetrics;
use super::routes::{LiveRoute, RouteTable};

/// Body of a response to the client: streamed from upstream, or the proxy's own message.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Pooled HTTP/1 client to the instances.
pub(crate) type UpstreamClient = Client<HttpConnector, UpstreamBody>;

/// What every worker shares.
pub(crate) struct Shared {
    pub(crate) routes: RouteTable,
    pub(crate) metrics: ProxyMetrics,
}

/// One worker thread's view: the shared state and its own connection pool.
pub(crate) struct Worker {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client: UpstreamClient,
}

/// The response header naming the release that answered.
pub const RELEASE_HEADER: &str = "x-pave-release";

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_PAVE_RELEASE: HeaderName = HeaderName::from_static(RELEASE_HEADER);
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Serves one client request; never fails (errors become 4xx/5xx responses).
/// `client_ip` is the peer's address, rendered once per connection.
pub(crate) async fn handle(
    worker: Arc<Worker>,
    client_ip: HeaderValue,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let shared = &worker.shared;
    let route = match request_host(&req) {
        None => {
            shared
                .metrics
                .unrouted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(local(
                StatusCode::BAD_REQUEST,
                "pave edge proxy: the request has no Host header; \
                address a service as <service>.<env>.localhost\n"
                    .to_string(),
            ));
        }
        Some(host) => match shared.routes.lookup(host) {
            Some(route) => route,
            None => {
                shared
                    .metrics
                    .unrouted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(local(
                    StatusCode::NOT_FOUND,
                    format!(
                        "pave edge proxy: no service is routed at host '{host}'.\n\
                     Services are reached at <service>.<env>.localhost (previews at \
                     <service>.<env>.preview.localhost) once deployed to that environment.\n"
                    ),
                ));
            }
        },
    };
    Ok(forward(&worker.client, &route, client_ip, req, started).await)
}

/// The Host a request addresses: the Host header, else the absolute URI's authority.
fn request_host(req: &Request<Incoming>) -> Option<&str> {
    match req.headers().get(header::HOST) {
        Some(value) => value.to_str().ok().filter(|h| !h.is_empty()),
        None => req.uri().authority().map(Authority::as_str),
    }
}

/// Sends the request to the chosen release. An attempt that fails before the
/// request left (connect refused, or a pooled connection that closed first) is
/// retried on the release's next instance, then on the route's other releases
/// that have weight, so a restarting instance or a switch does not fail the
/// request. The response is recorded under the release that answered; a
/// request no instance took is a 502 recorded under the chosen release.
async fn forward(
    client: &UpstreamClient,
    route: &LiveRoute,
    client_ip: HeaderValue,
    req: Request<Incoming>,
    started: Instant,
) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let mut headers = std::mem::take(&mut parts.headers);
    // Kept for error messages only (a reference-counted copy).
    let host_value = headers.get(header::HOST).cloned();
    let host = || {
        host_value
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let Some(chosen) = route.choose() else {
        return local(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "pave edge proxy: no release of '{}' has traffic weight\n",
                host()
            ),
        );
    };
    rewrite_request_headers(&mut headers, client_ip);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));

    let attempts = route.attempts_from(chosen);
    let mut body = Some(body);
    let slot: Option<BodySlot> =
        if attempts > 1 && !body.as_ref().is_some_and(hyper::body::Body::is_end_stream) {
            body.take().map(|b| Arc::new(Mutex::new(Some(b))))
        } else {
            None
        };
    let mut last_error = None;
    let mut attempt = 0;
    'backends: for backend_index in route.try_order(chosen) {
        let backend = &route.backends[backend_index];
        let count = backend.instances.len();
        let first = if count > 0 {
            backend.first_instance()
        } else {
            0
        };
        for k in 0..count {
            let instance = &backend.instances[(first + k) % count];
            attempt += 1;
            let last = attempt >= attempts;
            let upstream_body = match (&slot, body.take()) {
                (Some(slot), _) => match UpstreamBody::from_slot(slot) {
                    Some(b) => b,
                    None => break 'backends,
                },
                (None, Some(b)) if !hyper::body::Body::is_end_stream(&b) => UpstreamBody::Direct(b),
                _ => UpstreamBody::Empty,
            };
            let attempt_headers = if last {
                std::mem::take(&mut headers)
            } else {
                headers.clone()
            };
            let upstream = upstream_request(
                &parts.method,
                instance,
                &path,
                attempt_headers,
                upstream_body,
            );
            match client.request(upstream).await {
                Ok(response) => {
                    let response = response_to_client(response, &backend.release_header);
                    backend
                        .metrics
                        .record(response.status().as_u16(), started.elapsed());
                    return response;
                }
                Err(error) => {
                    let retry = !last && not_sent(&error, &parts.method, slot.as_ref());
                    if retry {
                        backend.metrics.record_connect_failure();
                        tracing::debug!(release = %backend.release, %instance, %error, "retrying on another instance");
                    }
                    last_error = Some(error);
                    if !retry {
                        break 'backends;
                    }
                }
            }
        }
    }
    let release = &route.backends[chosen];
    let detail = last_error.map_or_else(|| "it has no instances".to_string(), |e| error_chain(&e));
    let host = host();
    tracing::warn!(host, release = %release.release, error = %detail, "upstream failed");
    let mut response = local(
        StatusCode::BAD_GATEWAY,
        format!(
            "pave edge proxy: release '{}' of '{host}' did not answer: {detail}\n",
            release.release
        ),
    );
    response
        .headers_mut()
        .insert(X_PAVE_RELEASE.clone(), release.release_header.clone());
    release
        .metrics
        .record(StatusCode::BAD_GATEWAY.as_u16(), started.elapsed());
    response
}

/// Whether the request certainly did not reach the instance (or may be safely
/// repeated: an idempotent request whose body was not read, on a connection
/// that closed before answering).
fn not_sent(error: &ClientError, method: &Method, slot: Option<&BodySlot>) -> bool {
    if error.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>() {
            let body_unread = slot.is_none_or(|s| s.lock().map(|b| b.is_some()).unwrap_or(false));
            return hyper_error.is_canceled()
                || (hyper_error.is_incomplete_message() && method.is_idempotent() && body_unread);
        }
        source = cause.source();
    }
    false
}

fn error_chain(error: &ClientError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn upstream_request(
    method: &Method,
    instance: &Authority,
    path: &PathAndQuery,
    headers: HeaderMap,
    body: UpstreamBody,
) -> Request<UpstreamBody> {
    let mut uri = hyper::http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(instance.clone());
    uri.path_and_query = Some(path.clone());
    let mut request = Request::new(body);
    *request.method_mut() = method.clone();
    // Scheme, authority and path are all set, so this cannot fail.
    *request.uri_mut() = Uri::from_parts(uri).unwrap_or_default();
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    request
}

/// Drops hop-by-hop headers and adds the X-Forwarded-* trio.
fn rewrite_request_headers(headers: &mut HeaderMap, client_ip: HeaderValue) {
    strip_hop_by_hop(headers);
    let forwarded_for = match headers.get(&X_FORWARDED_FOR) {
        Some(previous) => {
            let mut joined = previous.as_bytes().to_vec();
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client_ip.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or(client_ip)
        }
        None => client_ip,
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the
/// Connection header names. One pass over the names when there are none.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    let hop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for name in hop {
        headers.remove(name);
    }
}

fn response_to_client(response: Response<Incoming>, release: &HeaderValue) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(X_PAVE_RELEASE.clone(), release.clone());
    Response::from_parts(parts, Either::Left(body))
}

/// A response written by the proxy itself.
fn local(status: StatusCode, message: String) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(message))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
