//! Shared state of the HTTP server.

use crate::read_cache::ReadCache;
use crate::token_cache::TokenCache;
use pave_pipeline::artifacts::ArtifactStore;
use pave_store::{SecretKey, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub tokens: Arc<TokenCache>,
    /// Cached answers of hot list endpoints (see `read_cache`).
    pub read_cache: Arc<ReadCache>,
    /// Set when shutdown begins; `/readyz` then answers 503.
    pub draining: Arc<AtomicBool>,
    /// Secrets key, webhook secret and artifact store; `None` (those
    /// endpoints answer 503, hooks 401) until `with_ci`.
    pub ci: Option<Arc<CiConfig>>,
    /// The deployment controller (with its runtime and edge proxy); `None`
    /// (deployment endpoints answer 503) until `with_deploy`.
    pub deploy: Option<pave_deploy::controller::DeployController>,
}

impl AppState {
    /// State over a store.
    pub fn new(store: Store) -> AppState {
        AppState {
            store,
            tokens: Arc::new(TokenCache::default()),
            read_cache: Arc::new(ReadCache::default()),
            draining: Arc::new(AtomicBool::new(false)),
            ci: None,
            deploy: None,
        }
    }

    /// The same state with deployments enabled.
    pub fn with_deploy(
        mut self,
        controller: pave_deploy::controller::DeployController,
    ) -> AppState {
        self.deploy = Some(controller);
        self
    }

    /// The same state with CI secrets, webhooks and artifacts enabled.
    pub fn with_ci(mut self, ci: CiConfig) -> AppState {
        self.ci = Some(Arc::new(ci));
        self
    }
}

/// Server-side CI configuration kept in the data directory.
pub struct CiConfig {
    /// Seals service secrets at rest (`PAVE_SECRET_KEY`, else `DATA/secret-key`).
    pub secret_key: SecretKey,
    /// Verifies push webhooks (`PAVE_WEBHOOK_SECRET`, else `DATA/webhook-secret`).
    pub webhook_secret: String,
    /// Uploaded artifacts, write-once by digest (`DATA/artifacts`).
    pub artifacts: ArtifactStore,
    /// Upload scratch space on the artifact store's filesystem.
    pub artifacts_tmp: PathBuf,
    /// Shallow fetches of remote repositories for webhooks (`DATA/repo-cache`).
    pub repo_cache: PathBuf,
    /// Where the keys came from, one line each (printed by `pave up`).
    pub notes: Vec<String>,
}

impl CiConfig {
    /// Loads (creating mode-0600 files on first start) the keys from the
    /// environment or `data_dir`, and opens the artifact store there.
    pub fn from_data_dir(data_dir: &Path) -> Result<CiConfig, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (secret_key, key_note) =
            crate::api::secrets::load_key(data_dir, env("PAVE_SECRET_KEY"))?;
        let (webhook_secret, hook_note) =
            crate::api::hooks::load_webhook_secret(data_dir, env("PAVE_WEBHOOK_SECRET"))?;
        let root = data_dir.join("artifacts");
        let artifacts = ArtifactStore::open(&root).map_err(|e| e.to_string())?;
        let artifacts_tmp = root.join("uploads");
        std::fs::create_dir_all(&artifacts_tmp)
            .map_err(|e| format!("creating {}: {e}", artifacts_tmp.display()))?;
        Ok(CiConfig {
            secret_key,
            webhook_secret,
            artifacts,
            artifacts_tmp,
            repo_cache: data_dir.join("repo-cache"),
            notes: vec![
                key_note,
                hook_note,
                format!("artifacts in {}", root.display()),
            ],
        })
    }
}
