//! A real server on a loopback port over a fresh SQLite file, with one token per role.

#![allow(dead_code)]

use pave_server::AppState;
use pave_server::auth::{Role, hash_secret, new_secret};
use pave_store::{NewToken, Store};
use std::collections::HashMap;
use std::path::PathBuf;

/// A running test server.
pub struct TestServer {
    pub url: String,
    pub store: Store,
    /// Secret per role (unscoped).
    pub tokens: HashMap<Role, String>,
    pub dir: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A unique scratch directory.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "pave-server-test-{tag}-{}-{n}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Creates a token directly in the store and returns its secret.
pub async fn make_token(store: &Store, role: Role, team: Option<&str>) -> String {
    let secret = new_secret().expect("random");
    store
        .create_token(
            &NewToken {
                name: format!("test-{}", role.as_str()),
                role: role.as_str().into(),
                team: team.map(str::to_string),
                secret_hash: hash_secret(&secret),
            },
            "system",
        )
        .await
        .expect("create token");
    secret
}

/// Starts a server over a fresh SQLite database.
pub async fn start() -> TestServer {
    let dir = scratch_dir("srv");
    let url = format!("sqlite://{}", dir.join("pave.db").display());
    let store = Store::open(&url).await.expect("open store");
    let mut tokens = HashMap::new();
    for role in Role::ALL {
        tokens.insert(role, make_token(&store, role, None).await);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(store.clone());
    tokio::spawn(async move {
        let _ = pave_server::serve(listener, state, async move {
            let _ = rx.await;
        })
        .await;
    });
    TestServer {
        url: format!("http://{addr}"),
        store,
        tokens,
        dir,
        shutdown: Some(tx),
    }
}

/// A plain HTTP client that does not follow redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}
