//! Durable instance records: one JSON file per instance under
//! `<state_dir>/instances/`, so a new server process can find (and adopt or
//! clean up) what an earlier one started.
//!
//! Files are written to a temporary name, synced, then renamed, so a crash
//! leaves either the old record or the new one, never half of one. They hold
//! the spec's env (secrets included), hence mode 0600.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::{InstanceId, InstanceSpec, RuntimeError};

/// What is on disk for one instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct InstanceRecord {
    pub id: InstanceId,
    pub spec: InstanceSpec,
    pub pid: u32,
    /// Start time of `pid` in clock ticks since boot (/proc stat field 22).
    pub start_time: u64,
    /// Boot the start time belongs to.
    pub boot_id: String,
    pub port: u16,
}

/// Where records live.
pub(crate) fn records_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("instances")
}

fn record_path(state_dir: &Path, id: &InstanceId) -> PathBuf {
    records_dir(state_dir).join(format!("{id}.json"))
}

fn state_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::State {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes (or replaces) the record atomically.
pub(crate) fn write(state_dir: &Path, record: &InstanceRecord) -> Result<(), RuntimeError> {
    let dir = records_dir(state_dir);
    // Records hold secrets: the directory is the owner's alone.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(state_err(&dir))?;
    let path = record_path(state_dir, &record.id);
    let tmp = dir.join(format!(".{}.json.tmp", record.id));
    let body = serde_json::to_vec_pretty(record).map_err(|e| RuntimeError::State {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(state_err(&tmp))?;
    file.write_all(&body).map_err(state_err(&tmp))?;
    file.sync_all().map_err(state_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(state_err(&path))?;
    // The rename is durable only once the directory itself is synced.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes the record; a missing one is fine (stop is idempotent).
pub(crate) fn remove(state_dir: &Path, id: &InstanceId) -> Result<(), RuntimeError> {
    let path = record_path(state_dir, id);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(state_err(&path)(e)),
    }
}

/// Reads one record, if present and readable.
pub(crate) fn read(state_dir: &Path, id: &InstanceId) -> Option<InstanceRecord> {
    let bytes = fs::read(record_path(state_dir, id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every readable record. Unreadable ones are logged and left in place for a
/// human to look at; temporary files from an interrupted write are removed.
pub(crate) fn read_all(state_dir: &Path) -> Vec<InstanceRecord> {
    let dir = records_dir(state_dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = fs::remove_file(&path);
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        match fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<InstanceRecord>(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => records.push(r),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable instance record")
            }
        }
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}

/// This state dir's runtime id, created on first use. Every instance gets
/// it as `PAVE_RUNTIME_ID`, which is how `adopt` recognises an instance
/// whose record was never written (the server died between spawn and write).
pub(crate) fn runtime_id(state_dir: &Path, create: bool) -> Result<Option<String>, RuntimeError> {
    let path = state_dir.join("runtime-id");
    if let Ok(id) = fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(Some(id));
        }
    }
    if !create {
        return Ok(None);
    }
    let fresh = fs::read_to_string("/proc/sys/kernel/random/uuid").map_err(state_err(&path))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(state_err(state_dir))?;
    let tmp = state_dir.join(format!(".runtime-id.{}.tmp", std::process::id()));
    fs::write(&tmp, fresh.trim()).map_err(state_err(&tmp))?;
    // Never replace an id another process wrote first: instances carry it.
    match fs::hard_link(&tmp, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(state_err(&path)(e));
        }
    }
    let _ = fs::remove_file(&tmp);
    let id = fs::read_to_string(&path).map_err(state_err(&path))?;
    Ok(Some(id.trim().to_string()))
}
