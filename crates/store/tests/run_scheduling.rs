//! Scheduling in the store, on SQLite and PostgreSQL: a run advances by
//! its needs index (fan-out, fan-in, skip cascades), agents claim several
//! jobs at once, a matrix's max-parallel and fail-fast hold, a released job
//! is queued again at once, and runs created before migration 0006 keep
//! working after it (backfill).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::each_db;
use pave_store::{
    ClaimedJob, JobDecision, JobReport, JobRow, NewJob, NewRun, RunRow, Scheduler, Store,
    StoreError,
};
use serde_json::{Value, json};

const LEASE: Duration = Duration::from_secs(30);

/// GitHub-like rules on a tiny spec: a job runs when every job it needs
/// succeeded; legs with `{"max_parallel": N}` / `{"fail_fast": true}`.
struct Legs;

impl Scheduler for Legs {
    fn decide(
        &self,
        _run: &RunRow,
        jobs: &[JobRow],
        ready: &[usize],
    ) -> Result<Vec<JobDecision>, String> {
        ready
            .iter()
            .map(|&i| {
                let job = &jobs[i];
                let mut ok = true;
                for need in &job.needs {
                    let row = jobs
                        .iter()
                        .find(|j| &j.key == need)
                        .ok_or(format!("`{need}` was not handed to decide"))?;
                    ok &= row.outcome.as_deref() == Some("success");
                }
                Ok(if ok {
                    JobDecision::Queue
                } else {
                    JobDecision::Conclude {
                        outcome: "skipped".into(),
                        reason: "a needed job did not succeed".into(),
                    }
                })
            })
            .collect()
    }

    fn run_outcome(&self, _run: &RunRow, jobs: &[JobRow]) -> Result<String, String> {
        let has = |o: &str| jobs.iter().any(|j| j.outcome.as_deref() == Some(o));
        Ok(if has("failure") {
            "failure"
        } else if has("cancelled") {
            "cancelled"
        } else {
            "success"
        }
        .into())
    }

    fn max_parallel(&self, job: &NewJob) -> Result<Option<u32>, String> {
        Ok(job.spec["max_parallel"].as_u64().map(|n| n as u32))
    }

    fn fail_fast(&self, _run: &RunRow, job: &JobRow) -> Result<Option<String>, String> {
        let failed = job.outcome.as_deref() == Some("failure");
        Ok((failed && job.spec["fail_fast"] == json!(true))
            .then(|| format!("cancelled by fail-fast: `{}` failed", job.key)))
    }
}

fn job(key: &str, job_id: &str, needs: &[&str], spec: Value) -> NewJob {
    NewJob {
        key: key.into(),
        job_id: job_id.into(),
        name: key.into(),
        needs: needs.iter().map(|s| s.to_string()).collect(),
        spec,
    }
}

fn new_run(jobs: Vec<NewJob>) -> NewRun {
    NewRun {
        service_key: "component:default/sched".into(),
        git_ref: "refs/heads/main".into(),
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        plan: json!({
            "name": "ci",
            "env": { "GREETING": "hi" },
            "jobs": jobs.iter().map(|j| j.spec.clone()).collect::<Vec<_>>(),
        }),
        trigger: "api".into(),
        actor: "token:test(dev)".into(),
        jobs,
    }
}

async fn claim(store: &Store, max: usize) -> Vec<ClaimedJob> {
    store
        .claim_jobs("agent", "token:a(agent)", LEASE, max, &Legs)
        .await
        .expect("claim")
}

async fn complete(store: &Store, c: &ClaimedJob, outcome: &str) -> Result<usize, StoreError> {
    store
        .complete_job(
            &JobReport {
                job_id: c.job.id.clone(),
                lease_token: c.lease_token.clone(),
                outcome: outcome.into(),
                outputs: json!({}),
                result: json!({}),
                actor: "token:a(agent)".into(),
            },
            &Legs,
        )
        .await
        .map(|done| done.queued)
}

async fn jobs_by_key(store: &Store, run_id: &str) -> HashMap<String, JobRow> {
    store
        .list_jobs(run_id)
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| (j.key.clone(), j))
        .collect()
}

