//! Pipeline runs as a durable state machine: create a run with its jobs,
//! agents claim jobs under a lease, heartbeat, append logs and report; each
//! report advances the run (queue or skip the jobs whose needs have ended,
//! finish the run when every job has) in the same transaction.
//!
//! Job statuses: `waiting` (needs not done) → `queued` → `running` (leased)
//! → `finished`; or `waiting`/`queued` → `skipped`. A `running` job whose
//! lease expired is claimable again (its attempt counter grows and its lease
//! token changes, so the lost agent's late calls are refused).
//!
//! Locking: every transaction that appends events first locks the event
//! head (as catalog apply does). On PostgreSQL that serializes them across
//! servers, so the reads that drive a decision see every committed change,
//! and all of them take locks in one order (head, then rows): no deadlocks.
//! The claim's row pick also uses `FOR UPDATE SKIP LOCKED`, so concurrent
//! claimers never select the same row. Heartbeats and log appends lock only
//! the job row (then the run row) and never wait for the head. On SQLite the
//! write lock serializes everything.
//!
//! Claims and releases live in run_claim.rs, advancing a run after jobs end
//! in run_graph.rs; both keep every call O(1) in the run's size (the plan is
//! only written here and read by `get_run`).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe};

use crate::{
    Backend, CompletedJob, Heartbeat, JobDecision, JobReport, JobRow, LogLineRow, NewEvent,
    NewLogLine, NewRun, Result, RunRow, Scheduler, Store, StoreError, events, run_graph, sql,
    test_results, time, ulid,
};

const RUN_QUEUED: &str = "dev.cdevents.pipelinerun.queued.0.2.0";
pub(crate) const RUN_STARTED: &str = "dev.cdevents.pipelinerun.started.0.2.0";
const RUN_FINISHED: &str = "dev.cdevents.pipelinerun.finished.0.2.0";
pub(crate) const TASK_STARTED: &str = "dev.cdevents.taskrun.started.0.2.0";
pub(crate) const TASK_FINISHED: &str = "dev.cdevents.taskrun.finished.0.2.0";

const RUN_COLUMNS: &str = "id, service_key, number, git_ref, sha, status, outcome, plan, \
     trigger_kind, actor, cancel_requested, created_at, started_at, finished_at";
/// Like `RUN_COLUMNS` without the (large) plan.
const RUN_LIST_COLUMNS: &str = "id, service_key, number, git_ref, sha, status, outcome, \
     CAST('null' AS TEXT) AS plan, trigger_kind, actor, cancel_requested, created_at, \
     started_at, finished_at";
/// A run without its plan, plus its run-level settings (`pipeline`).
const RUN_LIGHT_COLUMNS: &str = "id, service_key, number, git_ref, sha, status, outcome, \
     CAST('null' AS TEXT) AS plan, trigger_kind, actor, cancel_requested, created_at, \
     started_at, finished_at, pipeline";
pub(crate) const JOB_COLUMNS: &str = "id, run_id, position, key, job_id, name, needs, spec, status, \
     outcome, reason, attempt, cancel_requested, lease_owner, lease_expires_at, queued_at, \
     started_at, finished_at, outputs, result";

/// The words a job or run may conclude with.
const OUTCOMES: [&str; 4] = ["success", "failure", "cancelled", "skipped"];
/// The streams a log line may come from.
const STREAMS: [&str; 3] = ["stdout", "stderr", "system"];
/// Default and largest page of `read_logs` / `list`.
const DEFAULT_LIMIT: i64 = 1_000;
const MAX_LIMIT: i64 = 10_000;

// ---------------------------------------------------------------- create

