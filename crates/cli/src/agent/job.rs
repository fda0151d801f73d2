//! Running one claimed job: checkout, heartbeats, live log shipping, and
//! exactly one final report.

use super::AgentOptions;
use super::checkout::checkout;
use crate::client::Client;
use anyhow::{Context, Result, anyhow};
use pave_pipeline::artifacts::ArtifactStore;
use pave_pipeline::cache::CacheStore;
use pave_pipeline::exec::{CancelSignal, LogLine, LogStream};
use pave_pipeline::plan::{Outcome, PlannedJob};
use pave_pipeline::runner::{JobContext, JobReport, JobSink, RunEnv, StepReport, run_job};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often buffered log lines are shipped.
const LOG_FLUSH: Duration = Duration::from_millis(300);

/// The parts of a claim the agent uses.
#[derive(Deserialize)]
struct Claim {
    job_id: String,
    key: String,
    attempt: i64,
    lease_token: String,
    /// The service's secrets (masked by the runner; never log a claim).
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    job: PlannedJob,
    #[serde(default)]
    pipeline: Value,
    pave: pave_pipeline::expr::PaveContext,
    #[serde(default)]
    needs: BTreeMap<String, pave_pipeline::expr::NeedContext>,
    /// The service's quarantined test ids (they do not fail a `junit:` step).
    #[serde(default)]
    quarantined: std::collections::BTreeSet<String>,
    /// Where to check out from; agent tokens cannot read the catalog, so
    /// servers send it with the claim (older ones did not).
    #[serde(default)]
    repository: Option<String>,
}

/// A log line on its way to the server.
struct Shipped {
    step: String,
    stream: &'static str,
    text: String,
}

/// Forwards the runner's lines to the shipper task.
struct ChannelSink(mpsc::UnboundedSender<Shipped>);

impl JobSink for ChannelSink {
    fn line(&mut self, _job: &str, step: &str, line: &LogLine) {
        let stream = match line.stream {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        };
        let _ = self.0.send(Shipped {
            step: step.to_string(),
            stream,
            text: line.text.clone(),
        });
    }

    fn step_finished(&mut self, _job: &str, step: &StepReport) {
        let _ = self.0.send(Shipped {
            step: step.label.clone(),
            stream: "system",
            text: format!("step {:?} in {} ms", step.status, step.duration_ms).to_lowercase(),
        });
    }
}

