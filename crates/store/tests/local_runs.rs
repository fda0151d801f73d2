//! Local runs (`pave run` recorded on the server): created with every job
//! leased to the client, never claimed by agents, reported through the
//! agent calls; a lost client's jobs end failed, not re-queued. And pointing
//! a service at another repository.

mod common;

use std::time::Duration;

use common::{component, each_db, group};
use pave_store::{
    EventQuery, JobDecision, JobReport, JobRow, NewJob, NewLocalRun, NewLogLine, NewRun, RunRow,
    Scheduler, ServiceRepository, Store, StoreError,
};
use serde_json::json;

/// Queues every ready job; a run fails when any job failed.
struct Rules;

impl Scheduler for Rules {
    fn decide(
        &self,
        _: &RunRow,
        _: &[JobRow],
        ready: &[usize],
    ) -> Result<Vec<JobDecision>, String> {
        Ok(ready.iter().map(|_| JobDecision::Queue).collect())
    }

    fn run_outcome(&self, _: &RunRow, jobs: &[JobRow]) -> Result<String, String> {
        let failed = jobs.iter().any(|j| j.outcome.as_deref() == Some("failure"));
        Ok(if failed { "failure" } else { "success" }.into())
    }
}

fn job(key: &str, needs: &[&str]) -> NewJob {
    NewJob {
        key: key.into(),
        job_id: key.into(),
        name: key.into(),
        needs: needs.iter().map(|s| s.to_string()).collect(),
        spec: json!({}),
    }
}

fn run_of(jobs: Vec<NewJob>, trigger: &str) -> NewRun {
    NewRun {
        service_key: "component:default/hello".into(),
        git_ref: "refs/heads/main".into(),
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        plan: json!({ "jobs": [] }),
        trigger: trigger.into(),
        actor: "token:dev(alice)".into(),
        jobs,
    }
}

fn local(jobs: Vec<NewJob>, lease: Duration) -> NewLocalRun {
    NewLocalRun {
        run: run_of(jobs, "local"),
        dirty: true,
        holder: "local:alice@laptop".into(),
        lease,
    }
}

