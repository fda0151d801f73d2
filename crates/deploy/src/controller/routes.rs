//! Traffic and instance bookkeeping: set a service's route from what is
//! running, rebuild all routes after a restart, retire instances after a
//! drain, and sweep instances no release needs any more.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use pave_store::{DeploymentRow, StoreError};

use super::phase::{Phase, now_ms};
use super::{ControllerConfig, DeploymentSpec, host_for};
use crate::proxy::{Backend, Route};
use crate::runtime::{Instance, InstanceId};

/// Instances being stopped, so a sweep does not stop them twice.
static RETIRING: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// How long an instance gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The running instances of one release.
pub(super) fn instances_of(
    cfg: &ControllerConfig,
    service: &str,
    env: &str,
    release: &str,
) -> Vec<Instance> {
    let mut v: Vec<Instance> = cfg
        .runtime
        .list()
        .into_iter()
        .filter(|i| i.spec.service == service && i.spec.env == env && i.spec.release == release)
        .filter(|i| {
            !RETIRING
                .lock()
                .map(|r| r.contains(i.id.as_str()))
                .unwrap_or(false)
        })
        .collect();
    v.sort_by_key(|i| i.spec.index);
    v
}

fn addrs(list: &[Instance]) -> Vec<SocketAddr> {
    list.iter().map(|i| i.addr).collect()
}

/// Points `host` at `stable` (weight 100 - `weight`) and `new` (weight `weight`).
/// A side without instances gets no traffic; no instances at all removes the route.
pub(super) fn split(
    cfg: &ControllerConfig,
    host: &str,
    service: &str,
    env: &str,
    stable: Option<(&str, Vec<SocketAddr>)>,
    new: Option<(&str, Vec<SocketAddr>)>,
    weight: u32,
) {
    let mut backends = Vec::new();
    let stable = stable.filter(|(_, a)| !a.is_empty());
    let new = new.filter(|(_, a)| !a.is_empty());
    let (ws, wn) = match (&stable, &new) {
        (Some(_), Some(_)) => (100 - weight.min(100), weight.min(100)),
        (Some(_), None) => (100, 0),
        (None, Some(_)) => (0, 100),
        (None, None) => {
            cfg.routes.remove(host);
            return;
        }
    };
    for ((release, instances), w) in [(stable, ws), (new, wn)]
        .into_iter()
        .filter_map(|(side, w)| side.map(|s| (s, w)))
    {
        backends.push(Backend {
            service: service.to_string(),
            env: env.to_string(),
            release: release.to_string(),
            weight: w,
            instances,
        });
    }
    cfg.routes.set(host, Route { backends });
}

/// Sends all of a service's traffic in `env` to `release`'s running instances.
pub(super) fn all_to(cfg: &ControllerConfig, service: &str, env: &str, release: &str) {
    let inst = addrs(&instances_of(cfg, service, env, release));
    split(
        cfg,
        &host_for(service, env),
        service,
        env,
        None,
        Some((release, inst)),
        100,
    );
}

/// Splits a service's traffic in `env` between the stable release and a new one.
pub(super) fn stable_and_new(
    cfg: &ControllerConfig,
    service: &str,
    env: &str,
    stable: Option<&str>,
    new: &str,
    weight: u32,
) {
    let s = stable.map(|id| (id, addrs(&instances_of(cfg, service, env, id))));
    let n = (new, addrs(&instances_of(cfg, service, env, new)));
    split(
        cfg,
        &host_for(service, env),
        service,
        env,
        s,
        Some(n),
        weight,
    );
}

/// Stops instances after `drain` (in the background), at most once each.
pub(super) fn retire(cfg: &ControllerConfig, instances: Vec<InstanceId>, drain: Duration) {
    let fresh: Vec<InstanceId> = {
        let Ok(mut set) = RETIRING.lock() else { return };
        instances
            .into_iter()
            .filter(|id| set.insert(id.as_str().to_string()))
            .collect()
    };
    if fresh.is_empty() {
        return;
    }
    let runtime = cfg.runtime.clone();
    tokio::spawn(async move {
        tokio::time::sleep(drain).await;
        for id in fresh {
            if let Err(e) = runtime.stop(&id, STOP_GRACE).await {
                tracing::warn!(instance = %id.as_str(), error = %e, "could not stop instance");
            }
            if let Ok(mut set) = RETIRING.lock() {
                set.remove(id.as_str());
            }
        }
    });
}

