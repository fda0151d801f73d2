//! Recording a `pave run` on the configured server: the run is created
//! there as executed locally (every job leased to this process), each job's
//! log lines are shipped while it runs, leases are kept with heartbeats, and
//! each job's result (steps, outputs, tests, artifacts uploaded by digest)
//! is reported through the calls agents use. Recording never decides the
//! local run: when the server cannot be reached or refuses, one warning is
//! printed and the run goes on (or ends) exactly as without a server.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use pave_pipeline::artifacts::ArtifactStore;
use pave_pipeline::exec::{CancelSignal, LogStream};
use pave_pipeline::local::RunEvent;
use pave_pipeline::runner::JobReport;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{ApiFailure, Client};
use crate::config::Target;

/// How often buffered log lines are shipped.
const LOG_FLUSH: Duration = Duration::from_millis(300);
/// Most lines per log request.
const LOG_BATCH: usize = 500;

/// What the run to record is.
pub struct RecordRequest {
    pub service: String,
    pub namespace: Option<String>,
    pub git_ref: String,
    pub sha: String,
    pub dirty: bool,
    pub file: String,
    pub pave_yaml: String,
    /// `--job` selections (job ids).
    pub jobs: Vec<String>,
    pub host: String,
    pub lease_seconds: u64,
}

/// The job held on the server for a local job instance.
#[derive(Clone)]
struct Lease {
    /// The job instance key (in the local plan and on the server).
    key: String,
    job_id: String,
    token: String,
}

/// A message to the shipper, in the order things happened locally.
enum Message {
    Line {
        job: String,
        step: String,
        stream: &'static str,
        text: String,
    },
    Finished(Box<JobReport>),
}

/// State shared by the shipper and the heartbeat task.
struct Shared {
    client: Client,
    server: String,
    run_id: String,
    /// Set on the first failure: recording stops, with one warning.
    broken: AtomicBool,
    /// The server cancelled the run (someone ran `pave cancel`).
    cancelled_by_server: AtomicBool,
    /// Leases of the jobs not yet reported.
    live: std::sync::Mutex<HashMap<String, Lease>>,
}

impl Shared {
    /// Stops recording and prints the one warning.
    fn fail(&self, e: &anyhow::Error) {
        if !self.broken.swap(true, Ordering::SeqCst) {
            eprintln!(
                "pave: warning: recording run {} on {} stopped: {e:#}; the run goes on locally",
                self.run_id, self.server
            );
        }
    }

    fn ok(&self) -> bool {
        !self.broken.load(Ordering::SeqCst)
    }

    fn lease(&self, key: &str) -> Option<Lease> {
        self.live.lock().ok()?.get(key).cloned()
    }
}

/// A run being recorded on the server.
pub struct Recorder {
    shared: Arc<Shared>,
    /// The server's run number and id, for the summary.
    pub number: i64,
    pub run_id: String,
    tx: Option<mpsc::UnboundedSender<Message>>,
    shipper: JoinHandle<()>,
    heart: JoinHandle<()>,
}

/// Creates the run on the server; `None` (after one warning) when it
/// cannot be recorded. `keys` are the local plan's job instance keys, which
/// the server's plan must match.
pub async fn start(
    target: Target,
    request: RecordRequest,
    keys: &[String],
    artifacts: ArtifactStore,
    cancel: CancelSignal,
) -> Option<Recorder> {
    let server = target.server.clone();
    match try_start(target, request, keys, artifacts, cancel).await {
        Ok(recorder) => Some(recorder),
        Err(e) => {
            eprintln!(
                "pave: warning: not recording this run on {server}: {}; running locally only",
                describe(&e)
            );
            None
        }
    }
}

/// The server's message when it answered with an error, else the error.
fn describe(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ApiFailure>() {
        Some(f) => f.to_string(),
        None => format!("{e:#}"),
    }
}