/// Creates a run and its jobs, decides the jobs that need nothing, and
/// appends `pipelinerun.queued` (and `finished` when nothing runs), in one
/// transaction.
pub(crate) async fn create(
    store: &Store,
    new: &NewRun,
    scheduler: &dyn Scheduler,
) -> Result<RunRow> {
    validate_jobs(new)?;
    let plan = to_json(&new.plan, "plan")?;
    let settings = to_json(&run_settings(&new.plan), "plan")?;
    let encoded = new
        .jobs
        .iter()
        .map(|j| {
            let max_parallel = scheduler
                .max_parallel(j)
                .map_err(|e| StoreError::Conflict(format!("job `{}`: {e}", j.key)))?
                .map(i64::from);
            Ok((
                to_json(&j.needs, "needs")?,
                to_json(&j.spec, "spec")?,
                max_parallel,
            ))
        })
        .collect::<Result<Vec<EncodedJob>>>()?;
    let now = time::now();
    let mut run = RunRow {
        id: ulid::new()?,
        service_key: new.service_key.clone(),
        number: 0,
        git_ref: new.git_ref.clone(),
        sha: new.sha.clone(),
        status: "queued".into(),
        outcome: None,
        plan: new.plan.clone(),
        trigger: new.trigger.clone(),
        actor: new.actor.clone(),
        cancel_requested: false,
        created_at: now.clone(),
        started_at: None,
        finished_at: None,
    };
    let mut jobs = new
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| {
            Ok(JobRow {
                id: ulid::new()?,
                run_id: run.id.clone(),
                position: i as i64,
                key: j.key.clone(),
                job_id: j.job_id.clone(),
                name: j.name.clone(),
                needs: j.needs.clone(),
                spec: j.spec.clone(),
                status: "waiting".into(),
                outcome: None,
                reason: None,
                attempt: 0,
                cancel_requested: false,
                lease_owner: None,
                lease_expires_at: None,
                queued_at: None,
                started_at: None,
                finished_at: None,
                outputs: json!({}),
                result: Value::Null,
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let backend = store.backend;
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    events::lock_head(conn).await?;
    let next: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(number), 0) + 1 AS n FROM runs WHERE service_key = $1",
    )
    .bind(run.service_key.clone())
    .fetch_one(&mut *conn)
    .await?;
    run.number = next;
    advance_in_memory(&run, &mut jobs, scheduler, &now)?;
    let mut evs = vec![run_event(RUN_QUEUED, &run, json!({}))];
    if let Some(outcome) = finish_outcome(&run, &jobs, scheduler)? {
        finish_in_memory(&mut run, &outcome, &now);
        evs.push(run_event(RUN_FINISHED, &run, json!({})));
    }

    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO runs ({RUN_COLUMNS}, pipeline) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    )))
    .bind(run.id.clone())
    .bind(run.service_key.clone())
    .bind(run.number)
    .bind(run.git_ref.clone())
    .bind(run.sha.clone())
    .bind(run.status.clone())
    .bind(run.outcome.clone())
    .bind(plan)
    .bind(run.trigger.clone())
    .bind(run.actor.clone())
    .bind(0_i64)
    .bind(run.created_at.clone())
    .bind(run.started_at.clone())
    .bind(run.finished_at.clone())
    .bind(settings)
    .execute(&mut *conn)
    .await?;
    let rows: Vec<(&JobRow, &EncodedJob)> = jobs.iter().zip(&encoded).collect();
    for chunk in rows.chunks(sql::rows_per_chunk(15)) {
        let text = format!(
            "INSERT INTO jobs (id, run_id, position, key, job_id, name, needs, spec, status, \
             outcome, reason, queued_at, finished_at, outputs, max_parallel) VALUES {}",
            sql::values(backend, chunk.len(), 15)
        );
        let mut q = sqlx::query(AssertSqlSafe(text));
        for (job, (needs, spec, max_parallel)) in chunk {
            q = q
                .bind(job.id.clone())
                .bind(job.run_id.clone())
                .bind(job.position)
                .bind(job.key.clone())
                .bind(job.job_id.clone())
                .bind(job.name.clone())
                .bind(needs.clone())
                .bind(spec.clone())
                .bind(job.status.clone())
                .bind(job.outcome.clone())
                .bind(job.reason.clone())
                .bind(job.queued_at.clone())
                .bind(job.finished_at.clone())
                .bind("{}".to_string())
                .bind(*max_parallel);
        }
        q.execute(&mut *conn).await?;
    }
    run_graph::insert_needs(conn, backend, &run.id, &jobs).await?;
    tx.append_events(&evs).await?;
    tx.commit().await?;
    Ok(run)
}