async fn report(store: &Store, job_id: &str, token: &str, outcome: &str) -> Result<(), StoreError> {
    store
        .complete_job(
            &JobReport {
                job_id: job_id.into(),
                lease_token: token.into(),
                outcome: outcome.into(),
                outputs: json!({}),
                result: json!({ "tests": [
                    { "suite": "s", "name": "t1", "status": "passed" }
                ] }),
                actor: "token:dev(alice)".into(),
            },
            &Rules,
        )
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_is_leased_to_its_client_and_never_claimed() {
    each_db(|db| async move {
        let store = db.open().await;
        let created = store
            .create_local_run(&local(
                vec![job("test", &[]), job("build", &["test"])],
                Duration::from_secs(60),
            ))
            .await
            .expect("create local run");
        let run = &created.run;
        assert_eq!((run.number, run.status.as_str()), (1, "running"));
        assert_eq!(run.trigger, "local");
        assert_eq!(created.jobs.len(), 2);
        for leased in &created.jobs {
            assert_eq!(leased.job.status, "running");
            assert_eq!(
                leased.job.lease_owner.as_deref(),
                Some("local:alice@laptop")
            );
            assert_eq!(leased.lease_token.len(), 32);
        }
        assert_ne!(created.jobs[0].lease_token, created.jobs[1].lease_token);
        let execution = store
            .run_execution(&run.id)
            .await
            .expect("read")
            .expect("run");
        assert_eq!(
            (execution.executor.as_str(), execution.dirty),
            ("local", true)
        );
        let stored = store.list_jobs(&run.id).await.expect("jobs");
        assert_eq!(stored.len(), 2);
        assert!(
            stored
                .iter()
                .all(|j| j.status == "running" && j.attempt == 1)
        );

        // An agent run queued after it is claimed; the local jobs never are.
        let agent_run = store
            .create_run(&run_of(vec![job("only", &[])], "api"), &Rules)
            .await
            .expect("agent run");
        let agent_exec = store.run_execution(&agent_run.id).await.unwrap().unwrap();
        assert_eq!(
            (agent_exec.executor.as_str(), agent_exec.dirty),
            ("agent", false)
        );
        let claimed = store
            .claim_job("agent-1", "token:agent(a)", Duration::from_secs(30))
            .await
            .expect("claim")
            .expect("the agent run's job");
        assert_eq!(claimed.run.id, agent_run.id);
        let none = store
            .claim_job("agent-1", "token:agent(a)", Duration::from_secs(30))
            .await
            .expect("claim");
        assert!(none.is_none(), "a local job was claimed: {none:?}");

        // The client uses the agent calls with its lease tokens.
        let (test, build) = (&created.jobs[0], &created.jobs[1]);
        let beat = store
            .heartbeat(&test.job.id, &test.lease_token, Duration::from_secs(60))
            .await
            .expect("heartbeat");
        assert!(!beat.cancel_requested);
        let wrong = store
            .heartbeat(&test.job.id, &build.lease_token, Duration::from_secs(60))
            .await;
        assert!(matches!(wrong, Err(StoreError::Conflict(_))), "{wrong:?}");
        let line = NewLogLine {
            step: "1".into(),
            stream: "stdout".into(),
            text: "ran locally".into(),
        };
        store
            .append_logs(&test.job.id, &test.lease_token, &[line])
            .await
            .expect("logs");
        report(&store, &test.job.id, &test.lease_token, "success")
            .await
            .expect("report test");
        let mid = store.get_run(&run.id).await.unwrap().unwrap();
        assert_eq!(mid.status, "running");
        report(&store, &build.job.id, &build.lease_token, "failure")
            .await
            .expect("report build");
        let done = store.get_run(&run.id).await.unwrap().unwrap();
        assert_eq!(
            (done.status.as_str(), done.outcome.as_deref()),
            ("finished", Some("failure"))
        );
        let second = report(&store, &build.job.id, &build.lease_token, "success").await;
        assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
        let logs = store.read_logs(&run.id, 0, None).await.expect("logs");
        assert_eq!(logs.len(), 1);
        assert_eq!(store.list_run_tests(&run.id).await.expect("tests").len(), 2);

        let events = store
            .list_events(&EventQuery {
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .expect("events");
        let of_run: Vec<&str> = events
            .iter()
            .filter(|e| e.payload["run_id"] == json!(run.id))
            .map(|e| e.event_type.as_str())
            .collect();
        assert_eq!(
            of_run,
            vec![
                "dev.cdevents.pipelinerun.queued.0.2.0",
                "dev.cdevents.pipelinerun.started.0.2.0",
                "dev.cdevents.taskrun.started.0.2.0",
                "dev.cdevents.taskrun.started.0.2.0",
                "dev.cdevents.taskrun.finished.0.2.0",
                "dev.cdevents.testsuiterun.finished.0.2.0",
                "dev.cdevents.taskrun.finished.0.2.0",
                "dev.cdevents.testsuiterun.finished.0.2.0",
                "dev.cdevents.pipelinerun.finished.0.2.0",
            ]
        );
        assert!(store.verify_chain().await.expect("verify").ok);

        // A malformed local run stores nothing.
        let bad = store
            .create_local_run(&local(
                vec![job("a", &["b"]), job("b", &[])],
                Duration::from_secs(5),
            ))
            .await;
        assert!(matches!(bad, Err(StoreError::Conflict(_))), "{bad:?}");
        assert_eq!(
            store
                .list_runs("component:default/hello", None)
                .await
                .unwrap()
                .len(),
            2
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_local_runner_fails_its_jobs_instead_of_requeueing_them() {
    each_db(|db| async move {
        let store = db.open().await;
        let created = store
            .create_local_run(&local(
                vec![job("one", &[]), job("two", &["one"])],
                Duration::from_secs(1),
            ))
            .await
            .expect("create");
        let (one, two) = (&created.jobs[0], &created.jobs[1]);
        report(&store, &one.job.id, &one.lease_token, "success")
            .await
            .expect("report one");
        // Nothing expires while the lease holds.
        assert_eq!(
            store.expire_lost_local_jobs(&Rules).await.expect("expire"),
            0
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;

        // An agent polling after the lease ended is not handed the job.
        let claimed = store
            .claim_job("agent-1", "token:agent(a)", Duration::from_secs(30))
            .await
            .expect("claim");
        assert!(claimed.is_none(), "{claimed:?}");
        assert_eq!(
            store.expire_lost_local_jobs(&Rules).await.expect("expire"),
            1
        );
        assert_eq!(
            store.expire_lost_local_jobs(&Rules).await.expect("again"),
            0
        );

        let run = store.get_run(&created.run.id).await.unwrap().unwrap();
        assert_eq!(
            (run.status.as_str(), run.outcome.as_deref()),
            ("finished", Some("failure"))
        );
        let jobs = store.list_jobs(&run.id).await.expect("jobs");
        assert_eq!(jobs[0].outcome.as_deref(), Some("success"));
        assert_eq!(jobs[1].outcome.as_deref(), Some("failure"));
        assert_eq!(jobs[1].attempt, 1, "not re-queued");
        assert_eq!(
            jobs[1].reason.as_deref(),
            Some(pave_store::local_runs::LOST_REASON)
        );
        // The client's late report is refused.
        let late = report(&store, &two.job.id, &two.lease_token, "success").await;
        assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
        assert!(store.verify_chain().await.expect("verify").ok);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_can_be_pointed_at_another_repository() {
    each_db(|db| async move {
        let store = db.open().await;
        store
            .apply_entities(
                &[
                    group("payments"),
                    component("hello", "group:default/payments", json!({})),
                ],
                "t",
            )
            .await
            .expect("apply");
        let repo = ServiceRepository {
            url: "https://git.example/hello.git".into(),
            path: "svc/pave.yaml".into(),
            default_branch: Some("trunk".into()),
        };
        let (row, changed) = store
            .set_service_repository("component:default/hello", &repo, "token:x(dev)")
            .await
            .expect("set");
        assert!(changed);
        assert_eq!(row.generation, 2);
        let stored = store
            .get_entity("component:default/hello")
            .await
            .unwrap()
            .unwrap();
        let annotations = &stored.document["metadata"]["annotations"];
        assert_eq!(
            annotations["pave.dev/repository"],
            "https://git.example/hello.git"
        );
        assert_eq!(annotations["pave.dev/repository-path"], "svc/pave.yaml");
        assert_eq!(annotations["pave.dev/default-branch"], "trunk");
        assert_eq!(stored.generation, 2);
        let head = store.head_seq().await.unwrap();

        // The same again changes nothing and appends nothing.
        let (_, again) = store
            .set_service_repository("component:default/hello", &repo, "token:x(dev)")
            .await
            .expect("again");
        assert!(!again);
        assert_eq!(store.head_seq().await.unwrap(), head);

        // Without a branch, the old repository's branch is dropped.
        let moved = ServiceRepository {
            url: "/srv/git/hello".into(),
            path: "pave.yaml".into(),
            default_branch: None,
        };
        store
            .set_service_repository("component:default/hello", &moved, "token:x(dev)")
            .await
            .expect("move");
        let stored = store
            .get_entity("component:default/hello")
            .await
            .unwrap()
            .unwrap();
        let annotations = &stored.document["metadata"]["annotations"];
        assert_eq!(annotations["pave.dev/repository"], "/srv/git/hello");
        assert!(
            annotations.get("pave.dev/default-branch").is_none(),
            "{annotations}"
        );
        let events = store
            .list_events(&EventQuery {
                limit: Some(100),
                ..Default::default()
            })
            .await
            .unwrap();
        let last = events.last().expect("event");
        assert_eq!(last.event_type, "dev.pave.catalog.entity.updated.0.1.0");
        assert_eq!(last.actor, "token:x(dev)");
        assert_eq!(last.payload["generation"], 3);

        let missing = store
            .set_service_repository("component:default/nope", &moved, "t")
            .await;
        assert!(
            matches!(missing, Err(StoreError::NotFound(_))),
            "{missing:?}"
        );
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}
