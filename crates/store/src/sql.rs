//! Small SQL helpers shared by the modules: placeholders for dynamic
//! statements, row decoding that turns bad contents into `Corrupt`, and
//! error classification.

use serde_json::Value;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use crate::{Backend, Result, StoreError};

/// Bind parameters per statement: well below SQLite's 32766 and PostgreSQL's
/// 65535; smaller statements also pipeline better (see `execute_all`).
pub(crate) const MAX_BINDS: usize = 8_000;

/// Rows per multi-row statement for a table with `cols` bound columns.
pub(crate) fn rows_per_chunk(cols: usize) -> usize {
    (MAX_BINDS / cols.max(1)).max(1)
}

/// Placeholder number `n` (1-based). SQLite gets plain `?`: it resolves
/// `$N` names by a linear search per parameter, which makes a statement
/// with thousands of them quadratic to prepare; PostgreSQL needs `$N`.
fn placeholder(out: &mut String, backend: Backend, n: usize) {
    match backend {
        Backend::Sqlite => out.push('?'),
        Backend::Postgres => {
            out.push('$');
            out.push_str(&n.to_string());
        }
    }
}

/// `($1,$2),($3,$4)` for `rows` rows of `cols` placeholders.
pub(crate) fn values(backend: Backend, rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 7);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push(',');
            }
            n += 1;
            placeholder(&mut out, backend, n);
        }
        out.push(')');
    }
    out
}

/// `$1,$2,...`: `n` placeholders; they must be the statement's only ones.
pub(crate) fn list(backend: Backend, n: usize) -> String {
    let mut out = String::with_capacity(n * 7);
    for i in 1..=n {
        if i > 1 {
            out.push(',');
        }
        placeholder(&mut out, backend, i);
    }
    out
}

/// A statement with its bound values.
pub(crate) type AnyQuery = Query<'static, Any, AnyArguments>;

/// Executes statements in order, building the next one while the current
/// one runs: on SQLite the statement executes on sqlx's worker thread, so
/// preparing values (and hashing events) overlaps with SQLite's work.
pub(crate) async fn execute_all<I>(conn: &mut AnyConnection, mut queries: I) -> Result<()>
where
    I: Iterator<Item = Result<AnyQuery>>,
{
    let mut current = queries.next().transpose()?;
    while let Some(q) = current {
        // `biased`: poll the statement first so it is on its way before
        // the next one is built.
        let (done, next) =
            tokio::join!(biased; q.execute(&mut *conn), async { queries.next().transpose() });
        done?;
        current = next?;
    }
    Ok(())
}

/// Reads a column; a missing or mistyped value means the row is corrupt.
pub(crate) fn get<'r, T>(row: &'r AnyRow, col: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col)
        .map_err(|e| StoreError::Corrupt(format!("column `{col}`: {e}")))
}

/// Parses a stored JSON column.
pub(crate) fn json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("{what} is not valid JSON: {e}")))
}

/// True when `e` is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(values(Backend::Postgres, 2, 2), "($1,$2),($3,$4)");
        assert_eq!(values(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
        assert_eq!(list(Backend::Postgres, 3), "$1,$2,$3");
        assert_eq!(list(Backend::Sqlite, 2), "?,?");
        assert_eq!(rows_per_chunk(9), 888);
    }
}