fn keys(claimed: &[ClaimedJob]) -> Vec<&str> {
    claimed.iter().map(|c| c.job.key.as_str()).collect()
}

async fn run_status(store: &Store, run_id: &str) -> (String, Option<String>) {
    let run = store.get_run(run_id).await.unwrap().unwrap();
    (run.status, run.outcome)
}

#[tokio::test]
async fn fan_out_and_fan_in_advance_by_the_needs_index() {
    each_db(|db| async move {
        let store = db.open().await;
        let run = store
            .create_run(
                &new_run(vec![
                    job("build", "build", &[], json!({})),
                    job("leg 1", "test", &["build"], json!({})),
                    job("leg 2", "test", &["build"], json!({})),
                    job("leg 3", "test", &["build"], json!({})),
                    job("ship", "ship", &["leg 1", "leg 2", "leg 3"], json!({})),
                    job("notify", "notify", &["ship"], json!({})),
                ]),
                &Legs,
            )
            .await
            .unwrap();
        let build = claim(&store, 5).await;
        assert_eq!(keys(&build), ["build"], "only the root is queued");
        assert_eq!(build[0].pipeline["env"]["GREETING"], "hi");
        assert_eq!(
            build[0].pipeline.get("jobs"),
            None,
            "claims carry no jobs list"
        );
        assert_eq!(complete(&store, &build[0], "success").await.unwrap(), 3);

        let legs = claim(&store, 5).await;
        assert_eq!(
            keys(&legs),
            ["leg 1", "leg 2", "leg 3"],
            "one claim, three jobs"
        );
        let tokens: std::collections::HashSet<&str> =
            legs.iter().map(|c| c.lease_token.as_str()).collect();
        assert_eq!(tokens.len(), 3, "each job has its own lease token");
        assert_eq!(complete(&store, &legs[0], "success").await.unwrap(), 0);
        assert_eq!(complete(&store, &legs[2], "success").await.unwrap(), 0);
        assert!(claim(&store, 5).await.is_empty(), "ship waits for leg 2");
        let needed = store.list_needed_jobs(&run.id, "ship").await.unwrap();
        assert_eq!(
            needed.iter().map(|j| j.key.as_str()).collect::<Vec<_>>(),
            ["leg 1", "leg 2", "leg 3"]
        );
        // The last leg fails: ship and, transitively, notify are skipped in
        // the same report, and the run finishes.
        assert_eq!(complete(&store, &legs[1], "failure").await.unwrap(), 0);
        let jobs = jobs_by_key(&store, &run.id).await;
        assert_eq!(jobs["ship"].status, "skipped");
        assert_eq!(jobs["notify"].status, "skipped");
        assert_eq!(
            run_status(&store, &run.id).await,
            ("finished".into(), Some("failure".into()))
        );
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}

#[tokio::test]
async fn max_parallel_limits_the_leased_legs_of_a_matrix_job() {
    each_db(|db| async move {
        let store = db.open().await;
        let leg = json!({ "max_parallel": 2 });
        let run = store
            .create_run(
                &new_run(vec![
                    job("t (n=1)", "t", &[], leg.clone()),
                    job("t (n=2)", "t", &[], leg.clone()),
                    job("t (n=3)", "t", &[], leg.clone()),
                    job("t (n=4)", "t", &[], leg.clone()),
                    job("lint", "lint", &[], json!({})),
                ]),
                &Legs,
            )
            .await
            .unwrap();
        let first = claim(&store, 10).await;
        assert_eq!(
            keys(&first),
            ["t (n=1)", "t (n=2)", "lint"],
            "two legs at most; other jobs are not held up"
        );
        assert!(claim(&store, 10).await.is_empty());
        complete(&store, &first[0], "success").await.unwrap();
        let next = claim(&store, 10).await;
        assert_eq!(keys(&next), ["t (n=3)"], "a finished leg frees one place");
        assert!(
            claim(&store, 1).await.is_empty(),
            "n=4 waits while n=2 and n=3 run"
        );
        for c in [&first[1], &first[2], &next[0]] {
            complete(&store, c, "success").await.unwrap();
        }
        let last = claim(&store, 10).await;
        assert_eq!(keys(&last), ["t (n=4)"]);
        complete(&store, &last[0], "success").await.unwrap();
        assert_eq!(
            run_status(&store, &run.id).await,
            ("finished".into(), Some("success".into()))
        );
    })
    .await;
}

#[tokio::test]
async fn fail_fast_cancels_the_unfinished_legs_of_a_failed_matrix_job() {
    each_db(|db| async move {
        let store = db.open().await;
        let leg = json!({ "fail_fast": true, "max_parallel": 2 });
        let run = store
            .create_run(
                &new_run(vec![
                    job("t (n=1)", "t", &[], leg.clone()),
                    job("t (n=2)", "t", &[], leg.clone()),
                    job("t (n=3)", "t", &[], leg.clone()),
                    job(
                        "after",
                        "after",
                        &["t (n=1)", "t (n=2)", "t (n=3)"],
                        json!({}),
                    ),
                ]),
                &Legs,
            )
            .await
            .unwrap();
        let running = claim(&store, 10).await;
        assert_eq!(keys(&running), ["t (n=1)", "t (n=2)"]);
        complete(&store, &running[0], "failure").await.unwrap();

        let jobs = jobs_by_key(&store, &run.id).await;
        let queued_leg = &jobs["t (n=3)"];
        assert_eq!(
            (queued_leg.status.as_str(), queued_leg.outcome.as_deref()),
            ("skipped", Some("cancelled")),
            "the leg that had not started is cancelled"
        );
        assert_eq!(queued_leg.attempt, 0);
        assert!(
            queued_leg
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("fail-fast") && r.contains("t (n=1)")),
            "{queued_leg:?}"
        );
        assert!(
            jobs["t (n=2)"].cancel_requested,
            "the running leg is told to stop"
        );
        assert_eq!(jobs["t (n=2)"].status, "running");
        let beat = store
            .heartbeat(&running[1].job.id, &running[1].lease_token, LEASE)
            .await
            .unwrap();
        assert!(beat.cancel_requested);
        assert!(claim(&store, 10).await.is_empty(), "nothing left to run");
        assert_eq!(run_status(&store, &run.id).await.0, "running");

        complete(&store, &running[1], "cancelled").await.unwrap();
        let jobs = jobs_by_key(&store, &run.id).await;
        assert_eq!(jobs["after"].status, "skipped");
        assert_eq!(
            run_status(&store, &run.id).await,
            ("finished".into(), Some("failure".into()))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leg_whose_agent_vanished_is_reaped_and_the_run_finishes() {
    each_db(|db| async move {
        let store = db.open().await;
        let leg = json!({ "fail_fast": true });
        let run = store
            .create_run(
                &new_run(vec![
                    job("t (n=1)", "t", &[], leg.clone()),
                    job("t (n=2)", "t", &[], leg.clone()),
                ]),
                &Legs,
            )
            .await
            .unwrap();
        let failing = claim(&store, 1).await;
        let vanishing = store
            .claim_jobs("agent-2", "a", Duration::from_secs(1), 1, &Legs)
            .await
            .unwrap();
        assert_eq!(keys(&vanishing), ["t (n=2)"]);
        complete(&store, &failing[0], "failure").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        assert!(claim(&store, 1).await.is_empty(), "reaped, not handed out");
        let jobs = jobs_by_key(&store, &run.id).await;
        assert_eq!(jobs["t (n=2)"].outcome.as_deref(), Some("cancelled"));
        assert_eq!(
            run_status(&store, &run.id).await,
            ("finished".into(), Some("failure".into()))
        );
    })
    .await;
}

#[tokio::test]
async fn a_released_job_is_queued_again_at_once_and_reclaimed() {
    each_db(|db| async move {
        let store = db.open().await;
        let run = store
            .create_run(
                &new_run(vec![
                    job("a", "a", &[], json!({})),
                    job("b", "b", &[], json!({})),
                ]),
                &Legs,
            )
            .await
            .unwrap();
        let held = claim(&store, 1).await;
        assert_eq!(keys(&held), ["a"]);
        let wrong = store.release_job(&held[0].job.id, "nope", "a", &Legs).await;
        assert!(matches!(wrong, Err(StoreError::Conflict(_))), "{wrong:?}");
        let released = store
            .release_job(&held[0].job.id, &held[0].lease_token, "a", &Legs)
            .await
            .unwrap();
        assert_eq!(released.status, "queued");
        assert_eq!(released.lease_expires_at, None);
        // The old token is dead; the job keeps its place in the queue.
        assert!(matches!(
            complete(&store, &held[0], "success").await,
            Err(StoreError::Conflict(_))
        ));
        let again = claim(&store, 1).await;
        assert_eq!(keys(&again), ["a"]);
        assert_eq!(again[0].job.attempt, 2);

        // A job its run asked to stop ends `cancelled` instead.
        store.cancel_run(&run.id, "someone").await.unwrap();
        let ended = store
            .release_job(&again[0].job.id, &again[0].lease_token, "a", &Legs)
            .await
            .unwrap();
        assert_eq!(
            (ended.status.as_str(), ended.outcome.as_deref()),
            ("finished", Some("cancelled"))
        );
    })
    .await;
}

#[tokio::test]
async fn claim_batches_are_bounded() {
    each_db(|db| async move {
        let store = db.open().await;
        let jobs = (0..120)
            .map(|i| job(&format!("j{i}"), &format!("j{i}"), &[], json!({})))
            .collect();
        store.create_run(&new_run(jobs), &Legs).await.unwrap();
        assert_eq!(
            claim(&store, 1_000).await.len(),
            pave_store::MAX_CLAIM_BATCH
        );
        assert_eq!(claim(&store, 0).await.len(), 1, "at least one");
    })
    .await;
}

/// Puts a database back to the schema before migration 0006 (its tables,
/// columns and indexes gone, the version unrecorded).
async fn undo_0006(db: &common::TestDb) {
    for sql in [
        "DROP INDEX jobs_run_live",
        "DROP TABLE job_needs",
        "ALTER TABLE runs DROP COLUMN pipeline",
        "ALTER TABLE jobs DROP COLUMN max_parallel",
        "DELETE FROM schema_migrations WHERE version = 6",
    ] {
        db.raw(sql).await;
    }
}

#[tokio::test]
async fn runs_from_before_migration_0006_keep_working_after_it() {
    each_db(|db| async move {
        let store = db.open().await;
        let leg = json!({ "max_parallel": 1 });
        let run = store
            .create_run(
                &new_run(vec![
                    job("build", "build", &[], json!({})),
                    job("t (n=1)", "t", &["build"], leg.clone()),
                    job("t (n=2)", "t", &["build"], leg.clone()),
                    job("ship", "ship", &["t (n=1)", "t (n=2)"], json!({})),
                ]),
                &Legs,
            )
            .await
            .unwrap();
        store.close().await;
        undo_0006(&db).await;

        let store = db.open().await;
        let build = claim(&store, 5).await;
        assert_eq!(keys(&build), ["build"]);
        assert_eq!(
            build[0].pipeline["name"], "ci",
            "settings backfilled from the plan"
        );
        complete(&store, &build[0], "success").await.unwrap();
        let legs = claim(&store, 5).await;
        assert_eq!(
            keys(&legs),
            ["t (n=1)"],
            "max-parallel backfilled from the spec"
        );
        complete(&store, &legs[0], "success").await.unwrap();
        let legs = claim(&store, 5).await;
        assert_eq!(keys(&legs), ["t (n=2)"]);
        complete(&store, &legs[0], "success").await.unwrap();
        let ship = claim(&store, 5).await;
        assert_eq!(keys(&ship), ["ship"], "needs edges backfilled");
        complete(&store, &ship[0], "success").await.unwrap();
        assert_eq!(
            run_status(&store, &run.id).await,
            ("finished".into(), Some("success".into()))
        );
    })
    .await;
}
