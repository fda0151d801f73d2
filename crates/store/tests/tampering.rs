//! Tampering with the log directly in the database is detected by
//! `verify_chain`, which names the first broken entry. Both engines.

mod common;

use common::{TestDb, each_db};
use pave_store::{EventRow, NewEvent, Store, VerifyReport};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A store with 10 events.
async fn seeded(db: &TestDb) -> (Store, Vec<EventRow>) {
    let store = db.open().await;
    let mut rows = Vec::new();
    for i in 1..=10 {
        let ev = NewEvent {
            event_type: "dev.cdevents.service.deployed.0.2.0".into(),
            subject: format!("service:hello/{}", i % 3),
            actor: "system".into(),
            payload: json!({ "n": i, "env": "prod" }),
        };
        rows.push(store.append_event(&ev).await.unwrap());
    }
    let report = store.verify_chain().await.unwrap();
    assert!(
        report.ok && report.checked == 10,
        "untampered chain verifies: {report:?}"
    );
    (store, rows)
}

/// Asserts that verification fails at `seq` with a reason containing `reason`.
fn assert_broken(report: &VerifyReport, seq: i64, reason: &str, db: &TestDb) {
    assert!(
        !report.ok,
        "[{:?}] tampering not detected: {report:?}",
        db.backend
    );
    let failure = report.failure.as_ref().unwrap();
    assert_eq!(
        failure.seq, seq,
        "[{:?}] wrong entry: {report:?}",
        db.backend
    );
    assert!(
        failure.reason.contains(reason),
        "[{:?}] reason `{}` lacks `{reason}`",
        db.backend,
        failure.reason
    );
    assert_eq!(
        report.head_seq, report.checked,
        "head is the last verified entry"
    );
}

