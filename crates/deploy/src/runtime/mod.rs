//! The `process` runtime: service instances as supervised processes.
//!
//! Each instance runs `sh -c <command>` in its working directory (the
//! unpacked artifact), in its own session, with `PORT`, `PAVE_SERVICE`,
//! `PAVE_ENV`, `PAVE_RELEASE`, `PAVE_INSTANCE` and the spec's variables, and
//! its output appended to a log file. A supervisor task per instance probes
//! its health, restarts it with exponential backoff when it exits, and on
//! `stop` sends SIGTERM to its process group and SIGKILL after a grace.
//!
//! Instances outlive the server on purpose: a record per instance (pid,
//! process start time, port, spec) lets the next server `adopt` them instead
//! of starting duplicates. Dropping the last `ProcessRuntime` handle stops
//! supervising but leaves the processes running, exactly like a crash.
//!
//! For the controller: on start-up call `adopt` once, before `start`ing
//! anything, then compare `list` with what should run. Route to an
//! instance's `addr`; follow `InstanceEvent::AddrChanged` (a restart found
//! its port taken). `wait_healthy` gates a release; `is_healthy` and the
//! `Healthy`/`Unhealthy` events track it afterwards. Layout of `state_dir`:
//! `instances/<id>.json` (0600, holds the spec's env), `logs/<id>.log` (kept
//! after stop; `.log.1` after rotation), `runtime-id`.

mod adopt;
mod artifact;
mod health;
mod logs;
mod process;
mod procfs;
mod record;
mod spawn;
mod spec;
mod state;
mod supervisor;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;

pub use artifact::unpack_artifact;
pub use spec::{
    HealthSpec, Instance, InstanceEvent, InstanceId, InstanceSpec, LogLine, RuntimeError,
};

use health::ProbeOutcome;
pub(crate) use state::{Control, Entry, Shared, State};

/// Handle on the process runtime; clones share the same instances.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

/// Owns the supervisor tasks: dropping it (the last handle) aborts them,
/// which stops supervision without touching the processes.
struct Inner {
    shared: Arc<Shared>,
    tasks: Mutex<JoinSet<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // JoinSet would abort them on drop anyway; said here because it is
        // the point: supervision ends, the processes keep running.
        if let Ok(tasks) = self.tasks.get_mut() {
            tasks.abort_all();
        }
    }
}

