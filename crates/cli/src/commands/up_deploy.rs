//! The deployment side of `pave up`: the edge proxy, the process runtime
//! and the deploy controller, wired over the server's store and artifacts.

use anyhow::{Context, Result};
use pave_deploy::controller::{ControllerConfig, DeployController};
use pave_deploy::proxy::EdgeProxy;
use pave_deploy::runtime::ProcessRuntime;
use pave_pipeline::artifacts::ArtifactStore;
use pave_store::{SecretKey, Store};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Starts the edge proxy and the controller; both stop on `shutdown`
/// (service instances keep running: the next `pave up` adopts them).
pub async fn start(
    store: &Store,
    data_dir: &Path,
    edge_listen: SocketAddr,
    secret_key: SecretKey,
    shutdown: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) -> Result<(DeployController, SocketAddr)> {
    let proxy = EdgeProxy::bind(edge_listen).await.with_context(|| {
        format!("cannot listen on {edge_listen} for the edge proxy (use --edge-listen to pick another address)")
    })?;
    let edge = proxy.local_addr();
    // Clients (and tests) find the proxy here, as they find the API in `server`.
    crate::config::write_private(&data_dir.join("edge"), &format!("http://{edge}\n"))?;
    let artifacts = ArtifactStore::open(data_dir.join("artifacts"))
        .map_err(|e| anyhow::anyhow!("opening the artifact store: {e}"))?;
    let releases_dir = data_dir.join("releases");
    std::fs::create_dir_all(&releases_dir)
        .with_context(|| format!("creating {}", releases_dir.display()))?;
    let cfg = ControllerConfig {
        store: store.clone(),
        runtime: ProcessRuntime::new(data_dir.join("runtime")),
        routes: proxy.routes(),
        metrics: proxy.metrics(),
        owner: server_id(data_dir)?,
        releases_dir,
        blobs: Arc::new(move |digest: &str| {
            artifacts
                .contains(digest)
                .then(|| artifacts.blob_path(digest).ok())
                .flatten()
        }),
        secret_key: Some(secret_key),
        tick: Duration::from_millis(250),
        drain: Duration::from_secs(1),
    };
    let controller = DeployController::new(cfg);
    tokio::spawn(proxy.serve(shutdown()));
    tokio::spawn(controller.clone().run(shutdown()));
    Ok((controller, edge))
}

/// This server's identity for deployment leases, kept in the data
/// directory so a restarted server resumes its deployments at once.
fn server_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("server-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::config::write_private(&path, &format!("{id}\n"))?;
    Ok(id)
}
