//! The agent: pulls jobs from a Pave server and runs them with the same
//! engine as `pave run`. Agents only make outbound calls (claim with a
//! long-poll, heartbeat to keep the lease, ship logs, report once), so the
//! server never needs to reach them. `pave up` runs one in-process.
//!
//! An agent with free capacity N claims up to N jobs in one call. When it
//! is told to stop (SIGINT/SIGTERM, or `pave up` shutting down), it stops
//! claiming, stops its running steps (SIGTERM to each step's process group,
//! SIGKILL after the grace) and hands their jobs back, so the server queues
//! them again at once instead of when the lease runs out.

mod checkout;
mod job;
mod stop;

pub use stop::{InProcessAgent, stop_signal};

use crate::client::Client;
use crate::config::Target;
use anyhow::{Context, Result};
use pave_pipeline::exec::CancelSignal;
use serde_json::{Value, json};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

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

/// Claims and runs jobs until `stop` completes; then stops the running
/// jobs, hands them back to the server, and returns once they are done.
pub async fn run(
    target: Target,
    options: AgentOptions,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    std::fs::create_dir_all(&options.work_dir)
        .with_context(|| format!("creating {}", options.work_dir.display()))?;
    let client = Arc::new(Client::new(
        target,
        Duration::from_secs(CLAIM_WAIT_SECONDS + 30),
    )?);
    let slots = Arc::new(Semaphore::new(options.capacity));
    let options = Arc::new(options);
    tracing::info!(agent = %options.name, capacity = options.capacity, "agent started");
    let stopping = CancelSignal::new();
    let mut jobs = JoinSet::new();
    tokio::pin!(stop);
    let mut failures: u32 = 0;
    // Servers from before batch claims refuse `max_jobs`: claim one at a time there.
    let mut batch = true;
    let ended = loop {
        while jobs.try_join_next().is_some() {}
        let permits = tokio::select! {
            permits = free_slots(&slots) => permits,
            () = &mut stop => break Ok(()),
        };
        let mut request = json!({
            "agent": options.name,
            "wait_seconds": CLAIM_WAIT_SECONDS,
            "lease_seconds": options.lease_seconds,
        });
        if batch && permits.len() > 1 {
            request["max_jobs"] = json!(permits.len());
        }
        let claimed: Result<Value> = tokio::select! {
            claimed = client.post("/api/v1/agents/claim", &request) => claimed,
            () = &mut stop => break Ok(()),
        };
        match claimed {
            Ok(answer) => {
                failures = 0;
                let mut permits = permits;
                for claim in claims(answer) {
                    // The server never hands out more than asked; a slot each.
                    let permit = permits.pop();
                    let (client, options, stopping) =
                        (client.clone(), options.clone(), stopping.clone());
                    jobs.spawn(async move {
                        if let Err(e) = job::run_claimed(&client, &options, claim, &stopping).await
                        {
                            tracing::warn!(error = %format!("{e:#}"), "job ended with an agent error");
                        }
                        drop(permit);
                    });
                }
            }
            Err(e) if refused(&e) => {
                // Retrying cannot help: the token is not an agent token (or is revoked).
                break Err(e.context(
                    "the server refuses this agent's token; give it an agent token \
                     (`pave token create --role agent`)",
                ));
            }
            Err(e) if batch && request.get("max_jobs").is_some() && unprocessable(&e) => {
                tracing::info!("the server claims one job at a time");
                batch = false;
            }
            Err(e) => {
                drop(permits);
                failures = failures.saturating_add(1);
                let wait = backoff(failures);
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "claim failed");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut stop => break Ok(()),
                }
            }
        }
    };
    if !jobs.is_empty() {
        tracing::info!(
            jobs = jobs.len(),
            "agent stopping: stopping running jobs and handing them back"
        );
    }
    stopping.cancel();
    while jobs.join_next().await.is_some() {}
    ended
}

/// Waits for one free slot, then takes every other free one too.
async fn free_slots(slots: &Arc<Semaphore>) -> Vec<OwnedSemaphorePermit> {
    let Ok(first) = slots.clone().acquire_owned().await else {
        // The semaphore is never closed; wait forever rather than spin.
        return std::future::pending().await;
    };
    let mut permits = vec![first];
    while let Ok(more) = slots.clone().try_acquire_owned() {
        permits.push(more);
    }
    permits
}

/// The claims in a claim answer: none (204), one job, or a batch.
fn claims(answer: Value) -> Vec<Value> {
    match answer {
        Value::Null => Vec::new(),
        Value::Object(mut map) if !map.contains_key("job_id") => match map.remove("jobs") {
            Some(Value::Array(jobs)) => jobs,
            _ => Vec::new(),
        },
        one => vec![one],
    }
}

/// True when the server answered 422 (it did not understand the request).
fn unprocessable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::client::ApiFailure>()
        .is_some_and(|f| f.status == reqwest::StatusCode::UNPROCESSABLE_ENTITY)
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
    use super::{backoff, claims};
    use serde_json::json;

    #[test]
    fn claim_answers_of_every_shape_are_understood() {
        assert!(claims(serde_json::Value::Null).is_empty());
        let one = json!({ "job_id": "j1", "key": "a" });
        assert_eq!(claims(one.clone()), vec![one.clone()]);
        let batch = json!({ "jobs": [one.clone(), { "job_id": "j2" }] });
        assert_eq!(claims(batch).len(), 2);
        assert!(claims(json!({ "jobs": "nonsense" })).is_empty());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= std::time::Duration::from_millis(500));
        assert!(backoff(3) >= std::time::Duration::from_millis(2000));
        assert!(backoff(50) <= std::time::Duration::from_millis(15_000 + 3_751));
    }
}