/// Runs a claimed job to its one report (or until the lease is lost). When
/// `stopping` fires (the agent shuts down), the job's steps are stopped and
/// the job is handed back to the server instead of reported.
pub async fn run_claimed(
    client: &Client,
    options: &AgentOptions,
    claim: Value,
    stopping: &CancelSignal,
) -> Result<()> {
    let claim: Claim = serde_json::from_value(claim)
        .context("the server sent a claim this agent does not understand")?;
    tracing::info!(job = %claim.key, attempt = claim.attempt, "running job");
    let cancel = CancelSignal::new();
    // Set when the server asked the job to stop (run cancelled, fail-fast):
    // such a job is reported `cancelled`, never handed back.
    let asked_to_stop = Arc::new(AtomicBool::new(false));
    let shutdown = tokio::spawn({
        let (stopping, cancel) = (stopping.clone(), cancel.clone());
        async move {
            stopping.cancelled().await;
            cancel.cancel();
        }
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let shipper = tokio::spawn(ship_logs(
        client.clone(),
        claim.job_id.clone(),
        claim.lease_token.clone(),
        rx,
        cancel.clone(),
    ));
    let heart = tokio::spawn(heartbeat(
        client.clone(),
        claim.job_id.clone(),
        claim.lease_token.clone(),
        options.lease_seconds,
        cancel.clone(),
        asked_to_stop.clone(),
    ));

    let workspace = options
        .work_dir
        .join("jobs")
        .join(format!("{}-{}", claim.job_id, claim.attempt));
    let _ = std::fs::remove_dir_all(&workspace);
    let mut sink = ChannelSink(tx);
    let started = std::time::Instant::now();
    let prepared = prepare(client, &claim, &options.work_dir, &workspace).await;
    let prepare_ms = started.elapsed().as_millis() as u64;
    let report = match prepared {
        Ok(()) => {
            let ctx = job_context(&claim);
            let env = RunEnv {
                cache: CacheStore::open(options.work_dir.join("cache")).ok(),
                artifacts: ArtifactStore::open(options.work_dir.join("artifacts")).ok(),
                inherit_env: false,
                ..RunEnv::default()
            };
            run_job(&claim.job, &ctx, &workspace, &env, &mut sink, &cancel).await
        }
        Err(e) => {
            sink.0
                .send(Shipped {
                    step: "checkout".into(),
                    stream: "system",
                    text: format!("checkout failed: {e:#}"),
                })
                .ok();
            failed_report(&claim, format!("checkout failed: {e:#}"))
        }
    };
    drop(sink);
    heart.abort();
    shutdown.abort();
    // Every line reaches the server before the report that ends the job.
    let ran_ms = started.elapsed().as_millis() as u64 - prepare_ms;
    let lost = shipper.await.unwrap_or(false);
    let _ = std::fs::remove_dir_all(&workspace);
    if lost {
        tracing::warn!(job = %claim.key, "lease lost: another agent owns this job now; not reporting");
        return Ok(());
    }
    if stopping.is_cancelled()
        && report.outcome == Outcome::Cancelled
        && !asked_to_stop.load(Ordering::Relaxed)
    {
        return hand_back(client, &claim).await;
    }
    let report = upload_artifacts(client, options, report).await;
    let outcome = serde_json::to_value(report.outcome)?;
    let result = serde_json::to_value(&report)?;
    client
        .post::<_, Value>(
            &format!("/api/v1/jobs/{}/complete", claim.job_id),
            &json!({
                "lease_token": claim.lease_token,
                "outcome": outcome,
                "outputs": report.outputs,
                "result": result,
            }),
        )
        .await
        .with_context(|| format!("reporting job {}", claim.key))?;
    tracing::info!(job = %claim.key, outcome = %outcome, "job reported");
    tracing::debug!(
        job = %claim.key,
        prepare_ms,
        run_ms = ran_ms,
        total_ms = started.elapsed().as_millis() as u64,
        "job timings"
    );
    Ok(())
}

/// Gives a job this agent stopped (shutting down) back to the server, which
/// queues it again at once.
async fn hand_back(client: &Client, claim: &Claim) -> Result<()> {
    client
        .post::<_, Value>(
            &format!("/api/v1/jobs/{}/release", claim.job_id),
            &json!({ "lease_token": claim.lease_token }),
        )
        .await
        .with_context(|| format!("handing job {} back", claim.key))?;
    tracing::info!(job = %claim.key, "agent stopping: job handed back to the server");
    Ok(())
}

/// Finds the service's repository and checks it out at the run's commit.
async fn prepare(
    client: &Client,
    claim: &Claim,
    cache: &std::path::Path,
    workspace: &std::path::Path,
) -> Result<()> {
    let service = claim
        .pave
        .service
        .rsplit('/')
        .next()
        .unwrap_or(&claim.pave.service)
        .to_string();
    let repository = match &claim.repository {
        Some(url) => url.clone(),
        None => repository_of(client, &service).await?,
    };
    if let Some(parent) = workspace.parent() {
        std::fs::create_dir_all(parent)?;
    }
    checkout(cache, &repository, &claim.pave.sha, workspace).await
}

/// How long a service's repository URL is reused without asking the server again.
const REPOSITORY_TTL: Duration = Duration::from_secs(10);

/// The service's repository, from a short-lived cache or the server.
async fn repository_of(client: &Client, service: &str) -> Result<String> {
    static CACHE: std::sync::Mutex<BTreeMap<String, (String, std::time::Instant)>> =
        std::sync::Mutex::new(BTreeMap::new());
    if let Ok(cache) = CACHE.lock()
        && let Some((url, at)) = cache.get(service)
        && at.elapsed() < REPOSITORY_TTL
    {
        return Ok(url.clone());
    }
    let detail: Value = client
        .get(&format!(
            "/api/v1/services/{}",
            crate::commands::catalog::urlencode(service)
        ))
        .await
        .with_context(|| format!("looking up service {service}"))?;
    let url = detail["repository"].as_str().map(str::to_string).ok_or_else(|| {
        anyhow!("service {service} has no repository: run `pave apply -f pave.yaml` inside its git repository")
    })?;
    if let Ok(mut cache) = CACHE.lock() {
        cache.insert(
            service.to_string(),
            (url.clone(), std::time::Instant::now()),
        );
    }
    Ok(url)
}

fn job_context(claim: &Claim) -> JobContext {
    JobContext {
        pave: claim.pave.clone(),
        env: serde_json::from_value(claim.pipeline["env"].clone()).unwrap_or_default(),
        defaults: serde_json::from_value(claim.pipeline["defaults"].clone())
            .ok()
            .flatten(),
        needs: claim.needs.clone(),
        secrets: claim.secrets.clone(),
        quarantined: claim.quarantined.clone(),
    }
}

fn failed_report(claim: &Claim, message: String) -> JobReport {
    JobReport::not_run(&claim.job, Outcome::Failure, message)
}

/// Ships buffered lines every `LOG_FLUSH`; returns true when the lease was lost.
async fn ship_logs(
    client: Client,
    job_id: String,
    lease_token: String,
    mut rx: mpsc::UnboundedReceiver<Shipped>,
    cancel: CancelSignal,
) -> bool {
    let mut open = true;
    while open {
        let mut batch = Vec::new();
        let deadline = tokio::time::sleep(LOG_FLUSH);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => {
                        batch.push(json!({ "step": line.step, "stream": line.stream, "text": line.text }));
                        if batch.len() >= 500 { break; }
                    }
                    None => { open = false; break; }
                },
                _ = &mut deadline => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let sent: Result<Value> = client
            .post(
                &format!("/api/v1/jobs/{job_id}/logs"),
                &json!({ "lease_token": lease_token, "lines": batch }),
            )
            .await;
        if let Err(e) = sent {
            if is_conflict(&e) {
                cancel.cancel();
                return true;
            }
            tracing::warn!(error = %format!("{e:#}"), "shipping logs failed; lines dropped");
        }
    }
    false
}

/// Keeps the lease; cancels the job when the lease is lost or the run is cancelled.
async fn heartbeat(
    client: Client,
    job_id: String,
    lease_token: String,
    lease_seconds: u64,
    cancel: CancelSignal,
    asked_to_stop: Arc<AtomicBool>,
) {
    let every = Duration::from_millis(lease_seconds * 1000 / 3);
    loop {
        tokio::time::sleep(every).await;
        let answer: Result<Value> = client
            .post(
                &format!("/api/v1/jobs/{job_id}/heartbeat"),
                &json!({ "lease_token": lease_token, "lease_seconds": lease_seconds }),
            )
            .await;
        match answer {
            Ok(v) if v["cancel_requested"].as_bool() == Some(true) => {
                asked_to_stop.store(true, Ordering::Relaxed);
                cancel.cancel();
            }
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {
                cancel.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "heartbeat failed; will retry"),
        }
    }
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::client::ApiFailure>()
        .is_some_and(|f| f.status == reqwest::StatusCode::CONFLICT)
}

/// Uploads the job's artifacts to the server's artifact store (by digest,
/// verified there) before the report that lists them. A failed upload fails
/// the job: its report would name artifacts nobody can download.
async fn upload_artifacts(
    client: &Client,
    options: &AgentOptions,
    mut report: JobReport,
) -> JobReport {
    if report.artifacts.is_empty() {
        return report;
    }
    let uploaded = async {
        let store = ArtifactStore::open(options.work_dir.join("artifacts"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()?;
        for artifact in &report.artifacts {
            let digest = artifact.digest.clone();
            let reader = store.clone();
            let bytes = tokio::task::spawn_blocking(move || reader.read(&digest)).await??;
            let mut request = http
                .put(format!(
                    "{}/api/v1/artifacts/{}",
                    client.server(),
                    artifact.digest
                ))
                .header("content-type", "application/octet-stream")
                .body(bytes);
            if let Some(token) = client.token() {
                request = request.bearer_auth(token);
            }
            let response = request.send().await?;
            let status = response.status();
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                anyhow::bail!(
                    "uploading artifact {} answered {status}: {body}",
                    artifact.name
                );
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = uploaded {
        tracing::warn!(job = %report.key, error = %format!("{e:#}"), "artifact upload failed");
        report.outcome = Outcome::Failure;
        report.message = Some(format!("artifact upload failed: {e:#}"));
    }
    report
}