impl ProcessRuntime {
    /// A runtime keeping records under `state_dir/instances` and logs under
    /// `state_dir/logs`. Call `adopt` next to take over what is running.
    pub fn new(state_dir: PathBuf) -> Self {
        let (events, _) = broadcast::channel(1024);
        ProcessRuntime {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    state_dir,
                    boot_id: procfs::boot_id(),
                    runtime_id: std::sync::OnceLock::new(),
                    events,
                    state: Mutex::new(State::default()),
                }),
                tasks: Mutex::new(JoinSet::new()),
            }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Subscribes to instance events from now on.
    pub fn events(&self) -> broadcast::Receiver<InstanceEvent> {
        self.shared().events.subscribe()
    }

    /// Starts and supervises one instance on a free loopback port. Fails if
    /// the spec is invalid, the id already runs (here, or as an earlier
    /// server's instance not yet adopted), or the process cannot be spawned.
    pub async fn start(&self, spec: InstanceSpec) -> Result<Instance, RuntimeError> {
        spec.validate()?;
        let id = spec.id();
        let shared = self.shared();
        let port = {
            let mut st = shared.lock();
            if st.instances.contains_key(&id) || st.starting.contains_key(&id) {
                return Err(RuntimeError::AlreadyRunning(id));
            }
            // Chosen under the lock, so two starts cannot pick the same port.
            let port = spawn::free_port(&st.taken_ports())?;
            st.starting.insert(id.clone(), port);
            port
        };
        let result = self.start_reserved(&id, spec, port).await;
        shared.lock().starting.remove(&id);
        result
    }

    async fn start_reserved(
        &self,
        id: &InstanceId,
        spec: InstanceSpec,
        port: u16,
    ) -> Result<Instance, RuntimeError> {
        let shared = self.shared();
        if let Some(old) = record::read(&shared.state_dir, id)
            && old.boot_id == shared.boot_id
            && procfs::is_same_process(old.pid, old.start_time)
        {
            // Starting it again would run two copies of one instance.
            return Err(RuntimeError::AlreadyRunning(id.clone()));
        }
        let log_path = logs::log_path(&shared.state_dir, id);
        spawn::log_marker(&log_path, &format!("starting on port {port}"));
        let runtime_id = shared.runtime_id()?;
        let spawned = spawn::spawn(id, &spec, port, &log_path, &runtime_id)?;
        let mut proc = process::Proc::Child {
            child: spawned.child,
            pid: spawned.pid,
            start_time: spawned.start_time,
        };
        let rec = record::InstanceRecord {
            id: id.clone(),
            spec: spec.clone(),
            pid: spawned.pid,
            start_time: spawned.start_time,
            boot_id: shared.boot_id.clone(),
            port,
        };
        if let Err(e) = record::write(&shared.state_dir, &rec) {
            // Unrecorded, it could be neither adopted nor cleaned up later.
            proc.terminate(Duration::ZERO).await;
            return Err(e);
        }
        let instance = Instance {
            id: id.clone(),
            spec,
            pid: spawned.pid,
            port,
            addr: spawn::loopback(port),
        };
        self.supervise(instance.clone(), proc);
        shared.emit(InstanceEvent::Started {
            id: id.clone(),
            pid: instance.pid,
            addr: instance.addr,
            attempt: 0,
        });
        Ok(instance)
    }

    /// Registers the instance and starts its supervisor task.
    fn supervise(&self, instance: Instance, proc: process::Proc) {
        let (control, control_rx) = mpsc::channel(8);
        let entry = Entry {
            instance: instance.clone(),
            running: true,
            healthy: false,
            last_probe: ProbeOutcome::NotProbed,
            exits: 0,
            last_exit: None,
            control,
        };
        self.shared()
            .lock()
            .instances
            .insert(instance.id.clone(), entry);
        let sup = supervisor::Supervisor::new(self.shared().clone(), instance, proc, control_rx);
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Forget finished supervisors so the set does not grow forever.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(sup.run());
    }

    /// Waits until the instance answers its health path with a 2xx, probing
    /// it directly (not only on the background interval). On timeout the
    /// error tells what the last probe saw and whether the process exited.
    pub async fn wait_healthy(
        &self,
        id: &InstanceId,
        deadline: Duration,
    ) -> Result<(), RuntimeError> {
        let until = tokio::time::Instant::now() + deadline;
        let mut pause = Duration::from_millis(50);
        loop {
            let (running, healthy, pid, addr, health) = {
                let st = self.shared().lock();
                let Some(e) = st.instances.get(id) else {
                    return Err(RuntimeError::NotHealthy {
                        id: id.clone(),
                        deadline,
                        detail: "the instance is not running (stopped, or never started)".into(),
                    });
                };
                (
                    e.running,
                    e.healthy,
                    e.instance.pid,
                    e.instance.addr,
                    e.instance.spec.health.clone(),
                )
            };
            if healthy {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Err(self.not_healthy(id, deadline));
            }
            // Never probe a port while its process is down: a stranger might answer.
            if running {
                let timeout = health
                    .timeout
                    .min(until - now)
                    .max(Duration::from_millis(1));
                let outcome = health::probe(addr, &health.path, timeout).await;
                let ok = outcome.is_healthy();
                self.shared().record_probe(id, pid, outcome);
                if ok && self.is_healthy(id) {
                    return Ok(());
                }
            }
            let now = tokio::time::Instant::now();
            tokio::time::sleep(pause.min(until.saturating_duration_since(now))).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    fn not_healthy(&self, id: &InstanceId, deadline: Duration) -> RuntimeError {
        let st = self.shared().lock();
        let detail = match st.instances.get(id) {
            None => "the instance is not running (stopped, or never started)".to_string(),
            Some(e) => {
                let spec = &e.instance.spec;
                let mut d = format!(
                    "last probe of http://{}{}: {}",
                    e.instance.addr, spec.health.path, e.last_probe
                );
                if let Some(exit) = e.last_exit {
                    d.push_str(&format!(
                        "; the process {exit} ({} exit{} so far{})",
                        e.exits,
                        if e.exits == 1 { "" } else { "s" },
                        if e.running {
                            ", running again"
                        } else {
                            ", restarting"
                        }
                    ));
                    let log = logs::log_path(&self.shared().state_dir, id);
                    let output: Vec<String> = logs::tail_file(&log, 40)
                        .into_iter()
                        .filter(|l| !l.starts_with("[pave] "))
                        .collect();
                    if let Some(last) = output.last() {
                        d.push_str(&format!("; its last output: {last}"));
                    }
                }
                d
            }
        };
        RuntimeError::NotHealthy {
            id: id.clone(),
            deadline,
            detail,
        }
    }

    /// Whether the background health checks last found the instance healthy.
    pub fn is_healthy(&self, id: &InstanceId) -> bool {
        self.shared()
            .lock()
            .instances
            .get(id)
            .is_some_and(|e| e.healthy && e.running)
    }

    /// Stops the instance: SIGTERM to its process group, SIGKILL after
    /// `grace`, then forgets it (record removed, no more restarts). Stopping
    /// an unknown or already stopped instance is a no-op; an earlier
    /// server's instance that was not adopted is stopped from its record.
    pub async fn stop(&self, id: &InstanceId, grace: Duration) -> Result<(), RuntimeError> {
        // A start in progress has spawned (or is about to) but is not
        // supervised yet: stopping now would race it, so let it finish.
        while self.shared().lock().starting.contains_key(id) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let control = self
            .shared()
            .lock()
            .instances
            .get(id)
            .map(|e| e.control.clone());
        match control {
            Some(control) => {
                let (done, done_rx) = oneshot::channel();
                if control.send(Control::Stop { grace, done }).await.is_ok() {
                    // Dropped unanswered if another stop got there first; then
                    // it resolves once that one has finished.
                    let _ = done_rx.await;
                }
                Ok(())
            }
            None => adopt::stop_unsupervised(self.shared(), id, grace).await,
        }
    }

    /// Takes over instances an earlier server started: records whose process
    /// still runs (same pid, start time and boot) are supervised again and
    /// returned; records of dead ones are removed (and leftovers of their
    /// process group killed). Already supervised ids are skipped. Must run
    /// inside a tokio runtime.
    pub fn adopt(&self) -> Vec<Instance> {
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!("{}", RuntimeError::NoTokio);
            return Vec::new();
        }
        let mut adopted = Vec::new();
        for (instance, proc) in adopt::live_records(self.shared()) {
            self.supervise(instance.clone(), proc);
            self.shared().emit(InstanceEvent::Adopted {
                id: instance.id.clone(),
                pid: instance.pid,
                addr: instance.addr,
            });
            adopted.push(instance);
        }
        adopted
    }

    /// Every supervised instance, by id.
    pub fn list(&self) -> Vec<Instance> {
        let mut all: Vec<Instance> = self
            .shared()
            .lock()
            .instances
            .values()
            .map(|e| e.instance.clone())
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// One supervised instance.
    pub fn get(&self, id: &InstanceId) -> Option<Instance> {
        self.shared()
            .lock()
            .instances
            .get(id)
            .map(|e| e.instance.clone())
    }

    /// The file the instance's stdout and stderr are appended to.
    pub fn log_path(&self, id: &InstanceId) -> PathBuf {
        logs::log_path(&self.shared().state_dir, id)
    }

    /// The last `lines` lines of output of `service` in `env` (all its
    /// instances, running or stopped), for `pave service logs`.
    pub async fn tail_logs(&self, service: &str, env: &str, lines: usize) -> Vec<LogLine> {
        let dir = self.shared().state_dir.clone();
        let (service, env) = (service.to_string(), env.to_string());
        tokio::task::spawn_blocking(move || logs::tail_service(&dir, &service, &env, lines))
            .await
            .unwrap_or_default()
    }
}
