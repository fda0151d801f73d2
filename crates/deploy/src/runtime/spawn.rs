//! Spawning one instance process: a loopback port, a clean environment, its
//! own session, and output appended to its log file.
//!
//! Nothing ties the process to the server's lifetime: no pipes (their reader
//! would die with the server and the next write would SIGPIPE the instance),
//! no shared process group or terminal (a Ctrl-C or hangup aimed at the
//! server must not reach instances). That is what lets a restarted server
//! adopt them.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Stdio;

use super::procfs;
use super::spec::{InstanceId, InstanceSpec, RuntimeError};

/// Variables passed through from the server's environment; everything else
/// (the server's own secrets, tokens) stays out of instances.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A freshly spawned instance process.
pub(crate) struct Spawned {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub start_time: u64,
}

/// The loopback address for `port`.
pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// True when nothing listens on `port` right now.
pub(crate) fn port_is_free(port: u16) -> bool {
    TcpListener::bind(loopback(port)).is_ok()
}

/// A port the kernel calls free that no other instance of ours holds. The
/// listener is closed before the instance binds it, so a stranger could take
/// it in between; the instance then fails to bind, exits, and the restart
/// picks another port.
pub(crate) fn free_port(taken: &HashSet<u16>) -> Result<u16, RuntimeError> {
    let mut last_err = None;
    for _ in 0..32 {
        match TcpListener::bind(loopback(0)).and_then(|l| l.local_addr()) {
            Ok(addr) if !taken.contains(&addr.port()) => return Ok(addr.port()),
            Ok(_) => continue,
            Err(e) => last_err = Some(e),
        }
    }
    Err(RuntimeError::NoPort(last_err.unwrap_or_else(|| {
        std::io::Error::other("every port offered was already given to an instance")
    })))
}

/// Appends a line from the runtime itself (start, exit) to the instance log,
/// so `pave service logs` shows restarts among the instance's own output.
pub(crate) fn log_marker(log_path: &Path, text: &str) {
    if let Ok(mut f) = open_log(log_path) {
        let _ = writeln!(f, "[pave] {text}");
    }
}

fn open_log(log_path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(log_path)
}

/// Starts `sh -c <command>` for `spec` on `port` in a new session.
pub(crate) fn spawn(
    id: &InstanceId,
    spec: &InstanceSpec,
    port: u16,
    log_path: &Path,
    runtime_id: &str,
) -> Result<Spawned, RuntimeError> {
    let spawn_err = |source| RuntimeError::Spawn {
        id: id.clone(),
        source,
    };
    match std::fs::metadata(&spec.workdir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(RuntimeError::Workdir {
                id: id.clone(),
                path: spec.workdir.clone(),
                source: std::io::Error::other("not a directory"),
            });
        }
        Err(source) => {
            return Err(RuntimeError::Workdir {
                id: id.clone(),
                path: spec.workdir.clone(),
                source,
            });
        }
    }
    let log = open_log(log_path).map_err(|source| RuntimeError::State {
        path: log_path.to_path_buf(),
        source,
    })?;
    let log_err = log.try_clone().map_err(spawn_err)?;

    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .env_clear();
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
    cmd.envs(spec.env_vars.iter().map(|(k, v)| (k, v)))
        .env("PORT", port.to_string())
        .env("PAVE_SERVICE", &spec.service)
        .env("PAVE_ENV", &spec.env)
        .env("PAVE_RELEASE", &spec.release)
        .env("PAVE_INSTANCE", id.as_str())
        .env("PAVE_RUNTIME_ID", runtime_id);
    // SAFETY: the closure runs between fork and exec and only calls setsid,
    // which is async-signal-safe. A new session makes the process the leader
    // of its own group (pgid == pid), so the whole tree can be signalled.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(spawn_err)?;
    let Some(pid) = child.id() else {
        return Err(spawn_err(std::io::Error::other(
            "process ended before its pid was read",
        )));
    };
    // The child is unreaped, so /proc still has it (at worst as a zombie).
    let start_time = i32::try_from(pid)
        .ok()
        .and_then(procfs::stat)
        .map(|s| s.start_time)
        .unwrap_or(0);
    Ok(Spawned {
        child,
        pid,
        start_time,
    })
}
