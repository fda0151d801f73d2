//! Test case results and the test quarantine.
//!
//! A job's report (the agent's `result`) carries the test cases of its
//! steps' `junit:` reports. They are written by `complete_job` inside its
//! transaction, so a late or duplicate report (which that transaction
//! refuses) never counts a test twice, together with one
//! `testsuiterun.finished` event per job with tests; its payload has the
//! counts and outcome, never the cases' messages.
//!
//! The quarantine is a per-service set of test ids: quarantined tests still
//! run and are recorded, but a step whose only failures are quarantined
//! tests does not fail its job (the runner decides; the claim hands the set
//! to the agent). Quarantining and releasing append events.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe};

use crate::{Backend, JobRow, NewEvent, Result, RunRow, Store, StoreError, sql, time};

const SUITE_FINISHED: &str = "dev.cdevents.testsuiterun.finished.0.2.0";
const QUARANTINED: &str = "dev.pave.test.quarantined.0.1.0";
const UNQUARANTINED: &str = "dev.pave.test.unquarantined.0.1.0";

/// Longest stored message (bytes, cut at a character boundary).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;
/// Longest test id, suite name or quarantine reason (bytes).
pub const MAX_ID_BYTES: usize = 4 * 1024;
/// Most test cases one job may report.
pub const MAX_CASES_PER_JOB: usize = 100_000;
/// Failing test ids named in a `testsuiterun.finished` event.
const EVENT_FAILING_IDS: usize = 20;

const COLUMNS: &str = "run_id, job_id, attempt, seq, service_key, sha, test_id, suite, status, \
     duration_ms, message, flaky_reruns, failed_reruns, time";

/// The statuses a test case may have.
pub const TEST_STATUSES: [&str; 4] = ["passed", "failed", "error", "skipped"];

/// One test case as a job reports it (the fields of
/// `pave_pipeline::junit::TestCaseResult` the store keeps; others ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedTest {
    /// Innermost `<testsuite>` name.
    #[serde(default)]
    pub suite: String,
    /// The `classname` attribute.
    #[serde(default)]
    pub classname: String,
    /// The `name` attribute.
    pub name: String,
    /// `passed`, `failed`, `error` or `skipped`.
    pub status: String,
    /// Duration in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
    /// The failure/error/skip message.
    #[serde(default)]
    pub message: Option<String>,
    /// Failed attempts before a final pass.
    #[serde(default)]
    pub flaky_reruns: u32,
    /// Failed reruns after a failure.
    #[serde(default)]
    pub failed_reruns: u32,
}

impl ReportedTest {
    /// `classname::name`, or `suite::name` without a classname (as
    /// `TestCaseResult::test_id`).
    pub fn test_id(&self) -> String {
        let scope = if self.classname.is_empty() {
            &self.suite
        } else {
            &self.classname
        };
        if scope.is_empty() {
            self.name.clone()
        } else {
            format!("{scope}::{}", self.name)
        }
    }
}

/// A stored test case result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResultRow {
    pub run_id: String,
    pub job_id: String,
    /// The job's instance key (e.g. `test (py=3.12)`).
    pub job_key: String,
    /// The job's attempt that reported it.
    pub attempt: i64,
    /// Position in the job's report.
    pub seq: i64,
    pub service_key: String,
    pub sha: String,
    /// `classname::name`.
    pub test_id: String,
    pub suite: String,
    /// `passed`, `failed`, `error` or `skipped`.
    pub status: String,
    pub duration_ms: i64,
    /// At most 4 KiB.
    pub message: Option<String>,
    pub flaky_reruns: i64,
    pub failed_reruns: i64,
    /// When the job's report was recorded.
    pub time: String,
}

/// One non-skipped result of a test, as flaky detection reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestObservationRow {
    pub service_key: String,
    pub test_id: String,
    pub run_id: String,
    pub sha: String,
    /// `passed`, `failed` or `error`.
    pub status: String,
    pub flaky_reruns: i64,
    pub time: String,
}

/// A quarantined test of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRow {
    pub service_key: String,
    pub test_id: String,
    pub reason: String,
    /// Who quarantined it (event actor string).
    pub actor: String,
    pub time: String,
}