async fn try_start(
    target: Target,
    request: RecordRequest,
    keys: &[String],
    artifacts: ArtifactStore,
    cancel: CancelSignal,
) -> Result<Recorder> {
    let server = target.server.clone();
    let client = Client::new(target, Duration::from_secs(30))?;
    let created: Value = client
        .post(
            "/api/v1/runs/local",
            &json!({
                "service": request.service,
                "namespace": request.namespace,
                "ref": request.git_ref,
                "sha": request.sha,
                "dirty": request.dirty,
                "pave_yaml": request.pave_yaml,
                "file": request.file,
                "jobs": request.jobs,
                "host": request.host,
                "lease_seconds": request.lease_seconds,
            }),
        )
        .await?;
    let run_id = created["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the server's answer has no run id"))?
        .to_string();
    let mut live = HashMap::new();
    for job in created["jobs"].as_array().into_iter().flatten() {
        let (Some(key), Some(id), Some(token)) = (
            job["key"].as_str(),
            job["id"].as_str(),
            job["lease_token"].as_str(),
        ) else {
            continue;
        };
        live.insert(
            key.to_string(),
            Lease {
                key: key.to_string(),
                job_id: id.to_string(),
                token: token.to_string(),
            },
        );
    }
    let shared = Arc::new(Shared {
        client,
        server,
        run_id: run_id.clone(),
        broken: AtomicBool::new(false),
        cancelled_by_server: AtomicBool::new(false),
        live: std::sync::Mutex::new(live),
    });
    let mut server_keys: Vec<String> = shared
        .live
        .lock()
        .map(|l| l.keys().cloned().collect())
        .unwrap_or_default();
    let mut local_keys = keys.to_vec();
    server_keys.sort();
    local_keys.sort();
    if server_keys != local_keys {
        let e = anyhow!(
            "the server planned jobs [{}], this machine [{}]",
            server_keys.join(", "),
            local_keys.join(", ")
        );
        // Nothing will report these jobs: end the record now.
        let _ = shared
            .client
            .post::<_, Value>(&format!("/api/v1/runs/{run_id}/cancel"), &json!({}))
            .await;
        return Err(e);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let shipper = tokio::spawn(ship(shared.clone(), rx, artifacts, cancel.clone()));
    let heart = tokio::spawn(heartbeat(shared.clone(), request.lease_seconds, cancel));
    Ok(Recorder {
        number: created["number"].as_i64().unwrap_or(0),
        run_id,
        shared,
        tx: Some(tx),
        shipper,
        heart,
    })
}

impl Recorder {
    /// Takes one event of the local run (called on the scheduler's task).
    pub fn event(&self, event: &RunEvent) {
        let Some(tx) = &self.tx else { return };
        if !self.shared.ok() {
            return;
        }
        let message = match event {
            RunEvent::Line { job, step, line } => Message::Line {
                job: job.clone(),
                step: step.clone(),
                stream: match line.stream {
                    LogStream::Stdout => "stdout",
                    LogStream::Stderr => "stderr",
                    LogStream::System => "system",
                },
                text: line.text.clone(),
            },
            // The same closing line per step that agents ship.
            RunEvent::StepFinished { job, step } => Message::Line {
                job: job.clone(),
                step: step.label.clone(),
                stream: "system",
                text: format!("step {:?} in {} ms", step.status, step.duration_ms).to_lowercase(),
            },
            RunEvent::JobFinished { report } => Message::Finished(Box::new(report.clone())),
            _ => return,
        };
        let _ = tx.send(message);
    }

    /// Waits until every line and report has reached the server; returns
    /// the run's outcome there, or `None` when recording failed.
    pub async fn finish(mut self) -> Option<String> {
        drop(self.tx.take());
        let _ = (&mut self.shipper).await;
        self.heart.abort();
        if !self.shared.ok() {
            return None;
        }
        let run: Result<Value> = self
            .shared
            .client
            .get(&format!("/api/v1/runs/{}", self.run_id))
            .await;
        match run {
            Ok(run) => run["outcome"].as_str().map(str::to_string),
            Err(e) => {
                self.shared.fail(&e);
                None
            }
        }
    }
}

/// Ships lines in batches and reports each finished job, in order.
async fn ship(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    artifacts: ArtifactStore,
    cancel: CancelSignal,
) {
    let mut pending: HashMap<String, Vec<Value>> = HashMap::new();
    let mut cancel_sent = false;
    let mut open = true;
    while open {
        let deadline = tokio::time::sleep(LOG_FLUSH);
        tokio::pin!(deadline);
        let mut finished = Vec::new();
        loop {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(Message::Line { job, step, stream, text }) => {
                        let batch = pending.entry(job).or_default();
                        batch.push(json!({ "step": step, "stream": stream, "text": text }));
                        if batch.len() >= LOG_BATCH { break; }
                    }
                    Some(Message::Finished(report)) => { finished.push(report); break; }
                    None => { open = false; break; }
                },
                _ = &mut deadline => break,
            }
        }
        if !shared.ok() {
            continue;
        }
        if let Err(e) = flush(&shared, &mut pending).await {
            shared.fail(&e);
            continue;
        }
        for report in finished {
            // A local cancel (Ctrl-C) ends the recorded run `cancelled`
            // too, before the reports of the jobs it stopped.
            if cancel.is_cancelled()
                && !cancel_sent
                && !shared.cancelled_by_server.load(Ordering::SeqCst)
            {
                cancel_sent = true;
                let path = format!("/api/v1/runs/{}/cancel", shared.run_id);
                if let Err(e) = shared.client.post::<_, Value>(&path, &json!({})).await
                    && !is_conflict(&e)
                {
                    shared.fail(&e);
                    break;
                }
            }
            if let Err(e) = report_job(&shared, &artifacts, *report).await {
                shared.fail(&e);
                break;
            }
        }
    }
}

