//! Advancing a run after some of its jobs ended, touching only the rows
//! that matter: the jobs waiting for the ended ones are found through the
//! `job_needs` index, each is decided once none of its needs is live, and
//! the rows a decision reads are that job and its ancestors. Whether the
//! run has ended is one index probe; only then are all its jobs read (once,
//! for the run's outcome). Also: a matrix's fail-fast (cancel the unfinished
//! siblings of a failed leg), and a full recompute when a run would
//! otherwise stall (a job ended by a path that did not advance it).
//!
//! Everything here runs inside the caller's transaction, after it locked
//! the event head (see runs.rs).

use std::collections::HashSet;

use sqlx::{AnyConnection, AssertSqlSafe};

use crate::runs::{
    JOB_COLUMNS, advance_in_memory, check_outcome, finish_in_memory, job_from_row, run_event,
};
use crate::{Backend, JobDecision, JobRow, NewEvent, Result, RunRow, Scheduler, StoreError};

const RUN_FINISHED: &str = "dev.cdevents.pipelinerun.finished.0.2.0";
/// Keys per `IN (...)` list, well below both engines' bind limits.
const KEYS_PER_STATEMENT: usize = 500;

/// Placeholder `n` (1-based) of a statement with numbered binds; SQLite
/// gets `?` (binds are then in order, so a repeated value is bound again).
fn ph(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => "?".into(),
        Backend::Postgres => format!("${n}"),
    }
}

/// Advances `run` after the jobs `ended` (keys) became terminal: cancels
/// fail-fast siblings of `failed_leg` first (when given), decides the jobs
/// that became ready (transitively: a job concluded without running may
/// make others ready), and finishes the run when no job is live. Returns
/// how many jobs were queued.
pub(crate) async fn advance_after(
    conn: &mut AnyConnection,
    backend: Backend,
    run: &mut RunRow,
    scheduler: &dyn Scheduler,
    ended: Vec<String>,
    now: &str,
    evs: &mut Vec<NewEvent>,
) -> Result<usize> {
    let mut queued = 0;
    let mut ended = ended;
    while !ended.is_empty() {
        let ready = ready_dependents(conn, &run.id, &ended).await?;
        ended.clear();
        for chunk in ready.chunks(KEYS_PER_STATEMENT) {
            let (q, concluded) = decide(conn, backend, run, scheduler, chunk, now).await?;
            queued += q;
            ended.extend(concluded);
        }
    }
    if has_live_jobs(conn, &run.id, "('queued', 'running')").await? {
        return Ok(queued);
    }
    if has_live_jobs(conn, &run.id, "('waiting')").await? {
        // Nothing can end any more, yet jobs wait: a job ended without
        // advancing the run. Decide from the whole run, as a last resort.
        queued += advance_all(conn, run, scheduler, now).await?;
        if has_live_jobs(conn, &run.id, "('waiting', 'queued', 'running')").await? {
            return Ok(queued);
        }
    }
    finish(conn, run, scheduler, now, evs).await?;
    Ok(queued)
}

/// When `job` (just ended with its reported outcome) is a matrix leg whose
/// failure cancels its siblings, ends the siblings that have not started
/// (`cancelled`) and asks the running ones to stop; returns the keys of
/// the jobs it ended.
pub(crate) async fn fail_fast(
    conn: &mut AnyConnection,
    run: &RunRow,
    job: &JobRow,
    scheduler: &dyn Scheduler,
    now: &str,
) -> Result<Vec<String>> {
    let reason = scheduler
        .fail_fast(run, job)
        .map_err(|e| StoreError::Corrupt(format!("run `{}`: scheduler: {e}", run.id)))?;
    let Some(reason) = reason else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(
        "UPDATE jobs SET status = 'skipped', outcome = 'cancelled', reason = $1, \
         finished_at = $2 \
         WHERE run_id = $3 AND job_id = $4 AND status IN ('waiting', 'queued') RETURNING key",
    )
    .bind(reason)
    .bind(now.to_string())
    .bind(run.id.clone())
    .bind(job.job_id.clone())
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE jobs SET cancel_requested = 1 \
         WHERE run_id = $1 AND job_id = $2 AND status = 'running' AND id <> $3",
    )
    .bind(run.id.clone())
    .bind(job.job_id.clone())
    .bind(job.id.clone())
    .execute(&mut *conn)
    .await?;
    rows.iter().map(|r| crate::sql::get(r, "key")).collect()
}

