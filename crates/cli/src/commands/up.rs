//! `pave up`: start the platform.

use crate::config::{ADMIN_TOKEN_FILE, SERVER_FILE, write_private};
use anyhow::{Context, Result, bail};
use pave_server::AppState;
use pave_server::auth::{hash_secret, new_secret};
use pave_store::{NewToken, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Options of `pave up`.
#[derive(clap::Args)]
pub struct UpArgs {
    /// Address for the API and portal.
    #[arg(long, env = "PAVE_LISTEN", default_value = "127.0.0.1:7411")]
    pub listen: SocketAddr,
    /// Where Pave keeps its embedded database and the bootstrap admin token.
    #[arg(long, env = "PAVE_DATA_DIR", default_value = ".pave")]
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://PATH` (default: DATA_DIR/pave.db) or `postgres://USER@HOST:PORT/DB`.
    /// Several servers may share one PostgreSQL database.
    #[arg(long, env = "PAVE_DATABASE")]
    pub database: Option<String>,
    /// Jobs the in-process agent runs at once (0: no in-process agent; run `pave agent` elsewhere).
    #[arg(long, env = "PAVE_AGENT_CAPACITY", default_value_t = 2)]
    pub agent_capacity: usize,
    /// Address of the edge proxy that serves deployed services by Host
    /// (`<service>.<env>.localhost`).
    #[arg(long, env = "PAVE_EDGE_LISTEN", default_value = "127.0.0.1:7412")]
    pub edge_listen: SocketAddr,
}

/// Starts the server and runs until SIGINT/SIGTERM.
pub async fn run(args: UpArgs) -> Result<ExitCode> {
    init_logging();
    let started = Instant::now();
    create_private_dir(&args.data_dir)?;
    let database = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("pave.db").display()));
    check_database_url(&database)?;
    let store = Store::open(&database)
        .await
        .with_context(|| format!("opening the database {}", redact(&database)))?;
    let token_path = args.data_dir.join(ADMIN_TOKEN_FILE);
    let created_token = ensure_token(&store, &token_path, "bootstrap-admin", "admin").await?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (use --listen to pick another address)",
                args.listen
            )
        })?;
    let local = listener.local_addr()?;
    let url = format!("http://{local}");
    write_private(&args.data_dir.join(SERVER_FILE), &format!("{url}\n"))?;

    println!("Pave is up in {} ms", started.elapsed().as_millis());
    println!("  portal    {url}/");
    println!("  API       {url}/api/v1  (OpenAPI: {url}/api/v1/openapi.json)");
    println!("  database  {}", redact(&database));
    println!(
        "  admin token {} {}",
        if created_token { "written to" } else { "in" },
        token_path.display()
    );

    let mut agent = None;
    if args.agent_capacity > 0 {
        let agent_token_path = args.data_dir.join(AGENT_TOKEN_FILE);
        ensure_token(&store, &agent_token_path, "in-process-agent", "agent").await?;
        let target = crate::config::Target {
            server: url.clone(),
            token: std::fs::read_to_string(&agent_token_path)
                .ok()
                .map(|t| t.trim().to_string()),
        };
        let options = crate::agent::AgentOptions {
            name: "in-process".into(),
            capacity: args.agent_capacity,
            work_dir: std::fs::canonicalize(&args.data_dir)?.join("agent"),
            lease_seconds: 15,
        };
        agent = Some(crate::agent::InProcessAgent::spawn(target, options));
        println!(
            "  agent     in-process, {} job(s) at a time",
            args.agent_capacity
        );
    }
    let ci = pave_server::state::CiConfig::from_data_dir(&std::fs::canonicalize(&args.data_dir)?)
        .map_err(|e| anyhow::anyhow!("setting up secrets, webhooks and artifacts: {e}"))?;
    for note in &ci.notes {
        println!("  {note}");
    }
    let (deploy, edge) = super::up_deploy::start(
        &store,
        &std::fs::canonicalize(&args.data_dir)?,
        args.edge_listen,
        ci.secret_key.clone(),
        || Box::pin(shutdown_signal()),
    )
    .await?;
    println!("  edge      http://{edge}/  (Host: <service>.<env>.localhost)");
    println!("Next: `pave apply -f <dir>` in another terminal here. Ctrl-C stops.");
    let state = AppState::new(store.clone()).with_ci(ci).with_deploy(deploy);
    // The agent stops first, while the server can still take its jobs back.
    let shutdown = async move {
        shutdown_signal().await;
        if let Some(agent) = agent {
            agent.stop().await;
        }
    };
    pave_server::serve(listener, state, shutdown)
        .await
        .context("serving HTTP")?;
    store.close().await;
    println!("Pave stopped.");
    Ok(ExitCode::SUCCESS)
}

/// Logs to stderr; `PAVE_LOG=debug|trace|warn|error` changes the level.
pub fn init_logging() {
    let level = match std::env::var("PAVE_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        Ok("warn") => tracing::Level::WARN,
        Ok("error") => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}

/// The data-dir file holding the in-process agent's token.
const AGENT_TOKEN_FILE: &str = "agent-token";

/// Reuses the token in `path` if the store knows it with `role`; otherwise
/// creates a new token `<name>@<host>` with `role` and writes it there (mode
/// 0600). A live token there with another role (an agent token minted as
/// `developer` before the `agent` role existed) is revoked. True when created.
async fn ensure_token(store: &Store, path: &Path, name: &str, role: &str) -> Result<bool> {
    let mut replaced = None;
    if let Ok(existing) = std::fs::read_to_string(path) {
        let secret = existing.trim();
        if !secret.is_empty()
            && let Some(found) = store.find_token(&hash_secret(secret)).await?
        {
            if found.role == role {
                return Ok(false);
            }
            replaced = Some(found.id);
        }
    }
    let secret = new_secret().map_err(|e| anyhow::anyhow!("generating a token: {}", e.message))?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    store
        .create_token(
            &NewToken {
                name: format!("{name}@{host}"),
                role: role.into(),
                team: None,
                secret_hash: hash_secret(&secret),
            },
            "system",
        )
        .await?;
    write_private(path, &format!("{secret}\n"))?;
    if let Some(old) = replaced {
        store.revoke_token(&old, "system").await?;
    }
    Ok(true)
}

/// Hides a password in a database URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Refuses obviously wrong database URLs before touching anything.
pub fn check_database_url(url: &str) -> Result<()> {
    if url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://")
    {
        Ok(())
    } else {
        bail!(
            "unsupported database URL `{}` (expected sqlite://PATH or postgres://...)",
            redact(url)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://.pave/pave.db"), "sqlite://.pave/pave.db");
    }
}
