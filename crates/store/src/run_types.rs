//! Row and input types of pipeline runs, jobs and job logs, and the
//! `Scheduler` the caller supplies to decide what runs next.
//!
//! The store keeps rows; it does not know the planner. Outcomes and
//! statuses are the lowercase words listed on each field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A run to create, with all of its jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// Catalog key of the service, e.g. `component:default/hello`.
    pub service_key: String,
    /// The git ref (`refs/heads/main`), or empty.
    pub git_ref: String,
    /// The commit.
    pub sha: String,
    /// The whole plan (JSON), kept for the scheduler and readers.
    pub plan: Value,
    /// What started it: `api`, `push`, `local`, ...
    pub trigger: String,
    /// Who started it (event actor string).
    pub actor: String,
    /// The jobs in a topological order: a job's needs come before it.
    pub jobs: Vec<NewJob>,
}

/// One job of a new run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Unique within the run (the planned instance key).
    pub key: String,
    /// The pipeline's job id (several matrix instances share it).
    pub job_id: String,
    /// Display name.
    pub name: String,
    /// Keys of the jobs of this run it waits for.
    pub needs: Vec<String>,
    /// The planned job (JSON), handed to the agent that claims it.
    pub spec: Value,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// ULID.
    pub id: String,
    pub service_key: String,
    /// 1, 2, 3 ... per service.
    pub number: i64,
    pub git_ref: String,
    pub sha: String,
    /// `queued`, `running` or `finished`.
    pub status: String,
    /// `success`, `failure`, `cancelled` or `skipped` once finished.
    pub outcome: Option<String>,
    /// The plan as created; `Null` in lists (`Store::list_runs`).
    pub plan: Value,
    pub trigger: String,
    pub actor: String,
    pub cancel_requested: bool,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// A stored job (its lease token is never part of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    /// ULID.
    pub id: String,
    pub run_id: String,
    /// Order in the run's plan, from 0.
    pub position: i64,
    pub key: String,
    pub job_id: String,
    pub name: String,
    /// Keys of the jobs this job waits for.
    pub needs: Vec<String>,
    /// The planned job (JSON).
    pub spec: Value,
    /// `waiting`, `queued`, `running`, `finished` or `skipped`.
    pub status: String,
    /// `success`, `failure`, `cancelled` or `skipped` once terminal.
    pub outcome: Option<String>,
    /// Why it was skipped or failed without running.
    pub reason: Option<String>,
    /// Times claimed so far (1 on the first claim).
    pub attempt: i64,
    /// The run was cancelled while this job ran: the agent should stop it.
    pub cancel_requested: bool,
    /// The agent that holds (or last held) it.
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<String>,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The job's outputs, as reported (JSON object of strings).
    pub outputs: Value,
    /// The agent's report (step results ...), as reported.
    pub result: Value,
}

impl JobRow {
    /// True once the job will not change any more (`finished` or `skipped`).
    pub fn is_terminal(&self) -> bool {
        self.status == "finished" || self.status == "skipped"
    }
}

/// A job handed to an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub job: JobRow,
    /// The run, without its plan (`plan` is `Null`).
    pub run: RunRow,
    /// The run-level settings: the plan's top-level keys but `jobs`.
    pub pipeline: Value,
    /// The secret the agent presents with every heartbeat, log and report.
    pub lease_token: String,
}

/// What a heartbeat answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub lease_expires_at: String,
    /// The run was cancelled: stop the job and report it `cancelled`.
    pub cancel_requested: bool,
}

/// An agent's final report of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    pub job_id: String,
    pub lease_token: String,
    /// `success`, `failure`, `cancelled` or `skipped`.
    pub outcome: String,
    pub outputs: Value,
    pub result: Value,
    /// Event actor string.
    pub actor: String,
}

/// What completing a job did.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedJob {
    pub job: JobRow,
    /// The run after advancing it.
    pub run: RunRow,
    /// Jobs this completion queued.
    pub queued: usize,
}

/// One log line to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewLogLine {
    /// The step it belongs to (label or index), or empty.
    pub step: String,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
    pub text: String,
}

/// A stored log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLineRow {
    /// Position in the run's log, from 1.
    pub seq: i64,
    pub job_id: String,
    pub attempt: i64,
    pub step: String,
    pub stream: String,
    pub text: String,
    pub time: String,
}

/// What happens to a job whose needs have all ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobDecision {
    /// Queue it for an agent.
    Queue,
    /// Conclude it without running: `skipped` (status `skipped`) or
    /// `failure` (status `finished`, e.g. an `if:` that cannot be evaluated).
    Conclude { outcome: String, reason: String },
}

/// The caller's rules for advancing a run, applied inside the store's
/// transaction (so decisions and their writes are atomic). The `run` handed
/// to these methods carries no plan (`Null`): each job row's `spec` is its
/// planned job.
pub trait Scheduler: Send + Sync {
    /// One decision per index of `ready` (indexes into `jobs`): each is
    /// `waiting` and every job it needs is terminal. `jobs` holds, in plan
    /// order, the ready jobs and every job they depend on, directly or
    /// transitively (it may hold more, up to the whole run).
    fn decide(
        &self,
        run: &RunRow,
        jobs: &[JobRow],
        ready: &[usize],
    ) -> Result<Vec<JobDecision>, String>;

    /// The outcome of a run whose jobs are all terminal.
    fn run_outcome(&self, run: &RunRow, jobs: &[JobRow]) -> Result<String, String>;

    /// At most this many jobs of the run sharing `job.job_id` (a matrix's
    /// legs) may be leased at once; asked once, when the run is created.
    /// `None` (the default): no limit.
    fn max_parallel(&self, job: &NewJob) -> Result<Option<u32>, String> {
        let _ = job;
        Ok(None)
    }

    /// Asked when `job` ended with its reported outcome: `Some(reason)`
    /// ends the run's unfinished jobs sharing its `job_id` (a matrix's
    /// fail-fast): those not started conclude `cancelled` with the reason,
    /// running ones are asked to stop. `None` (the default): nothing.
    fn fail_fast(&self, run: &RunRow, job: &JobRow) -> Result<Option<String>, String> {
        let _ = (run, job);
        Ok(None)
    }
}
