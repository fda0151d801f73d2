//! Service secrets (sealed at rest, never in events or lists), webhook
//! delivery dedup, and `artifact.packaged` events on job completion, on
//! SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::each_db;
use pave_store::{
    EventQuery, JobDecision, JobReport, JobRow, NewJob, NewRun, RunRow, Scheduler, SecretKey,
    StoreError,
};
use serde_json::json;

const VALUE: &str = "hunter2-Sup3r-s3cret-value";
const SERVICE: &str = "component:default/hello";

/// Queues everything; the run succeeds when every job did.
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
        let ok = jobs.iter().all(|j| j.outcome.as_deref() == Some("success"));
        Ok(if ok { "success" } else { "failure" }.into())
    }
}

#[tokio::test]
async fn secrets_are_sealed_listed_without_values_and_deleted() {
    each_db(|db| async move {
        let store = db.open().await;
        let key = SecretKey::generate().unwrap();
        let row = store
            .set_secret(&key, SERVICE, "API_TOKEN", VALUE, "token:1(dev)")
            .await
            .unwrap();
        assert_eq!(row.name, "API_TOKEN");
        let first_created = row.created_at.clone();
        store
            .set_secret(&key, SERVICE, "API_TOKEN", "second-value", "token:2(dev)")
            .await
            .unwrap();
        store
            .set_secret(&key, SERVICE, "OTHER", "x", "token:1(dev)")
            .await
            .unwrap();
        store
            .set_secret(&key, "component:default/else", "API_TOKEN", "y", "t")
            .await
            .unwrap();

        let list = store.list_secrets(SERVICE).await.unwrap();
        assert_eq!(
            list.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["API_TOKEN", "OTHER"]
        );
        assert_eq!(
            list[0].created_at, first_created,
            "replacing keeps created_at"
        );
        assert_eq!(list[0].updated_by, "token:2(dev)");

        let values = store.secret_values(&key, SERVICE).await.unwrap();
        assert_eq!(values["API_TOKEN"], "second-value");
        assert_eq!(values["OTHER"], "x");
        assert_eq!(values.len(), 2);

        // At rest: neither value appears anywhere in the table.
        let mut conn = db.raw_conn().await;
        let sealed: Vec<String> = sqlx::query_scalar("SELECT sealed FROM secrets")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(sealed.len(), 3);
        assert!(
            sealed
                .iter()
                .all(|s| s.starts_with("v1:") && !s.contains(VALUE) && !s.contains("second-value"))
        );

        // Another key cannot open them, and says why.
        let other = SecretKey::generate().unwrap();
        let err = store.secret_values(&other, SERVICE).await.unwrap_err();
        assert!(err.to_string().contains("another server key"), "{err}");

        assert!(store.delete_secret(SERVICE, "OTHER", "t").await.unwrap());
        assert!(!store.delete_secret(SERVICE, "OTHER", "t").await.unwrap());
        assert_eq!(store.list_secrets(SERVICE).await.unwrap().len(), 1);

        // Events name service and secret only.
        let events = store
            .list_events(&EventQuery {
                limit: Some(1000),
                ..EventQuery::default()
            })
            .await
            .unwrap();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "dev.pave.secret.set.0.1.0",
                "dev.pave.secret.set.0.1.0",
                "dev.pave.secret.set.0.1.0",
                "dev.pave.secret.set.0.1.0",
                "dev.pave.secret.deleted.0.1.0"
            ]
        );
        assert_eq!(
            events[0].payload,
            json!({ "service": SERVICE, "name": "API_TOKEN" })
        );
        assert_eq!(events[0].subject, format!("secret:{SERVICE}/API_TOKEN"));
        let all = serde_json::to_string(&events).unwrap();
        assert!(!all.contains(VALUE) && !all.contains("second-value"));
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}

#[tokio::test]
async fn bad_names_and_huge_values_change_nothing() {
    each_db(|db| async move {
        let store = db.open().await;
        let key = SecretKey::generate().unwrap();
        for bad in ["lower", "1X", "A-B", ""] {
            let err = store
                .set_secret(&key, SERVICE, bad, "v", "t")
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{bad}: {err}");
        }
        let huge = "x".repeat(64 * 1024 + 1);
        let err = store
            .set_secret(&key, SERVICE, "BIG", &huge, "t")
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("xxxx"));
        assert!(store.list_secrets(SERVICE).await.unwrap().is_empty());
        assert_eq!(store.head_seq().await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn deliveries_are_recorded_once() {
    each_db(|db| async move {
        let store = db.open().await;
        assert!(store.record_delivery("github", "d-1").await.unwrap());
        assert!(!store.record_delivery("github", "d-1").await.unwrap());
        assert!(store.record_delivery("gitlab", "d-1").await.unwrap());
        store.forget_delivery("github", "d-1").await.unwrap();
        assert!(store.record_delivery("github", "d-1").await.unwrap());
        // Two stores racing on one delivery: exactly one wins.
        let a = db.open().await;
        let b = db.open().await;
        let (x, y) = tokio::join!(
            a.record_delivery("github", "race"),
            b.record_delivery("github", "race")
        );
        assert!(x.unwrap() ^ y.unwrap());
    })
    .await;
}

#[tokio::test]
async fn completing_a_job_appends_artifact_packaged_events() {
    each_db(|db| async move {
        let store = db.open().await;
        let run = store
            .create_run(
                &NewRun {
                    service_key: SERVICE.into(),
                    git_ref: "refs/heads/main".into(),
                    sha: "0123456789abcdef0123456789abcdef01234567".into(),
                    plan: json!({}),
                    trigger: "push".into(),
                    actor: "t".into(),
                    jobs: vec![NewJob {
                        key: "build".into(),
                        job_id: "build".into(),
                        name: "build".into(),
                        needs: vec![],
                        spec: json!({}),
                    }],
                },
                &QueueAll,
            )
            .await
            .unwrap();
        let claimed = store
            .claim_job("a1", "agent", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let digest = format!("sha256:{}", "ab".repeat(32));
        store
            .complete_job(
                &JobReport {
                    job_id: claimed.job.id.clone(),
                    lease_token: claimed.lease_token.clone(),
                    outcome: "success".into(),
                    outputs: json!({}),
                    result: json!({ "artifacts": [
                        { "name": "app bin", "digest": digest, "size": 42, "media_type": "application/octet-stream" },
                        { "name": "bad", "digest": "md5:00", "size": 1 }
                    ]}),
                    actor: "agent".into(),
                },
                &QueueAll,
            )
            .await
            .unwrap();
        let events = store
            .list_events(&EventQuery {
                limit: Some(1000),
                ..EventQuery::default()
            })
            .await
            .unwrap();
        let packaged: Vec<_> = events
            .iter()
            .filter(|e| e.event_type == "dev.cdevents.artifact.packaged.0.2.0")
            .collect();
        assert_eq!(packaged.len(), 1, "malformed digests are left out");
        let ev = packaged[0];
        assert_eq!(ev.subject, format!("pkg:generic/hello/app%20bin@{digest}"));
        assert_eq!(ev.payload["run_id"], run.id);
        assert_eq!(ev.payload["job_id"], claimed.job.id);
        assert_eq!(ev.payload["digest"], digest);
        assert_eq!(ev.payload["size"], 42);
        // In the same transaction as taskrun.finished, right after it.
        let pos = events.iter().position(|e| e.seq == ev.seq).unwrap();
        assert_eq!(
            events[pos - 1].event_type,
            "dev.cdevents.taskrun.finished.0.2.0"
        );
    })
    .await;
}
