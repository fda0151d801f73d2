//! Test results and the quarantine in the store: ingestion inside
//! `complete_job` (once per job, never for a refused report), the
//! `testsuiterun.finished` event, flaky candidates with their window, and
//! quarantine with its events. On SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::each_db;
use pave_store::{
    EventQuery, EventRow, JobDecision, JobReport, JobRow, NewJob, NewRun, RunRow, Scheduler, Store,
    StoreError,
};
use serde_json::{Value, json};

const LEASE: Duration = Duration::from_secs(30);
const SERVICE: &str = "component:default/hello";
const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Queues every ready job; a run fails when a job failed.
struct QueueAll;

impl Scheduler for QueueAll {
    fn decide(
        &self,
        _: &RunRow,
        _: &[JobRow],
        ready: &[usize],
    ) -> Result<Vec<JobDecision>, String> {
        Ok(ready.iter().map(|_| JobDecision::Queue).collect())
    }

    fn run_outcome(&self, _: &RunRow, jobs: &[JobRow]) -> Result<String, String> {
        Ok(
            if jobs.iter().any(|j| j.outcome.as_deref() == Some("failure")) {
                "failure"
            } else {
                "success"
            }
            .into(),
        )
    }
}

fn case(name: &str, status: &str) -> Value {
    json!({ "suite": "unit", "classname": "pkg.mod", "name": name, "status": status,
            "duration_ms": 7, "message": null, "flaky_reruns": 0, "failed_reruns": 0,
            "file": null, "details": null, "system_out": null, "system_err": null })
}

/// Creates a one-job run at `sha` and claims its job: (job id, lease token, run id).
async fn start(store: &Store, sha: &str) -> (String, String, String) {
    let run = store
        .create_run(
            &NewRun {
                service_key: SERVICE.into(),
                git_ref: "refs/heads/main".into(),
                sha: sha.into(),
                plan: json!({}),
                trigger: "api".into(),
                actor: "token:t(dev)".into(),
                jobs: vec![NewJob {
                    key: "test".into(),
                    job_id: "test".into(),
                    name: "test".into(),
                    needs: vec![],
                    spec: json!({}),
                }],
            },
            &QueueAll,
        )
        .await
        .expect("create run");
    let claimed = store
        .claim_job("agent", "token:a(agent)", LEASE)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(claimed.run.id, run.id);
    (claimed.job.id, claimed.lease_token, run.id)
}

async fn complete(store: &Store, job: &str, token: &str, tests: Value) -> Result<(), StoreError> {
    store
        .complete_job(
            &JobReport {
                job_id: job.into(),
                lease_token: token.into(),
                outcome: "success".into(),
                outputs: json!({}),
                result: json!({ "steps": [], "tests": tests }),
                actor: "token:a(agent)".into(),
            },
            &QueueAll,
        )
        .await
        .map(|_| ())
}

/// One run at `sha` whose job reports `tests`: the run id.
async fn run_with(store: &Store, sha: &str, tests: Value) -> String {
    let (job, token, run) = start(store, sha).await;
    complete(store, &job, &token, tests)
        .await
        .expect("complete");
    run
}

