//! The per-instance supervisor task: health probes while the process runs,
//! restart with exponential backoff when it exits, termination on `stop`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::health::{self, ProbeOutcome};
use super::process::{ExitInfo, Proc};
use super::spec::{Instance, InstanceEvent, RuntimeError};
use super::{Control, Shared, logs, record, spawn};

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Healthy this long in a row and a crash counts as the first again.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Consecutive failed probes before a healthy instance is called unhealthy:
/// one slow answer should not pull it out of rotation.
const FAILURES_TO_UNHEALTHY: u32 = 3;
/// Until first healthy, probe at least this often so readiness shows soon.
const STARTUP_PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Bounds on what a spec may ask for, so a typo cannot stall supervision.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the log size is checked for rotation.
const LOG_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Delay before restart `attempt` (1-based): 0.5 s, 1 s, 2 s, ... 30 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    (BACKOFF_START * 2u32.pow(doublings)).min(BACKOFF_CAP)
}

/// Supervises one instance until it is stopped (or the runtime dropped).
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    instance: Instance,
    /// The current process, or the last one while waiting to restart.
    proc: Proc,
    control: mpsc::Receiver<Control>,
    /// Restarts since the instance was last stably healthy.
    attempt: u32,
}

enum Watch {
    Exited(ExitInfo),
    Stop(Control),
    Detached,
}

type ProbeFuture = Pin<Box<dyn Future<Output = ProbeOutcome> + Send>>;

impl Supervisor {
    pub fn new(
        shared: Arc<Shared>,
        instance: Instance,
        proc: Proc,
        control: mpsc::Receiver<Control>,
    ) -> Self {
        Supervisor {
            shared,
            instance,
            proc,
            control,
            attempt: 0,
        }
    }

    fn log(&self, text: &str) {
        spawn::log_marker(
            &logs::log_path(&self.shared.state_dir, &self.instance.id),
            text,
        );
    }

    pub async fn run(mut self) {
        loop {
            match self.watch().await {
                Watch::Detached => return,
                Watch::Stop(Control::Stop { grace, done }) => {
                    self.proc.terminate(grace).await;
                    self.finish();
                    let _ = done.send(());
                    return;
                }
                Watch::Exited(info) => {
                    self.on_exit(info).await;
                    if !self.restart().await {
                        return;
                    }
                }
            }
        }
    }

    /// Probes health until the process exits or a stop arrives.
    async fn watch(&mut self) -> Watch {
        let id = self.instance.id.clone();
        let health = self.instance.spec.health.clone();
        let interval = health.interval.max(MIN_INTERVAL);
        let timeout = health
            .timeout
            .clamp(Duration::from_millis(10), MAX_PROBE_TIMEOUT);
        let addr = self.instance.addr;
        let pid = self.proc.pid();
        let mut next_probe = Instant::now() + interval.min(STARTUP_PROBE_INTERVAL);
        let mut probing: Option<ProbeFuture> = None;
        let mut failures = 0u32;
        let mut healthy_since: Option<Instant> = None;
        let mut ever_healthy = false;
        let mut next_log_check = Instant::now() + LOG_CHECK_EVERY;
        loop {
            tokio::select! {
                biased;
                msg = self.control.recv() => {
                    return match msg {
                        Some(stop) => Watch::Stop(stop),
                        None => Watch::Detached,
                    };
                }
                info = self.proc.wait_exit() => return Watch::Exited(info),
                outcome = async {
                    match probing.as_mut() {
                        Some(p) => p.await,
                        None => std::future::pending().await,
                    }
                } => {
                    probing = None;
                    let healthy = outcome.is_healthy();
                    let reason = format!("health probe: {outcome}");
                    self.shared.record_probe(&id, pid, outcome);
                    if healthy {
                        failures = 0;
                        ever_healthy = true;
                        let since = *healthy_since.get_or_insert_with(Instant::now);
                        if self.attempt > 0 && since.elapsed() >= STABLE_AFTER {
                            self.attempt = 0;
                        }
                    } else {
                        failures += 1;
                        healthy_since = None;
                        if failures >= FAILURES_TO_UNHEALTHY {
                            self.shared.mark_unhealthy(&id, reason);
                        }
                    }
                    let pace = if ever_healthy { interval } else { interval.min(STARTUP_PROBE_INTERVAL) };
                    next_probe = Instant::now() + pace;
                    if Instant::now() >= next_log_check {
                        next_log_check = Instant::now() + LOG_CHECK_EVERY;
                        let log = logs::log_path(&self.shared.state_dir, &id);
                        // Copying up to the limit is disk work: off the runtime.
                        tokio::task::spawn_blocking(move || {
                            logs::rotate_if_large(&log, logs::MAX_LOG_BYTES)
                        });
                    }
                }
                _ = tokio::time::sleep_until(next_probe), if probing.is_none() => {
                    let path = health.path.clone();
                    probing = Some(Box::pin(async move { health::probe(addr, &path, timeout).await }));
                }
            }
        }
    }

