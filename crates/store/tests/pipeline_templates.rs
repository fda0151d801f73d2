//! The pipeline template registry: immutable versions, idempotent
//! republishing, conflicts, events in the same transaction.

mod common;

use common::each_db;
use pave_store::{EventQuery, NewPipelineTemplate, Published, StoreError, template_digest};

fn template(version: &str, body: &str) -> NewPipelineTemplate {
    NewPipelineTemplate {
        name: "rust-ci".into(),
        version: version.into(),
        description: Some("Build".into()),
        body: body.into(),
    }
}

#[tokio::test]
async fn versions_are_immutable_and_republishing_is_idempotent() {
    each_db(|db| async move {
        let store = db.open().await;
        let head = store.head_seq().await.unwrap();
        let created = store
            .publish_pipeline_template(&template("1.0.0", "body one"), "token:alice")
            .await
            .unwrap();
        let Published::Created(row) = created else {
            panic!("expected Created, got {created:?}")
        };
        assert_eq!(row.digest, template_digest("body one"));
        assert!(row.digest.starts_with("sha256:") && row.digest.len() == 71);
        assert_eq!(row.created_by, "token:alice");
        assert_eq!(store.head_seq().await.unwrap(), head + 1);

        // Same body again: unchanged, no event.
        let again = store
            .publish_pipeline_template(&template("1.0.0", "body one"), "token:bob")
            .await
            .unwrap();
        assert_eq!(again, Published::Unchanged(row.clone()));
        assert_eq!(store.head_seq().await.unwrap(), head + 1);

        // Other body for the same version: conflict, nothing changes.
        let err = store
            .publish_pipeline_template(&template("1.0.0", "body CHANGED"), "token:bob")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("rust-ci@1.0.0") && m.contains("immutable")),
            "{err}"
        );
        let (stored, body) = store
            .get_pipeline_template("rust-ci", "1.0.0")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((stored, body.as_str()), (row, "body one"));
        assert_eq!(store.head_seq().await.unwrap(), head + 1);

        // A second version lives beside the first.
        store
            .publish_pipeline_template(&template("2.0.0", "body two"), "token:alice")
            .await
            .unwrap();
        let list = store.list_pipeline_templates().await.unwrap();
        let versions: Vec<&str> = list.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["1.0.0", "2.0.0"]);
        assert!(
            store
                .get_pipeline_template("rust-ci", "3.0.0")
                .await
                .unwrap()
                .is_none()
        );

        let events = store.list_events(&EventQuery::default()).await.unwrap();
        let published: Vec<&str> = events
            .iter()
            .filter(|e| e.event_type == "dev.pave.pipelinetemplate.published.0.1.0")
            .map(|e| e.subject.as_str())
            .collect();
        assert_eq!(
            published,
            ["pipelinetemplate:rust-ci@1.0.0", "pipelinetemplate:rust-ci@2.0.0"]
        );
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_publishers_of_one_version_store_it_once() {
    each_db(|db| async move {
        let a = db.open().await;
        let b = db.open().await;
        let mut handles = Vec::new();
        for i in 0..8 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            handles.push(tokio::spawn(async move {
                store
                    .publish_pipeline_template(&template("1.0.0", "same"), "t")
                    .await
            }));
        }
        let mut created = 0;
        for h in handles {
            if let Published::Created(_) = h.await.unwrap().unwrap() {
                created += 1;
            }
        }
        assert_eq!(created, 1);
        assert_eq!(a.list_pipeline_templates().await.unwrap().len(), 1);
    })
    .await;
}
