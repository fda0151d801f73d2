//! Appending and reading the event log on both engines.

mod common;

use common::each_db;
use pave_store::{EventQuery, NewEvent};
use serde_json::json;

fn event(subject: &str, n: i64) -> NewEvent {
    NewEvent {
        event_type: "dev.cdevents.pipelinerun.finished.0.2.0".into(),
        subject: subject.into(),
        actor: "system".into(),
        payload: json!({ "n": n, "z": [1, 2, { "b": true, "a": null }], "text": "héllo \"quoted\"\n" }),
    }
}

#[tokio::test]
async fn append_chains_and_list_filters() {
    each_db(|db| async move {
        let store = db.open().await;
        let empty = store.verify_chain().await.unwrap();
        assert!(empty.ok && empty.checked == 0 && empty.head_seq == 0);
        assert_eq!(empty.head_hash, "0".repeat(64));

        let mut appended = Vec::new();
        for i in 0..12 {
            let subject = if i % 3 == 0 {
                "pipeline:a"
            } else {
                "pipeline:b"
            };
            appended.push(store.append_event(&event(subject, i)).await.unwrap());
        }
        assert_eq!(appended[0].seq, 1);
        assert_eq!(appended[0].prev_hash, "0".repeat(64));
        for pair in appended.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + 1);
            assert_eq!(pair[1].prev_hash, pair[0].hash);
            assert!(pair[1].time >= pair[0].time);
            assert!(pair[1].id > pair[0].id, "ULIDs increase");
        }
        assert_eq!(
            appended[0].time.len(),
            24,
            "RFC 3339 with millis: {}",
            appended[0].time
        );

        let all = store.list_events(&EventQuery::default()).await.unwrap();
        assert_eq!(
            all, appended,
            "stored rows read back identically (payload included)"
        );

        let a = store
            .list_events(&EventQuery {
                subject: Some("pipeline:a".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            a.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 4, 7, 10]
        );
        let after = store
            .list_events(&EventQuery {
                after_seq: Some(9),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            after.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![10, 11, 12]
        );
        let limited = store
            .list_events(&EventQuery {
                after_seq: Some(2),
                limit: Some(3),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            limited.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let since_future = EventQuery {
            since: Some("2999-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        assert!(store.list_events(&since_future).await.unwrap().is_empty());
        let since_past = EventQuery {
            since: Some("2000-01-01T00:00:00+01:00".into()),
            ..Default::default()
        };
        assert_eq!(store.list_events(&since_past).await.unwrap().len(), 12);
        // `since` is inclusive and compares correctly against stored milliseconds.
        let since_exact = EventQuery {
            since: Some(appended[5].time.clone()),
            ..Default::default()
        };
        assert!(
            store
                .list_events(&since_exact)
                .await
                .unwrap()
                .iter()
                .any(|e| e.seq == 6)
        );

        let report = store.verify_chain().await.unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checked, 12);
        assert_eq!(report.head_seq, 12);
        assert_eq!(report.head_hash, appended[11].hash);
    })
    .await;
}

#[tokio::test]
async fn list_limit_defaults_to_100_and_caps_at_10000() {
    each_db(|db| async move {
        let store = db.open().await;
        let mut tx = store.begin().await.unwrap();
        let batch: Vec<NewEvent> = (0..150).map(|i| event("bulk", i)).collect();
        let rows = tx.append_events(&batch).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(rows.last().unwrap().seq, 150);
        assert_eq!(
            store
                .list_events(&EventQuery::default())
                .await
                .unwrap()
                .len(),
            100
        );
        let big = EventQuery {
            limit: Some(1_000_000),
            ..Default::default()
        };
        assert_eq!(store.list_events(&big).await.unwrap().len(), 150);
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}

#[tokio::test]
async fn store_tx_is_atomic() {
    each_db(|db| async move {
        let store = db.open().await;
        store.append_event(&event("first", 0)).await.unwrap();

        // Rolled back (explicitly and by drop): no event, head unchanged.
        let mut tx = store.begin().await.unwrap();
        tx.append_event(&event("gone", 1)).await.unwrap();
        tx.rollback().await.unwrap();
        {
            let mut tx = store.begin().await.unwrap();
            tx.append_event(&event("gone", 2)).await.unwrap();
        }

        let mut tx = store.begin().await.unwrap();
        let a = tx.append_event(&event("kept", 3)).await.unwrap();
        let b = tx.append_event(&event("kept", 4)).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!((a.seq, b.seq), (2, 3));
        assert_eq!(b.prev_hash, a.hash);

        let all = store.list_events(&EventQuery::default()).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(),
            vec!["first", "kept", "kept"]
        );
        let report = store.verify_chain().await.unwrap();
        assert!(report.ok && report.checked == 3, "{report:?}");
    })
    .await;
}