/// A new job's `needs` and `spec` as JSON text, and its `max_parallel`.
type EncodedJob = (String, String, Option<i64>);

/// The run-level settings of a plan: every top-level key but `jobs` (a
/// claim reads these, never the jobs).
fn run_settings(plan: &Value) -> Value {
    match plan {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "jobs")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => json!({}),
    }
}

/// Keys are unique and every need names an earlier job of the run (so the
/// jobs are in a topological order and the run cannot wait forever).
fn validate_jobs(new: &NewRun) -> Result<()> {
    if new.jobs.is_empty() {
        return Err(StoreError::Conflict("a run needs at least one job".into()));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, job) in new.jobs.iter().enumerate() {
        for need in &job.needs {
            if !seen.contains_key(need.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "job `{}` needs `{need}`, which is not an earlier job of the run",
                    job.key
                )));
            }
        }
        if seen.insert(&job.key, i).is_some() {
            return Err(StoreError::Conflict(format!(
                "job key `{}` appears twice in one run",
                job.key
            )));
        }
    }
    Ok(())
}

// ------------------------------------------------------ heartbeat, logs

/// Extends the lease of a job held with `token`.
pub(crate) async fn heartbeat(
    store: &Store,
    job_id: &str,
    token: &str,
    lease: Duration,
) -> Result<Heartbeat> {
    let expires = expiry(lease)?;
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    let row = sqlx::query(
        "UPDATE jobs SET lease_expires_at = $1 \
         WHERE id = $2 AND lease_token = $3 AND status = 'running' \
         RETURNING cancel_requested, lease_expires_at",
    )
    .bind(expires)
    .bind(job_id.to_string())
    .bind(token.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(lease_lost(conn, job_id).await);
    };
    let beat = Heartbeat {
        lease_expires_at: sql::get(&row, "lease_expires_at")?,
        cancel_requested: sql::get::<i64>(&row, "cancel_requested")? != 0,
    };
    tx.commit().await?;
    Ok(beat)
}

