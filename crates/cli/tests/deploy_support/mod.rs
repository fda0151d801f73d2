//! Shared pieces of the deployment end-to-end tests: a service whose
//! behaviour is baked into its artifact, a tiny HTTP client that can set
//! the Host header, and a load generator that counts what it saw.

#![allow(dead_code)]

use crate::common::{Pave, stderr, write};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The service: `/healthz` answers 200 unless the behaviour is `unhealthy`;
/// `/` answers the version, after `delay_ms`, with a 5xx for
/// `errors_percent`% of requests (deterministically spread).
pub const APP: &str = r#"
import http.server, json, os, time, itertools
conf = json.load(open("behaviour.json"))
counter = itertools.count()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/healthz":
            code = 500 if conf.get("unhealthy") else 200
            body = b"ok"
        else:
            time.sleep(conf.get("delay_ms", 0) / 1000)
            n = next(counter)
            bad = conf.get("errors_percent", 0) > 0 and n % (100 // conf["errors_percent"]) == 0
            code = 503 if bad else 200
            body = ("%s release %s\n" % (conf["version"], os.environ.get("PAVE_RELEASE", "?"))).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

pub fn git(repo: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// A git repository for service `hello` with `deploy` as its deploy section.
pub fn service_repo(dir: &Path, deploy: &str) -> PathBuf {
    let repo = dir.join("hello");
    write(
        &repo.join("pave.yaml"),
        &format!(
            "service:\n  name: hello\n  owner: platform\npipeline:\n  jobs:\n    build:\n      steps:\n        - run: mkdir -p dist && tar -czf dist/app.tar.gz app.py behaviour.json\n      artifacts:\n        - {{ name: app, path: dist/app.tar.gz }}\n{deploy}"
        ),
    );
    write(&repo.join("app.py"), APP);
    write(
        &repo.join("behaviour.json"),
        r#"{"version": "v1", "delay_ms": 5}"#,
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    repo
}

/// Commits a new behaviour and builds it: returns the run id.
pub fn release(pave: &Pave, repo: &Path, behaviour: &str) -> String {
    write(&repo.join("behaviour.json"), behaviour);
    git(repo, &["commit", "-q", "-am", behaviour]);
    build(pave)
}

/// Runs the pipeline on the server and waits for it; returns the run id.
pub fn build(pave: &Pave) -> String {
    let out = pave.cli(&["trigger", "hello", "--wait"]);
    assert!(
        out.status.success(),
        "trigger: {}\n{}",
        crate::common::stdout(&out),
        stderr(&out)
    );
    let runs: Value =
        serde_json::from_slice(&pave.cli(&["runs", "hello", "--json"]).stdout).expect("runs json");
    runs[0]["id"].as_str().expect("run id").to_string()
}

/// One HTTP/1.1 request with an explicit Host; (status, body).
pub fn request(
    addr: &str,
    method: &str,
    host: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    // The API answers with Content-Length; a chunked body is not expected here.
    let _ = head;
    Some((status, body.to_string()))
}

/// An API call as the admin; (status, JSON).
pub fn api(pave: &Pave, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let addr = pave.url.trim_start_matches("http://");
    let (status, text) =
        request(addr, method, addr, path, Some(&pave.token), body.as_ref()).expect("api answered");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The edge proxy's address (`host:port`).
pub fn edge(pave: &Pave) -> String {
    std::fs::read_to_string(pave.dir.join(".pave/edge"))
        .expect("edge file")
        .trim()
        .trim_start_matches("http://")
        .to_string()
}

/// Starts a deployment; returns its id.
pub fn deploy(pave: &Pave, env: &str, run: &str) -> String {
    let (status, body) = api(
        pave,
        "POST",
        "/api/v1/deployments",
        Some(serde_json::json!({"service": "hello", "env": env, "run": run})),
    );
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("id").to_string()
}

/// Promotes to `to`; returns the deployment id.
pub fn promote(pave: &Pave, to: &str) -> String {
    let (status, body) = api(
        pave,
        "POST",
        "/api/v1/promotions",
        Some(serde_json::json!({"service": "hello", "to": to})),
    );
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("id").to_string()
}

/// Polls the deployment until it leaves the in-flight states; returns its detail.
pub fn wait_done(pave: &Pave, id: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = api(pave, "GET", &format!("/api/v1/deployments/{id}"), None);
        assert_eq!(status, 200, "{body}");
        let s = body["deployment"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !["pending", "progressing", "paused"].contains(&s.as_str()) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "deployment {id} still {s} after {limit:?}: {body:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the deployment's status is `want`.
pub fn wait_status(pave: &Pave, id: &str, want: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (_, body) = api(pave, "GET", &format!("/api/v1/deployments/{id}"), None);
        if body["deployment"]["status"] == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "deployment {id} never {want}: {body:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the load generator saw.
#[derive(Default)]
pub struct LoadCounts {
    pub ok: AtomicU64,
    pub server_errors: AtomicU64,
    /// No answer at all, or a proxy-level failure (not the app's own 5xx).
    pub failed: AtomicU64,
}

/// Sends requests to `host` through the edge from `threads` threads until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub counts: Arc<LoadCounts>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(edge: &str, host: &str, threads: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(LoadCounts::default());
        let handles = (0..threads)
            .map(|_| {
                let (stop, counts, edge, host) = (
                    stop.clone(),
                    counts.clone(),
                    edge.to_string(),
                    host.to_string(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match request(&edge, "GET", &host, "/", None, None) {
                            Some((200, _)) => counts.ok.fetch_add(1, Ordering::Relaxed),
                            Some((503, body)) if body.contains(" release ") => {
                                counts.server_errors.fetch_add(1, Ordering::Relaxed)
                            }
                            _ => counts.failed.fetch_add(1, Ordering::Relaxed),
                        };
                        std::thread::sleep(pause);
                    }
                })
            })
            .collect();
        Load {
            stop,
            counts,
            handles,
        }
    }

    /// Stops the threads; (ok, app 5xx, failed).
    pub fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            let _ = h.join();
        }
        (
            self.counts.ok.load(Ordering::Relaxed),
            self.counts.server_errors.load(Ordering::Relaxed),
            self.counts.failed.load(Ordering::Relaxed),
        )
    }
}

/// The body `/` answers through the edge for `env`.
pub fn answer(pave: &Pave, env: &str) -> Option<(u16, String)> {
    request(
        &edge(pave),
        "GET",
        &format!("hello.{env}.localhost"),
        "/",
        None,
        None,
    )
}

/// Stops every service instance recorded under `dir/.pave/runtime` when
/// dropped (instances outlive the server by design; tests must not leave
/// them behind, even when they fail).
pub struct Instances(pub PathBuf);

impl Drop for Instances {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.0.join(".pave/runtime/instances")) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if let Some(pid) = v["pid"].as_u64().filter(|p| *p > 1) {
                let _ = Command::new("kill")
                    .args(["-s", "KILL", "--", &format!("-{pid}")])
                    .status();
            }
        }
    }
}
