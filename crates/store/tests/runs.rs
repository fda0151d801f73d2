//! Pipeline runs in the store: atomic creation, claim/heartbeat/logs/
//! complete, advancing the DAG, lease expiry, cancellation, and exactly-once
//! claiming under concurrency (two stores on one PostgreSQL database).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{TestDb, each_db};
use pave_store::{
    Backend, EventQuery, EventRow, JobDecision, JobReport, JobRow, NewJob, NewLogLine, NewRun,
    RunRow, Scheduler, Store, StoreError,
};
use serde_json::{Value, json};

const LEASE: Duration = Duration::from_secs(30);

/// GitHub-like rules on a tiny spec: `{"if": "always()" | "failure()"}`.
struct Rules;

impl Scheduler for Rules {
    fn decide(
        &self,
        _run: &RunRow,
        jobs: &[JobRow],
        ready: &[usize],
    ) -> Result<Vec<JobDecision>, String> {
        Ok(ready
            .iter()
            .map(|&i| {
                let job = &jobs[i];
                let outcomes: Vec<&str> = job
                    .needs
                    .iter()
                    .map(|n| {
                        jobs.iter()
                            .find(|j| &j.key == n)
                            .and_then(|j| j.outcome.as_deref())
                            .unwrap_or("skipped")
                    })
                    .collect();
                let all_ok = outcomes.iter().all(|o| *o == "success");
                let failed = outcomes.contains(&"failure");
                let run = match job.spec["if"].as_str() {
                    Some("always()") => true,
                    Some("failure()") => failed,
                    _ => all_ok,
                };
                if run {
                    JobDecision::Queue
                } else {
                    JobDecision::Conclude {
                        outcome: "skipped".into(),
                        reason: "a needed job did not succeed".into(),
                    }
                }
            })
            .collect())
    }

    fn run_outcome(&self, _run: &RunRow, jobs: &[JobRow]) -> Result<String, String> {
        let has = |o: &str| jobs.iter().any(|j| j.outcome.as_deref() == Some(o));
        Ok(if has("failure") {
            "failure"
        } else if has("cancelled") {
            "cancelled"
        } else if has("success") {
            "success"
        } else {
            "skipped"
        }
        .into())
    }
}

fn job(key: &str, needs: &[&str], spec: Value) -> NewJob {
    NewJob {
        key: key.into(),
        job_id: key.into(),
        name: key.into(),
        needs: needs.iter().map(|s| s.to_string()).collect(),
        spec,
    }
}

fn new_run(service: &str, jobs: Vec<NewJob>) -> NewRun {
    NewRun {
        service_key: format!("component:default/{service}"),
        git_ref: "refs/heads/main".into(),
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        plan: json!({ "jobs": jobs.iter().map(|j| j.key.clone()).collect::<Vec<_>>() }),
        trigger: "api".into(),
        actor: "token:test(dev)".into(),
        jobs,
    }
}

