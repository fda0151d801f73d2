//! Runs executed on a developer's machine (`pave run`) and recorded here.
//!
//! A local run is stored like any run (so lists, pages, logs, test results
//! and artifacts work unchanged) with `executor = 'local'` on the run and
//! its jobs. Its jobs are created already `running`, each leased to the
//! creating client with its own lease token: the client then uses the same
//! heartbeat, log and complete calls as agents. Agents never claim a local
//! job (the claim skips `executor = 'local'`), and a local job whose lease
//! expires (the client was killed) is not re-queued: `expire_lost` ends it
//! `failure` ("local runner lost") and the run finishes as usual.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

use crate::{
    JobReport, JobRow, NewEvent, NewRun, Result, RunRow, Scheduler, Store, StoreError, events, sql,
    time, ulid,
};

const RUN_QUEUED: &str = "dev.cdevents.pipelinerun.queued.0.2.0";
const RUN_STARTED: &str = "dev.cdevents.pipelinerun.started.0.2.0";
const TASK_STARTED: &str = "dev.cdevents.taskrun.started.0.2.0";

/// Why a local job whose lease ran out ended.
pub const LOST_REASON: &str = "local runner lost: `pave run` stopped sending heartbeats";

/// A run that a client executes itself, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLocalRun {
    /// The run and its jobs; `trigger` is normally `local`.
    pub run: NewRun,
    /// The working tree had uncommitted changes (the sha is only its base).
    pub dirty: bool,
    /// Shown as the jobs' agent, e.g. `local:alice@laptop`.
    pub holder: String,
    /// Each job's first lease; the client heartbeats within it.
    pub lease: Duration,
}

/// A job of a local run with the lease token its client holds.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedJob {
    pub job: JobRow,
    /// Present with every heartbeat, log and report of the job.
    pub lease_token: String,
}

/// What creating a local run stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedLocalRun {
    pub run: RunRow,
    /// In plan order.
    pub jobs: Vec<LeasedJob>,
}

/// How a stored run is executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunExecution {
    /// `agent` or `local`.
    pub executor: String,
    /// A local run of a working tree with uncommitted changes.
    pub dirty: bool,
}

