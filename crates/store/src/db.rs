//! Connecting (URL parsing, SQLite pragmas) and the migration runner.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection};

use crate::{Backend, Result, StoreError, time};

/// Connections per pool.
const MAX_CONNECTIONS: u32 = 10;
/// Key of the PostgreSQL advisory lock taken while migrating.
const MIGRATION_LOCK: i64 = 0x0070_6176_656d_6967; // "pavemig"

/// One embedded migration.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const SQLITE_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "runs",
        sql: include_str!("../migrations/sqlite/0002_runs.sql"),
    },
    Migration {
        version: 3,
        name: "tests",
        sql: include_str!("../migrations/sqlite/0003_tests.sql"),
    },
    Migration {
        version: 4,
        name: "secrets",
        sql: include_str!("../migrations/sqlite/0004_secrets.sql"),
    },
    Migration {
        version: 5,
        name: "pipeline_templates",
        sql: include_str!("../migrations/sqlite/0005_pipeline_templates.sql"),
    },
    Migration {
        version: 6,
        name: "scheduling",
        sql: include_str!("../migrations/sqlite/0006_scheduling.sql"),
    },
    Migration {
        version: 7,
        name: "local_runs",
        sql: include_str!("../migrations/sqlite/0007_local_runs.sql"),
    },
    Migration {
        version: 8,
        name: "deployments",
        sql: include_str!("../migrations/sqlite/0008_deployments.sql"),
    },
];

const POSTGRES_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "runs",
        sql: include_str!("../migrations/postgres/0002_runs.sql"),
    },
    Migration {
        version: 3,
        name: "tests",
        sql: include_str!("../migrations/postgres/0003_tests.sql"),
    },
    Migration {
        version: 4,
        name: "secrets",
        sql: include_str!("../migrations/postgres/0004_secrets.sql"),
    },
    Migration {
        version: 5,
        name: "pipeline_templates",
        sql: include_str!("../migrations/postgres/0005_pipeline_templates.sql"),
    },
    Migration {
        version: 6,
        name: "scheduling",
        sql: include_str!("../migrations/postgres/0006_scheduling.sql"),
    },
    Migration {
        version: 7,
        name: "local_runs",
        sql: include_str!("../migrations/postgres/0007_local_runs.sql"),
    },
    Migration {
        version: 8,
        name: "deployments",
        sql: include_str!("../migrations/postgres/0008_deployments.sql"),
    },
];

/// Opens a pool for `url`.
pub(crate) async fn connect(url: &str) -> Result<(AnyPool, Backend)> {
    sqlx::any::install_default_drivers();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let url = sqlite_url(path).ok_or_else(|| StoreError::UnsupportedUrl(url.to_string()))?;
        enable_wal(&url).await?;
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::raw_sql(
                        "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
                         PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY;",
                    )
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok((pool, Backend::Sqlite))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        Ok((pool, Backend::Postgres))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// The sqlx URL for a `sqlite://` path: absolute (a relative path would be
/// read as a URL host and lowercased), percent-encoded, create-if-missing.
/// Creates the parent directory. `None` for an empty or non-UTF-8 path.
fn sqlite_url(path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return None;
    }
    let mut abs = PathBuf::from(path);
    if abs.is_relative() {
        abs = std::env::current_dir().ok()?.join(abs);
    }
    if let Some(parent) = abs.parent() {
        // An unwritable parent surfaces as a clearer open error just below.
        let _ = std::fs::create_dir_all(parent);
    }
    let mut encoded = String::new();
    for b in abs.to_str()?.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Some(format!("sqlite://{encoded}?mode=rwc"))
}

/// Switches the file to WAL once, before the pool exists. WAL is persistent;
/// the switch needs an exclusive lock that busy_timeout does not wait for,
/// so retry briefly when another process holds the file.
async fn enable_wal(url: &str) -> Result<()> {
    let mut conn = AnyConnection::connect(url).await?;
    let mut attempt = 0;
    let result = loop {
        match sqlx::raw_sql("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")
            .execute(&mut conn)
            .await
        {
            Err(e) if attempt < 50 && is_busy(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other,
        }
    };
    conn.close().await?;
    result?;
    Ok(())
}

fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.message().contains("locked") || db.message().contains("busy"))
}

/// Applies pending migrations, each in its own transaction. Concurrent
/// openers are serialized: SQLite by `BEGIN IMMEDIATE`, PostgreSQL by a
/// transaction-scoped advisory lock taken before anything else.
pub(crate) async fn migrate(pool: &AnyPool, backend: Backend) -> Result<()> {
    let (migrations, create_table) = match backend {
        Backend::Sqlite => (
            SQLITE_MIGRATIONS,
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        ),
        Backend::Postgres => (
            POSTGRES_MIGRATIONS,
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        ),
    };
    let latest = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    for m in migrations {
        let fail =
            |e: sqlx::Error| StoreError::Migration(format!("{:04}_{}: {e}", m.version, m.name));
        let mut tx = match backend {
            Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => pool.begin().await,
        }
        .map_err(fail)?;
        if backend == Backend::Postgres {
            // pg_advisory_xact_lock returns void, which the Any driver cannot
            // decode; select a constant from it instead.
            sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        sqlx::raw_sql(create_table)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
        if let Some(newest) = newest.filter(|v| *v > latest) {
            return Err(StoreError::Migration(format!(
                "database schema is at version {newest}, newer than this build knows ({latest}); upgrade pave"
            )));
        }
        let applied = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
            .bind(m.version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
        if applied.is_none() {
            sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(fail)?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(time::now())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            tracing::info!(version = m.version, name = m.name, "applied migration");
        }
        tx.commit().await.map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_absolute_and_encoded() {
        let dir = std::env::temp_dir().join(format!("pave-db-url-{}", std::process::id()));
        let path = dir.join("My Data#1.db");
        let url = sqlite_url(path.to_str().unwrap()).unwrap();
        assert!(url.starts_with("sqlite:///"), "{url}");
        assert!(url.ends_with("/My%20Data%231.db?mode=rwc"), "{url}");
        assert!(sqlite_url("").is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
