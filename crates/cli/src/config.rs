//! Where the CLI finds its server and token.
//!
//! Precedence, for each of the two values independently: the `--server` /
//! `--token` flags or `PAVE_SERVER` / `PAVE_TOKEN`; then the credentials saved
//! by `pave login`; then a `.pave/` directory written by `pave up` in the
//! current directory or one of its parents.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Saved by `pave login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    pub token: String,
}

/// Server URL and token, with where each came from.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    pub token: Option<String>,
}

/// Name of the file in the data dir holding the bootstrap admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Name of the file in the data dir holding the server URL.
pub const SERVER_FILE: &str = "server";
/// Default server when nothing else says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7411";

/// The credentials file: `$PAVE_CONFIG_DIR`, `$XDG_CONFIG_HOME/pave` or `~/.config/pave`, + `credentials.json`.
pub fn credentials_path() -> Option<PathBuf> {
    let dir = if let Some(dir) = std::env::var_os("PAVE_CONFIG_DIR") {
        PathBuf::from(dir)
    } else if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME") {
        PathBuf::from(xdg).join("pave")
    } else {
        PathBuf::from(std::env::var_os("HOME")?)
            .join(".config")
            .join("pave")
    };
    Some(dir.join("credentials.json"))
}

/// Reads saved credentials, if any.
pub fn load_credentials() -> Result<Option<Credentials>> {
    let Some(path) = credentials_path() else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Saves credentials (mode 0600).
pub fn save_credentials(creds: &Credentials) -> Result<PathBuf> {
    let path = credentials_path()
        .context("cannot find a config directory (set HOME or PAVE_CONFIG_DIR)")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_private(&path, &serde_json::to_string_pretty(creds)?)?;
    Ok(path)
}

/// Writes a file readable only by its owner (0600), replacing it atomically.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The nearest `.pave/` directory holding a server file, from the current directory up.
fn find_local_data_dir() -> Option<PathBuf> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join(".pave");
        if candidate.join(SERVER_FILE).is_file() || candidate.join(ADMIN_TOKEN_FILE).is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Resolves the target from flags/env, saved credentials and a local `.pave/`.
pub fn resolve(server_flag: Option<String>, token_flag: Option<String>) -> Result<Target> {
    let saved = load_credentials()?;
    let local = find_local_data_dir();
    let server = server_flag
        .or_else(|| saved.as_ref().map(|c| c.server.clone()))
        .or_else(|| {
            local
                .as_ref()
                .and_then(|d| read_trimmed(&d.join(SERVER_FILE)))
        })
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let token = token_flag
        .or_else(|| saved.as_ref().map(|c| c.token.clone()))
        .or_else(|| {
            local
                .as_ref()
                .and_then(|d| read_trimmed(&d.join(ADMIN_TOKEN_FILE)))
        });
    Ok(Target {
        server: server.trim_end_matches('/').to_string(),
        token,
    })
}

/// Like `resolve`, but `None` when no server is configured at all (no flag
/// or env, no saved login, no `.pave/` here or above): `pave run` records
/// only on a server someone set up, never on the default address.
pub fn resolve_configured(
    server_flag: Option<String>,
    token_flag: Option<String>,
) -> Result<Option<Target>> {
    let configured = server_flag.is_some()
        || load_credentials()?.is_some()
        || find_local_data_dir().is_some_and(|d| d.join(SERVER_FILE).is_file());
    if !configured {
        return Ok(None);
    }
    resolve(server_flag, token_flag).map(Some)
}
