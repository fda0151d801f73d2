//! Helpers shared by the process runtime tests: scratch dirs, a small
//! python HTTP server as the instance, specs, event waiting, /proc checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use pave_deploy::runtime::{HealthSpec, InstanceEvent, InstanceId, InstanceSpec};
use tokio::sync::broadcast;

/// Generous: the box is small and shared.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The instance: an HTTP server on $PORT. Modes: `ok`, `sick` (health 503),
/// `hang` (health never answers), `stubborn` (ignores SIGTERM and starts a
/// grandchild that ignores it too, pid written to grandchild.pid).
pub const SERVER_PY: &str = r#"
import http.server, json, os, signal, subprocess, sys, time
mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "1000"])
    with open("grandchild.pid.tmp", "w") as f:
        f.write(str(child.pid))
    os.replace("grandchild.pid.tmp", "grandchild.pid")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            if mode == "hang":
                time.sleep(3600)
            self.reply(503 if mode == "sick" else 200, b"ok")
        elif self.path == "/env":
            keys = ["PORT", "PAVE_SERVICE", "PAVE_ENV", "PAVE_RELEASE", "PAVE_INSTANCE",
                    "GREETING", "CARGO_MANIFEST_DIR"]
            body = {k: os.environ.get(k) for k in keys}
            body["cwd"] = os.getcwd()
            self.reply(200, json.dumps(body).encode())
        else:
            self.reply(404, b"no")
    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
print("listening on", os.environ["PORT"], flush=True)
server.serve_forever()
"#;

/// A unique scratch directory.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "pave-runtime-{tag}-{}-{n}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A working directory holding server.py.
pub fn app_dir(root: &Path) -> PathBuf {
    let dir = root.join("app");
    std::fs::create_dir_all(&dir).expect("app dir");
    std::fs::write(dir.join("server.py"), SERVER_PY).expect("server.py");
    dir
}

/// A spec for `command` in `workdir` probing /healthz every 200 ms.
pub fn spec(
    service: &str,
    release: &str,
    index: u32,
    workdir: &Path,
    command: &str,
) -> InstanceSpec {
    InstanceSpec {
        service: service.into(),
        env: "test".into(),
        release: release.into(),
        index,
        command: command.into(),
        workdir: workdir.to_path_buf(),
        env_vars: vec![("GREETING".into(), "hello from the spec".into())],
        health: HealthSpec {
            path: "/healthz".into(),
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        },
    }
}

/// Events for `id` until one matches `done` (included); panics with what
/// was seen if none does within `PATIENCE`.
pub async fn events_until(
    rx: &mut broadcast::Receiver<InstanceEvent>,
    id: &InstanceId,
    done: impl Fn(&InstanceEvent) -> bool,
) -> Vec<InstanceEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) => {
                if ev.id() != id {
                    continue;
                }
                let last = done(&ev);
                seen.push(ev);
                if last {
                    return seen;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                panic!("missed {n} events; seen so far: {seen:#?}")
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                panic!("event channel closed: {seen:#?}")
            }
            Err(_) => panic!("timed out waiting for an event; seen: {seen:#?}"),
        }
    }
}

/// Polls `cond` until true; panics with `what` after `PATIENCE`.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends `signal` to `pid`.
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: plain syscall, no memory involved.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// GET http://addr/path, body as text.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

/// Kills every instance still recorded under a state dir when dropped, so a
/// failing test does not leave servers running on the box.
pub struct KillLeftovers(pub PathBuf);

impl Drop for KillLeftovers {
    fn drop(&mut self) {
        let Ok(dir) = std::fs::read_dir(self.0.join("instances")) else {
            return;
        };
        for entry in dir.flatten() {
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            if let Some(pid) = json["pid"].as_u64().and_then(|p| i32::try_from(p).ok())
                && pid > 1
                && alive(pid as u32)
            {
                // SAFETY: plain syscall; the group is one this test started.
                unsafe {
                    libc::killpg(pid, libc::SIGKILL);
                }
            }
        }
    }
}
