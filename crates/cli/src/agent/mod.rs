//! The agent: pulls jobs from a Pave server and runs them with the same
//! engine as `pave run`. Agents only make outbound calls (claim with a
//! long-poll, heartbeat to keep the lease, ship logs, report once), so the
//! server never needs to reach them. `pave up` runs one in-process.

mod checkout;
mod job;

use crate::client::Client;
use crate::config::Target;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long one claim request may wait on the server for a job.
const CLAIM_WAIT_SECONDS: u64 = 20;

/// Options of an agent.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Shown on the jobs it runs.
    pub name: String,
    /// Jobs run at once.
    pub capacity: usize,
    /// Where workspaces, the step cache and artifacts live.
    pub work_dir: PathBuf,
    /// Lease length asked for; heartbeats come every third of it.
    pub lease_seconds: u64,
}

/// `pave agent` flags.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// Name shown on the jobs this agent runs (default: agent-<host>-<pid>).
    #[arg(long)]
    pub name: Option<String>,
    /// How many jobs to run at once.
    #[arg(long, default_value_t = 2)]
    pub capacity: usize,
    /// Where workspaces, the step cache and artifacts live.
    #[arg(long, env = "PAVE_AGENT_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Lease length in seconds; a job whose agent stops heartbeating is re-queued after it.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
}

impl AgentArgs {
    /// Options with defaults filled in.
    pub fn options(&self) -> AgentOptions {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        AgentOptions {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| format!("agent-{host}-{}", std::process::id())),
            capacity: self.capacity.max(1),
            work_dir: self.work_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("pave-agent-{}", std::process::id()))
            }),
            lease_seconds: self.lease_seconds.clamp(3, 600),
        }
    }
}

/// Claims and runs jobs until the process ends.
pub async fn run(target: Target, options: AgentOptions) -> Result<()> {
    std::fs::create_dir_all(&options.work_dir)
        .with_context(|| format!("creating {}", options.work_dir.display()))?;
    let client = Arc::new(Client::new(
        target,
        Duration::from_secs(CLAIM_WAIT_SECONDS + 30),
    )?);
    let slots = Arc::new(Semaphore::new(options.capacity));
    let options = Arc::new(options);
    tracing::info!(agent = %options.name, capacity = options.capacity, "agent started");
    let mut failures: u32 = 0;
    loop {
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        let claimed: Result<Value> = client
            .post(
                "/api/v1/agents/claim",
                &json!({
                    "agent": options.name,
                    "wait_seconds": CLAIM_WAIT_SECONDS,
                    "lease_seconds": options.lease_seconds,
                }),
            )
            .await;
        match claimed {
            Ok(Value::Null) => {
                failures = 0;
                drop(permit);
            }
            Ok(claim) => {
                failures = 0;
                let (client, options) = (client.clone(), options.clone());
                tokio::spawn(async move {
                    if let Err(e) = job::run_claimed(&client, &options, claim).await {
                        tracing::warn!(error = %format!("{e:#}"), "job ended with an agent error");
                    }
                    drop(permit);
                });
            }
            Err(e) if refused(&e) => {
                // Retrying cannot help: the token is not an agent token (or is revoked).
                return Err(e.context(
                    "the server refuses this agent's token; give it an agent token \
                     (`pave token create --role agent`)",
                ));
            }
            Err(e) => {
                drop(permit);
                failures = failures.saturating_add(1);
                let wait = backoff(failures);
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "claim failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// True when the server answered 401 or 403 (the token, not the network).
fn refused(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::client::ApiFailure>()
        .is_some_and(|f| {
            f.status == reqwest::StatusCode::UNAUTHORIZED
                || f.status == reqwest::StatusCode::FORBIDDEN
        })
}

/// Jittered exponential backoff: 0.5 s, 1 s, 2 s ... capped at 15 s.
fn backoff(failures: u32) -> Duration {
    let base = 500u64
        .saturating_mul(1 << failures.min(5).saturating_sub(1))
        .min(15_000);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_millis()))
        .unwrap_or(0)
        % (base / 4 + 1);
    Duration::from_millis(base + jitter)
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= std::time::Duration::from_millis(500));
        assert!(backoff(3) >= std::time::Duration::from_millis(2000));
        assert!(backoff(50) <= std::time::Duration::from_millis(15_000 + 3_751));
    }
}
