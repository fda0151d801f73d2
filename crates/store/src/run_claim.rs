//! Claiming jobs under a lease (up to N in one transaction), handing a
//! job back (`release`), and ending the jobs of cancelled runs whose agent
//! vanished. See runs.rs for the state machine and the locking order.
//!
//! A claim touches O(1) rows per job: the pick walks the `jobs_active`
//! index in queue order (jobs whose lease expired first), a matrix leg is
//! skipped while `max_parallel` of its siblings are running, and the run is
//! read without its plan (`runs.pipeline` holds the run-level settings).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{AnyConnection, AssertSqlSafe};

use crate::runs::{
    JOB_COLUMNS, RUN_STARTED, TASK_FINISHED, TASK_STARTED, expiry, fetch_run_light, job_event,
    job_from_row, random_token, run_event, serialize_writers,
};
use crate::{
    Backend, ClaimedJob, JobReport, JobRow, NewEvent, Result, RunRow, Scheduler, Store, StoreError,
    run_graph, time,
};

/// Most jobs one claim may take.
pub const MAX_CLAIM_BATCH: usize = 100;

/// Conditions on a candidate row `c` besides its status: not cancelled, run
/// by agents (local jobs belong to `pave run`, see local_runs.rs), and not a
/// matrix leg whose `max_parallel` siblings are running already.
const CLAIMABLE: &str = "c.cancel_requested = 0 AND c.executor = 'agent' \
     AND (c.max_parallel IS NULL OR (SELECT COUNT(*) FROM jobs r \
         WHERE r.run_id = c.run_id AND r.job_id = c.job_id AND r.status = 'running' \
         AND r.id <> c.id) < c.max_parallel)";

/// What a claim may find, from a cheap read first (so idle pollers do not
/// write, and busy ones skip the statements for expired leases).
#[derive(PartialEq)]
enum Outlook {
    Nothing,
    /// Only queued jobs.
    Queued,
    /// A running job whose lease expired (to reap or re-claim), maybe more.
    Expired,
}

async fn outlook(store: &Store, now: &str) -> Result<Outlook> {
    let status: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT c.status FROM jobs c WHERE c.status = 'running' AND c.lease_expires_at < $1 \
         UNION ALL \
         SELECT c.status FROM jobs c WHERE c.status = 'queued' AND {CLAIMABLE} \
         LIMIT 1"
    )))
    .bind(now.to_string())
    .fetch_optional(&store.pool)
    .await?;
    Ok(match status.as_deref() {
        None => Outlook::Nothing,
        Some("running") => Outlook::Expired,
        Some(_) => Outlook::Queued,
    })
}

/// Claims up to `max` runnable jobs for `agent` in one transaction (see
/// `Store::claim_jobs`). Without a scheduler, only jobs of finished runs
/// are reaped (ending others must advance their run).
pub(crate) async fn claim(
    store: &Store,
    agent: &str,
    actor: &str,
    lease: Duration,
    max: usize,
    scheduler: Option<&dyn Scheduler>,
) -> Result<Vec<ClaimedJob>> {
    let max = max.clamp(1, MAX_CLAIM_BATCH);
    let outlook = outlook(store, &time::now()).await?;
    if outlook == Outlook::Nothing {
        return Ok(Vec::new());
    }
    let mut tx = store.begin().await?;
    let backend = tx.backend();
    let conn = tx.connection();
    serialize_writers(conn, backend).await?;
    let now = time::now();
    let expires = expiry(lease)?;
    // A lease that expires after the read above is seen by the next claim.
    let expired = outlook == Outlook::Expired;
    let mut evs = if expired {
        reap_cancelled(conn, backend, &now, actor, scheduler).await?
    } else {
        Vec::new()
    };
    let mut runs: HashMap<String, (RunRow, Value)> = HashMap::new();
    let mut claimed = Vec::new();
    while claimed.len() < max {
        let token = random_token()?;
        let Some(job) = pick(conn, backend, agent, &token, &expires, &now, expired).await? else {
            break;
        };
        if !runs.contains_key(&job.run_id) {
            let loaded = fetch_run_light(conn, &job.run_id).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("job of missing run `{}`", job.run_id))
            })?;
            runs.insert(job.run_id.clone(), loaded);
        }
        let Some((run, pipeline)) = runs.get_mut(&job.run_id) else {
            continue;
        };
        if run.status == "queued" {
            sqlx::query("UPDATE runs SET status = 'running', started_at = $1 WHERE id = $2")
                .bind(now.clone())
                .bind(run.id.clone())
                .execute(&mut *conn)
                .await?;
            run.status = "running".into();
            run.started_at = Some(now.clone());
            evs.push(run_event(RUN_STARTED, run, json!({})));
        }
        evs.push(job_event(TASK_STARTED, run, &job, actor));
        claimed.push(ClaimedJob {
            job,
            run: run.clone(),
            pipeline: pipeline.clone(),
            lease_token: token,
        });
    }
    if evs.is_empty() {
        tx.rollback().await?;
    } else {
        tx.append_events(&evs).await?;
        tx.commit().await?;
    }
    Ok(claimed)
}

