//! Runs the real `pave` binary: `pave up` as a child process on a loopback
//! port, and CLI commands against it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn pave_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pave")
}

/// A unique scratch directory.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("pave-e2e-{tag}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A `pave` command with a clean environment rooted at `dir`.
pub fn pave_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new(pave_bin());
    cmd.current_dir(dir)
        .env("PAVE_CONFIG_DIR", dir.join("config"))
        .env_remove("PAVE_SERVER")
        .env_remove("PAVE_TOKEN")
        .env_remove("PAVE_DATABASE")
        .env_remove("PAVE_DATA_DIR")
        .env_remove("PAVE_LISTEN");
    cmd
}

/// Minimal HTTP GET over a plain socket: (status, body).
pub fn http_get(url: &str, path: &str) -> Option<(u16, String)> {
    http_get_auth(url, path, None)
}

/// Minimal HTTP GET with an optional bearer token: (status, body).
pub fn http_get_auth(url: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let addr = url.strip_prefix("http://")?;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A running `pave up`.
pub struct Pave {
    pub child: Child,
    pub dir: PathBuf,
    pub url: String,
    pub token: String,
}

impl Pave {
    /// Starts `pave up` in `dir` (data in `dir/.pave`) on a free port, with
    /// extra args, and waits for `/readyz`.
    pub fn start(dir: &Path, extra: &[&str]) -> Pave {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Pave::start_with(dir, &args)
    }

    /// Starts `pave up` with exactly these args (include `--listen`).
    pub fn start_with(dir: &Path, args: &[&str]) -> Pave {
        let server_file = dir.join(".pave").join("server");
        let _ = std::fs::remove_file(&server_file);
        // Every test server gets its own edge proxy port (the default 7412 is shared).
        let mut args = args.to_vec();
        if !args.contains(&"--edge-listen") {
            args.extend_from_slice(&["--edge-listen", "127.0.0.1:0"]);
        }
        let child = pave_cmd(dir)
            .arg("up")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pave up");
        let mut pave = Pave {
            child,
            dir: dir.to_path_buf(),
            url: String::new(),
            token: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = pave.child.try_wait() {
                let mut err = String::new();
                if let Some(mut stderr) = pave.child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                panic!("pave up exited early with {status}: {err}");
            }
            if let Ok(url) = std::fs::read_to_string(&server_file) {
                let url = url.trim().to_string();
                if http_get(&url, "/readyz").is_some_and(|(s, _)| s == 200) {
                    pave.url = url;
                    break;
                }
            }
            assert!(Instant::now() < deadline, "pave up did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        pave.token = std::fs::read_to_string(dir.join(".pave").join("admin-token"))
            .expect("admin token file")
            .trim()
            .to_string();
        pave
    }

    /// Runs a CLI command from the server's directory (it finds `.pave/`).
    pub fn cli(&self, args: &[&str]) -> Output {
        pave_cmd(&self.dir).args(args).output().expect("run pave")
    }

    /// A new agent token (`pave token create --role agent`): only these claim jobs.
    pub fn agent_token(&self, name: &str) -> String {
        let out = self.cli(&[
            "token", "create", "--role", "agent", "--name", name, "--json",
        ]);
        assert!(out.status.success(), "token create: {}", stderr(&out));
        let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token json");
        created["secret"].as_str().expect("secret").to_string()
    }

    /// Sends a signal and waits for the exit; returns (success, stdout).
    pub fn stop(mut self, signal: &str) -> (bool, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        let status = self.child.wait().expect("wait");
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        (status.success(), out)
    }
}

impl Pave {
    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pave {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// stdout as a string.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as a string.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a file, creating parent directories.
pub fn write(path: &Path, content: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, content).expect("write");
}

/// A small Backstage catalog plus one pave.yaml, in `dir/catalog`.
pub fn write_catalog(dir: &Path) {
    write(
        &dir.join("catalog/teams.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: payments\n  title: Payments Team\nspec:\n  type: team\n  children: []\n---\napiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: platform\nspec:\n  type: team\n  children: [payments]\n",
    );
    write(
        &dir.join("catalog/checkout/catalog-info.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: System\nmetadata:\n  name: checkout\nspec:\n  owner: payments\n---\napiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: ledger-api\nspec:\n  type: openapi\n  lifecycle: production\n  owner: payments\n  definition: \"openapi: 3.0.0\"\n---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: ledger\n  description: Double-entry ledger\n  links:\n    - url: https://runbooks.example/ledger\n      title: Runbook\nspec:\n  type: service\n  lifecycle: production\n  owner: payments\n  system: checkout\n  providesApis: [ledger-api]\n",
    );
    write(
        &dir.join("catalog/hello/pave.yaml"),
        "service:\n  name: hello\n  owner: platform\n  system: checkout\n  description: Says hello\n  dependsOn: [ledger]\n  consumesApis: [ledger-api]\n",
    );
    write(
        &dir.join("catalog/.github/workflows/ci.yaml"),
        "on: push\njobs: {}\n",
    );
    write(&dir.join("catalog/notes.yaml"), "just: some yaml\n");
}