    async fn on_exit(&mut self, info: ExitInfo) {
        let id = self.instance.id.clone();
        {
            let mut st = self.shared.lock();
            if let Some(e) = st.instances.get_mut(&id) {
                e.running = false;
                e.exits += 1;
                e.last_exit = Some(info);
            }
        }
        self.shared.emit(InstanceEvent::Exited {
            id: id.clone(),
            pid: self.proc.pid(),
            code: info.code,
            signal: info.signal,
        });
        self.shared.mark_unhealthy(&id, format!("process {info}"));
        self.log(&format!("process {} {info}", self.proc.pid()));
        tracing::info!(instance = %id, pid = self.proc.pid(), "instance {info}");
        // Whatever it left in its group might hold the port.
        self.proc.kill_leftovers().await;
    }

    /// Backs off and starts the process again, until it spawns; false when
    /// stopped meanwhile.
    async fn restart(&mut self) -> bool {
        loop {
            self.attempt += 1;
            let delay = backoff(self.attempt);
            self.shared.emit(InstanceEvent::Restarting {
                id: self.instance.id.clone(),
                attempt: self.attempt,
                backoff: delay,
            });
            self.log(&format!(
                "restarting in {delay:?} (attempt {})",
                self.attempt
            ));
            tokio::select! {
                biased;
                msg = self.control.recv() => {
                    if let Some(Control::Stop { done, .. }) = msg {
                        self.finish();
                        let _ = done.send(());
                    }
                    return false;
                }
                _ = tokio::time::sleep(delay) => {}
            }
            match self.respawn().await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(instance = %self.instance.id, error = %e, "restart failed");
                    self.log(&format!("restart failed: {e}"));
                }
            }
        }
    }

    /// Spawns a new process, on the old port unless something else took it.
    async fn respawn(&mut self) -> Result<(), RuntimeError> {
        let id = self.instance.id.clone();
        let old_addr = self.instance.addr;
        let port = if spawn::port_is_free(self.instance.port) {
            self.instance.port
        } else {
            let mut taken = self.shared.taken_ports();
            taken.insert(self.instance.port);
            spawn::free_port(&taken)?
        };
        let log_path = logs::log_path(&self.shared.state_dir, &id);
        spawn::log_marker(&log_path, &format!("starting on port {port}"));
        let runtime_id = self.shared.runtime_id()?;
        let spawned = spawn::spawn(&id, &self.instance.spec, port, &log_path, &runtime_id)?;
        let mut proc = Proc::Child {
            child: spawned.child,
            pid: spawned.pid,
            start_time: spawned.start_time,
        };
        let rec = record::InstanceRecord {
            id: id.clone(),
            spec: self.instance.spec.clone(),
            pid: spawned.pid,
            start_time: spawned.start_time,
            boot_id: self.shared.boot_id.clone(),
            port,
        };
        if let Err(e) = record::write(&self.shared.state_dir, &rec) {
            // Unrecorded, a server crash would orphan it.
            proc.terminate(Duration::ZERO).await;
            return Err(e);
        }
        self.proc = proc;
        self.instance.pid = spawned.pid;
        self.instance.port = port;
        self.instance.addr = spawn::loopback(port);
        {
            let mut st = self.shared.lock();
            if let Some(e) = st.instances.get_mut(&id) {
                e.instance = self.instance.clone();
                e.running = true;
                e.last_probe = ProbeOutcome::NotProbed;
            }
        }
        if self.instance.addr != old_addr {
            self.shared.emit(InstanceEvent::AddrChanged {
                id: id.clone(),
                old: old_addr,
                new: self.instance.addr,
            });
        }
        self.shared.emit(InstanceEvent::Started {
            id,
            pid: spawned.pid,
            addr: self.instance.addr,
            attempt: self.attempt,
        });
        Ok(())
    }

    /// Forgets the instance: record, entry, and a last event.
    fn finish(&mut self) {
        let id = self.instance.id.clone();
        if let Err(e) = record::remove(&self.shared.state_dir, &id) {
            tracing::warn!(instance = %id, error = %e, "cannot remove instance record");
        }
        self.shared.lock().instances.remove(&id);
        self.log("stopped");
        self.shared.emit(InstanceEvent::Stopped { id });
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_from_half_a_second_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(7), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }
}
