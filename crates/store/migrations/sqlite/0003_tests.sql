-- Test case results ingested from the JUnit reports of completed jobs, and
-- the per-service test quarantine (see crates/store/src/test_results.rs).
-- Times are TEXT (RFC 3339 UTC, milliseconds) compared bytewise.

CREATE TABLE test_results (
    run_id        TEXT NOT NULL,
    job_id        TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    -- Position of the case in the job's report (a job completes once).
    seq           INTEGER NOT NULL,
    service_key   TEXT NOT NULL,
    sha           TEXT NOT NULL,
    -- `classname::name` (or `suite::name` without a classname).
    test_id       TEXT NOT NULL,
    suite         TEXT NOT NULL,
    -- passed | failed | error | skipped
    status        TEXT NOT NULL,
    duration_ms   INTEGER NOT NULL,
    -- The failure/error/skip message, at most 4 KiB.
    message       TEXT,
    flaky_reruns  INTEGER NOT NULL,
    failed_reruns INTEGER NOT NULL,
    time          TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX test_results_run ON test_results (run_id, job_id, seq);
CREATE INDEX test_results_test ON test_results (service_key, test_id, time);
CREATE INDEX test_results_time ON test_results (time);

-- Quarantined tests still run and are recorded, but do not fail their job.
CREATE TABLE test_quarantine (
    service_key TEXT NOT NULL,
    test_id     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    time        TEXT NOT NULL,
    PRIMARY KEY (service_key, test_id)
);
