//! Catalog behaviour on both engines.

mod common;

use common::{component, each_db, group};
use pave_store::{EntityFilter, EventQuery, RelationRow, StoreError};
use serde_json::json;

fn rel(s: &str, t: &str, d: &str) -> RelationRow {
    RelationRow {
        source_key: s.into(),
        rel_type: t.into(),
        target_key: d.into(),
    }
}

#[tokio::test]
async fn apply_creates_updates_and_skips_unchanged() {
    each_db(|db| async move {
        let store = db.open().await;
        let payments = "group:default/payments";
        let batch = vec![
            group("payments"),
            component("hello", payments, json!(1)),
            component("web", payments, json!(1)),
        ];
        let out = store.apply_entities(&batch, "user:alice").await.unwrap();
        assert_eq!(
            out.created,
            vec![payments, "component:default/hello", "component:default/web"]
        );
        assert!(out.updated.is_empty() && out.unchanged.is_empty());

        let hello = store
            .get_entity("component:default/hello")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hello.generation, 1);
        assert_eq!(hello.kind, "Component");
        assert_eq!(hello.owner_key.as_deref(), Some(payments));
        assert_eq!(hello.document, batch[1].document);
        assert_eq!(hello.origin.as_deref(), Some("catalog/hello.yaml:1:1"));
        assert_eq!(hello.created_at, hello.updated_at);

        // Same documents again: nothing changes, no events.
        let again = store.apply_entities(&batch, "user:alice").await.unwrap();
        assert_eq!(again.unchanged.len(), 3);
        assert!(again.created.is_empty() && again.updated.is_empty());
        assert_eq!(
            store
                .list_events(&EventQuery::default())
                .await
                .unwrap()
                .len(),
            3
        );

        // Change one document and move its ownership: generation 2, relations replaced.
        let mut changed = component("hello", "group:default/platform", json!(2));
        changed.relations.push(rel(
            "component:default/hello",
            "partOf",
            "system:default/checkout",
        ));
        let out = store
            .apply_entities(
                &[group("platform"), changed.clone(), batch[2].clone()],
                "user:bob",
            )
            .await
            .unwrap();
        assert_eq!(out.created, vec!["group:default/platform"]);
        assert_eq!(out.updated, vec!["component:default/hello"]);
        assert_eq!(out.unchanged, vec!["component:default/web"]);
        let hello2 = store
            .get_entity("component:default/hello")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hello2.generation, 2);
        assert_eq!(hello2.created_at, hello.created_at);
        assert!(hello2.updated_at >= hello.updated_at);
        assert_eq!(hello2.owner_key.as_deref(), Some("group:default/platform"));
        assert_eq!(
            store.relations_of("component:default/hello").await.unwrap(),
            vec![
                rel(
                    "component:default/hello",
                    "ownedBy",
                    "group:default/platform"
                ),
                rel(
                    "component:default/hello",
                    "partOf",
                    "system:default/checkout"
                ),
            ]
        );
        // The reverse direction produced by the components shows on the groups.
        assert_eq!(
            store.relations_of(payments).await.unwrap(),
            vec![rel(payments, "ownerOf", "component:default/web")]
        );
        assert_eq!(
            store.relations_of("group:default/platform").await.unwrap(),
            vec![rel(
                "group:default/platform",
                "ownerOf",
                "component:default/hello"
            )]
        );

        // Events: one per change, in order, with the document in the payload.
        let events = store.list_events(&EventQuery::default()).await.unwrap();
        let summary: Vec<(i64, &str, &str)> = events
            .iter()
            .map(|e| (e.seq, e.event_type.as_str(), e.subject.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "dev.pave.catalog.entity.created.0.1.0", payments),
                (
                    2,
                    "dev.pave.catalog.entity.created.0.1.0",
                    "component:default/hello"
                ),
                (
                    3,
                    "dev.pave.catalog.entity.created.0.1.0",
                    "component:default/web"
                ),
                (
                    4,
                    "dev.pave.catalog.entity.created.0.1.0",
                    "group:default/platform"
                ),
                (
                    5,
                    "dev.pave.catalog.entity.updated.0.1.0",
                    "component:default/hello"
                ),
            ]
        );
        assert_eq!(events[4].payload["generation"], json!(2));
        assert_eq!(events[4].payload["kind"], json!("Component"));
        assert_eq!(events[4].payload["key"], json!("component:default/hello"));
        assert_eq!(events[4].payload["document"], changed.document);
        assert_eq!(events[4].actor, "user:bob");
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}

