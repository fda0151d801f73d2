//! Deployments in the store: one in flight per service and environment,
//! compare-and-set transitions with their log and events, what runs where,
//! leases between servers, environments on the promotion path.

mod common;

use common::each_db;
use pave_store::{NewDeployment, NewEvent, NewLogEntry, StoreError, Transition};
use serde_json::json;

fn new(env: &str, digest: &str) -> NewDeployment {
    NewDeployment {
        service_key: "component:default/hello".into(),
        env: env.into(),
        kind: "deploy".into(),
        digest: digest.into(),
        artifact: "app".into(),
        run_id: None,
        sha: Some("abc".into()),
        strategy: "canary".into(),
        spec: json!({ "x": 1 }),
        previous_id: None,
        actor: "token:alice".into(),
    }
}

fn done(status: &str, stable: bool) -> Transition {
    Transition {
        status: status.into(),
        phase: json!({ "stage": "finish" }),
        reason: Some(format!("{status} for the test")),
        log: vec![NewLogEntry::new(
            "decision",
            status,
            json!({ "weight": 100 }),
        )],
        events: vec![NewEvent {
            event_type: "dev.cdevents.service.deployed.0.2.0".into(),
            subject: "service:dev/hello".into(),
            actor: "system".into(),
            payload: json!({ "service": "hello" }),
        }],
        make_stable: stable,
    }
}

#[tokio::test]
async fn one_in_flight_per_service_and_environment() {
    each_db(|db| async move {
        let store = db.open().await;
        let envs: Vec<String> = store
            .list_environments()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(envs, ["dev", "staging", "prod"]);

        let first = store
            .create_deployment(&new("dev", "sha256:aa"))
            .await
            .unwrap();
        assert_eq!(
            (first.number, first.status.as_str(), first.version),
            (1, "pending", 0)
        );
        let busy = store
            .create_deployment(&new("dev", "sha256:bb"))
            .await
            .unwrap_err();
        let StoreError::Conflict(msg) = busy else {
            panic!("expected a conflict, got {busy:?}")
        };
        assert!(
            msg.contains("still pending") && msg.contains("pave abort"),
            "{msg}"
        );
        // Another environment is independent.
        store
            .create_deployment(&new("staging", "sha256:aa"))
            .await
            .unwrap();
        let active: Vec<String> = store
            .active_deployments()
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.env)
            .collect();
        assert_eq!(active, ["dev", "staging"]);
        // An unknown environment changes nothing.
        let head = store.head_seq().await.unwrap();
        assert!(matches!(
            store.create_deployment(&new("qa", "sha256:aa")).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.head_seq().await.unwrap(), head);

        // Once it ends, the next one may start and gets the next number.
        let row = store
            .transition_deployment(&first.id, 0, done("succeeded", true))
            .await
            .unwrap();
        assert!(row.finished_at.is_some() && !row.is_active());
        let second = store
            .create_deployment(&new("dev", "sha256:bb"))
            .await
            .unwrap();
        assert_eq!(second.number, 2);
    })
    .await;
}

#[tokio::test]
async fn transitions_are_compare_and_set_and_move_the_stable_release() {
    each_db(|db| async move {
        let store = db.open().await;
        let d = store
            .create_deployment(&new("prod", "sha256:aa"))
            .await
            .unwrap();
        let progressing = Transition {
            status: "progressing".into(),
            phase: json!({ "stage": "steps", "weight": 20 }),
            log: vec![NewLogEntry::new(
                "step",
                "canary at 20%",
                json!({ "weight": 20 }),
            )],
            ..Transition::default()
        };
        let moved = store
            .transition_deployment(&d.id, 0, progressing.clone())
            .await
            .unwrap();
        assert_eq!(
            (moved.version, moved.phase["weight"].as_i64()),
            (1, Some(20))
        );
        // A stale version is refused and changes nothing.
        let head = store.head_seq().await.unwrap();
        assert!(matches!(
            store
                .transition_deployment(&d.id, 0, done("succeeded", true))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.head_seq().await.unwrap(), head);
        assert!(store.env_releases(None).await.unwrap().is_empty());

        store
            .transition_deployment(&d.id, 1, done("succeeded", true))
            .await
            .unwrap();
        assert_eq!(store.head_seq().await.unwrap(), head + 1);
        let live = store
            .env_releases(Some("component:default/hello"))
            .await
            .unwrap();
        assert_eq!(live.len(), 1);
        let stable = store.stable_deployments().await.unwrap();
        assert_eq!(stable.len(), 1);
        assert_eq!(stable[0].id, d.id);
        assert_eq!(
            (
                live[0].env.as_str(),
                live[0].digest.as_str(),
                live[0].deployment_id.as_str()
            ),
            ("prod", "sha256:aa", d.id.as_str())
        );

        let log = store.deployment_log(&d.id, 0).await.unwrap();
        let kinds: Vec<&str> = log.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(kinds, ["note", "step", "decision"]);
        assert_eq!(log.iter().map(|l| l.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(store.deployment_log(&d.id, 2).await.unwrap().len(), 1);

        // A newer release replaces it; the previous good one is the rollback target.
        let d2 = store
            .create_deployment(&new("prod", "sha256:bb"))
            .await
            .unwrap();
        store
            .transition_deployment(&d2.id, 0, done("succeeded", true))
            .await
            .unwrap();
        let live = store
            .env_releases(Some("component:default/hello"))
            .await
            .unwrap();
        assert_eq!(live[0].digest, "sha256:bb");
        let prev = store
            .previous_good_deployment("component:default/hello", "prod", "sha256:bb")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(prev.id, d.id);
        let report = store.verify_chain().await.unwrap();
        assert!(report.ok, "{report:?}");
    })
    .await;
}

#[tokio::test]
async fn one_server_holds_each_deployment() {
    each_db(|db| async move {
        let store = db.open().await;
        let d = store
            .create_deployment(&new("dev", "sha256:aa"))
            .await
            .unwrap();
        let a = store.lease_deployments("server-a", 60_000).await.unwrap();
        assert_eq!(
            a.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
            [d.id.as_str()]
        );
        // Another server gets nothing while the lease holds; the holder renews.
        assert!(
            store
                .lease_deployments("server-b", 60_000)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.lease_deployments("server-a", 1).await.unwrap().len(),
            1
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // Expired: the next server takes over.
        assert_eq!(
            store
                .lease_deployments("server-b", 60_000)
                .await
                .unwrap()
                .len(),
            1
        );
        // Finished deployments are never leased.
        store
            .transition_deployment(&d.id, 0, done("failed", false))
            .await
            .unwrap();
        assert!(
            store
                .lease_deployments("server-b", 60_000)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.env_releases(None).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn environments_extend_the_promotion_path() {
    each_db(|db| async move {
        let store = db.open().await;
        store
            .create_environment("qa", "", Some("dev"), "token:admin")
            .await
            .unwrap();
        store
            .create_environment("canary-zone", "edge", None, "token:admin")
            .await
            .unwrap();
        let names: Vec<String> = store
            .list_environments()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["dev", "qa", "staging", "prod", "canary-zone"]);
        assert!(matches!(
            store.create_environment("qa", "", None, "x").await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.create_environment("x", "", Some("nope"), "x").await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}