/// After a restart: every service's route from the stable releases and the
/// in-flight deployments' recorded weights.
pub(super) async fn restore(cfg: &ControllerConfig) -> Result<(), StoreError> {
    let world = World::load(cfg).await?;
    for d in &world.stable {
        let Ok(spec) = serde_json::from_value::<DeploymentSpec>(d.spec.clone()) else {
            continue;
        };
        all_to(cfg, &spec.service, &d.env, &d.id);
    }
    for d in &world.active {
        let Ok(spec) = serde_json::from_value::<DeploymentSpec>(d.spec.clone()) else {
            continue;
        };
        let phase = Phase::from_json(&d.phase);
        if phase.weight > 0 {
            stable_and_new(
                cfg,
                &spec.service,
                &d.env,
                phase.stable_id.as_deref(),
                &d.id,
                phase.weight,
            );
        }
    }
    Ok(())
}

/// What the store says should run, read once per reconcile pass: the stable
/// release of every environment and the in-flight deployments.
pub(super) struct World {
    pub(super) stable: Vec<DeploymentRow>,
    pub(super) active: Vec<DeploymentRow>,
}

impl World {
    pub(super) async fn load(cfg: &ControllerConfig) -> Result<World, StoreError> {
        Ok(World {
            stable: cfg.store.stable_deployments().await?,
            active: cfg.store.active_deployments().await?,
        })
    }

    /// The stable deployments of environments with no deployment in flight
    /// (those an in-flight deployment does not already look after).
    pub(super) fn idle_stable(&self) -> impl Iterator<Item = &DeploymentRow> {
        let busy: HashSet<(&str, &str)> = self
            .active
            .iter()
            .map(|d| (d.service_key.as_str(), d.env.as_str()))
            .collect();
        self.stable
            .iter()
            .filter(move |d| !busy.contains(&(d.service_key.as_str(), d.env.as_str())))
    }
}

/// Stops instances that belong to no stable release, no in-flight
/// deployment, and no release kept warm for an instant rollback.
pub(super) fn sweep(cfg: &ControllerConfig, world: &World) {
    let instances = cfg.runtime.list();
    if instances.is_empty() {
        return;
    }
    let mut keep: HashSet<&str> = HashSet::new();
    let now = now_ms();
    for d in &world.stable {
        keep.insert(&d.id);
    }
    let stable_phases: Vec<Phase> = world
        .stable
        .iter()
        .map(|d| Phase::from_json(&d.phase))
        .collect();
    for phase in &stable_phases {
        if phase.keep_previous_until_ms.is_some_and(|t| t > now)
            && let Some(prev) = &phase.stable_id
        {
            keep.insert(prev);
        }
    }
    let active_phases: Vec<Phase> = world
        .active
        .iter()
        .map(|d| Phase::from_json(&d.phase))
        .collect();
    for (d, phase) in world.active.iter().zip(&active_phases) {
        keep.insert(&d.id);
        if let Some(prev) = &phase.stable_id {
            keep.insert(prev);
        }
    }
    let orphans: Vec<InstanceId> = instances
        .into_iter()
        .filter(|i| !keep.contains(i.spec.release.as_str()))
        .map(|i| i.id)
        .collect();
    if !orphans.is_empty() {
        tracing::info!(count = orphans.len(), "stopping instances no release needs");
        retire(cfg, orphans, Duration::ZERO);
    }
}

/// Re-points every route's backends at their releases' current instance
/// addresses (an instance restarted on another port, a retired one gone),
/// keeping the weights.
pub(super) fn refresh(cfg: &ControllerConfig) {
    for host in cfg.routes.hosts() {
        let Some(route) = cfg.routes.get(&host) else {
            continue;
        };
        let mut changed = false;
        let backends = route
            .backends
            .iter()
            .map(|b| {
                let now = addrs(&instances_of(cfg, &b.service, &b.env, &b.release));
                if now != b.instances && !now.is_empty() {
                    changed = true;
                    Backend {
                        instances: now,
                        ..b.clone()
                    }
                } else {
                    b.clone()
                }
            })
            .collect();
        if changed {
            cfg.routes.set(&host, Route { backends });
        }
    }
}
