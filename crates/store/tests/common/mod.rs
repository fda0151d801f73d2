//! Shared test helper: every behavioural test runs against a fresh SQLite
//! file and a fresh PostgreSQL database (created per test, dropped after).
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pave_store::{Backend, EntityInput, RelationRow, Store};
use serde_json::json;
use sqlx::{AnyConnection, AssertSqlSafe, Connection};

/// The PostgreSQL server tests use (trust auth).
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432";

/// A fresh, empty database for one test.
#[derive(Clone, Debug)]
pub struct TestDb {
    /// Store URL of the database.
    pub url: String,
    pub backend: Backend,
}

impl TestDb {
    /// Opens a store on this database (runs migrations).
    pub async fn open(&self) -> Store {
        match Store::open(&self.url).await {
            Ok(s) => s,
            Err(e) => panic!("[{:?}] open {}: {e}", self.backend, self.url),
        }
    }

    /// Runs raw SQL directly against the database, outside the store.
    pub async fn raw(&self, sql: &str) -> u64 {
        let mut conn = self.raw_conn().await;
        let done = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("[{:?}] raw SQL `{sql}`: {e}", self.backend));
        let _ = conn.close().await;
        done.rows_affected()
    }

    /// A raw connection to the database.
    pub async fn raw_conn(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("[{:?}] raw connect: {e}", self.backend))
    }
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `test` once on a fresh SQLite file and once on a fresh PostgreSQL
/// database. Without PostgreSQL the second half is skipped loudly, or fails
/// when `PAVE_REQUIRE_POSTGRES=1`.
pub async fn each_db<F, Fut>(test: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // SQLite: a fresh directory under the system temp dir.
    let dir = std::env::temp_dir().join(format!("pave-store-test-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let db = TestDb {
        url: format!("sqlite://{}/pave.db", dir.display()),
        backend: Backend::Sqlite,
    };
    let outcome = tokio::spawn(test(db)).await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = outcome {
        eprintln!("*** test failed on SQLite ***");
        std::panic::resume_unwind(e.into_panic());
    }

    // PostgreSQL: a fresh database, dropped afterwards.
    let Some(mut admin) = pg_admin().await else {
        return;
    };
    let name = format!("pave_test_{}", unique_suffix());
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let db = TestDb {
        url: format!("{PG_BASE}/{name}"),
        backend: Backend::Postgres,
    };
    let outcome = tokio::spawn(test(db)).await;
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    {
        eprintln!("could not drop test database {name}: {e}");
    }
    let _ = admin.close().await;
    if let Err(e) = outcome {
        eprintln!("*** test failed on PostgreSQL ***");
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A connection to the `postgres` database, or `None` (after a loud
/// message) when the server does not answer and it is not required.
async fn pg_admin() -> Option<AnyConnection> {
    sqlx::any::install_default_drivers();
    let attempt =
        tokio::time::timeout(Duration::from_secs(5), AnyConnection::connect(PG_ADMIN_URL)).await;
    let error = match attempt {
        Ok(Ok(conn)) => return Some(conn),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out after 5 s".to_string(),
    };
    if std::env::var("PAVE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!("PostgreSQL at 127.0.0.1:5432 not reachable ({error}) and PAVE_REQUIRE_POSTGRES=1");
    }
    eprintln!(
        "*** PostgreSQL at 127.0.0.1:5432 not reachable: PostgreSQL half SKIPPED *** ({error})"
    );
    None
}

/// A Component owned by `group` (a Group key), with both directions of the
/// ownership relation, like the catalog produces.
pub fn component(name: &str, group: &str, extra: serde_json::Value) -> EntityInput {
    let key = format!("component:default/{name}");
    EntityInput {
        key: key.clone(),
        kind: "Component".into(),
        namespace: "default".into(),
        name: name.into(),
        owner_key: Some(group.into()),
        document: json!({
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "owner": group, "type": "service", "extra": extra },
        }),
        origin: Some(format!("catalog/{name}.yaml:1:1")),
        relations: vec![
            RelationRow {
                source_key: key.clone(),
                rel_type: "ownedBy".into(),
                target_key: group.into(),
            },
            RelationRow {
                source_key: group.into(),
                rel_type: "ownerOf".into(),
                target_key: key,
            },
        ],
    }
}

/// A Group entity.
pub fn group(name: &str) -> EntityInput {
    EntityInput {
        key: format!("group:default/{name}"),
        kind: "Group".into(),
        namespace: "default".into(),
        name: name.into(),
        owner_key: None,
        document: json!({ "apiVersion": "backstage.io/v1alpha1", "kind": "Group", "metadata": { "name": name } }),
        origin: None,
        relations: vec![],
    }
}
