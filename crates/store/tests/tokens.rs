//! Tokens and sessions on both engines.

mod common;

use common::each_db;
use pave_store::{EventQuery, NewToken, StoreError};
use serde_json::json;

fn token(name: &str, secret_hash: &str) -> NewToken {
    NewToken {
        name: name.into(),
        role: "developer".into(),
        team: Some("payments".into()),
        secret_hash: secret_hash.into(),
    }
}

const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HASH_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[tokio::test]
async fn create_find_list_revoke() {
    each_db(|db| async move {
        let store = db.open().await;
        let a = store
            .create_token(&token("ci-bot", HASH_A), "user:admin")
            .await
            .unwrap();
        assert_eq!(a.id.len(), 26);
        assert_eq!(a.created_by, "user:admin");
        assert!(a.revoked_at.is_none());
        let mut b_input = token("laptop", HASH_B);
        b_input.team = None;
        b_input.role = "admin".into();
        let b = store.create_token(&b_input, "user:admin").await.unwrap();

        assert_eq!(store.find_token(HASH_A).await.unwrap(), Some(a.clone()));
        assert_eq!(store.find_token(HASH_B).await.unwrap().unwrap().team, None);
        assert_eq!(store.find_token("cccc").await.unwrap(), None);
        assert_eq!(
            store.list_tokens().await.unwrap(),
            vec![b.clone(), a.clone()],
            "newest first"
        );

        // The same secret twice is refused and leaves nothing behind.
        let err = store
            .create_token(&token("dup", HASH_A), "user:admin")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(store.list_tokens().await.unwrap().len(), 2);

        assert!(store.revoke_token(&a.id, "user:admin").await.unwrap());
        assert!(
            !store.revoke_token(&a.id, "user:admin").await.unwrap(),
            "already revoked"
        );
        assert!(
            !store.revoke_token("01NOPE", "user:admin").await.unwrap(),
            "absent"
        );
        assert_eq!(store.find_token(HASH_A).await.unwrap(), None);
        let listed = store.list_tokens().await.unwrap();
        assert!(
            listed
                .iter()
                .find(|t| t.id == a.id)
                .unwrap()
                .revoked_at
                .is_some()
        );

        let events = store.list_events(&EventQuery::default()).await.unwrap();
        let summary: Vec<(&str, String)> = events
            .iter()
            .map(|e| (e.event_type.as_str(), e.subject.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("dev.pave.token.created.0.1.0", format!("token:{}", a.id)),
                ("dev.pave.token.created.0.1.0", format!("token:{}", b.id)),
                ("dev.pave.token.revoked.0.1.0", format!("token:{}", a.id)),
            ]
        );
        assert_eq!(
            events[0].payload,
            json!({ "name": "ci-bot", "role": "developer", "team": "payments" })
        );
        assert_eq!(
            events[2].payload,
            json!({ "name": "ci-bot", "role": "developer", "team": "payments" })
        );
        assert_eq!(events[2].actor, "user:admin");
        // No secret hash anywhere in the log.
        for e in &events {
            let text = serde_json::to_string(e).unwrap();
            assert!(
                !text.contains(HASH_A) && !text.contains(HASH_B),
                "secret leaked into {text}"
            );
        }
        assert!(store.verify_chain().await.unwrap().ok);
    })
    .await;
}

#[tokio::test]
async fn sessions_expire_and_die_with_their_token() {
    each_db(|db| async move {
        let store = db.open().await;
        let t = store
            .create_token(&token("alice", HASH_A), "user:admin")
            .await
            .unwrap();
        let future = "2999-01-01T00:00:00Z";
        store
            .create_session("sess-live", &t.id, future)
            .await
            .unwrap();
        store
            .create_session("sess-old", &t.id, "2001-01-01T00:00:00.000Z")
            .await
            .unwrap();
        // Offsets are normalized to UTC before comparing.
        store
            .create_session("sess-offset", &t.id, "2999-01-01T02:00:00+02:00")
            .await
            .unwrap();

        assert_eq!(
            store.find_session("sess-live").await.unwrap(),
            Some(t.clone())
        );
        assert_eq!(
            store.find_session("sess-offset").await.unwrap(),
            Some(t.clone())
        );
        assert_eq!(
            store.find_session("sess-old").await.unwrap(),
            None,
            "expired"
        );
        assert_eq!(store.find_session("nope").await.unwrap(), None);

        store.delete_session("sess-offset").await.unwrap();
        assert_eq!(store.find_session("sess-offset").await.unwrap(), None);
        store.delete_session("sess-offset").await.unwrap();

        let err = store
            .create_session("s2", "01NOPE", future)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let err = store
            .create_session("s3", &t.id, "tomorrow")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");

        assert!(store.revoke_token(&t.id, "user:admin").await.unwrap());
        assert_eq!(
            store.find_session("sess-live").await.unwrap(),
            None,
            "revoke kills the session"
        );
        let err = store.create_session("s4", &t.id, future).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(_)),
            "no sessions for revoked tokens: {err}"
        );

        // Sessions are not audit events; only the token lifecycle is.
        assert_eq!(
            store
                .list_events(&EventQuery::default())
                .await
                .unwrap()
                .len(),
            2
        );
    })
    .await;
}