#[tokio::test]
async fn edited_payload_is_detected() {
    each_db(|db| async move {
        let (store, rows) = seeded(&db).await;
        assert_eq!(
            db.raw(r#"UPDATE events SET payload = '{"env":"prod","n":500}' WHERE seq = 5"#)
                .await,
            1
        );
        let report = store.verify_chain().await.unwrap();
        assert_broken(&report, 5, "hash mismatch: entry was edited", &db);
        assert_eq!(
            report.failure.as_ref().unwrap().id.as_deref(),
            Some(rows[4].id.as_str())
        );
        assert_eq!(
            (report.checked, report.head_hash.as_str()),
            (4, rows[3].hash.as_str())
        );
    })
    .await;
}

#[tokio::test]
async fn edited_time_is_detected() {
    each_db(|db| async move {
        let (store, _) = seeded(&db).await;
        db.raw("UPDATE events SET time = '2001-01-01T00:00:00.000Z' WHERE seq = 3")
            .await;
        assert_broken(
            &store.verify_chain().await.unwrap(),
            3,
            "hash mismatch",
            &db,
        );
    })
    .await;
}

#[tokio::test]
async fn edited_actor_subject_type_or_id_are_detected() {
    each_db(|db| async move {
        let (store, rows) = seeded(&db).await;
        for (column, seq) in [("actor", 2), ("subject", 4), ("event_type", 6), ("id", 8)] {
            let before = if column == "id" { rows[seq - 1].id.clone() } else { String::new() };
            db.raw(&format!("UPDATE events SET {column} = {column} || 'x' WHERE seq = {seq}")).await;
            assert_broken(&store.verify_chain().await.unwrap(), seq as i64, "hash mismatch", &db);
            db.raw(&format!("UPDATE events SET {column} = substr({column}, 1, length({column}) - 1) WHERE seq = {seq}"))
                .await;
            if column == "id" {
                assert_eq!(store.list_events(&Default::default()).await.unwrap()[seq - 1].id, before);
            }
            assert!(store.verify_chain().await.unwrap().ok, "restored after editing {column}");
        }
    })
    .await;
}

#[tokio::test]
async fn deleted_middle_row_is_a_gap() {
    each_db(|db| async move {
        let (store, _) = seeded(&db).await;
        db.raw("DELETE FROM events WHERE seq = 6").await;
        let report = store.verify_chain().await.unwrap();
        assert_broken(&report, 6, "gap: entry 6 missing", &db);
        assert_eq!(report.failure.unwrap().id, None);
    })
    .await;
}

#[tokio::test]
async fn deleted_last_row_is_a_truncation() {
    each_db(|db| async move {
        let (store, rows) = seeded(&db).await;
        db.raw("DELETE FROM events WHERE seq >= 9").await;
        let report = store.verify_chain().await.unwrap();
        assert_broken(&report, 9, "truncated", &db);
        assert_eq!(
            (report.checked, report.head_hash.as_str()),
            (8, rows[7].hash.as_str())
        );
    })
    .await;
}

#[tokio::test]
async fn swapped_rows_are_detected() {
    each_db(|db| async move {
        let (store, _) = seeded(&db).await;
        db.raw("UPDATE events SET seq = -1 WHERE seq = 3").await;
        db.raw("UPDATE events SET seq = 3 WHERE seq = 7").await;
        db.raw("UPDATE events SET seq = 7 WHERE seq = -1").await;
        assert_broken(
            &store.verify_chain().await.unwrap(),
            3,
            "prev_hash does not match entry 2",
            &db,
        );
    })
    .await;
}

#[tokio::test]
async fn swapped_adjacent_rows_are_detected() {
    each_db(|db| async move {
        let (store, _) = seeded(&db).await;
        db.raw("UPDATE events SET seq = -1 WHERE seq = 4").await;
        db.raw("UPDATE events SET seq = 4 WHERE seq = 5").await;
        db.raw("UPDATE events SET seq = 5 WHERE seq = -1").await;
        assert_broken(
            &store.verify_chain().await.unwrap(),
            4,
            "prev_hash does not match entry 3",
            &db,
        );
    })
    .await;
}

#[tokio::test]
async fn forged_hash_with_matching_next_prev_hash_is_detected() {
    each_db(|db| async move {
        let (store, _) = seeded(&db).await;
        let forged = "f".repeat(64);
        // Row 5 gets a forged hash, and row 6 is made to link to it.
        db.raw(&format!(
            "UPDATE events SET hash = '{forged}' WHERE seq = 5"
        ))
        .await;
        db.raw(&format!(
            "UPDATE events SET prev_hash = '{forged}' WHERE seq = 6"
        ))
        .await;
        assert_broken(
            &store.verify_chain().await.unwrap(),
            5,
            "hash mismatch",
            &db,
        );
    })
    .await;
}

#[tokio::test]
async fn forged_hash_and_prev_hash_of_one_row_are_detected() {
    each_db(|db| async move {
        let (store, _) = seeded(&db).await;
        db.raw(&format!(
            "UPDATE events SET hash = '{}', prev_hash = '{}' WHERE seq = 7",
            "a".repeat(64),
            "b".repeat(64)
        ))
        .await;
        assert_broken(
            &store.verify_chain().await.unwrap(),
            7,
            "prev_hash does not match entry 6",
            &db,
        );
    })
    .await;
}

#[tokio::test]
async fn swapped_hashes_between_rows_are_detected() {
    each_db(|db| async move {
        let (store, rows) = seeded(&db).await;
        // Exchange (prev_hash, hash) of rows 2 and 8.
        for (seq, from) in [(2, &rows[7]), (8, &rows[1])] {
            db.raw(&format!(
                "UPDATE events SET prev_hash = '{}', hash = '{}' WHERE seq = {seq}",
                from.prev_hash, from.hash
            ))
            .await;
        }
        assert_broken(
            &store.verify_chain().await.unwrap(),
            2,
            "prev_hash does not match entry 1",
            &db,
        );
    })
    .await;
}

/// Re-hashing an edited entry correctly still breaks the link to the next
/// entry, or, for the last entry, the hash recorded in the head.
#[tokio::test]
async fn consistently_rehashed_edits_are_detected() {
    each_db(|db| async move {
        let (store, rows) = seeded(&db).await;
        for seq in [5usize, 10] {
            let row = &rows[seq - 1];
            let payload = json!({ "env": "prod", "n": 1000 });
            let canonical = format!(
                r#"{{"actor":{},"id":{},"payload":{},"seq":{seq},"subject":{},"time":{},"type":{}}}"#,
                json!(row.actor),
                json!(row.id),
                payload,
                json!(row.subject),
                json!(row.time),
                json!(row.event_type)
            );
            let mut hasher = Sha256::new();
            hasher.update(decode_hex(&row.prev_hash));
            hasher.update(canonical.as_bytes());
            let hash: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
            db.raw(&format!("UPDATE events SET payload = '{payload}', hash = '{hash}' WHERE seq = {seq}")).await;
            let report = store.verify_chain().await.unwrap();
            if seq == 5 {
                assert_broken(&report, 6, "prev_hash does not match entry 5", &db);
                // Undo, so the second case starts from an intact chain.
                db.raw(&format!(
                    "UPDATE events SET payload = '{}', hash = '{}' WHERE seq = 5",
                    serde_json::to_string(&row.payload).unwrap(),
                    row.hash
                ))
                .await;
                assert!(store.verify_chain().await.unwrap().ok);
            } else {
                assert_broken(&report, 10, "the last entry was rewritten", &db);
            }
        }
    })
    .await;
}

fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
