//! The server's scheduler (`PlanScheduler`, GitHub's rules) applied by the
//! store to a real planned pipeline, on SQLite and on PostgreSQL: a matrix's
//! `max-parallel` caps the legs leased at once, `fail-fast` (on by default)
//! cancels the unfinished legs of a failed one, and `fail-fast: false` or a
//! leg's `continue-on-error` do not. PostgreSQL is skipped loudly when none
//! answers at 127.0.0.1:5432 (a failure with `PAVE_REQUIRE_POSTGRES=1`).

use pave_model::parse_pave_yaml;
use pave_pipeline::plan::plan;
use pave_server::api::runs::scheduler::PlanScheduler;
use pave_store::{ClaimedJob, JobReport, NewJob, NewRun, Store};
use serde_json::json;
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);

/// Runs one statement as the PostgreSQL superuser (trust auth); the error
/// when no server answers.
fn psql(sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qc",
            sql,
        ])
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A test database on the PostgreSQL server, dropped with this guard.
struct PgDb(String);

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

/// A fresh SQLite store, and a fresh PostgreSQL one when a server answers
/// (dropped with the returned guard).
async fn stores(tag: &str) -> (Vec<Store>, Option<PgDb>) {
    let dir = std::env::temp_dir().join(format!(
        "pave-matrix-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let sqlite = Store::open(&format!("sqlite://{}/pave.db", dir.display()))
        .await
        .expect("sqlite store");
    let mut stores = vec![sqlite];
    let mut guard = None;
    let name = format!("pave_matrix_{tag}_{}", std::process::id());
    let _ = psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    match psql(&format!("CREATE DATABASE {name}")) {
        Ok(()) => {
            let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
            stores.push(Store::open(&url).await.expect("postgres store"));
            guard = Some(PgDb(name));
        }
        Err(e) if std::env::var("PAVE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("PostgreSQL not reachable ({e}) and PAVE_REQUIRE_POSTGRES=1")
        }
        Err(e) => eprintln!("*** PostgreSQL not reachable: PostgreSQL half SKIPPED *** ({e})"),
    }
    (stores, guard)
}

/// A run of `pipeline` planned as the server plans it.
fn planned_run(pipeline: &str) -> NewRun {
    let text = format!("service: {{ name: m, owner: t }}\npipeline:\n{pipeline}");
    let doc = parse_pave_yaml("pave.yaml", &text).expect("valid pave.yaml");
    let run_plan = plan(&doc.pipeline.expect("a pipeline")).expect("plan");
    let jobs = run_plan
        .jobs
        .iter()
        .map(|j| NewJob {
            key: j.key.clone(),
            job_id: j.job_id.clone(),
            name: j.name.clone(),
            needs: j.depends_on.clone(),
            spec: serde_json::to_value(j).expect("spec"),
        })
        .collect();
    NewRun {
        service_key: "component:default/m".into(),
        git_ref: "refs/heads/main".into(),
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        plan: json!({ "name": null, "env": {}, "defaults": null, "jobs": run_plan.jobs }),
        trigger: "api".into(),
        actor: "token:t(dev)".into(),
        jobs,
    }
}

async fn claim(store: &Store, max: usize) -> Vec<ClaimedJob> {
    store
        .claim_jobs("agent", "token:a(agent)", LEASE, max, &PlanScheduler)
        .await
        .expect("claim")
}

fn keys(claimed: &[ClaimedJob]) -> Vec<&str> {
    claimed.iter().map(|c| c.job.key.as_str()).collect()
}

async fn report(store: &Store, c: &ClaimedJob, outcome: &str) {
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
            &PlanScheduler,
        )
        .await
        .expect("complete");
}

/// (status, outcome, attempt) per job key.
async fn states(store: &Store, run_id: &str) -> HashMap<String, (String, String, i64)> {
    store
        .list_jobs(run_id)
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| {
            let outcome = j.outcome.unwrap_or_default();
            (j.key, (j.status, outcome, j.attempt))
        })
        .collect()
}

const MATRIX: &str = "  jobs:
    test:
      strategy:
        max-parallel: 2
        matrix: { n: [1, 2, 3, 4] }
      steps: [ { run: 'true' } ]
    ship:
      needs: test
      steps: [ { run: 'true' } ]
";

#[tokio::test]
async fn max_parallel_and_fail_fast_hold_with_the_planners_rules() {
    let (stores, _drop) = stores("ff").await;
    for store in stores {
        let run = store
            .create_run(&planned_run(MATRIX), &PlanScheduler)
            .await
            .expect("run");
        let first = claim(&store, 10).await;
        assert_eq!(
            keys(&first),
            ["test (n=1)", "test (n=2)"],
            "max-parallel: 2"
        );
        report(&store, &first[0], "success").await;
        let third = claim(&store, 10).await;
        assert_eq!(keys(&third), ["test (n=3)"]);
        // n=3 fails: n=2 (running) is asked to stop, n=4 (queued) is cancelled.
        report(&store, &third[0], "failure").await;
        let now = states(&store, &run.id).await;
        assert_eq!(now["test (n=4)"], ("skipped".into(), "cancelled".into(), 0));
        assert_eq!(now["test (n=2)"].0, "running");
        let beat = store
            .heartbeat(&first[1].job.id, &first[1].lease_token, LEASE)
            .await
            .expect("heartbeat");
        assert!(beat.cancel_requested, "the running leg is told to stop");
        report(&store, &first[1], "cancelled").await;
        let end = states(&store, &run.id).await;
        assert_eq!(end["ship"].0, "skipped");
        let run = store.get_run(&run.id).await.unwrap().unwrap();
        assert_eq!(
            (run.status.as_str(), run.outcome.as_deref()),
            ("finished", Some("failure"))
        );
    }
}

#[tokio::test]
async fn fail_fast_false_and_continue_on_error_let_the_other_legs_run() {
    let pipelines = [
        "  jobs:\n    test:\n      strategy:\n        fail-fast: false\n        matrix: { n: [1, 2] }\n      steps: [ { run: 'true' } ]\n",
        "  jobs:\n    test:\n      continue-on-error: ${{ matrix.n == 1 }}\n      strategy:\n        matrix: { n: [1, 2] }\n      steps: [ { run: 'true' } ]\n",
    ];
    let (stores, _drop) = stores("nff").await;
    for store in stores {
        for pipeline in pipelines {
            let run = store
                .create_run(&planned_run(pipeline), &PlanScheduler)
                .await
                .expect("run");
            let legs = claim(&store, 10).await;
            assert_eq!(keys(&legs), ["test (n=1)", "test (n=2)"]);
            report(&store, &legs[0], "failure").await;
            let beat = store
                .heartbeat(&legs[1].job.id, &legs[1].lease_token, LEASE)
                .await
                .expect("heartbeat");
            assert!(!beat.cancel_requested, "{pipeline}");
            report(&store, &legs[1], "success").await;
            let end = states(&store, &run.id).await;
            assert_eq!(end["test (n=2)"].1, "success", "{pipeline}");
        }
    }
}
