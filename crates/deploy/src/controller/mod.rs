//! The deployment controller: a reconcile loop that drives every in-flight
//! deployment one small, idempotent step per tick.
//!
//! All state lives in the store (`deployments.phase`, wall-clock based) and
//! in the runtime's instance records, so a controller that starts after a
//! crash adopts the running instances, rebuilds the proxy routes from the
//! stable releases and the deployments' phases, and carries on. Each tick
//! decides from what it observes now (is the instance healthy, how long has
//! this step run, what does the analysis say) and commits its decision with
//! compare-and-set, so two servers never both advance one deployment (a
//! lease picks the driver; the version check catches the rest).

mod drive;
mod metrics_input;
pub mod phase;
mod routes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pave_store::secrets::SecretKey;
use pave_store::{DeploymentRow, Store, StoreError, Transition};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::proxy::{ProxyMetrics, RouteTable};
use crate::runtime::ProcessRuntime;
pub use phase::{Command, Phase, Stage};

/// Finds an artifact blob on disk by digest.
pub type BlobLocator = Arc<dyn Fn(&str) -> Option<PathBuf> + Send + Sync>;

/// What a deployment row's `spec` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentSpec {
    /// The service's `deploy` section at the artifact's commit.
    pub deploy: pave_model::DeploySpec,
    /// The service's plain name (the catalog key is `component:default/<name>`).
    pub service: String,
}

/// Everything the controller works with.
#[derive(Clone)]
pub struct ControllerConfig {
    pub store: Store,
    pub runtime: ProcessRuntime,
    pub routes: RouteTable,
    pub metrics: ProxyMetrics,
    /// This server's identity for deployment leases.
    pub owner: String,
    /// Where releases are unpacked (`<dir>/<deployment id>/`).
    pub releases_dir: PathBuf,
    pub blobs: BlobLocator,
    /// Decrypts the service's secrets for its instances.
    pub secret_key: Option<SecretKey>,
    /// How often the loop runs when nothing wakes it.
    pub tick: Duration,
    /// How long an old instance keeps serving in-flight requests after
    /// traffic moved away, before SIGTERM.
    pub drain: Duration,
}

/// A handle on the running controller.
#[derive(Clone)]
pub struct DeployController {
    cfg: ControllerConfig,
    wake: Arc<Notify>,
    last_heal: Arc<std::sync::atomic::AtomicU64>,
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("deployment `{0}` not found")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DeployController {
    /// A controller over `cfg`; call [`DeployController::run`] to start it.
    pub fn new(cfg: ControllerConfig) -> DeployController {
        DeployController {
            cfg,
            wake: Arc::new(Notify::new()),
            last_heal: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Makes the loop look at deployments now (after a create or a command).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The proxy routes (for the API's what-runs-where views).
    pub fn routes(&self) -> &RouteTable {
        &self.cfg.routes
    }

    /// The proxy metrics.
    pub fn metrics(&self) -> &ProxyMetrics {
        &self.cfg.metrics
    }

    /// The runtime.
    pub fn runtime(&self) -> &ProcessRuntime {
        &self.cfg.runtime
    }

    /// Adopts surviving instances, restores routes, then reconciles until
    /// `shutdown` resolves. Instances keep running after it returns (they
    /// are the service; the next server adopts them).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let adopted = self.cfg.runtime.adopt();
        if !adopted.is_empty() {
            tracing::info!(count = adopted.len(), "adopted running service instances");
        }
        if let Err(e) = routes::restore(&self.cfg).await {
            tracing::warn!(error = %e, "could not restore proxy routes");
        }
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "deployment reconcile failed; retrying");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.cfg.tick) => {}
            }
        }
    }

    /// One pass: drive every deployment this server holds the lease on,
    /// then stop instances no release needs any more.
    pub async fn reconcile(&self) -> Result<(), StoreError> {
        let ttl = (self.cfg.tick.as_millis() as i64 * 20).max(5_000);
        let leased = self
            .cfg
            .store
            .lease_deployments(&self.cfg.owner, ttl)
            .await?;
        for d in leased {
            let id = d.id.clone();
            match drive::drive(&self.cfg, d).await {
                Ok(()) => {}
                // Someone (a command, another server) moved it: next tick re-reads.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => tracing::warn!(deployment = %id, error = %e, "deployment step failed"),
            }
        }
        // Keep live releases live: restart what vanished while no server ran
        // (once per second is plenty; the runtime restarts crashes itself).
        let world = routes::World::load(&self.cfg).await?;
        if self.heal_due() {
            for d in world.idle_stable() {
                drive::heal(&self.cfg, d.clone()).await?;
            }
        }
        routes::refresh(&self.cfg);
        routes::sweep(&self.cfg, &world);
        Ok(())
    }

    /// True at most once per second.
    fn heal_due(&self) -> bool {
        let now = phase::now_ms();
        let last = self.last_heal.load(std::sync::atomic::Ordering::Relaxed);
        now >= last + 1000
            && self
                .last_heal
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Records a human command for the deployment's next tick.
    pub async fn command(&self, id: &str, cmd: Command) -> Result<DeploymentRow, ControlError> {
        for _ in 0..20 {
            let d = self
                .cfg
                .store
                .get_deployment(id)
                .await?
                .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
            if !d.is_active() {
                return Err(ControlError::Refused(format!(
                    "deployment #{} of {} to {} already ended ({})",
                    d.number, d.service_key, d.env, d.status
                )));
            }
            let mut phase = Phase::from_json(&d.phase);
            match (&cmd, d.status.as_str()) {
                (Command::Resume { .. }, s) if s != "paused" => {
                    return Err(ControlError::Refused(format!(
                        "deployment #{} is {s}, not paused; nothing to resume",
                        d.number
                    )));
                }
                (Command::Pause { .. }, "paused") => {
                    return Err(ControlError::Refused(format!(
                        "deployment #{} is already paused",
                        d.number
                    )));
                }
                _ => {}
            }
            phase.command = Some(cmd.clone());
            let t = Transition {
                status: d.status.clone(),
                phase: phase.to_json(),
                ..Transition::default()
            };
            match self.cfg.store.transition_deployment(id, d.version, t).await {
                Ok(row) => {
                    self.wake();
                    return Ok(row);
                }
                Err(StoreError::Conflict(_)) => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ControlError::Refused(format!(
            "deployment `{id}` is changing too fast to take the command; try again"
        )))
    }

    /// Per-release request metrics of a deployment's releases over its life,
    /// for charts: `{release: [per-second stats]}`.
    pub fn series(
        &self,
        releases: &[&str],
        from_unix_s: u64,
        to_unix_s: u64,
    ) -> HashMap<String, Vec<crate::proxy::SecondStats>> {
        releases
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    self.cfg.metrics.seconds(r, from_unix_s, to_unix_s),
                )
            })
            .collect()
    }
}

/// The proxy host of a service in an environment.
pub fn host_for(service: &str, env: &str) -> String {
    format!("{service}.{env}.localhost")
}

/// The blue-green preview host.
pub fn preview_host_for(service: &str, env: &str) -> String {
    format!("{service}.{env}.preview.localhost")
}
