-- Reusable pipeline templates, one row per published version. Versions are
-- immutable: the store refuses a second body for the same (name, version),
-- so a pipeline that pins `uses: name@version` always gets the same jobs.

CREATE TABLE pipeline_templates (
    name        TEXT COLLATE "C" NOT NULL,
    version     TEXT COLLATE "C" NOT NULL,
    description TEXT,
    body        TEXT NOT NULL,
    -- sha256 of body, hex
    digest      TEXT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
