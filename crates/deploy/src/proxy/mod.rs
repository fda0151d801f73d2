//! Pave's edge proxy: one listener (default [`DEFAULT_ADDR`]) that routes by
//! Host (`<service>.<env>.localhost`, previews at
//! `<service>.<env>.preview.localhost`), splits traffic between a service's
//! releases by weight, streams bodies both ways, keeps connections alive on
//! both sides, and measures every release (the built-in analysis metrics).
//!
//! ```text
//! let proxy = EdgeProxy::bind(DEFAULT_ADDR).await?;
//! proxy.routes().set("api.prod.localhost", Route { backends: vec![stable, canary] });
//! let metrics = proxy.metrics();
//! tokio::spawn(proxy.serve(shutdown));
//! metrics.summary("rel-2", from, to);
//! ```
//!
//! Modules: `routes` (table and weighted choice), `forward` (one request),
//! `body` (retryable request bodies), `server` (acceptor and worker
//! threads), `metrics` (per-second ring per release), `histogram`
//! (log-linear latencies), `prometheus` (text format).

mod body;
mod forward;
mod histogram;
mod metrics;
mod prometheus;
mod routes;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

pub use forward::{ProxyBody, RELEASE_HEADER};
pub use histogram::{LatencyHistogram, RELATIVE_ERROR as HISTOGRAM_RELATIVE_ERROR};
pub use metrics::{ProxyMetrics, ReleaseKey, SecondStats, Summary, WINDOW_SECONDS};
pub use routes::{Backend, Route, RouteError, RouteTable};

use forward::Shared;

/// The proxy's default listen address.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7412);

/// The edge proxy: a bound listener plus the routes and metrics it shares with the controller.
pub struct EdgeProxy {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    threads: usize,
}

impl EdgeProxy {
    /// Binds the listener (port 0 picks a free port; see [`EdgeProxy::local_addr`]).
    /// The proxy will serve on one worker thread per available core.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<EdgeProxy> {
        let listener = tokio::net::TcpListener::bind(addr).await?.into_std()?;
        let local_addr = listener.local_addr()?;
        let metrics = ProxyMetrics::new();
        let shared = Arc::new(Shared {
            routes: RouteTable::new(metrics.clone()),
            metrics,
        });
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(EdgeProxy {
            listener,
            local_addr,
            shared,
            threads,
        })
    }

    /// Sets how many worker threads serve connections (each runs its own
    /// single-threaded runtime and upstream pool); 0 serves on the caller's runtime.
    pub fn with_threads(mut self, threads: usize) -> EdgeProxy {
        self.threads = threads;
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Handle to the routing table (cheap to clone; changes apply to the next request).
    pub fn routes(&self) -> RouteTable {
        self.shared.routes.clone()
    }

    /// Handle to the per-release metrics (cheap to clone; stays valid after shutdown).
    pub fn metrics(&self) -> ProxyMetrics {
        self.shared.metrics.clone()
    }

    /// Accepts and serves connections until `shutdown` completes, then stops
    /// accepting, lets in-flight requests finish (idle keep-alive connections
    /// close at once) and returns when every connection is closed.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop, stopped) = watch::channel(false);
        let serving = tokio::spawn(server::run(
            self.listener,
            self.shared,
            self.threads,
            stopped,
        ));
        shutdown.await;
        let _ = stop.send(true);
        let _ = serving.await;
    }
}
