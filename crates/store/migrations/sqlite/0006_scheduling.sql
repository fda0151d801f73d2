-- Scheduling touches O(1) rows per claim and report (crates/store/src/run_graph.rs):
-- * runs.pipeline: the run-level settings (the plan without its `jobs`),
--   read by every claim instead of the whole plan;
-- * job_needs: the needs edges, indexed both ways, so a report finds the
--   jobs waiting for it (and their ancestors) without reading the run;
-- * jobs.max_parallel: a matrix leg's `max-parallel` (its siblings are
--   the jobs of the run with the same job_id), checked by the claim;
-- * jobs_run_live: whether a run still has live jobs, without a scan.
-- Existing runs are backfilled from their stored plan and job specs.

ALTER TABLE runs ADD COLUMN pipeline TEXT NOT NULL DEFAULT '{}';
UPDATE runs SET pipeline = json_remove(plan, '$.jobs')
    WHERE json_valid(plan) AND json_type(plan) = 'object';

CREATE TABLE job_needs (
    run_id   TEXT NOT NULL,
    job_key  TEXT NOT NULL,
    need_key TEXT NOT NULL,
    PRIMARY KEY (run_id, job_key, need_key)
) WITHOUT ROWID;
CREATE INDEX job_needs_dependents ON job_needs (run_id, need_key, job_key);
INSERT OR IGNORE INTO job_needs (run_id, job_key, need_key)
    SELECT j.run_id, j.key, n.value FROM jobs j, json_each(j.needs) n
    WHERE json_valid(j.needs) AND json_type(j.needs) = 'array';

-- At most this many legs of the job are leased at once (max-parallel).
ALTER TABLE jobs ADD COLUMN max_parallel INTEGER;
UPDATE jobs SET max_parallel = MAX(1, json_extract(spec, '$.max_parallel'))
    WHERE json_valid(spec) AND json_type(spec) = 'object';

CREATE INDEX jobs_run_live ON jobs (run_id, status);