/// Appends log lines of a job held with `token`; returns the run log's last seq.
pub(crate) async fn append_logs(
    store: &Store,
    job_id: &str,
    token: &str,
    lines: &[NewLogLine],
) -> Result<i64> {
    if let Some(bad) = lines.iter().find(|l| !STREAMS.contains(&l.stream.as_str())) {
        return Err(StoreError::Conflict(format!(
            "log stream `{}` is not one of stdout, stderr, system",
            bad.stream
        )));
    }
    let backend = store.backend;
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let held = sqlx::query(AssertSqlSafe(format!(
        "SELECT run_id, attempt FROM jobs \
         WHERE id = $1 AND lease_token = $2 AND status = 'running'{lock}"
    )))
    .bind(job_id.to_string())
    .bind(token.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(held) = held else {
        return Err(lease_lost(conn, job_id).await);
    };
    let run_id: String = sql::get(&held, "run_id")?;
    let attempt: i64 = sql::get(&held, "attempt")?;
    let n = lines.len() as i64;
    let last: i64 = sqlx::query_scalar(
        "UPDATE runs SET log_seq = log_seq + $1 WHERE id = $2 RETURNING log_seq",
    )
    .bind(n)
    .bind(run_id.clone())
    .fetch_one(&mut *conn)
    .await?;
    let now = time::now();
    let mut seq = last - n;
    for chunk in lines.chunks(sql::rows_per_chunk(8)) {
        let text = format!(
            "INSERT INTO job_logs (run_id, seq, job_id, attempt, step, stream, text, time) VALUES {}",
            sql::values(backend, chunk.len(), 8)
        );
        let mut q = sqlx::query(AssertSqlSafe(text));
        for line in chunk {
            seq += 1;
            q = q
                .bind(run_id.clone())
                .bind(seq)
                .bind(job_id.to_string())
                .bind(attempt)
                .bind(line.step.clone())
                .bind(line.stream.clone())
                .bind(line.text.clone())
                .bind(now.clone());
        }
        q.execute(&mut *conn).await?;
    }
    tx.commit().await?;
    Ok(last)
}

/// Why a call with a lease token found no job running under it.
async fn lease_lost(conn: &mut AnyConnection, job_id: &str) -> StoreError {
    let row = sqlx::query("SELECT status, outcome, attempt FROM jobs WHERE id = $1")
        .bind(job_id.to_string())
        .fetch_optional(&mut *conn)
        .await;
    let row = match row {
        Ok(Some(row)) => row,
        Ok(None) => return StoreError::NotFound(format!("job `{job_id}`")),
        Err(e) => return e.into(),
    };
    let status: String = sql::get(&row, "status").unwrap_or_default();
    let outcome: Option<String> = sql::get(&row, "outcome").unwrap_or_default();
    let attempt: i64 = sql::get(&row, "attempt").unwrap_or_default();
    StoreError::Conflict(match status.as_str() {
        "finished" | "skipped" => format!(
            "job `{job_id}` has already ended ({}); a job completes only once",
            outcome.as_deref().unwrap_or(&status)
        ),
        "running" => {
            format!("the lease on job `{job_id}` is lost: it was claimed again (attempt {attempt})")
        }
        other => format!("job `{job_id}` is {other}, not running under this lease"),
    })
}

// ------------------------------------------------------------- complete

/// Records an agent's report and advances the run (see `Store::complete_job`).
pub(crate) async fn complete(
    store: &Store,
    report: &JobReport,
    scheduler: &dyn Scheduler,
) -> Result<CompletedJob> {
    check_outcome(&report.outcome)?;
    let outputs = serde_json::to_string(&report.outputs)
        .map_err(|e| StoreError::Conflict(format!("outputs: {e}")))?;
    let result = serde_json::to_string(&report.result)
        .map_err(|e| StoreError::Conflict(format!("result: {e}")))?;
    let tests = test_results::reported_tests(&report.result)?;
    let backend = store.backend;
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    serialize_writers(conn, backend).await?;
    let now = time::now();
    let row = sqlx::query(AssertSqlSafe(format!(
        "UPDATE jobs SET status = 'finished', outcome = $1, outputs = $2, result = $3, \
         finished_at = $4, lease_token = NULL, lease_expires_at = NULL \
         WHERE id = $5 AND lease_token = $6 AND status = 'running' RETURNING {JOB_COLUMNS}"
    )))
    .bind(report.outcome.clone())
    .bind(outputs)
    .bind(result)
    .bind(now.clone())
    .bind(report.job_id.clone())
    .bind(report.lease_token.clone())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(lease_lost(conn, &report.job_id).await);
    };
    let job = job_from_row(&row)?;
    let (mut run, _) = fetch_run_light(conn, &job.run_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("job of missing run `{}`", job.run_id)))?;
    let mut evs = vec![job_event(TASK_FINISHED, &run, &job, &report.actor)];
    // Tests are written only here, after the one accepted report.
    evs.extend(test_results::ingest(conn, backend, &run, &job, &tests, &report.actor, &now).await?);
    evs.extend(crate::artifacts::packaged_events(&run, &job, &report.actor));
    let mut queued = 0;
    if run.status != "finished" {
        let mut ended = vec![job.key.clone()];
        ended.extend(run_graph::fail_fast(conn, &run, &job, scheduler, &now).await?);
        queued =
            run_graph::advance_after(conn, backend, &mut run, scheduler, ended, &now, &mut evs)
                .await?;
    }
    tx.append_events(&evs).await?;
    tx.commit().await?;
    Ok(CompletedJob { job, run, queued })
}

