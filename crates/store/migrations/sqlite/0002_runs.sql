-- Pipeline runs and their jobs: a durable state machine advanced by the
-- server (see crates/store/src/runs.rs), and the jobs' logs.
-- Times are TEXT (RFC 3339 UTC, milliseconds) compared bytewise;
-- JSON is TEXT; flags are 0/1.

CREATE TABLE runs (
    id               TEXT PRIMARY KEY NOT NULL,
    service_key      TEXT NOT NULL,
    number           INTEGER NOT NULL,
    git_ref          TEXT NOT NULL,
    sha              TEXT NOT NULL,
    -- queued | running | finished
    status           TEXT NOT NULL,
    -- success | failure | cancelled | skipped, once finished
    outcome          TEXT,
    plan             TEXT NOT NULL,
    trigger_kind     TEXT NOT NULL,
    actor            TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    -- Last log sequence number handed out for this run (log lines are numbered per run).
    log_seq          INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    UNIQUE (service_key, number)
);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    run_id           TEXT NOT NULL REFERENCES runs (id),
    position         INTEGER NOT NULL,
    key              TEXT NOT NULL,
    job_id           TEXT NOT NULL,
    name             TEXT NOT NULL,
    -- JSON array of the instance keys (of this run) this job waits for.
    needs            TEXT NOT NULL,
    -- The planned job (JSON).
    spec             TEXT NOT NULL,
    -- waiting | queued | running | finished | skipped
    status           TEXT NOT NULL,
    outcome          TEXT,
    reason           TEXT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at TEXT,
    queued_at        TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    outputs          TEXT NOT NULL DEFAULT '{}',
    result           TEXT NOT NULL DEFAULT 'null',
    UNIQUE (run_id, key)
);
CREATE INDEX jobs_run ON jobs (run_id, position);
-- The claim queue: only live jobs are indexed.
CREATE INDEX jobs_active ON jobs (status, queued_at, id) WHERE status IN ('queued', 'running');

-- Append-only job output, numbered per run.
CREATE TABLE job_logs (
    run_id  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    job_id  TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    step    TEXT NOT NULL,
    stream  TEXT NOT NULL,
    text    TEXT NOT NULL,
    time    TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX job_logs_job ON job_logs (job_id, seq);
