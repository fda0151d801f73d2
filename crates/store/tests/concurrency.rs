//! Concurrent appenders keep the log linear: gapless seq, every prev_hash
//! linking to the previous entry, and a chain that verifies.

mod common;

use common::{TestDb, each_db};
use pave_store::{Backend, EventQuery, NewEvent, Store};
use serde_json::json;

const TASKS: usize = 50;
const EVENTS_PER_TASK: usize = 4;

/// 50 tasks append `EVENTS_PER_TASK` events each, spread over `stores`.
async fn hammer(stores: &[Store]) {
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = stores[task % stores.len()].clone();
        handles.push(tokio::spawn(async move {
            for i in 0..EVENTS_PER_TASK {
                let ev = NewEvent {
                    event_type: "dev.pave.test.appended.0.1.0".into(),
                    subject: format!("task:{task}"),
                    actor: format!("store:{}", task % 2),
                    payload: json!({ "task": task, "i": i }),
                };
                if i % 2 == 0 {
                    store.append_event(&ev).await.expect("append");
                } else {
                    // Also through an explicit transaction with two events.
                    let mut tx = store.begin().await.expect("begin");
                    tx.append_event(&ev).await.expect("append in tx");
                    tx.commit().await.expect("commit");
                }
            }
        }));
    }
    for h in handles {
        h.await.expect("task panicked");
    }
}

async fn assert_linear(store: &Store, db: &TestDb) {
    let total = (TASKS * EVENTS_PER_TASK) as i64;
    let events = store
        .list_events(&EventQuery {
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len() as i64, total, "[{:?}]", db.backend);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "[{:?}] seq is gapless", db.backend);
        if i > 0 {
            assert_eq!(
                e.prev_hash,
                events[i - 1].hash,
                "[{:?}] entry {} links",
                db.backend,
                e.seq
            );
            assert!(
                e.time >= events[i - 1].time,
                "[{:?}] times follow seq",
                db.backend
            );
        }
    }
    // Each task's own events are in its order.
    for task in 0..TASKS {
        let mine: Vec<i64> = events
            .iter()
            .filter(|e| e.subject == format!("task:{task}"))
            .map(|e| e.payload["i"].as_i64().unwrap())
            .collect();
        assert_eq!(mine, (0..EVENTS_PER_TASK as i64).collect::<Vec<_>>());
    }
    let report = store.verify_chain().await.unwrap();
    assert!(report.ok, "[{:?}] {report:?}", db.backend);
    assert_eq!(report.checked, total);
    assert_eq!(report.head_hash, events.last().unwrap().hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_stay_linear() {
    each_db(|db| async move {
        match db.backend {
            // One process, one store, 50 concurrent writers.
            Backend::Sqlite => {
                let store = db.open().await;
                hammer(std::slice::from_ref(&store)).await;
                assert_linear(&store, &db).await;
            }
            // Two servers on one database: two separate store handles.
            Backend::Postgres => {
                let (a, b) = tokio::join!(db.open(), db.open());
                hammer(&[a.clone(), b.clone()]).await;
                assert_linear(&a, &db).await;
                assert_linear(&b, &db).await;
                a.close().await;
                b.close().await;
            }
        }
    })
    .await;
}

/// Catalog applies from two handles at once also serialize: generations
/// and events stay consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_applies_of_the_same_entity() {
    each_db(|db| async move {
        let a = db.open().await;
        let b = db.open().await;
        let mut handles = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            handles.push(tokio::spawn(async move {
                let c = common::component("contended", "group:default/g", json!(i));
                store.apply_entities(&[c], "t").await.expect("apply")
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let entity = a
            .get_entity("component:default/contended")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            entity.generation, 20,
            "[{:?}] every apply changed the document once",
            db.backend
        );
        let events = a.list_events(&EventQuery::default()).await.unwrap();
        let generations: Vec<i64> = events
            .iter()
            .map(|e| e.payload["generation"].as_i64().unwrap())
            .collect();
        assert_eq!(generations, (1..=20).collect::<Vec<_>>());
        assert!(a.verify_chain().await.unwrap().ok);
    })
    .await;
}
