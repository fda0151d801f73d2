//! State the supervisor tasks and the `ProcessRuntime` handle share: the
//! instance table, the event channel, and the few transitions both make.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::health::ProbeOutcome;
use super::process::ExitInfo;
use super::record;
use super::spec::{Instance, InstanceEvent, InstanceId, RuntimeError};

/// State the supervisor tasks and the handle share.
pub(crate) struct Shared {
    pub(super) state_dir: PathBuf,
    pub(super) boot_id: String,
    /// See `record::runtime_id`; read or created on first spawn.
    pub(super) runtime_id: OnceLock<String>,
    pub(super) events: broadcast::Sender<InstanceEvent>,
    pub(super) state: Mutex<State>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(super) instances: HashMap<InstanceId, Entry>,
    /// Ids being started, with the port reserved for them.
    pub(super) starting: HashMap<InstanceId, u16>,
}

impl State {
    /// Ports given to instances (running, restarting or being started).
    pub(super) fn taken_ports(&self) -> HashSet<u16> {
        self.instances
            .values()
            .map(|e| e.instance.port)
            .chain(self.starting.values().copied())
            .collect()
    }
}

/// What the runtime knows about one supervised instance right now.
pub(crate) struct Entry {
    pub(super) instance: Instance,
    /// False between an exit and the restart.
    pub(super) running: bool,
    pub(super) healthy: bool,
    pub(super) last_probe: ProbeOutcome,
    pub(super) exits: u32,
    pub(super) last_exit: Option<ExitInfo>,
    pub(super) control: mpsc::Sender<Control>,
}

/// Requests to a supervisor.
pub(crate) enum Control {
    Stop {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the runtime down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn emit(&self, event: InstanceEvent) {
        tracing::debug!(?event, "instance event");
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    pub(super) fn taken_ports(&self) -> HashSet<u16> {
        self.lock().taken_ports()
    }

    /// The id instances of this state dir carry, created if need be.
    pub(super) fn runtime_id(&self) -> Result<String, RuntimeError> {
        if let Some(id) = self.runtime_id.get() {
            return Ok(id.clone());
        }
        let id = record::runtime_id(&self.state_dir, true)?.unwrap_or_default();
        Ok(self.runtime_id.get_or_init(|| id).clone())
    }

    /// Stores a probe result of process `pid`; flips to healthy on success.
    pub(super) fn record_probe(&self, id: &InstanceId, pid: u32, outcome: ProbeOutcome) {
        let mut event = None;
        {
            let mut st = self.lock();
            let Some(e) = st.instances.get_mut(id) else {
                return;
            };
            if e.instance.pid != pid || !e.running {
                return;
            }
            if outcome.is_healthy() && !e.healthy {
                e.healthy = true;
                event = Some(InstanceEvent::Healthy {
                    id: id.clone(),
                    addr: e.instance.addr,
                });
            }
            e.last_probe = outcome;
        }
        if let Some(ev) = event {
            self.emit(ev);
        }
    }

    /// Flips to unhealthy (with an event) if the instance was healthy.
    pub(super) fn mark_unhealthy(&self, id: &InstanceId, reason: String) {
        let was_healthy = {
            let mut st = self.lock();
            match st.instances.get_mut(id) {
                Some(e) => std::mem::replace(&mut e.healthy, false),
                None => false,
            }
        };
        if was_healthy {
            self.emit(InstanceEvent::Unhealthy {
                id: id.clone(),
                reason,
            });
        }
    }
}