/// Applies the scheduler's decisions until no waiting job is ready;
/// returns the indexes of the jobs it changed.
pub(crate) fn advance_in_memory(
    run: &RunRow,
    jobs: &mut [JobRow],
    scheduler: &dyn Scheduler,
    now: &str,
) -> Result<Vec<usize>> {
    let index: HashMap<String, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.key.clone(), i))
        .collect();
    let mut changed = Vec::new();
    loop {
        let ready: Vec<usize> = (0..jobs.len())
            .filter(|&i| {
                jobs[i].status == "waiting"
                    && jobs[i]
                        .needs
                        .iter()
                        .all(|n| index.get(n).is_none_or(|&d| jobs[d].is_terminal()))
            })
            .collect();
        if ready.is_empty() {
            return Ok(changed);
        }
        let decisions = scheduler
            .decide(run, jobs, &ready)
            .map_err(|e| StoreError::Corrupt(format!("run `{}`: scheduler: {e}", run.id)))?;
        if decisions.len() != ready.len() {
            return Err(StoreError::Corrupt(format!(
                "scheduler gave {} decisions for {} jobs",
                decisions.len(),
                ready.len()
            )));
        }
        for (&i, decision) in ready.iter().zip(decisions) {
            let job = &mut jobs[i];
            match decision {
                JobDecision::Queue => {
                    job.status = "queued".into();
                    job.queued_at = Some(now.to_string());
                }
                JobDecision::Conclude { outcome, reason } => {
                    check_outcome(&outcome)?;
                    job.status = if outcome == "skipped" {
                        "skipped"
                    } else {
                        "finished"
                    }
                    .into();
                    job.outcome = Some(outcome);
                    job.reason = Some(reason);
                    job.finished_at = Some(now.to_string());
                }
            }
            changed.push(i);
        }
    }
}

/// The run's outcome when every job has ended, else `None`.
fn finish_outcome(
    run: &RunRow,
    jobs: &[JobRow],
    scheduler: &dyn Scheduler,
) -> Result<Option<String>> {
    if !jobs.iter().all(JobRow::is_terminal) {
        return Ok(None);
    }
    let outcome = scheduler
        .run_outcome(run, jobs)
        .map_err(|e| StoreError::Corrupt(format!("run `{}`: scheduler: {e}", run.id)))?;
    check_outcome(&outcome)?;
    Ok(Some(outcome))
}

pub(crate) fn finish_in_memory(run: &mut RunRow, outcome: &str, now: &str) {
    run.status = "finished".into();
    run.outcome = Some(outcome.to_string());
    run.finished_at = Some(now.to_string());
}

pub(crate) fn check_outcome(outcome: &str) -> Result<()> {
    if OUTCOMES.contains(&outcome) {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "outcome `{outcome}` is not one of success, failure, cancelled, skipped"
        )))
    }
}

// --------------------------------------------------------------- cancel

/// Cancels a run (see `Store::cancel_run`).
pub(crate) async fn cancel(store: &Store, run_id: &str, actor: &str) -> Result<RunRow> {
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    events::lock_head(conn).await?;
    let mut run = match fetch_run_light(conn, run_id).await? {
        Some((run, _)) => run,
        None => return Err(StoreError::NotFound(format!("run `{run_id}`"))),
    };
    if run.status == "finished" {
        return Err(StoreError::Conflict(format!(
            "run `{run_id}` has already finished ({})",
            run.outcome.as_deref().unwrap_or("?")
        )));
    }
    let now = time::now();
    // One statement, so a job claimed meanwhile is seen as running.
    sqlx::query(
        "UPDATE jobs SET \
         status = CASE WHEN status = 'running' THEN status ELSE 'skipped' END, \
         outcome = CASE WHEN status = 'running' THEN outcome ELSE 'cancelled' END, \
         reason = CASE WHEN status = 'running' THEN reason ELSE 'the run was cancelled' END, \
         finished_at = CASE WHEN status = 'running' THEN finished_at ELSE $1 END, \
         cancel_requested = CASE WHEN status = 'running' THEN 1 ELSE cancel_requested END \
         WHERE run_id = $2 AND status IN ('waiting', 'queued', 'running')",
    )
    .bind(now.clone())
    .bind(run.id.clone())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE runs SET status = 'finished', outcome = 'cancelled', cancel_requested = 1, \
         finished_at = $1 WHERE id = $2",
    )
    .bind(now.clone())
    .bind(run.id.clone())
    .execute(&mut *conn)
    .await?;
    finish_in_memory(&mut run, "cancelled", &now);
    run.cancel_requested = true;
    let mut ev = run_event(RUN_FINISHED, &run, json!({ "cancelled_by": actor }));
    ev.actor = actor.to_string();
    tx.append_event(&ev).await?;
    tx.commit().await?;
    Ok(run)
}