/// Creates a local run with every job running under a lease held by the
/// creator, appending `pipelinerun.queued`, `pipelinerun.started` and one
/// `taskrun.started` per job, in one transaction.
pub(crate) async fn create(store: &Store, new: &NewLocalRun) -> Result<CreatedLocalRun> {
    validate(&new.run)?;
    let plan = to_json(&new.run.plan, "plan")?;
    let now = time::now();
    let expires = expiry(new.lease)?;
    let mut run = RunRow {
        id: ulid::new()?,
        service_key: new.run.service_key.clone(),
        number: 0,
        git_ref: new.run.git_ref.clone(),
        sha: new.run.sha.clone(),
        status: "running".into(),
        outcome: None,
        plan: new.run.plan.clone(),
        trigger: new.run.trigger.clone(),
        actor: new.run.actor.clone(),
        cancel_requested: false,
        created_at: now.clone(),
        started_at: Some(now.clone()),
        finished_at: None,
    };
    let mut jobs = Vec::with_capacity(new.run.jobs.len());
    for (i, j) in new.run.jobs.iter().enumerate() {
        jobs.push(LeasedJob {
            job: JobRow {
                id: ulid::new()?,
                run_id: run.id.clone(),
                position: i as i64,
                key: j.key.clone(),
                job_id: j.job_id.clone(),
                name: j.name.clone(),
                needs: j.needs.clone(),
                spec: j.spec.clone(),
                status: "running".into(),
                outcome: None,
                reason: None,
                attempt: 1,
                cancel_requested: false,
                lease_owner: Some(new.holder.clone()),
                lease_expires_at: Some(expires.clone()),
                queued_at: Some(now.clone()),
                started_at: Some(now.clone()),
                finished_at: None,
                outputs: json!({}),
                result: Value::Null,
            },
            lease_token: random_token()?,
        });
    }

    let backend = store.backend;
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    events::lock_head(conn).await?;
    run.number = sqlx::query_scalar(
        "SELECT COALESCE(MAX(number), 0) + 1 AS n FROM runs WHERE service_key = $1",
    )
    .bind(run.service_key.clone())
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO runs (id, service_key, number, git_ref, sha, status, plan, trigger_kind, \
         actor, cancel_requested, created_at, started_at, executor, dirty) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, 'local', $12)",
    )
    .bind(run.id.clone())
    .bind(run.service_key.clone())
    .bind(run.number)
    .bind(run.git_ref.clone())
    .bind(run.sha.clone())
    .bind(run.status.clone())
    .bind(plan)
    .bind(run.trigger.clone())
    .bind(run.actor.clone())
    .bind(run.created_at.clone())
    .bind(run.started_at.clone())
    .bind(i64::from(new.dirty))
    .execute(&mut *conn)
    .await?;
    const COLS: usize = 15;
    for chunk in jobs.chunks(sql::rows_per_chunk(COLS)) {
        let text = format!(
            "INSERT INTO jobs (id, run_id, position, key, job_id, name, needs, spec, status, \
             attempt, lease_owner, lease_token, lease_expires_at, queued_at, started_at, \
             executor) VALUES {}",
            local_values(backend, chunk.len(), COLS)
        );
        let mut q = sqlx::query(AssertSqlSafe(text));
        for leased in chunk {
            let job = &leased.job;
            q = q
                .bind(job.id.clone())
                .bind(job.run_id.clone())
                .bind(job.position)
                .bind(job.key.clone())
                .bind(job.job_id.clone())
                .bind(job.name.clone())
                .bind(to_json(&job.needs, "needs")?)
                .bind(to_json(&job.spec, "spec")?)
                .bind(job.status.clone())
                .bind(job.attempt)
                .bind(job.lease_owner.clone())
                .bind(leased.lease_token.clone())
                .bind(job.lease_expires_at.clone())
                .bind(job.queued_at.clone())
                .bind(job.started_at.clone());
        }
        q.execute(&mut *conn).await?;
    }
    let extra = json!({ "executor": "local", "dirty": new.dirty });
    let mut queued = run.clone();
    queued.status = "queued".into();
    let mut evs = vec![
        run_event(RUN_QUEUED, &queued, &extra),
        run_event(RUN_STARTED, &run, &extra),
    ];
    evs.extend(jobs.iter().map(|l| job_started(&run, &l.job)));
    tx.append_events(&evs).await?;
    tx.commit().await?;
    Ok(CreatedLocalRun { run, jobs })
}

/// `(...,'local')` rows: `cols` placeholders then the executor literal, so
/// the constant is not bound once per row.
fn local_values(backend: crate::Backend, rows: usize, cols: usize) -> String {
    sql::values(backend, rows, cols).replace(')', ",'local')")
}