async fn events(store: &Store) -> Vec<EventRow> {
    store
        .list_events(&EventQuery {
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .expect("events")
}

fn count(events: &[EventRow], kind: &str) -> usize {
    events
        .iter()
        .filter(|e| e.event_type == format!("dev.cdevents.{kind}.0.2.0"))
        .count()
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

async fn complete(
    store: &Store,
    job_id: &str,
    token: &str,
    outcome: &str,
) -> Result<(), StoreError> {
    store
        .complete_job(
            &JobReport {
                job_id: job_id.into(),
                lease_token: token.into(),
                outcome: outcome.into(),
                outputs: json!({ "version": "1.2.3" }),
                result: json!({ "steps": [{ "name": "build", "outcome": outcome }] }),
                actor: "token:test(agent)".into(),
            },
            &Rules,
        )
        .await
        .map(|_| ())
}

fn is_conflict<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_run_is_atomic_and_emits_queued() {
    each_db(|db| async move {
        let store = db.open().await;
        let run = store
            .create_run(
                &new_run(
                    "hello",
                    vec![
                        job("build", &[], json!({})),
                        job("test", &["build"], json!({})),
                        job("lint", &[], json!({})),
                    ],
                ),
                &Rules,
            )
            .await
            .expect("create");
        assert_eq!((run.number, run.status.as_str()), (1, "queued"));
        let jobs = jobs_by_key(&store, &run.id).await;
        assert_eq!(jobs["build"].status, "queued");
        assert_eq!(jobs["lint"].status, "queued");
        assert_eq!(jobs["test"].status, "waiting");
        assert_eq!(jobs["test"].needs, vec!["build".to_string()]);
        let evs = events(&store).await;
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event_type, "dev.cdevents.pipelinerun.queued.0.2.0");
        assert_eq!(evs[0].payload["run_id"], json!(run.id));

        // A second run of the same service gets the next number.
        let second = store
            .create_run(&new_run("hello", vec![job("a", &[], json!({}))]), &Rules)
            .await
            .expect("second");
        assert_eq!(second.number, 2);

        // A bad run (need of a later job) writes nothing.
        let bad = store
            .create_run(
                &new_run(
                    "hello",
                    vec![job("a", &["b"], json!({})), job("b", &[], json!({}))],
                ),
                &Rules,
            )
            .await;
        assert!(is_conflict(&bad), "{bad:?}");
        assert_eq!(
            store
                .list_runs("component:default/hello", None)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(events(&store).await.len(), 2);
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_heartbeat_logs_complete_advance_the_run() {
    each_db(|db| async move {
        let store = db.open().await;
        let run = store
            .create_run(
                &new_run(
                    "hello",
                    vec![
                        job("build", &[], json!({})),
                        job("test", &["build"], json!({})),
                    ],
                ),
                &Rules,
            )
            .await
            .unwrap();
        let claimed = store
            .claim_job("agent-1", "token:a(agent)", LEASE)
            .await
            .unwrap()
            .expect("a job");
        assert_eq!(claimed.job.key, "build");
        assert_eq!(claimed.job.attempt, 1);
        assert_eq!(claimed.job.lease_owner.as_deref(), Some("agent-1"));
        assert_eq!(claimed.run.status, "running");
        // `test` waits for `build`: nothing else is runnable.
        assert!(
            store
                .claim_job("agent-2", "a", LEASE)
                .await
                .unwrap()
                .is_none()
        );

        let beat = store
            .heartbeat(&claimed.job.id, &claimed.lease_token, LEASE)
            .await
            .unwrap();
        assert!(!beat.cancel_requested);
        let line = |text: &str| NewLogLine {
            step: "build".into(),
            stream: "stdout".into(),
            text: text.into(),
        };
        assert_eq!(
            store
                .append_logs(
                    &claimed.job.id,
                    &claimed.lease_token,
                    &[line("one"), line("two")]
                )
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .append_logs(&claimed.job.id, &claimed.lease_token, &[line("three")])
                .await
                .unwrap(),
            3
        );
        let bad_stream = store
            .append_logs(
                &claimed.job.id,
                &claimed.lease_token,
                &[NewLogLine {
                    step: "x".into(),
                    stream: "nope".into(),
                    text: "x".into(),
                }],
            )
            .await;
        assert!(is_conflict(&bad_stream));
        let after_one = store.read_logs(&run.id, 1, None).await.unwrap();
        assert_eq!(
            after_one
                .iter()
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>(),
            ["two", "three"]
        );
        assert_eq!(after_one[0].seq, 2);

        complete(&store, &claimed.job.id, &claimed.lease_token, "success")
            .await
            .unwrap();
        // Completing twice is refused.
        assert!(is_conflict(
            &complete(&store, &claimed.job.id, &claimed.lease_token, "success").await
        ));
        let next = store
            .claim_job("agent-2", "a", LEASE)
            .await
            .unwrap()
            .expect("test is queued now");
        assert_eq!(next.job.key, "test");
        complete(&store, &next.job.id, &next.lease_token, "success")
            .await
            .unwrap();

        let done = store.get_run(&run.id).await.unwrap().unwrap();
        assert_eq!(
            (done.status.as_str(), done.outcome.as_deref()),
            ("finished", Some("success"))
        );
        let jobs = jobs_by_key(&store, &run.id).await;
        assert_eq!(jobs["build"].outputs, json!({ "version": "1.2.3" }));
        assert_eq!(jobs["build"].result["steps"][0]["name"], "build");
        let evs = events(&store).await;
        assert_eq!(count(&evs, "pipelinerun.queued"), 1);
        assert_eq!(count(&evs, "pipelinerun.started"), 1);
        assert_eq!(count(&evs, "taskrun.started"), 2);
        assert_eq!(count(&evs, "taskrun.finished"), 2);
        assert_eq!(count(&evs, "pipelinerun.finished"), 1);
        let last = evs.last().unwrap();
        assert_eq!(last.payload["outcome"], "success");
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}

/// Runs every job of `run` to the end, failing the keys in `failing`.
async fn drive(store: &Store, failing: &[&str]) {
    while let Some(c) = store.claim_job("agent", "a", LEASE).await.unwrap() {
        let outcome = if failing.contains(&c.job.key.as_str()) {
            "failure"
        } else {
            "success"
        };
        complete(store, &c.job.id, &c.lease_token, outcome)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_skips_dependents_unless_always_or_failure() {
    each_db(|db| async move {
        let store = db.open().await;
        let run = store
            .create_run(
                &new_run(
                    "hello",
                    vec![
                        job("build", &[], json!({})),
                        job("test", &["build"], json!({})),
                        job("deploy", &["test"], json!({})),
                        job("report", &["build"], json!({ "if": "always()" })),
                        job("alert", &["build"], json!({ "if": "failure()" })),
                    ],
                ),
                &Rules,
            )
            .await
            .unwrap();
        drive(&store, &["build"]).await;
        let jobs = jobs_by_key(&store, &run.id).await;
        let state = |k: &str| {
            (
                jobs[k].status.clone(),
                jobs[k].outcome.clone().unwrap_or_default(),
            )
        };
        assert_eq!(state("build"), ("finished".into(), "failure".into()));
        assert_eq!(state("test"), ("skipped".into(), "skipped".into()));
        assert_eq!(
            state("deploy"),
            ("skipped".into(), "skipped".into()),
            "skips cascade"
        );
        assert_eq!(state("report"), ("finished".into(), "success".into()));
        assert_eq!(state("alert"), ("finished".into(), "success".into()));
        assert!(jobs["test"].reason.is_some());
        let done = store.get_run(&run.id).await.unwrap().unwrap();
        assert_eq!(done.outcome.as_deref(), Some("failure"));
        // Skipped jobs never started.
        let evs = events(&store).await;
        assert_eq!(count(&evs, "taskrun.started"), 3);

        // Everything succeeds: `alert` is skipped, the run succeeds.
        let ok = store
            .create_run(
                &new_run(
                    "hello",
                    vec![
                        job("build", &[], json!({})),
                        job("alert", &["build"], json!({ "if": "failure()" })),
                    ],
                ),
                &Rules,
            )
            .await
            .unwrap();
        drive(&store, &[]).await;
        let jobs = jobs_by_key(&store, &ok.id).await;
        assert_eq!(jobs["alert"].status, "skipped");
        assert_eq!(
            store
                .get_run(&ok.id)
                .await
                .unwrap()
                .unwrap()
                .outcome
                .as_deref(),
            Some("success")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_moves_the_job_to_another_agent_exactly_once() {
    each_db(|db| async move {
        let store = db.open().await;
        let run = store
            .create_run(
                &new_run("hello", vec![job("build", &[], json!({}))]),
                &Rules,
            )
            .await
            .unwrap();
        let first = store
            .claim_job("agent-1", "a", Duration::from_secs(1))
            .await
            .unwrap()
            .expect("claimed");
        assert!(
            store
                .claim_job("agent-2", "a", LEASE)
                .await
                .unwrap()
                .is_none(),
            "leased"
        );
        tokio::time::sleep(Duration::from_millis(1_300)).await;

        // Another server (a second store handle on the same database) hands
        // the job to another agent.
        let other = db.open().await;
        let second = other
            .claim_job("agent-2", "a", LEASE)
            .await
            .unwrap()
            .expect("re-claimed after the lease expired");
        assert_eq!(second.job.id, first.job.id);
        assert_eq!(second.job.attempt, 2);
        assert_ne!(second.lease_token, first.lease_token);

        // The lost agent's calls are refused.
        assert!(is_conflict(
            &store
                .heartbeat(&first.job.id, &first.lease_token, LEASE)
                .await
        ));
        let line = NewLogLine {
            step: "s".into(),
            stream: "stdout".into(),
            text: "late".into(),
        };
        assert!(is_conflict(
            &store
                .append_logs(&first.job.id, &first.lease_token, &[line])
                .await
        ));
        assert!(is_conflict(
            &complete(&store, &first.job.id, &first.lease_token, "failure").await
        ));

        complete(&other, &second.job.id, &second.lease_token, "success")
            .await
            .unwrap();
        assert!(is_conflict(
            &complete(&store, &first.job.id, &first.lease_token, "success").await
        ));
        assert!(is_conflict(
            &complete(&other, &second.job.id, &second.lease_token, "success").await
        ));
        let unknown = store
            .heartbeat("01AAAAAAAAAAAAAAAAAAAAAAAA", "x", LEASE)
            .await;
        assert!(
            matches!(unknown, Err(StoreError::NotFound(_))),
            "{unknown:?}"
        );

        let jobs = jobs_by_key(&store, &run.id).await;
        assert_eq!(jobs["build"].outcome.as_deref(), Some("success"));
        assert_eq!(jobs["build"].lease_owner.as_deref(), Some("agent-2"));
        let evs = events(&store).await;
        assert_eq!(count(&evs, "taskrun.started"), 2);
        assert_eq!(
            count(&evs, "taskrun.finished"),
            1,
            "the job finished exactly once"
        );
        assert_eq!(count(&evs, "pipelinerun.finished"), 1);
        other.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_skips_pending_jobs_and_signals_running_ones() {
    each_db(|db| async move {
        let store = db.open().await;
        let run = store
            .create_run(
                &new_run(
                    "hello",
                    vec![
                        job("build", &[], json!({})),
                        job("lint", &[], json!({})),
                        job("test", &["build"], json!({})),
                    ],
                ),
                &Rules,
            )
            .await
            .unwrap();
        let running = store
            .claim_job("agent-1", "a", LEASE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(running.job.key, "build");
        let cancelled = store.cancel_run(&run.id, "token:x(dev)").await.unwrap();
        assert_eq!(
            (cancelled.status.as_str(), cancelled.outcome.as_deref()),
            ("finished", Some("cancelled"))
        );
        assert!(
            is_conflict(&store.cancel_run(&run.id, "x").await),
            "cancel twice"
        );
        assert!(matches!(
            store.cancel_run("01AAAAAAAAAAAAAAAAAAAAAAAA", "x").await,
            Err(StoreError::NotFound(_))
        ));

        let jobs = jobs_by_key(&store, &run.id).await;
        assert_eq!(
            (
                jobs["lint"].status.as_str(),
                jobs["lint"].outcome.as_deref()
            ),
            ("skipped", Some("cancelled"))
        );
        assert_eq!(jobs["test"].outcome.as_deref(), Some("cancelled"));
        assert_eq!(jobs["build"].status, "running");
        assert!(
            store
                .claim_job("agent-2", "a", LEASE)
                .await
                .unwrap()
                .is_none(),
            "nothing left to run"
        );
        let beat = store
            .heartbeat(&running.job.id, &running.lease_token, LEASE)
            .await
            .unwrap();
        assert!(beat.cancel_requested);
        complete(&store, &running.job.id, &running.lease_token, "cancelled")
            .await
            .unwrap();
        let jobs = jobs_by_key(&store, &run.id).await;
        assert_eq!(jobs["build"].outcome.as_deref(), Some("cancelled"));
        let done = store.get_run(&run.id).await.unwrap().unwrap();
        assert_eq!(done.outcome.as_deref(), Some("cancelled"));
        let evs = events(&store).await;
        assert_eq!(count(&evs, "pipelinerun.finished"), 1);
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_whose_agent_vanished_ends_after_its_lease() {
    each_db(|db| async move {
        let store = db.open().await;
        let run = store
            .create_run(
                &new_run("hello", vec![job("build", &[], json!({}))]),
                &Rules,
            )
            .await
            .unwrap();
        let lost = store
            .claim_job("agent-1", "a", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        store.cancel_run(&run.id, "x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        // The next claim reaps it instead of handing it out again.
        assert!(
            store
                .claim_job("agent-2", "a", LEASE)
                .await
                .unwrap()
                .is_none()
        );
        let jobs = jobs_by_key(&store, &run.id).await;
        assert_eq!(
            (
                jobs["build"].status.as_str(),
                jobs["build"].outcome.as_deref()
            ),
            ("finished", Some("cancelled"))
        );
        assert!(is_conflict(
            &complete(&store, &lost.job.id, &lost.lease_token, "success").await
        ));
    })
    .await;
}

const SCALE_JOBS: usize = 500;
const CLAIMERS: usize = 4;

/// Claims and completes until the run is finished; returns the job ids it claimed.
async fn claimer(store: Store, agent: String, run_id: String) -> Vec<String> {
    let mut mine = Vec::new();
    loop {
        match store.claim_job(&agent, "a", LEASE).await.expect("claim") {
            Some(c) => {
                complete(&store, &c.job.id, &c.lease_token, "success")
                    .await
                    .expect("complete");
                mine.push(c.job.id);
            }
            None => {
                let run = store.get_run(&run_id).await.expect("run").expect("exists");
                if run.status == "finished" {
                    return mine;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

async fn exactly_once(db: &TestDb, stores: &[Store]) {
    let jobs: Vec<NewJob> = (0..SCALE_JOBS)
        .map(|i| job(&format!("job-{i:03}"), &[], json!({})))
        .collect();
    let run = stores[0]
        .create_run(&new_run("scale", jobs), &Rules)
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for i in 0..CLAIMERS {
        let store = stores[i % stores.len()].clone();
        tasks.push(tokio::spawn(claimer(
            store,
            format!("agent-{i}"),
            run.id.clone(),
        )));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.expect("claimer panicked"));
    }
    let unique: HashSet<&String> = claimed.iter().collect();
    assert_eq!(claimed.len(), SCALE_JOBS, "[{:?}] claims", db.backend);
    assert_eq!(
        unique.len(),
        SCALE_JOBS,
        "[{:?}] no job claimed twice",
        db.backend
    );
    let jobs = stores[0].list_jobs(&run.id).await.unwrap();
    assert!(
        jobs.iter()
            .all(|j| j.attempt == 1 && j.status == "finished"),
        "[{:?}]",
        db.backend
    );
    let evs = events(&stores[0]).await;
    assert_eq!(count(&evs, "taskrun.started"), SCALE_JOBS);
    assert_eq!(count(&evs, "taskrun.finished"), SCALE_JOBS);
    assert_eq!(count(&evs, "pipelinerun.finished"), 1);
    let done = stores[0].get_run(&run.id).await.unwrap().unwrap();
    assert_eq!(done.outcome.as_deref(), Some("success"));
    assert!(stores[0].verify_chain().await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_job_runs_exactly_once_with_four_claimers() {
    each_db(|db| async move {
        match db.backend {
            Backend::Sqlite => {
                let store = db.open().await;
                exactly_once(&db, std::slice::from_ref(&store)).await;
            }
            // Two servers on one database: two store handles, two claimers each.
            Backend::Postgres => {
                let (a, b) = tokio::join!(db.open(), db.open());
                exactly_once(&db, &[a.clone(), b.clone()]).await;
                a.close().await;
                b.close().await;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_survive_a_restart() {
    each_db(|db| async move {
        let store = db.open().await;
        let run = store
            .create_run(
                &new_run(
                    "hello",
                    vec![
                        job("build", &[], json!({})),
                        job("test", &["build"], json!({})),
                    ],
                ),
                &Rules,
            )
            .await
            .unwrap();
        let c = store
            .claim_job("agent-1", "a", LEASE)
            .await
            .unwrap()
            .unwrap();
        store.close().await;
        // The "server" restarts: the lease and the run are where they were.
        let store = db.open().await;
        complete(&store, &c.job.id, &c.lease_token, "success")
            .await
            .unwrap();
        drive(&store, &[]).await;
        let done = store.get_run(&run.id).await.unwrap().unwrap();
        assert_eq!(done.outcome.as_deref(), Some("success"));
        let listed = store
            .list_runs("component:default/hello", Some(10))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].plan, Value::Null, "lists leave plans out");
        assert!(
            store
                .get_run(&run.id)
                .await
                .unwrap()
                .unwrap()
                .plan
                .is_object()
        );
    })
    .await;
}