// ---------------------------------------------------------------- reads

/// One run with its plan.
pub(crate) async fn get_run(pool: &AnyPool, run_id: &str) -> Result<Option<RunRow>> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"
    )))
    .bind(run_id.to_string())
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(run_from_row)
    .transpose()
}

/// A service's runs, newest first, without their plans.
pub(crate) async fn list_runs(
    pool: &AnyPool,
    service_key: &str,
    limit: Option<i64>,
) -> Result<Vec<RunRow>> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {RUN_LIST_COLUMNS} FROM runs WHERE service_key = $1 ORDER BY number DESC LIMIT $2"
    )))
    .bind(service_key.to_string())
    .bind(limit.unwrap_or(DEFAULT_LIMIT).clamp(0, MAX_LIMIT))
    .fetch_all(pool)
    .await?
    .iter()
    .map(run_from_row)
    .collect()
}

/// A run's jobs in plan order.
pub(crate) async fn list_jobs(pool: &AnyPool, run_id: &str) -> Result<Vec<JobRow>> {
    let mut conn = pool.acquire().await?;
    jobs_of(&mut conn, run_id).await
}

/// One job.
pub(crate) async fn get_job(pool: &AnyPool, job_id: &str) -> Result<Option<JobRow>> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
    )))
    .bind(job_id.to_string())
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(job_from_row)
    .transpose()
}

/// A run's log lines after `after`, in order.
pub(crate) async fn read_logs(
    pool: &AnyPool,
    run_id: &str,
    after: i64,
    limit: Option<i64>,
) -> Result<Vec<LogLineRow>> {
    let rows = sqlx::query(
        "SELECT seq, job_id, attempt, step, stream, text, time FROM job_logs \
         WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(run_id.to_string())
    .bind(after)
    .bind(limit.unwrap_or(DEFAULT_LIMIT).clamp(0, MAX_LIMIT))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(LogLineRow {
                seq: sql::get(r, "seq")?,
                job_id: sql::get(r, "job_id")?,
                attempt: sql::get(r, "attempt")?,
                step: sql::get(r, "step")?,
                stream: sql::get(r, "stream")?,
                text: sql::get(r, "text")?,
                time: sql::get(r, "time")?,
            })
        })
        .collect()
}

pub(crate) async fn jobs_of(conn: &mut AnyConnection, run_id: &str) -> Result<Vec<JobRow>> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = $1 ORDER BY position"
    )))
    .bind(run_id.to_string())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(job_from_row)
    .collect()
}