/// Ends every local job whose lease has expired: `failure` with
/// [`LOST_REASON`] (`cancelled` when its run was cancelled), through the
/// same completion as a report, so the run advances and finishes. Returns
/// how many jobs it ended.
pub(crate) async fn expire_lost(store: &Store, scheduler: &dyn Scheduler) -> Result<usize> {
    let now = time::now();
    let lost = sqlx::query(
        "SELECT id, lease_token, cancel_requested FROM jobs \
         WHERE executor = 'local' AND status = 'running' AND lease_expires_at < $1",
    )
    .bind(now)
    .fetch_all(&store.pool)
    .await?;
    let mut ended = 0;
    for row in &lost {
        let job_id: String = sql::get(row, "id")?;
        let Some(token) = sql::get::<Option<String>>(row, "lease_token")? else {
            continue;
        };
        let cancelled = sql::get::<i64>(row, "cancel_requested")? != 0;
        let report = JobReport {
            job_id: job_id.clone(),
            lease_token: token,
            outcome: if cancelled { "cancelled" } else { "failure" }.into(),
            outputs: json!({}),
            result: json!({ "message": LOST_REASON }),
            actor: "system".into(),
        };
        match crate::runs::complete(store, &report, scheduler).await {
            Ok(_) => {}
            // The client reported (or another server expired it) meanwhile.
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
        // The job is ours to describe: it ended through this report.
        let mut tx = store.begin().await?;
        sqlx::query("UPDATE jobs SET reason = $1 WHERE id = $2 AND reason IS NULL")
            .bind(LOST_REASON)
            .bind(job_id)
            .execute(tx.connection())
            .await?;
        tx.commit().await?;
        ended += 1;
    }
    Ok(ended)
}

/// How a run is executed; `None` when there is no such run.
pub(crate) async fn execution(store: &Store, run_id: &str) -> Result<Option<RunExecution>> {
    let row = sqlx::query("SELECT executor, dirty FROM runs WHERE id = $1")
        .bind(run_id.to_string())
        .fetch_optional(&store.pool)
        .await?;
    row.map(|r| {
        Ok(RunExecution {
            executor: sql::get(&r, "executor")?,
            dirty: sql::get::<i64>(&r, "dirty")? != 0,
        })
    })
    .transpose()
}

/// At least one job, unique keys, needs naming earlier jobs (as for any run).
fn validate(run: &NewRun) -> Result<()> {
    if run.jobs.is_empty() {
        return Err(StoreError::Conflict("a run needs at least one job".into()));
    }
    let mut seen = HashSet::new();
    for job in &run.jobs {
        if let Some(need) = job.needs.iter().find(|n| !seen.contains(n.as_str())) {
            return Err(StoreError::Conflict(format!(
                "job `{}` needs `{need}`, which is not an earlier job of the run",
                job.key
            )));
        }
        if !seen.insert(job.key.as_str()) {
            return Err(StoreError::Conflict(format!(
                "job key `{}` appears twice in one run",
                job.key
            )));
        }
    }
    Ok(())
}

fn run_event(event_type: &str, run: &RunRow, extra: &Value) -> NewEvent {
    let mut payload = json!({
        "run_id": run.id,
        "service": run.service_key,
        "number": run.number,
        "sha": run.sha,
        "ref": run.git_ref,
        "status": run.status,
        "outcome": run.outcome,
        "trigger": run.trigger,
    });
    if let (Value::Object(p), Value::Object(e)) = (&mut payload, extra) {
        p.extend(e.clone());
    }
    NewEvent {
        event_type: event_type.to_string(),
        subject: format!("run:{}", run.id),
        actor: run.actor.clone(),
        payload,
    }
}

fn job_started(run: &RunRow, job: &JobRow) -> NewEvent {
    NewEvent {
        event_type: TASK_STARTED.to_string(),
        subject: format!("job:{}", job.id),
        actor: run.actor.clone(),
        payload: json!({
            "job_id": job.id,
            "run_id": run.id,
            "service": run.service_key,
            "number": run.number,
            "key": job.key,
            "attempt": job.attempt,
            "agent": job.lease_owner,
            "outcome": job.outcome,
        }),
    }
}

/// The lease's end, `lease` from now, in the stored time format.
fn expiry(lease: Duration) -> Result<String> {
    let lease = chrono::Duration::from_std(lease)
        .map_err(|_| StoreError::Conflict("lease too long".into()))?;
    chrono::Utc::now()
        .checked_add_signed(lease)
        .map(time::format)
        .ok_or_else(|| StoreError::Conflict("lease too long".into()))
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Conflict(format!("{what}: {e}")))
}

/// 128 random bits, hex.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        StoreError::Database(sqlx::Error::Io(std::io::Error::other(format!(
            "OS random source failed: {e}"
        ))))
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
