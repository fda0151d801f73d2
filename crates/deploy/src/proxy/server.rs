//! Accepting and serving client connections. The proxy runs one
//! single-threaded runtime per worker thread, all accepting from the same
//! listening socket, each with its own upstream connection pool: a request is
//! read, forwarded and answered on one thread, with no cross-thread wakeups
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
use tokio::sync::watch;

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

/// Runs `threads` workers on `listener` until `stop` turns true, then waits
/// for their in-flight requests. Falls back to the calling runtime when a
/// thread cannot be started.
pub(crate) async fn run(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    threads: usize,
    stop: watch::Receiver<bool>,
) {
    let (done, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    let mut inline = Vec::new();
    for index in 0..threads.max(1) {
        let listener = match listener.try_clone() {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "edge proxy: cannot share the listener; fewer workers");
                break;
            }
        };
        let (shared, stop, done) = (shared.clone(), stop.clone(), done.clone());
        let started = std::thread::Builder::new()
            .name(format!("pave-edge-{index}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(worker(listener, shared, stop)),
                    Err(error) => tracing::error!(%error, "edge proxy worker: no runtime"),
                }
                drop(done);
            });
        if let Err(error) = started {
            tracing::warn!(%error, "edge proxy: cannot start a worker thread; serving on the caller's runtime");
            inline.push(index);
        }
    }
    drop(done);
    if !inline.is_empty() || threads == 0 {
        worker(listener, shared, stop).await;
    } else {
        // The workers hold clones; this one must not keep the port accepting after they stop.
        drop(listener);
    }
    // Every worker thread holds a sender; this returns when the last one ends.
    let _ = all_done.recv().await;
}

/// One worker: accepts on its runtime until stopped, then drains its connections.
async fn worker(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "edge proxy worker: cannot register the listener");
            return;
        }
    };
    let worker = Arc::new(Worker {
        shared,
        client: upstream_client(),
    });
    let (connections, connections_stop) = watch::channel(false);
    loop {
        tokio::select! {
            () = stopping(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_connection(worker.clone(), stream, peer, connections_stop.clone()));
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