/// A run without its plan, and its run-level settings (`runs.pipeline`).
pub(crate) async fn fetch_run_light(
    conn: &mut AnyConnection,
    run_id: &str,
) -> Result<Option<(RunRow, Value)>> {
    let Some(row) = sqlx::query(AssertSqlSafe(format!(
        "SELECT {RUN_LIGHT_COLUMNS} FROM runs WHERE id = $1"
    )))
    .bind(run_id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let run = run_from_row(&row)?;
    let settings: String = sql::get(&row, "pipeline")?;
    let settings = sql::json(&settings, &format!("pipeline of run {}", run.id))?;
    Ok(Some((run, settings)))
}

fn run_from_row(row: &AnyRow) -> Result<RunRow> {
    let id: String = sql::get(row, "id")?;
    let plan: String = sql::get(row, "plan")?;
    Ok(RunRow {
        service_key: sql::get(row, "service_key")?,
        number: sql::get(row, "number")?,
        git_ref: sql::get(row, "git_ref")?,
        sha: sql::get(row, "sha")?,
        status: sql::get(row, "status")?,
        outcome: sql::get(row, "outcome")?,
        plan: sql::json(&plan, &format!("plan of run {id}"))?,
        trigger: sql::get(row, "trigger_kind")?,
        actor: sql::get(row, "actor")?,
        cancel_requested: sql::get::<i64>(row, "cancel_requested")? != 0,
        created_at: sql::get(row, "created_at")?,
        started_at: sql::get(row, "started_at")?,
        finished_at: sql::get(row, "finished_at")?,
        id,
    })
}

pub(crate) fn job_from_row(row: &AnyRow) -> Result<JobRow> {
    let id: String = sql::get(row, "id")?;
    let text = |col: &str| -> Result<Value> {
        let s: String = sql::get(row, col)?;
        sql::json(&s, &format!("{col} of job {id}"))
    };
    let needs: Vec<String> = serde_json::from_value(text("needs")?)
        .map_err(|e| StoreError::Corrupt(format!("needs of job {id}: {e}")))?;
    Ok(JobRow {
        run_id: sql::get(row, "run_id")?,
        position: sql::get(row, "position")?,
        key: sql::get(row, "key")?,
        job_id: sql::get(row, "job_id")?,
        name: sql::get(row, "name")?,
        needs,
        spec: text("spec")?,
        status: sql::get(row, "status")?,
        outcome: sql::get(row, "outcome")?,
        reason: sql::get(row, "reason")?,
        attempt: sql::get(row, "attempt")?,
        cancel_requested: sql::get::<i64>(row, "cancel_requested")? != 0,
        lease_owner: sql::get(row, "lease_owner")?,
        lease_expires_at: sql::get(row, "lease_expires_at")?,
        queued_at: sql::get(row, "queued_at")?,
        started_at: sql::get(row, "started_at")?,
        finished_at: sql::get(row, "finished_at")?,
        outputs: text("outputs")?,
        result: text("result")?,
        id,
    })
}

// --------------------------------------------------------------- helpers

/// Orders this transaction after every other writer of runs (see the
/// module doc): on PostgreSQL by locking the event head first; on SQLite
/// `BEGIN IMMEDIATE` already holds the database's one write lock, so the
/// hot paths (claim, report) skip a statement there.
pub(crate) async fn serialize_writers(conn: &mut AnyConnection, backend: Backend) -> Result<()> {
    match backend {
        Backend::Postgres => events::lock_head(conn).await,
        Backend::Sqlite => Ok(()),
    }
}

/// The lease's end, `lease` from now, in the stored time format.
pub(crate) fn expiry(lease: Duration) -> Result<String> {
    let lease = chrono::Duration::from_std(lease)
        .map_err(|_| StoreError::Conflict("lease too long".into()))?;
    chrono::Utc::now()
        .checked_add_signed(lease)
        .map(time::format)
        .ok_or_else(|| StoreError::Conflict("lease too long".into()))
}

/// JSON text of a value the caller handed in.
fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Conflict(format!("{what}: {e}")))
}

/// 128 random bits, hex.
pub(crate) fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        StoreError::Database(sqlx::Error::Io(std::io::Error::other(format!(
            "OS random source failed: {e}"
        ))))
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn run_event(event_type: &str, run: &RunRow, extra: Value) -> NewEvent {
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
        p.extend(e);
    }
    NewEvent {
        event_type: event_type.to_string(),
        subject: format!("run:{}", run.id),
        actor: run.actor.clone(),
        payload,
    }
}

pub(crate) fn job_event(event_type: &str, run: &RunRow, job: &JobRow, actor: &str) -> NewEvent {
    NewEvent {
        event_type: event_type.to_string(),
        subject: format!("job:{}", job.id),
        actor: actor.to_string(),
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
