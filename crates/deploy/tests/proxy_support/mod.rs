//! Real backends and a real client for the edge proxy tests, all on loopback.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pave_deploy::proxy::{Backend, EdgeProxy, ProxyMetrics, Route, RouteTable};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// A request or response body fed chunk by chunk through a channel.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

pub type TestBody = Either<Either<Full<Bytes>, Empty<Bytes>>, ChannelBody>;

/// A response a test backend gives, decided per request.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>
        + Send
        + Sync,
>;

/// Starts a backend on a free loopback port serving `handler`.
pub async fn start_backend(handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

pub fn text(status: u16, body: String) -> Response<TestBody> {
    let mut response = Response::new(Either::Left(Either::Left(Full::new(Bytes::from(body)))));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

/// A backend that answers `<name> <path>`; `/status/NNN` answers with that
/// status; `/echo` streams the request body back; it reports the forwarding
/// headers it saw as `x-saw-*` response headers.
pub async fn named_backend(name: &'static str) -> SocketAddr {
    start_backend(Arc::new(move |req: Request<Incoming>| {
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let saw = |h: &str| {
                req.headers()
                    .get(h)
                    .map(|v| v.to_str().unwrap_or("?").to_string())
                    .unwrap_or_default()
            };
            let seen = [
                ("x-saw-xff", saw("x-forwarded-for")),
                ("x-saw-xfh", saw("x-forwarded-host")),
                ("x-saw-xfp", saw("x-forwarded-proto")),
                ("x-saw-host", saw("host")),
                ("x-saw-hop", saw("x-hop")),
                ("x-saw-keep-alive", saw("keep-alive")),
            ];
            let mut response = if path == "/echo" {
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                text(200, String::from_utf8_lossy(&body).into_owned())
            } else if let Some(code) = path.strip_prefix("/status/").and_then(|c| c.parse().ok()) {
                text(code, format!("{name} {path}"))
            } else {
                text(200, format!("{name} {path}"))
            };
            for (header, value) in seen {
                response
                    .headers_mut()
                    .insert(header, value.parse().unwrap());
            }
            // A hop-by-hop header the proxy must not pass on.
            response
                .headers_mut()
                .insert("x-hop-reply", "1".parse().unwrap());
            response
                .headers_mut()
                .insert("connection", "x-hop-reply".parse().unwrap());
            response
        })
    }))
    .await
}

/// A loopback address nothing listens on.
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

pub fn backend(release: &str, weight: u32, instances: Vec<SocketAddr>) -> Backend {
    Backend {
        service: "api".into(),
        env: "prod".into(),
        release: release.into(),
        weight,
        instances,
    }
}

pub fn route(backends: Vec<Backend>) -> Route {
    Route { backends }
}

/// A running proxy: its address, handles, and the trigger of its graceful shutdown.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub routes: RouteTable,
    pub metrics: ProxyMetrics,
    pub shutdown: Option<oneshot::Sender<()>>,
    pub served: tokio::task::JoinHandle<()>,
}

pub async fn start_proxy() -> RunningProxy {
    start_proxy_with(None).await
}

/// A proxy with `threads` worker threads (`None`: the default, one per core).
pub async fn start_proxy_with(threads: Option<usize>) -> RunningProxy {
    let mut proxy = EdgeProxy::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    if let Some(threads) = threads {
        proxy = proxy.with_threads(threads);
    }
    let (tx, rx) = oneshot::channel::<()>();
    let addr = proxy.local_addr();
    let routes = proxy.routes();
    let metrics = proxy.metrics();
    let served = tokio::spawn(proxy.serve(async move {
        let _ = rx.await;
    }));
    RunningProxy {
        addr,
        routes,
        metrics,
        shutdown: Some(tx),
        served,
    }
}

pub type TestClient = Client<HttpConnector, TestBody>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A finished exchange: status, release header, all headers, body text.
pub struct Answer {
    pub status: u16,
    pub release: String,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

pub fn request(
    proxy: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    body: TestBody,
) -> Request<TestBody> {
    Request::builder()
        .method(method)
        .uri(format!("http://{proxy}{path}"))
        .header("host", host)
        .body(body)
        .unwrap()
}

pub fn empty() -> TestBody {
    Either::Left(Either::Right(Empty::new()))
}

pub fn full(text: &str) -> TestBody {
    Either::Left(Either::Left(Full::new(Bytes::from(text.to_string()))))
}

pub async fn send(client: &TestClient, req: Request<TestBody>) -> Answer {
    let response = client.request(req).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let release = headers
        .get("x-pave-release")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        release,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

pub async fn get(client: &TestClient, proxy: SocketAddr, host: &str, path: &str) -> Answer {
    send(client, request(proxy, host, "GET", path, empty())).await
}

/// The current Unix second.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Shared counter map used by load tests.
pub type Tally = Arc<Mutex<std::collections::HashMap<String, u64>>>;
