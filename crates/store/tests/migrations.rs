//! Opening and migrating databases.

mod common;

use common::each_db;
use pave_store::{Backend, EntityFilter, EventQuery, NewEvent, Store, StoreError};
use serde_json::json;

#[tokio::test]
async fn reopening_is_idempotent_and_keeps_data() {
    each_db(|db| async move {
        let store = db.open().await;
        assert_eq!(store.backend(), db.backend);
        store.ping().await.unwrap();
        store
            .append_event(&NewEvent {
                event_type: "t".into(),
                subject: "s".into(),
                actor: "a".into(),
                payload: json!({}),
            })
            .await
            .unwrap();
        store
            .apply_entities(&[common::group("g")], "t")
            .await
            .unwrap();
        store.close().await;

        let again = db.open().await;
        let third = db.open().await;
        assert_eq!(
            again
                .list_events(&EventQuery::default())
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            third
                .list_entities(&EntityFilter::default())
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(again.verify_chain().await.unwrap().ok);
        let mut conn = db.raw_conn().await;
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_opens_on_a_fresh_database_both_succeed() {
    each_db(|db| async move {
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { Store::open(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for h in opens {
            stores.push(
                h.await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("[{:?}] racing open failed: {e}", db.backend)),
            );
        }
        for s in &stores {
            s.ping().await.unwrap();
        }
        assert!(stores[0].verify_chain().await.unwrap().ok);
    })
    .await;
}

#[tokio::test]
async fn newer_schema_is_refused() {
    each_db(|db| async move {
        db.open().await.close().await;
        db.raw(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')",
        )
        .await;
        match Store::open(&db.url).await {
            Err(StoreError::Migration(msg)) => assert!(msg.contains("999"), "{msg}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("opened a database from the future"),
        }
    })
    .await;
}

#[tokio::test]
async fn unsupported_urls_are_rejected() {
    for url in [
        "mysql://localhost/x",
        "sqlite::memory:",
        "",
        "/tmp/pave.db",
        "sqlite://",
    ] {
        match Store::open(url).await {
            Err(StoreError::UnsupportedUrl(u)) => assert_eq!(u, url),
            Err(e) => panic!("`{url}`: unexpected error {e}"),
            Ok(_) => panic!("`{url}` was accepted"),
        }
    }
}

#[tokio::test]
async fn sqlite_paths_with_spaces_and_missing_directories_work() {
    let dir = std::env::temp_dir().join(format!("pave-store-rel-{}", std::process::id()));
    let nested = dir.join("Sub Dir/deeper");
    let url = format!("sqlite://{}/pave.db", nested.display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store.ping().await.unwrap();
    store.close().await;
    assert!(
        nested.join("pave.db").exists(),
        "file created with its directories, case kept"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