#[tokio::test]
async fn duplicate_keys_in_one_apply_are_rejected_without_changes() {
    each_db(|db| async move {
        let store = db.open().await;
        let g = "group:default/a";
        let err = store
            .apply_entities(
                &[component("x", g, json!(1)), component("x", g, json!(2))],
                "t",
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert!(
            store
                .list_entities(&EntityFilter::default())
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .list_events(&EventQuery::default())
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn delete_entity_removes_it_and_its_relations() {
    each_db(|db| async move {
        let store = db.open().await;
        let g = "group:default/payments";
        store
            .apply_entities(
                &[
                    group("payments"),
                    component("a", g, json!(1)),
                    component("b", g, json!(1)),
                ],
                "t",
            )
            .await
            .unwrap();
        assert_eq!(store.relations_of(g).await.unwrap().len(), 2);

        assert!(
            store
                .delete_entity("component:default/a", "user:carol")
                .await
                .unwrap()
        );
        assert!(
            store
                .get_entity("component:default/a")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .relations_of("component:default/a")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.relations_of(g).await.unwrap(),
            vec![rel(g, "ownerOf", "component:default/b")]
        );
        assert!(
            !store
                .delete_entity("component:default/a", "user:carol")
                .await
                .unwrap()
        );

        let events = store.list_events(&EventQuery::default()).await.unwrap();
        assert_eq!(events.len(), 4);
        let last = &events[3];
        assert_eq!(last.event_type, "dev.pave.catalog.entity.deleted.0.1.0");
        assert_eq!(last.subject, "component:default/a");
        assert_eq!(last.actor, "user:carol");
        assert_eq!(last.payload["generation"], json!(1));

        // Re-creating starts again at generation 1.
        let out = store
            .apply_entities(&[component("a", g, json!(1))], "t")
            .await
            .unwrap();
        assert_eq!(out.created, vec!["component:default/a"]);
        assert_eq!(
            store
                .get_entity("component:default/a")
                .await
                .unwrap()
                .unwrap()
                .generation,
            1
        );
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}

#[tokio::test]
async fn list_and_get_filters() {
    each_db(|db| async move {
        let store = db.open().await;
        let g = "group:default/payments";
        let mut other_ns = component("zeta", "group:default/platform", json!(1));
        other_ns.key = "component:tools/zeta".into();
        other_ns.namespace = "tools".into();
        let mut api = group("x");
        api.key = "api:default/hello-api".into();
        api.kind = "API".into();
        api.name = "hello-api".into();
        api.owner_key = Some(g.into());
        store
            .apply_entities(
                &[
                    component("web", g, json!(1)),
                    group("payments"),
                    component("hello", g, json!(1)),
                    other_ns,
                    api,
                ],
                "t",
            )
            .await
            .unwrap();

        let keys =
            |rows: Vec<pave_store::EntityRow>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
        assert_eq!(
            keys(store.list_entities(&EntityFilter::default()).await.unwrap()),
            vec![
                "api:default/hello-api",
                "component:default/hello",
                "component:default/web",
                "component:tools/zeta",
                "group:default/payments"
            ]
        );
        let components = EntityFilter {
            kind: Some("component".into()),
            ..Default::default()
        };
        assert_eq!(store.list_entities(&components).await.unwrap().len(), 3);
        let f = EntityFilter {
            kind: Some("COMPONENT".into()),
            namespace: Some("tools".into()),
            ..Default::default()
        };
        assert_eq!(
            keys(store.list_entities(&f).await.unwrap()),
            vec!["component:tools/zeta"]
        );
        let f = EntityFilter {
            owner_key: Some(g.into()),
            ..Default::default()
        };
        assert_eq!(
            keys(store.list_entities(&f).await.unwrap()),
            vec![
                "api:default/hello-api",
                "component:default/hello",
                "component:default/web"
            ]
        );
        let f = EntityFilter {
            kind: Some("api".into()),
            ..Default::default()
        };
        assert_eq!(
            keys(store.list_entities(&f).await.unwrap()),
            vec!["api:default/hello-api"]
        );
        let f = EntityFilter {
            limit: Some(2),
            ..Default::default()
        };
        assert_eq!(store.list_entities(&f).await.unwrap().len(), 2);

        let got = store
            .get_entities(&[
                "component:default/web".into(),
                "nope:x/y".into(),
                "group:default/payments".into(),
            ])
            .await
            .unwrap();
        assert_eq!(
            keys(got),
            vec!["component:default/web", "group:default/payments"]
        );
        assert!(store.get_entity("nope:x/y").await.unwrap().is_none());
    })
    .await;
}

/// Large batches go through chunked statements; checks counts, not time.
/// `PAVE_BULK_ENTITIES=10000 cargo test --release -p pave-store --test catalog bulk -- --nocapture`
/// prints the time for a bigger batch.
#[tokio::test]
async fn bulk_apply_of_many_entities() {
    let n: usize = std::env::var("PAVE_BULK_ENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    each_db(move |db| async move {
        let store = db.open().await;
        let items: Vec<_> = (0..n)
            .map(|i| {
                let g = format!("group:default/team-{}", i % 50);
                let mut c = component(
                    &format!("svc-{i:05}"),
                    &g,
                    json!({ "index": i, "tags": ["a", "b"] }),
                );
                let key = c.key.clone();
                c.relations.push(rel(
                    &key,
                    "partOf",
                    &format!("system:default/sys-{}", i % 10),
                ));
                c.relations.push(rel(
                    &format!("system:default/sys-{}", i % 10),
                    "hasPart",
                    &key,
                ));
                c
            })
            .collect();
        let started = std::time::Instant::now();
        let out = store.apply_entities(&items, "bulk").await.unwrap();
        let elapsed = started.elapsed();
        eprintln!(
            "[{:?}] applied {n} entities ({} relations) in {elapsed:?}",
            db.backend,
            n * 4
        );
        assert_eq!(out.created.len(), n);

        assert_eq!(
            store
                .list_entities(&EntityFilter::default())
                .await
                .unwrap()
                .len(),
            n
        );
        assert_eq!(
            store
                .relations_of("group:default/team-7")
                .await
                .unwrap()
                .len(),
            n / 50
        );
        assert_eq!(
            store
                .relations_of("system:default/sys-3")
                .await
                .unwrap()
                .len(),
            n / 10
        );
        let last = store
            .list_events(&pave_store::EventQuery {
                limit: Some(10_000),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(last.len(), n.min(10_000));
        let report = store.verify_chain().await.unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checked, n as i64);

        // Re-apply with every 10th entity changed.
        let mut again = items.clone();
        for c in again.iter_mut().step_by(10) {
            c.document["spec"]["extra"] = json!("changed");
        }
        let started = std::time::Instant::now();
        let out = store.apply_entities(&again, "bulk").await.unwrap();
        eprintln!(
            "[{:?}] re-applied {n} entities ({} changed) in {:?}",
            db.backend,
            n / 10,
            started.elapsed()
        );
        assert_eq!(out.updated.len(), n / 10);
        assert_eq!(out.unchanged.len(), n - n / 10);
        assert_eq!(
            store
                .relations_of("system:default/sys-3")
                .await
                .unwrap()
                .len(),
            n / 10
        );
        assert_eq!(
            store.verify_chain().await.unwrap().checked,
            (n + n / 10) as i64
        );
    })
    .await;
}