/// Leases the next job: one whose lease expired first (it was started
/// already; only looked for when `expired` ones were seen), else the
/// longest-queued one.
async fn pick(
    conn: &mut AnyConnection,
    backend: Backend,
    agent: &str,
    token: &str,
    expires: &str,
    now: &str,
    expired: bool,
) -> Result<Option<JobRow>> {
    let skip_locked = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let candidates: &[&str] = if expired {
        &[
            "c.status = 'running' AND c.lease_expires_at < $4",
            "c.status = 'queued'",
        ]
    } else {
        &["c.status = 'queued'"]
    };
    for candidates in candidates {
        let picked = sqlx::query(AssertSqlSafe(format!(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_owner = $1, \
             lease_token = $2, lease_expires_at = $3, started_at = $4 \
             WHERE id = (SELECT c.id FROM jobs c WHERE {candidates} AND {CLAIMABLE} \
             ORDER BY c.queued_at, c.id LIMIT 1{skip_locked}) \
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(agent.to_string())
        .bind(token.to_string())
        .bind(expires.to_string())
        .bind(now.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = picked {
            return job_from_row(&row).map(Some);
        }
    }
    Ok(None)
}

/// Ends the jobs whose run asked them to stop (run cancelled, or a failed
/// matrix sibling) and whose agent stopped answering, as `cancelled`; with
/// a scheduler their runs advance. Returns their events.
async fn reap_cancelled(
    conn: &mut AnyConnection,
    backend: Backend,
    now: &str,
    actor: &str,
    scheduler: Option<&dyn Scheduler>,
) -> Result<Vec<NewEvent>> {
    let only_finished_runs = match scheduler {
        Some(_) => "",
        None => " AND run_id IN (SELECT id FROM runs WHERE status = 'finished')",
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "UPDATE jobs SET status = 'finished', outcome = 'cancelled', \
         reason = 'cancellation was requested and the agent stopped answering', \
         finished_at = $1, lease_token = NULL \
         WHERE status = 'running' AND cancel_requested = 1 AND lease_expires_at < $1\
         {only_finished_runs} RETURNING {JOB_COLUMNS}"
    )))
    .bind(now.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut evs = Vec::with_capacity(rows.len());
    let mut ended: Vec<(String, Vec<String>)> = Vec::new();
    for row in &rows {
        let job = job_from_row(row)?;
        let (run, _) = fetch_run_light(conn, &job.run_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("job of missing run `{}`", job.run_id)))?;
        evs.push(job_event(TASK_FINISHED, &run, &job, actor));
        match ended.iter_mut().find(|(id, _)| *id == job.run_id) {
            Some((_, keys)) => keys.push(job.key),
            None => ended.push((job.run_id, vec![job.key])),
        }
    }
    if let Some(scheduler) = scheduler {
        for (run_id, keys) in ended {
            let Some((mut run, _)) = fetch_run_light(conn, &run_id).await? else {
                continue;
            };
            if run.status != "finished" {
                run_graph::advance_after(conn, backend, &mut run, scheduler, keys, now, &mut evs)
                    .await?;
            }
        }
    }
    Ok(evs)
}

/// Hands a held job back (see `Store::release_job`): queued again at once
/// (keeping its place in the queue), or ended `cancelled` when its run
/// asked it to stop. Returns the job as it is now.
pub(crate) async fn release(
    store: &Store,
    job_id: &str,
    token: &str,
    actor: &str,
    scheduler: &dyn Scheduler,
) -> Result<JobRow> {
    // No event: like a lease that expired, the next claim's
    // `taskrun.started` (with the next attempt number) tells the story.
    let mut tx = store.begin().await?;
    let conn = tx.connection();
    let row = sqlx::query(AssertSqlSafe(format!(
        "UPDATE jobs SET status = 'queued', lease_token = NULL, lease_expires_at = NULL, \
         started_at = NULL \
         WHERE id = $1 AND lease_token = $2 AND status = 'running' AND cancel_requested = 0 \
         AND executor = 'agent' RETURNING {JOB_COLUMNS}"
    )))
    .bind(job_id.to_string())
    .bind(token.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = row {
        let job = job_from_row(&row)?;
        tx.commit().await?;
        return Ok(job);
    }
    tx.rollback().await?;
    // Not re-queueable: a job asked to stop ends as cancelled (as if its
    // agent had stopped it); anything else is a lost lease (409).
    let report = JobReport {
        job_id: job_id.to_string(),
        lease_token: token.to_string(),
        outcome: "cancelled".into(),
        outputs: json!({}),
        result: json!({ "message": "the agent stopped before the job ended" }),
        actor: actor.to_string(),
    };
    let done = crate::runs::complete(store, &report, scheduler).await?;
    Ok(done.job)
}
