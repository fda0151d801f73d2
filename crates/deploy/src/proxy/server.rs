//! Accepting and serving client connections. One task accepts; each
//! connection is handed, round robin, to a worker thread running its own
//! single-threaded runtime and its own upstream connection pool, so a request
//! is read, forwarded and answered on one thread with no cross-thread wakeups
//! (measured faster than a work-stealing runtime on a small box).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::forward::{self, Shared, Worker};

/// How long an idle pooled connection to an instance is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting to a local instance is immediate or refused; this bounds a blackholed address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A worker's own pooled client to the instances.
fn upstream_client() -> forward::UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// Accepted connections on their way to a worker.
type Handoff = mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>;

/// Accepts on `listener` until `stop` turns true, handing connections to
/// `threads` workers (0: serve them on the caller's runtime), then waits until
/// every connection has finished its in-flight request.
pub(crate) async fn run(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    threads: usize,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "edge proxy: cannot register the listener");
            return;
        }
    };
    let (done, mut all_done) = mpsc::channel::<()>(1);
    let mut workers: Vec<Handoff> = Vec::new();
    for index in 0..threads {
        let (handoff, incoming) = mpsc::unbounded_channel();
        let (shared, done) = (shared.clone(), done.clone());
        let started = std::thread::Builder::new()
            .name(format!("pave-edge-{index}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(worker(incoming, shared)),
                    Err(error) => tracing::error!(%error, "edge proxy worker: no runtime"),
                }
                drop(done);
            });
        match started {
            Ok(_) => workers.push(handoff),
            Err(error) => tracing::warn!(%error, "edge proxy: cannot start a worker thread"),
        }
    }
    // Without worker threads, connections are served right here.
    let (inline, inline_incoming) = mpsc::unbounded_channel();
    let inline_worker = workers
        .is_empty()
        .then(|| tokio::spawn(worker(inline_incoming, shared.clone())));
    let mut next = 0;
    loop {
        tokio::select! {
            () = stopping(&mut stop) => break,
            accepted = listener.accept() => match accepted.and_then(|(stream, peer)| Ok((stream.into_std()?, peer))) {
                Ok(connection) => {
                    let handoff = if workers.is_empty() { &inline } else { &workers[next % workers.len()] };
                    next += 1;
                    if handoff.send(connection).is_err() {
                        tracing::error!("edge proxy: a worker is gone; connection dropped");
                    }
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "edge proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    // Closing the handoffs tells each worker to drain and end.
    drop(workers);
    drop(inline);
    if let Some(inline_worker) = inline_worker {
        let _ = inline_worker.await;
    }
    drop(done);
    // Every worker thread holds a sender; this returns when the last one ends.
    let _ = all_done.recv().await;
}

/// One worker: serves the connections handed to it; when the handoff closes,
/// asks them to finish (in-flight requests complete, idle ones close) and waits.
async fn worker(
    mut incoming: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    shared: Arc<Shared>,
) {
    let worker = Arc::new(Worker {
        shared,
        client: upstream_client(),
    });
    let (connections, connections_stop) = watch::channel(false);
    while let Some((stream, peer)) = incoming.recv().await {
        match TcpStream::from_std(stream) {
            Ok(stream) => {
                tokio::spawn(serve_connection(
                    worker.clone(),
                    stream,
                    peer,
                    connections_stop.clone(),
                ));
            }
            Err(error) => tracing::warn!(%error, "edge proxy worker: cannot register a connection"),
        }
    }
    let _ = connections.send(true);
    drop(connections_stop);
    // Every connection task holds a receiver; this returns when the last one ends.
    connections.closed().await;
}

/// Completes when a stop is requested (or the sender is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = stop.wait_for(|stopping| *stopping).await.map(|_| ());
}

async fn serve_connection(
    worker: Arc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // An IP address always renders as a valid header value.
    let client_ip = HeaderValue::from_str(&peer.ip().to_string())
        .unwrap_or(HeaderValue::from_static("unknown"));
    let service = service_fn(move |req| forward::handle(worker.clone(), client_ip.clone(), req));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // Bounds how long a client may take to send a request head (slowloris).
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "client connection ended with an error");
            }
        }
        () = stopping(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
