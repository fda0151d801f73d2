-- Deployments: environments (the ordered promotion path), each deployment
-- as a durable state machine driven by the deploy controller, its log of
-- steps/analysis/decisions, and what runs where (the stable release per
-- service and environment). Times are RFC 3339 UTC text; JSON is TEXT.

CREATE TABLE environments (
    name        TEXT COLLATE "C" PRIMARY KEY,
    position    BIGINT NOT NULL UNIQUE,
    runtime     TEXT NOT NULL DEFAULT 'process',
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);
INSERT INTO environments (name, position, runtime, description, created_at) VALUES
    ('dev', 1, 'process', 'first stop of every release', '1970-01-01T00:00:00.000Z'),
    ('staging', 2, 'process', 'production-like rehearsal', '1970-01-01T00:00:00.000Z'),
    ('prod', 3, 'process', 'serves users', '1970-01-01T00:00:00.000Z');

CREATE TABLE deployments (
    id               TEXT COLLATE "C" PRIMARY KEY,
    service_key      TEXT NOT NULL,
    env              TEXT NOT NULL REFERENCES environments (name),
    number           BIGINT NOT NULL,
    -- deploy | promote | rollback
    kind             TEXT NOT NULL,
    -- the artifact, by digest (sha256:<hex>), its name, and where it came from
    digest           TEXT NOT NULL,
    artifact         TEXT NOT NULL,
    run_id           TEXT,
    sha              TEXT,
    strategy         TEXT NOT NULL,
    -- JSON: the deploy spec and everything the controller needs to run it
    spec             TEXT NOT NULL,
    -- pending | progressing | paused | succeeded | failed | rolled_back | aborted
    status           TEXT NOT NULL,
    -- JSON: the controller's position in the strategy (step, weight, timers)
    phase            TEXT NOT NULL DEFAULT '{}',
    -- bumped by every transition: compare-and-set between controllers
    version          BIGINT NOT NULL DEFAULT 0,
    previous_id      TEXT,
    reason           TEXT,
    actor            TEXT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    log_seq          BIGINT NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    finished_at      TEXT,
    UNIQUE (service_key, env, number)
);
-- At most one deployment per service and environment is in flight.
CREATE UNIQUE INDEX deployments_one_active ON deployments (service_key, env)
    WHERE status IN ('pending', 'progressing', 'paused');
CREATE INDEX deployments_service ON deployments (service_key, env, number);

CREATE TABLE deployment_log (
    deployment_id TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    time          TEXT NOT NULL,
    -- step | analysis | decision | instance | note
    kind          TEXT NOT NULL,
    message       TEXT NOT NULL,
    data          TEXT NOT NULL DEFAULT 'null',
    PRIMARY KEY (deployment_id, seq)
);

-- What runs where: the stable release of each service in each environment.
CREATE TABLE env_releases (
    service_key   TEXT NOT NULL,
    env           TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    digest        TEXT NOT NULL,
    sha           TEXT,
    since         TEXT NOT NULL,
    PRIMARY KEY (service_key, env)
);
