-- Test case results ingested from the JUnit reports of completed jobs, and
-- the per-service test quarantine (see crates/store/src/test_results.rs).
-- Times are TEXT (RFC 3339 UTC, milliseconds) compared bytewise (COLLATE "C").

CREATE TABLE test_results (
    run_id        TEXT COLLATE "C" NOT NULL,
    job_id        TEXT COLLATE "C" NOT NULL,
    attempt       BIGINT NOT NULL,
    -- Position of the case in the job's report (a job completes once).
    seq           BIGINT NOT NULL,
    service_key   TEXT COLLATE "C" NOT NULL,
    sha           TEXT NOT NULL,
    -- `classname::name` (or `suite::name` without a classname).
    test_id       TEXT COLLATE "C" NOT NULL,
    suite         TEXT NOT NULL,
    -- passed | failed | error | skipped
    status        TEXT NOT NULL,
    duration_ms   BIGINT NOT NULL,
    -- The failure/error/skip message, at most 4 KiB.
    message       TEXT,
    flaky_reruns  BIGINT NOT NULL,
    failed_reruns BIGINT NOT NULL,
    time          TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX test_results_run ON test_results (run_id, job_id, seq);
CREATE INDEX test_results_test ON test_results (service_key, test_id, time);
CREATE INDEX test_results_time ON test_results (time);

-- Quarantined tests still run and are recorded, but do not fail their job.
CREATE TABLE test_quarantine (
    service_key TEXT COLLATE "C" NOT NULL,
    test_id     TEXT COLLATE "C" NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    time        TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (service_key, test_id)
);