/// The test cases in a job's reported `result` (its `tests` array; none
/// when absent or null). `Conflict` when they are malformed or too many.
pub fn reported_tests(result: &Value) -> Result<Vec<ReportedTest>> {
    let tests = match result.get("tests") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(StoreError::Conflict(
                "result.tests must be an array of test cases".into(),
            ));
        }
    };
    if tests.len() > MAX_CASES_PER_JOB {
        return Err(StoreError::Conflict(format!(
            "result.tests has {} test cases; at most {MAX_CASES_PER_JOB} per job",
            tests.len()
        )));
    }
    tests
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let case: ReportedTest = ReportedTest::deserialize(item)
                .map_err(|e| StoreError::Conflict(format!("result.tests[{i}]: {e}")))?;
            if !TEST_STATUSES.contains(&case.status.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "result.tests[{i}]: status `{}` is not one of passed, failed, error, skipped",
                    case.status
                )));
            }
            if case.name.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "result.tests[{i}]: the test case has no name"
                )));
            }
            Ok(case)
        })
        .collect()
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Writes a completed job's test cases and returns its
/// `testsuiterun.finished` event (`None` when it reported no tests). Runs
/// inside `complete_job`'s transaction, after the job row was finished.
pub(crate) async fn ingest(
    conn: &mut AnyConnection,
    backend: Backend,
    run: &RunRow,
    job: &JobRow,
    tests: &[ReportedTest],
    actor: &str,
    now: &str,
) -> Result<Option<NewEvent>> {
    if tests.is_empty() {
        return Ok(None);
    }
    let rows: Vec<(i64, &ReportedTest)> = tests
        .iter()
        .enumerate()
        .map(|(i, t)| (i as i64, t))
        .collect();
    for chunk in rows.chunks(sql::rows_per_chunk(14)) {
        let text = format!(
            "INSERT INTO test_results ({COLUMNS}) VALUES {}",
            sql::values(backend, chunk.len(), 14)
        );
        let mut q = sqlx::query(AssertSqlSafe(text));
        for (seq, t) in chunk {
            q = q
                .bind(run.id.clone())
                .bind(job.id.clone())
                .bind(job.attempt)
                .bind(*seq)
                .bind(run.service_key.clone())
                .bind(run.sha.clone())
                .bind(truncate(&t.test_id(), MAX_ID_BYTES))
                .bind(truncate(&t.suite, MAX_ID_BYTES))
                .bind(t.status.clone())
                .bind(to_i64(t.duration_ms))
                .bind(t.message.as_deref().map(|m| truncate(m, MAX_MESSAGE_BYTES)))
                .bind(i64::from(t.flaky_reruns))
                .bind(i64::from(t.failed_reruns))
                .bind(now.to_string());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(Some(suite_event(run, job, tests, actor)))
}

/// The `testsuiterun.finished` event of one job: counts and outcome, and at
/// most the first few failing test ids (never messages).
fn suite_event(run: &RunRow, job: &JobRow, tests: &[ReportedTest], actor: &str) -> NewEvent {
    let count = |status: &str| tests.iter().filter(|t| t.status == status).count();
    let (failed, errors) = (count("failed"), count("error"));
    let failing: Vec<String> = tests
        .iter()
        .filter(|t| t.status == "failed" || t.status == "error")
        .take(EVENT_FAILING_IDS)
        .map(|t| truncate(&t.test_id(), 256))
        .collect();
    let duration_ms: u64 = tests
        .iter()
        .fold(0u64, |acc, t| acc.saturating_add(t.duration_ms));
    NewEvent {
        event_type: SUITE_FINISHED.to_string(),
        subject: format!("job:{}", job.id),
        actor: actor.to_string(),
        payload: json!({
            "run_id": run.id,
            "job_id": job.id,
            "key": job.key,
            "attempt": job.attempt,
            "service": run.service_key,
            "sha": run.sha,
            "outcome": if failed + errors > 0 { "fail" } else { "pass" },
            "tests": tests.len(),
            "passed": count("passed"),
            "failed": failed,
            "errors": errors,
            "skipped": count("skipped"),
            "flaky": tests.iter().filter(|t| t.status == "passed" && t.flaky_reruns > 0).count(),
            "duration_ms": duration_ms,
            "failing": failing,
            "failing_truncated": failed + errors > EVENT_FAILING_IDS,
        }),
    }
}

/// A run's test cases, in job (plan) order then report order.
pub(crate) async fn list_for_run(pool: &AnyPool, run_id: &str) -> Result<Vec<TestResultRow>> {
    let rows = sqlx::query(
        "SELECT t.run_id, t.job_id, j.key AS job_key, t.attempt, t.seq, t.service_key, t.sha, \
         t.test_id, t.suite, t.status, t.duration_ms, t.message, t.flaky_reruns, \
         t.failed_reruns, t.time \
         FROM test_results t JOIN jobs j ON j.id = t.job_id \
         WHERE t.run_id = $1 ORDER BY j.position, t.seq",
    )
    .bind(run_id.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter().map(result_from_row).collect()
}

fn result_from_row(r: &AnyRow) -> Result<TestResultRow> {
    Ok(TestResultRow {
        run_id: sql::get(r, "run_id")?,
        job_id: sql::get(r, "job_id")?,
        job_key: sql::get(r, "job_key")?,
        attempt: sql::get(r, "attempt")?,
        seq: sql::get(r, "seq")?,
        service_key: sql::get(r, "service_key")?,
        sha: sql::get(r, "sha")?,
        test_id: sql::get(r, "test_id")?,
        suite: sql::get(r, "suite")?,
        status: sql::get(r, "status")?,
        duration_ms: sql::get(r, "duration_ms")?,
        message: sql::get(r, "message")?,
        flaky_reruns: sql::get(r, "flaky_reruns")?,
        failed_reruns: sql::get(r, "failed_reruns")?,
        time: sql::get(r, "time")?,
    })
}

/// The non-skipped results since `since` of every test that, in that time,
/// failed or passed on retry at least once (the only tests that can be
/// flaky), at most the newest `per_test` per test; oldest first per test.
pub(crate) async fn flaky_candidates(
    pool: &AnyPool,
    service_key: Option<&str>,
    since: &str,
    per_test: i64,
) -> Result<Vec<TestObservationRow>> {
    let service_filter = if service_key.is_some() {
        " AND service_key = $3"
    } else {
        ""
    };
    let text = format!(
        "SELECT service_key, test_id, run_id, sha, status, flaky_reruns, time FROM (\
           SELECT t.service_key, t.test_id, t.run_id, t.sha, t.status, t.flaky_reruns, t.time, \
             ROW_NUMBER() OVER (PARTITION BY t.service_key, t.test_id \
                                ORDER BY t.time DESC, t.run_id DESC, t.seq DESC) AS rn \
           FROM test_results t \
           JOIN (SELECT DISTINCT service_key AS c_service, test_id AS c_test FROM test_results \
                 WHERE time >= $1 AND (status IN ('failed', 'error') OR flaky_reruns > 0)\
                 {service_filter}) c \
             ON c.c_service = t.service_key AND c.c_test = t.test_id \
           WHERE t.time >= $1 AND t.status <> 'skipped'\
         ) w WHERE rn <= $2 ORDER BY service_key, test_id, time, run_id"
    );
    let mut q = sqlx::query(AssertSqlSafe(text))
        .bind(since.to_string())
        .bind(per_test.max(1));
    if let Some(key) = service_key {
        q = q.bind(key.to_string());
    }
    let rows = q.fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            Ok(TestObservationRow {
                service_key: sql::get(r, "service_key")?,
                test_id: sql::get(r, "test_id")?,
                run_id: sql::get(r, "run_id")?,
                sha: sql::get(r, "sha")?,
                status: sql::get(r, "status")?,
                flaky_reruns: sql::get(r, "flaky_reruns")?,
                time: sql::get(r, "time")?,
            })
        })
        .collect()
}

/// Checks a test id or reason handed in by a caller.
fn check_text(what: &str, value: &str, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        return Err(StoreError::Conflict(format!("{what} must not be empty")));
    }
    if value.len() > MAX_ID_BYTES || value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(StoreError::Conflict(format!(
            "{what} must be at most {MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// Quarantines a test of a service and appends its event. `Conflict` when
/// it is already quarantined or the id/reason is malformed.
pub(crate) async fn quarantine(
    store: &Store,
    service_key: &str,
    test_id: &str,
    reason: &str,
    actor: &str,
) -> Result<QuarantineRow> {
    check_text("test id", test_id, true)?;
    check_text("reason", reason, false)?;
    let row = QuarantineRow {
        service_key: service_key.to_string(),
        test_id: test_id.to_string(),
        reason: reason.to_string(),
        actor: actor.to_string(),
        time: time::now(),
    };
    let mut tx = store.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO test_quarantine (service_key, test_id, reason, actor, time) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(row.service_key.clone())
    .bind(row.test_id.clone())
    .bind(row.reason.clone())
    .bind(row.actor.clone())
    .bind(row.time.clone())
    .execute(tx.connection())
    .await;
    match inserted {
        Err(e) if sql::is_unique_violation(&e) => {
            return Err(StoreError::Conflict(format!(
                "test `{test_id}` of `{service_key}` is already quarantined"
            )));
        }
        other => other?,
    };
    tx.append_event(&NewEvent {
        event_type: QUARANTINED.to_string(),
        subject: format!("test:{service_key}#{test_id}"),
        actor: actor.to_string(),
        payload: json!({ "service": service_key, "test_id": test_id, "reason": reason }),
    })
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Releases a quarantined test and appends its event; false when it was
/// not quarantined (nothing changes).
pub(crate) async fn unquarantine(
    store: &Store,
    service_key: &str,
    test_id: &str,
    actor: &str,
) -> Result<bool> {
    let mut tx = store.begin().await?;
    let Some(row) = sqlx::query(
        "DELETE FROM test_quarantine WHERE service_key = $1 AND test_id = $2 RETURNING reason",
    )
    .bind(service_key.to_string())
    .bind(test_id.to_string())
    .fetch_optional(tx.connection())
    .await?
    else {
        tx.rollback().await?;
        return Ok(false);
    };
    let reason: String = sql::get(&row, "reason")?;
    tx.append_event(&NewEvent {
        event_type: UNQUARANTINED.to_string(),
        subject: format!("test:{service_key}#{test_id}"),
        actor: actor.to_string(),
        payload: json!({ "service": service_key, "test_id": test_id, "reason": reason }),
    })
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Quarantined tests, of one service or all, by service then test id.
pub(crate) async fn list_quarantined(
    pool: &AnyPool,
    service_key: Option<&str>,
) -> Result<Vec<QuarantineRow>> {
    let rows = match service_key {
        Some(key) => {
            sqlx::query(
                "SELECT service_key, test_id, reason, actor, time FROM test_quarantine \
                 WHERE service_key = $1 ORDER BY service_key, test_id",
            )
            .bind(key.to_string())
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(
                "SELECT service_key, test_id, reason, actor, time FROM test_quarantine \
                 ORDER BY service_key, test_id",
            )
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter()
        .map(|r| {
            Ok(QuarantineRow {
                service_key: sql::get(r, "service_key")?,
                test_id: sql::get(r, "test_id")?,
                reason: sql::get(r, "reason")?,
                actor: sql::get(r, "actor")?,
                time: sql::get(r, "time")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_tests_are_checked() {
        assert!(reported_tests(&json!({})).unwrap().is_empty());
        assert!(
            reported_tests(&json!({ "tests": null }))
                .unwrap()
                .is_empty()
        );
        assert!(reported_tests(&json!({ "tests": 3 })).is_err());
        assert!(reported_tests(&json!({ "tests": [{ "name": "a" }] })).is_err());
        assert!(reported_tests(&json!({ "tests": [{ "name": "a", "status": "weird" }] })).is_err());
        let ok = reported_tests(&json!({ "tests": [
            { "suite": "s", "classname": "c", "name": "a", "status": "failed", "file": null,
              "details": "trace", "flaky_reruns": 1 }
        ] }))
        .unwrap();
        assert_eq!(ok[0].test_id(), "c::a");
        assert_eq!(ok[0].flaky_reruns, 1);
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