async fn events(store: &Store, kind: &str) -> Vec<EventRow> {
    store
        .list_events(&EventQuery {
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event_type == kind)
        .collect()
}

const SUITE_FINISHED: &str = "dev.cdevents.testsuiterun.finished.0.2.0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tests_are_ingested_once_with_the_accepted_report() {
    each_db(|db| async move {
        let store = db.open().await;
        let (job, token, run) = start(&store, SHA_A).await;

        // A malformed report is refused and changes nothing: the job still runs.
        let bad = complete(
            &store,
            &job,
            &token,
            json!([{ "name": "x", "status": "odd" }]),
        )
        .await;
        assert!(matches!(bad, Err(StoreError::Conflict(_))), "{bad:?}");
        assert_eq!(
            store.get_job(&job).await.unwrap().unwrap().status,
            "running"
        );
        assert!(store.list_run_tests(&run).await.unwrap().is_empty());

        let long = "é".repeat(5000);
        let mut failing = case("fails", "failed");
        failing["message"] = json!(long);
        let mut flaky = case("retried", "passed");
        flaky["flaky_reruns"] = json!(2);
        let mut orphan = case("bare", "skipped");
        orphan["classname"] = json!("");
        complete(
            &store,
            &job,
            &token,
            json!([
                case("works", "passed"),
                failing,
                flaky,
                orphan,
                case("boom", "error")
            ]),
        )
        .await
        .expect("complete");

        let rows = store.list_run_tests(&run).await.unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.test_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "pkg.mod::works",
                "pkg.mod::fails",
                "pkg.mod::retried",
                "unit::bare",
                "pkg.mod::boom"
            ]
        );
        let fails = &rows[1];
        assert_eq!(fails.status, "failed");
        assert_eq!(
            (fails.sha.as_str(), fails.service_key.as_str()),
            (SHA_A, SERVICE)
        );
        assert_eq!(
            (fails.job_key.as_str(), fails.attempt, fails.duration_ms),
            ("test", 1, 7)
        );
        let message = fails.message.as_deref().unwrap();
        assert!(
            message.len() <= 4096 && message.len() >= 4094,
            "{}",
            message.len()
        );
        assert!(message.chars().all(|c| c == 'é'));
        assert_eq!(rows[2].flaky_reruns, 2);

        let suite = events(&store, SUITE_FINISHED).await;
        assert_eq!(suite.len(), 1);
        let p = &suite[0].payload;
        assert_eq!(p["run_id"], json!(run));
        assert_eq!(p["outcome"], "fail");
        assert_eq!(
            (
                &p["tests"],
                &p["passed"],
                &p["failed"],
                &p["errors"],
                &p["skipped"],
                &p["flaky"]
            ),
            (
                &json!(5),
                &json!(2),
                &json!(1),
                &json!(1),
                &json!(1),
                &json!(1)
            )
        );
        assert_eq!(p["failing"], json!(["pkg.mod::fails", "pkg.mod::boom"]));
        assert!(
            !suite[0].payload.to_string().contains("ééé"),
            "no messages in events"
        );

        // A second (duplicate) report is refused: nothing is counted twice.
        let again = complete(&store, &job, &token, json!([case("works", "passed")])).await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        assert_eq!(store.list_run_tests(&run).await.unwrap().len(), 5);
        assert_eq!(events(&store, SUITE_FINISHED).await.len(), 1);

        // A job without tests writes none and no suite event.
        let quiet = run_with(&store, SHA_A, Value::Null).await;
        assert!(store.list_run_tests(&quiet).await.unwrap().is_empty());
        assert_eq!(events(&store, SUITE_FINISHED).await.len(), 1);
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_candidates_are_tests_that_failed_or_retried_in_the_window() {
    each_db(|db| async move {
        let store = db.open().await;
        let mut retried = case("retried", "passed");
        retried["flaky_reruns"] = json!(1);
        let r1 = run_with(
            &store,
            SHA_A,
            json!([
                case("mixed", "passed"),
                case("steady", "passed"),
                case("skips", "skipped")
            ]),
        )
        .await;
        let r2 = run_with(
            &store,
            SHA_A,
            json!([case("mixed", "failed"), case("steady", "passed"), retried]),
        )
        .await;
        let r3 = run_with(&store, SHA_B, json!([case("mixed", "passed")])).await;

        let obs = store
            .test_observations(Some(SERVICE), "2000-01-01T00:00:00.000Z", 200)
            .await
            .unwrap();
        let mixed: Vec<(&str, &str, &str)> = obs
            .iter()
            .filter(|o| o.test_id == "pkg.mod::mixed")
            .map(|o| (o.run_id.as_str(), o.sha.as_str(), o.status.as_str()))
            .collect();
        assert_eq!(
            mixed,
            [
                (r1.as_str(), SHA_A, "passed"),
                (r2.as_str(), SHA_A, "failed"),
                (r3.as_str(), SHA_B, "passed")
            ]
        );
        assert!(
            obs.iter()
                .any(|o| o.test_id == "pkg.mod::retried" && o.flaky_reruns == 1)
        );
        assert!(
            !obs.iter()
                .any(|o| o.test_id == "pkg.mod::steady" || o.test_id == "pkg.mod::skips"),
            "never failed (or skipped): not a candidate"
        );

        // The newest `per_test` observations per test.
        let newest = store
            .test_observations(None, "2000-01-01T00:00:00.000Z", 2)
            .await
            .unwrap();
        let runs: Vec<&str> = newest
            .iter()
            .filter(|o| o.test_id == "pkg.mod::mixed")
            .map(|o| o.run_id.as_str())
            .collect();
        assert_eq!(runs, [r2.as_str(), r3.as_str()]);

        // Outside the time window, or another service: nothing.
        assert!(
            store
                .test_observations(None, "2999-01-01T00:00:00.000Z", 200)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .test_observations(
                    Some("component:default/other"),
                    "2000-01-01T00:00:00.000Z",
                    200
                )
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_and_release_append_events() {
    each_db(|db| async move {
        let store = db.open().await;
        let q = store
            .quarantine_test(SERVICE, "pkg.mod::mixed", "flaky on CI", "token:d(dev)")
            .await
            .expect("quarantine");
        assert_eq!(
            (q.test_id.as_str(), q.reason.as_str()),
            ("pkg.mod::mixed", "flaky on CI")
        );

        // Refused requests change nothing.
        let twice = store
            .quarantine_test(SERVICE, "pkg.mod::mixed", "again", "token:d(dev)")
            .await;
        assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
        let empty = store
            .quarantine_test(SERVICE, " ", "", "token:d(dev)")
            .await;
        assert!(matches!(empty, Err(StoreError::Conflict(_))), "{empty:?}");
        let control = store
            .quarantine_test(SERVICE, "a\u{0}b", "", "token:d(dev)")
            .await;
        assert!(
            matches!(control, Err(StoreError::Conflict(_))),
            "{control:?}"
        );
        store
            .quarantine_test("component:default/other", "x::y", "", "token:d(dev)")
            .await
            .expect("other service");

        let listed = store.list_quarantined_tests(Some(SERVICE)).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].reason, "flaky on CI");
        assert_eq!(listed[0].actor, "token:d(dev)");
        assert_eq!(store.list_quarantined_tests(None).await.unwrap().len(), 2);
        let added = events(&store, "dev.pave.test.quarantined.0.1.0").await;
        assert_eq!(added.len(), 2);
        assert_eq!(added[0].payload["test_id"], "pkg.mod::mixed");

        assert!(
            store
                .unquarantine_test(SERVICE, "pkg.mod::mixed", "token:d(dev)")
                .await
                .unwrap()
        );
        assert!(
            !store
                .unquarantine_test(SERVICE, "pkg.mod::mixed", "token:d(dev)")
                .await
                .unwrap()
        );
        assert!(
            store
                .list_quarantined_tests(Some(SERVICE))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            events(&store, "dev.pave.test.unquarantined.0.1.0")
                .await
                .len(),
            1
        );
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}
