-- Pave store, initial schema (PostgreSQL).
-- Times are TEXT in RFC 3339 UTC with milliseconds (`2026-11-21T23:40:00.123Z`),
-- which sorts lexically; JSON documents are TEXT. Columns that are ordered or
-- compared use COLLATE "C" so PostgreSQL sorts them bytewise, like SQLite.

CREATE TABLE entities (
    key        TEXT COLLATE "C" PRIMARY KEY,
    kind       TEXT COLLATE "C" NOT NULL,
    namespace  TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    owner_key  TEXT,
    document   TEXT NOT NULL,
    origin     TEXT,
    generation BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX entities_kind ON entities (lower(kind));
CREATE INDEX entities_owner ON entities (owner_key);

-- Each relation is stored once, as its producing entity declared it
-- (source_key = that entity), with the name of the reverse direction;
-- readers derive the reverse through relations_target. Half the rows of
-- storing both directions, which dominates the cost of a large import.
-- No foreign keys: a per-row parent check slows bulk applies.
CREATE TABLE relations (
    source_key   TEXT COLLATE "C" NOT NULL,
    rel_type     TEXT COLLATE "C" NOT NULL,
    target_key   TEXT COLLATE "C" NOT NULL,
    reverse_type TEXT COLLATE "C",
    PRIMARY KEY (source_key, rel_type, target_key)
);
CREATE INDEX relations_target ON relations (target_key);

CREATE TABLE tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    team        TEXT,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  TEXT COLLATE "C" NOT NULL,
    created_by  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE sessions (
    session_hash TEXT PRIMARY KEY,
    token_id     TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    expires_at   TEXT COLLATE "C" NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX sessions_token ON sessions (token_id);

-- The hash-chained event log.
CREATE TABLE events (
    seq        BIGINT PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    time       TEXT COLLATE "C" NOT NULL,
    event_type TEXT NOT NULL,
    subject    TEXT NOT NULL,
    actor      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX events_subject ON events (subject);
CREATE INDEX events_time ON events (time);

-- One row: the seq and hash of the last appended event. Appenders lock it.
CREATE TABLE event_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO event_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
