//! Two `pave up` servers sharing one PostgreSQL database; 50 concurrent
//! writers spread over both. The event chain must stay linear and verify.

mod common;

use common::{Pave, scratch_dir};
use serde_json::{Value, json};
use sqlx::Connection;

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Creates a fresh database, or None (loudly) when no PostgreSQL answers.
async fn fresh_database() -> Option<(String, String)> {
    let mut conn = match sqlx::PgConnection::connect(ADMIN_URL).await {
        Ok(conn) => conn,
        Err(e) => {
            if std::env::var("PAVE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!(
                    "PostgreSQL at 127.0.0.1:5432 is required (PAVE_REQUIRE_POSTGRES=1) but: {e}"
                );
            }
            eprintln!(
                "\n*** PostgreSQL at 127.0.0.1:5432 not reachable ({e}): PostgreSQL test SKIPPED ***\n"
            );
            return None;
        }
    };
    let name = format!(
        "pave_e2e_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    Some((
        name.clone(),
        format!("postgres://postgres@127.0.0.1:5432/{name}"),
    ))
}

async fn drop_database(name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(ADMIN_URL).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_one_database_fifty_writers_one_linear_chain() {
    let Some((name, url)) = fresh_database().await else {
        return;
    };
    let (dir_a, dir_b) = (scratch_dir("pg-a"), scratch_dir("pg-b"));
    let (a, b) = {
        let (url_a, url_b) = (url.clone(), url.clone());
        let (da, db) = (dir_a.clone(), dir_b.clone());
        // Start both at once: migrations must not race.
        let ta = std::thread::spawn(move || Pave::start(&da, &["--database", &url_a]));
        let tb = std::thread::spawn(move || Pave::start(&db, &["--database", &url_b]));
        (ta.join().expect("server a"), tb.join().expect("server b"))
    };

    let client = reqwest::Client::new();
    let mut writers = Vec::new();
    for i in 0..50 {
        let (server, token) = if i % 2 == 0 {
            (&a, &a.token)
        } else {
            (&b, &b.token)
        };
        let (client, base, token) = (client.clone(), server.url.clone(), token.clone());
        writers.push(tokio::spawn(async move {
            for round in 0..3 {
                let yaml = format!("service:\n  name: svc-{i}\n  owner: team-{}\n  description: round {round}\n", i % 5);
                let response = client
                    .post(format!("{base}/api/v1/apply"))
                    .bearer_auth(&token)
                    .json(&json!({ "files": [{ "path": format!("svc-{i}/pave.yaml"), "content": yaml }] }))
                    .send()
                    .await
                    .expect("apply");
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                assert!(status.is_success(), "writer {i} round {round}: {status} {body}");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }

    for server in [&a, &b] {
        let report: Value = client
            .get(format!("{}/api/v1/audit/verify", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("verify")
            .json()
            .await
            .expect("json");
        assert_eq!(report["ok"], true, "{report}");
    }
    let events: Vec<Value> = client
        .get(format!("{}/api/v1/audit/events?limit=10000", a.url))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("events")
        .json()
        .await
        .expect("json");
    // Per server a bootstrap admin and an in-process agent token; then
    // 5 implied teams + 50 services created + 100 updates.
    assert_eq!(
        events.len(),
        2 * 2 + 5 + 150,
        "every write left exactly one event"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"].as_i64(), Some(i as i64 + 1), "gapless");
        if i > 0 {
            assert_eq!(
                e["prev_hash"],
                events[i - 1]["hash"],
                "linked at seq {}",
                i + 1
            );
        }
    }
    // Both servers list every service, whichever server wrote it.
    for server in [&a, &b] {
        let services: Vec<Value> = client
            .get(format!("{}/api/v1/services", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("services")
            .json()
            .await
            .expect("json");
        assert_eq!(services.len(), 50);
        assert!(
            services.iter().all(|s| s["description"] == "round 2"),
            "latest write wins everywhere"
        );
    }
    drop(a);
    drop(b);
    drop_database(&name).await;
}
