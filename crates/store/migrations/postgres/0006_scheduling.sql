-- Scheduling touches O(1) rows per claim and report (crates/store/src/run_graph.rs):
-- * runs.pipeline: the run-level settings (the plan without its `jobs`),
--   read by every claim instead of the whole plan;
-- * job_needs: the needs edges, indexed both ways, so a report finds the
--   jobs waiting for it (and their ancestors) without reading the run;
-- * jobs.max_parallel: a matrix leg's `max-parallel` (its siblings are
--   the jobs of the run with the same job_id), checked by the claim;
-- * jobs_run_live: whether a run still has live jobs, without a scan.
-- Existing runs are backfilled from their stored plan and job specs (all
-- written by the store as JSON).

ALTER TABLE runs ADD COLUMN pipeline TEXT NOT NULL DEFAULT '{}';
UPDATE runs SET pipeline = (plan::jsonb - 'jobs')::text
    WHERE jsonb_typeof(plan::jsonb) = 'object';

CREATE TABLE job_needs (
    run_id   TEXT COLLATE "C" NOT NULL,
    job_key  TEXT NOT NULL,
    need_key TEXT NOT NULL,
    PRIMARY KEY (run_id, job_key, need_key)
);
CREATE INDEX job_needs_dependents ON job_needs (run_id, need_key, job_key);
INSERT INTO job_needs (run_id, job_key, need_key)
    SELECT j.run_id, j.key, n.need FROM jobs j
    CROSS JOIN LATERAL jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(j.needs::jsonb) = 'array' THEN j.needs::jsonb ELSE '[]'::jsonb END
    ) AS n(need)
    ON CONFLICT DO NOTHING;

-- At most this many legs of the job are leased at once (max-parallel).
ALTER TABLE jobs ADD COLUMN max_parallel BIGINT;
-- GREATEST ignores NULL: keep "no limit" as NULL.
UPDATE jobs SET max_parallel = CASE WHEN (spec::jsonb ->> 'max_parallel') IS NULL THEN NULL
        ELSE GREATEST(1, (spec::jsonb ->> 'max_parallel')::bigint) END
    WHERE jsonb_typeof(spec::jsonb) = 'object';

CREATE INDEX jobs_run_live ON jobs (run_id, status);
