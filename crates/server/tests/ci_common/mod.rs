//! A real server with CI configuration (secret key, webhook secret, artifact
//! store in a data dir), a git repository with a `pave.yaml` registered as
//! a service's source, and small HTTP helpers. Used by the secrets, hooks
//! and artifacts tests.

#![allow(dead_code)]

use crate::common::{make_token, scratch_dir};
use pave_server::AppState;
use pave_server::auth::Role;
use pave_server::state::CiConfig;
use pave_store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A running server with CI enabled.
pub struct CiServer {
    pub url: String,
    pub store: Store,
    pub tokens: HashMap<Role, String>,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub ci: Arc<CiConfig>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for CiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl CiServer {
    /// The webhook secret the server checks.
    pub fn webhook_secret(&self) -> String {
        self.ci.webhook_secret.clone()
    }

    pub fn token(&self, role: Role) -> &str {
        &self.tokens[&role]
    }

    /// A JSON request as `role`: (status, body or Null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        role: Role,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", self.url);
        let mut req = match method {
            "GET" => client.get(&url),
            "POST" => client.post(&url),
            "PUT" => client.put(&url),
            "DELETE" => client.delete(&url),
            other => panic!("method {other}"),
        }
        .bearer_auth(self.token(role));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The raw text of an answer (to check that nothing leaks).
    pub async fn raw(&self, path: &str, role: Role) -> (StatusCode, String) {
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(self.token(role))
            .send()
            .await
            .expect("request");
        (resp.status(), resp.text().await.expect("body"))
    }
}

/// Starts a server over a fresh SQLite database with CI configured in `dir/data`.
pub async fn start() -> CiServer {
    let dir = scratch_dir("ci");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let store = Store::open(&format!("sqlite://{}", dir.join("pave.db").display()))
        .await
        .expect("open store");
    let mut tokens = HashMap::new();
    for role in Role::ALL {
        tokens.insert(role, make_token(&store, role, None).await);
    }
    let ci = CiConfig::from_data_dir(&data).expect("ci config");
    let state = AppState::new(store.clone()).with_ci(ci);
    let ci = state.ci.clone().expect("configured");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = pave_server::serve(listener, state, async move {
            let _ = rx.await;
        })
        .await;
    });
    CiServer {
        url: format!("http://{addr}"),
        store,
        tokens,
        dir,
        data,
        ci,
        shutdown: Some(tx),
    }
}

/// Runs git in `dir`; its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A git repository at `dir` with `pave.yaml` committed on `main`; its head sha.
pub fn repo_with(dir: &Path, pave_yaml: &str) -> String {
    std::fs::create_dir_all(dir).expect("repo dir");
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    commit(dir, pave_yaml, "initial")
}

/// Commits a new `pave.yaml`; the new head sha.
pub fn commit(dir: &Path, pave_yaml: &str, message: &str) -> String {
    std::fs::write(dir.join("pave.yaml"), pave_yaml).expect("write pave.yaml");
    git(dir, &["add", "pave.yaml"]);
    git(dir, &["commit", "--quiet", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Applies `pave_yaml` with `repository` recorded as the service's source.
pub async fn apply(server: &CiServer, pave_yaml: &str, repository: &str) {
    let (status, body) = server
        .call(
            "POST",
            "/api/v1/apply",
            Role::Developer,
            Some(json!({ "files": [{
                "path": "pave.yaml",
                "content": pave_yaml,
                "repository": { "url": repository, "path": "pave.yaml", "default_branch": "main" }
            }] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Every event in the log, as one JSON text.
pub async fn all_events(server: &CiServer) -> String {
    let events = server
        .store
        .list_events(&pave_store::EventQuery {
            limit: Some(10_000),
            ..pave_store::EventQuery::default()
        })
        .await
        .expect("events");
    serde_json::to_string(&events).expect("json")
}