/// Sends every buffered line, job by job.
async fn flush(shared: &Shared, pending: &mut HashMap<String, Vec<Value>>) -> Result<()> {
    for (key, lines) in pending.drain() {
        if lines.is_empty() {
            continue;
        }
        let Some(lease) = shared.lease(&key) else {
            continue;
        };
        for chunk in lines.chunks(LOG_BATCH) {
            shared
                .client
                .post::<_, Value>(
                    &format!("/api/v1/jobs/{}/logs", lease.job_id),
                    &json!({ "lease_token": lease.token, "lines": chunk }),
                )
                .await
                .with_context(|| format!("shipping the log of job {key}"))?;
        }
    }
    Ok(())
}

/// Uploads a finished job's artifacts, then reports it.
async fn report_job(shared: &Shared, artifacts: &ArtifactStore, report: JobReport) -> Result<()> {
    let Some(lease) = shared.lease(&report.key) else {
        return Ok(());
    };
    for artifact in &report.artifacts {
        upload(shared, artifacts, &artifact.digest)
            .await
            .with_context(|| format!("uploading artifact {}", artifact.name))?;
    }
    shared
        .client
        .post::<_, Value>(
            &format!("/api/v1/jobs/{}/complete", lease.job_id),
            &json!({
                "lease_token": lease.token,
                "outcome": serde_json::to_value(report.outcome)?,
                "outputs": report.outputs,
                "result": serde_json::to_value(&report)?,
            }),
        )
        .await
        .with_context(|| format!("reporting job {}", report.key))?;
    if let Ok(mut live) = shared.live.lock() {
        live.remove(&report.key);
    }
    Ok(())
}

/// PUTs one blob by digest (the server verifies it; a stored blob is kept).
async fn upload(shared: &Shared, artifacts: &ArtifactStore, digest: &str) -> Result<()> {
    let reader = artifacts.clone();
    let wanted = digest.to_string();
    let bytes = tokio::task::spawn_blocking(move || reader.read(&wanted)).await??;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let mut request = http
        .put(format!(
            "{}/api/v1/artifacts/{digest}",
            shared.client.server()
        ))
        .header("content-type", "application/octet-stream")
        .body(bytes);
    if let Some(token) = shared.client.token() {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("the server answered {status}: {body}");
    }
    Ok(())
}

/// Keeps every unreported job's lease; a cancel on the server cancels the
/// local run.
async fn heartbeat(shared: Arc<Shared>, lease_seconds: u64, cancel: CancelSignal) {
    let every = Duration::from_millis(lease_seconds.max(1) * 1000 / 3);
    // Rounds in a row that could not reach the server; the lease survives two.
    let mut unreachable = 0;
    loop {
        tokio::time::sleep(every).await;
        if !shared.ok() {
            return;
        }
        let leases: Vec<Lease> = shared
            .live
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default();
        for lease in leases {
            let answer: Result<Value> = shared
                .client
                .post(
                    &format!("/api/v1/jobs/{}/heartbeat", lease.job_id),
                    &json!({ "lease_token": lease.token, "lease_seconds": lease_seconds }),
                )
                .await;
            match answer {
                Ok(v) if v["cancel_requested"].as_bool() == Some(true) => {
                    if !shared.cancelled_by_server.swap(true, Ordering::SeqCst) {
                        eprintln!("pave: the run was cancelled on the server; stopping");
                    }
                    cancel.cancel();
                }
                Ok(_) => unreachable = 0,
                // Reported between the snapshot and this beat: nothing to keep.
                Err(e) if is_conflict(&e) && shared.lease(&lease.key).is_none() => {}
                Err(e) if e.downcast_ref::<ApiFailure>().is_none() && unreachable < 2 => {
                    unreachable += 1;
                    break;
                }
                Err(e) => {
                    shared.fail(&e);
                    return;
                }
            }
        }
    }
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiFailure>()
        .is_some_and(|f| f.status == reqwest::StatusCode::CONFLICT)
}
