//! Taking over after a server restart: which records still name a running
//! instance, and cleaning up those that do not.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::process::Proc;
use super::record::{self, InstanceRecord};
use super::spec::{Instance, InstanceEvent, InstanceId, RuntimeError};
use super::{Shared, logs, procfs, spawn};

/// True when the record's process is still the one we started.
fn is_live(shared: &Shared, rec: &InstanceRecord) -> bool {
    rec.boot_id == shared.boot_id && procfs::is_same_process(rec.pid, rec.start_time)
}

/// Records not yet supervised whose process still runs, ready to be
/// supervised; records of dead processes are removed on the way.
pub(crate) fn live_records(shared: &Arc<Shared>) -> Vec<(Instance, Proc)> {
    let supervised: HashSet<InstanceId> = {
        let st = shared.lock();
        st.instances
            .keys()
            .chain(st.starting.keys())
            .cloned()
            .collect()
    };
    let mut live: Vec<(Instance, Proc)> = Vec::new();
    for rec in record::read_all(&shared.state_dir) {
        if supervised.contains(&rec.id) {
            continue;
        }
        if is_live(shared, &rec) {
            spawn::log_marker(
                &logs::log_path(&shared.state_dir, &rec.id),
                &format!("adopted process {} after a server restart", rec.pid),
            );
            live.push((
                Instance {
                    id: rec.id.clone(),
                    pid: rec.pid,
                    port: rec.port,
                    addr: spawn::loopback(rec.port),
                    spec: rec.spec,
                },
                Proc::Adopted {
                    pid: rec.pid,
                    start_time: rec.start_time,
                },
            ));
        } else {
            drop_dead(shared, &rec);
        }
    }
    let adopted: HashSet<InstanceId> = live.iter().map(|(i, _)| i.id.clone()).collect();
    kill_strays(shared, &supervised, &adopted);
    live
}

/// Kills instances of this state dir that have no live record: the server
/// died after spawning them and before writing it, so nothing else would
/// ever stop them. Ids that are adopted, supervised or being started are
/// left alone (a record may be being written right now, and a process an
/// instance started in its own session carries the instance's id too).
fn kill_strays(shared: &Shared, supervised: &HashSet<InstanceId>, adopted: &HashSet<InstanceId>) {
    let Ok(Some(runtime_id)) = record::runtime_id(&shared.state_dir, false) else {
        return;
    };
    for leader in procfs::session_leaders() {
        let Ok(pid) = u32::try_from(leader.pid) else {
            continue;
        };
        if procfs::environ_var(leader.pid, "PAVE_RUNTIME_ID").as_deref()
            != Some(runtime_id.as_str())
        {
            continue;
        }
        let Some(id) = procfs::environ_var(leader.pid, "PAVE_INSTANCE").map(InstanceId::from_raw)
        else {
            continue;
        };
        if adopted.contains(&id)
            || supervised.contains(&id)
            || shared.lock().instances.contains_key(&id)
        {
            continue;
        }
        tracing::warn!(instance = %id, pid, "killing an unrecorded instance process");
        // The id came from the process: only a plain one names a log file.
        if !id.as_str().contains('/') && !id.as_str().starts_with('.') {
            spawn::log_marker(
                &logs::log_path(&shared.state_dir, &id),
                &format!("killed unrecorded process {pid} after a server restart"),
            );
        }
        // Just seen alive as a session leader, so its group is its own.
        procfs::signal_group(leader.pid, libc::SIGKILL);
    }
}

/// Removes the record of an instance that is no longer running, after
/// killing whatever its process group left behind (never a recycled pid).
fn drop_dead(shared: &Shared, rec: &InstanceRecord) {
    if rec.boot_id == shared.boot_id {
        let left = procfs::leftovers(rec.pid, rec.start_time);
        if !left.is_empty() {
            tracing::warn!(instance = %rec.id, pids = ?left, "killing what a dead instance left behind");
            procfs::signal_each(&left, libc::SIGKILL);
        }
    }
    tracing::info!(instance = %rec.id, pid = rec.pid, "instance no longer running; record dropped");
    spawn::log_marker(
        &logs::log_path(&shared.state_dir, &rec.id),
        "not running after a server restart; record dropped",
    );
    if let Err(e) = record::remove(&shared.state_dir, &rec.id) {
        tracing::warn!(instance = %rec.id, error = %e, "cannot remove instance record");
    }
}

/// `stop` for an id nobody supervises: an earlier server's instance that
/// was not adopted is terminated from its record. Nothing to do otherwise.
pub(crate) async fn stop_unsupervised(
    shared: &Arc<Shared>,
    id: &InstanceId,
    grace: Duration,
) -> Result<(), RuntimeError> {
    let Some(rec) = record::read(&shared.state_dir, id) else {
        return Ok(());
    };
    if rec.boot_id == shared.boot_id {
        let mut proc = Proc::Adopted {
            pid: rec.pid,
            start_time: rec.start_time,
        };
        if !proc.is_gone() {
            proc.terminate(grace).await;
        }
    }
    record::remove(&shared.state_dir, id)?;
    shared.emit(InstanceEvent::Stopped { id: id.clone() });
    Ok(())
}