/// The waiting jobs that need one of `ended` and have no live need left.
async fn ready_dependents(
    conn: &mut AnyConnection,
    run_id: &str,
    ended: &[String],
) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut ready = Vec::new();
    for key in ended {
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT e.job_key FROM job_needs e \
             JOIN jobs j ON j.run_id = e.run_id AND j.key = e.job_key \
             WHERE e.run_id = $1 AND e.need_key = $2 AND j.status = 'waiting' \
             AND NOT EXISTS (SELECT 1 FROM job_needs m \
                 JOIN jobs d ON d.run_id = m.run_id AND d.key = m.need_key \
                 WHERE m.run_id = e.run_id AND m.job_key = e.job_key \
                 AND d.status IN ('waiting', 'queued', 'running'))",
        )
        .bind(run_id.to_string())
        .bind(key.clone())
        .fetch_all(&mut *conn)
        .await?;
        for k in keys {
            if seen.insert(k.clone()) {
                ready.push(k);
            }
        }
    }
    Ok(ready)
}

/// Decides the `ready` jobs with the scheduler, seeing them and every job
/// they depend on (transitively); writes the decisions. Returns how many
/// were queued and the keys of those concluded without running.
async fn decide(
    conn: &mut AnyConnection,
    backend: Backend,
    run: &RunRow,
    scheduler: &dyn Scheduler,
    ready: &[String],
    now: &str,
) -> Result<(usize, Vec<String>)> {
    // Binds: run id, the keys, the run id again, the keys again (SQLite
    // `?` cannot refer back).
    let n = ready.len();
    let list = |from: usize| -> String {
        (0..n)
            .map(|i| ph(backend, from + i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "WITH RECURSIVE need(k) AS ( \
           SELECT need_key FROM job_needs WHERE run_id = {run1} AND job_key IN ({keys1}) \
           UNION \
           SELECT e.need_key FROM job_needs e JOIN need ON e.job_key = need.k \
           WHERE e.run_id = {run2} \
         ) \
         SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = {run3} \
         AND (key IN (SELECT k FROM need) OR key IN ({keys2})) ORDER BY position",
        run1 = ph(backend, 1),
        keys1 = list(2),
        run2 = ph(backend, n + 2),
        run3 = ph(backend, n + 3),
        keys2 = list(n + 4),
    );
    let mut q = sqlx::query(AssertSqlSafe(text)).bind(run.id.clone());
    for k in ready {
        q = q.bind(k.clone());
    }
    q = q.bind(run.id.clone()).bind(run.id.clone());
    for k in ready {
        q = q.bind(k.clone());
    }
    let jobs = q
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(job_from_row)
        .collect::<Result<Vec<JobRow>>>()?;
    let wanted: HashSet<&str> = ready.iter().map(String::as_str).collect();
    let indexes: Vec<usize> = (0..jobs.len())
        .filter(|&i| wanted.contains(jobs[i].key.as_str()) && jobs[i].status == "waiting")
        .collect();
    if indexes.is_empty() {
        return Ok((0, Vec::new()));
    }
    let decisions = scheduler
        .decide(run, &jobs, &indexes)
        .map_err(|e| StoreError::Corrupt(format!("run `{}`: scheduler: {e}", run.id)))?;
    if decisions.len() != indexes.len() {
        return Err(StoreError::Corrupt(format!(
            "scheduler gave {} decisions for {} jobs",
            decisions.len(),
            indexes.len()
        )));
    }
    let mut queued = 0;
    let mut concluded = Vec::new();
    for (&i, decision) in indexes.iter().zip(decisions) {
        let job = &jobs[i];
        let (status, outcome, reason, queued_at, finished_at) = match decision {
            JobDecision::Queue => {
                queued += 1;
                ("queued", None, None, Some(now.to_string()), None)
            }
            JobDecision::Conclude { outcome, reason } => {
                check_outcome(&outcome)?;
                concluded.push(job.key.clone());
                let status = if outcome == "skipped" {
                    "skipped"
                } else {
                    "finished"
                };
                (
                    status,
                    Some(outcome),
                    Some(reason),
                    None,
                    Some(now.to_string()),
                )
            }
        };
        sqlx::query(
            "UPDATE jobs SET status = $1, outcome = $2, reason = $3, queued_at = $4, \
             finished_at = $5 WHERE id = $6 AND status = 'waiting'",
        )
        .bind(status.to_string())
        .bind(outcome)
        .bind(reason)
        .bind(queued_at)
        .bind(finished_at)
        .bind(job.id.clone())
        .execute(&mut *conn)
        .await?;
    }
    Ok((queued, concluded))
}

/// Whether the run has a job in one of `statuses` (an SQL list literal).
async fn has_live_jobs(conn: &mut AnyConnection, run_id: &str, statuses: &str) -> Result<bool> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT id FROM jobs WHERE run_id = $1 AND status IN {statuses} LIMIT 1"
    )))
    .bind(run_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

/// Decides every ready waiting job from the whole run (the pre-index way).
async fn advance_all(
    conn: &mut AnyConnection,
    run: &RunRow,
    scheduler: &dyn Scheduler,
    now: &str,
) -> Result<usize> {
    let mut jobs = crate::runs::jobs_of(&mut *conn, &run.id).await?;
    let changed = advance_in_memory(run, &mut jobs, scheduler, now)?;
    let mut queued = 0;
    for &i in &changed {
        let job = &jobs[i];
        queued += usize::from(job.status == "queued");
        sqlx::query(
            "UPDATE jobs SET status = $1, outcome = $2, reason = $3, queued_at = $4, \
             finished_at = $5 WHERE id = $6 AND status = 'waiting'",
        )
        .bind(job.status.clone())
        .bind(job.outcome.clone())
        .bind(job.reason.clone())
        .bind(job.queued_at.clone())
        .bind(job.finished_at.clone())
        .bind(job.id.clone())
        .execute(&mut *conn)
        .await?;
    }
    Ok(queued)
}

/// Finishes a run none of whose jobs is live: its outcome from every job.
async fn finish(
    conn: &mut AnyConnection,
    run: &mut RunRow,
    scheduler: &dyn Scheduler,
    now: &str,
    evs: &mut Vec<NewEvent>,
) -> Result<()> {
    let jobs = crate::runs::jobs_of(&mut *conn, &run.id).await?;
    if !jobs.iter().all(JobRow::is_terminal) {
        return Ok(());
    }
    let outcome = scheduler
        .run_outcome(run, &jobs)
        .map_err(|e| StoreError::Corrupt(format!("run `{}`: scheduler: {e}", run.id)))?;
    check_outcome(&outcome)?;
    finish_in_memory(run, &outcome, now);
    sqlx::query(
        "UPDATE runs SET status = 'finished', outcome = $1, finished_at = $2 WHERE id = $3",
    )
    .bind(outcome)
    .bind(now.to_string())
    .bind(run.id.clone())
    .execute(&mut *conn)
    .await?;
    evs.push(run_event(RUN_FINISHED, run, serde_json::json!({})));
    Ok(())
}

/// Writes a new run's needs edges (inside `create`'s transaction).
pub(crate) async fn insert_needs(
    conn: &mut AnyConnection,
    backend: Backend,
    run_id: &str,
    jobs: &[JobRow],
) -> Result<()> {
    let edges: Vec<(&str, &str)> = jobs
        .iter()
        .flat_map(|j| {
            let mut needs: Vec<&str> = j.needs.iter().map(String::as_str).collect();
            needs.sort_unstable();
            needs.dedup();
            needs.into_iter().map(move |n| (j.key.as_str(), n))
        })
        .collect();
    for chunk in edges.chunks(crate::sql::rows_per_chunk(3)) {
        let text = format!(
            "INSERT INTO job_needs (run_id, job_key, need_key) VALUES {}",
            crate::sql::values(backend, chunk.len(), 3)
        );
        let mut q = sqlx::query(AssertSqlSafe(text));
        for (job, need) in chunk {
            q = q
                .bind(run_id.to_string())
                .bind(job.to_string())
                .bind(need.to_string());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The jobs `key` (of run `run_id`) needs directly, in plan order.
pub(crate) async fn needed_jobs(
    pool: &sqlx::AnyPool,
    run_id: &str,
    key: &str,
) -> Result<Vec<JobRow>> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = $1 AND key IN \
         (SELECT need_key FROM job_needs WHERE run_id = $1 AND job_key = $2) ORDER BY position"
    )))
    .bind(run_id.to_string())
    .bind(key.to_string())
    .fetch_all(pool)
    .await?
    .iter()
    .map(job_from_row)
    .collect()
}
