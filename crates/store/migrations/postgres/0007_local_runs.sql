-- Runs executed by `pave run` on a developer's machine and recorded here.
-- `executor` says who runs a job: `agent` (claimed from the queue) or
-- `local` (the creating client holds every job's lease from the start;
-- agents never claim it, and a lost lease fails the job instead of
-- re-queueing it). `dirty` marks a run of a working tree with
-- uncommitted changes. Token roles need no change: `tokens.role` is free
-- text checked by the server (`agent` is a role since this version).
ALTER TABLE runs ADD COLUMN executor TEXT NOT NULL DEFAULT 'agent';
ALTER TABLE runs ADD COLUMN dirty BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN executor TEXT NOT NULL DEFAULT 'agent';
-- The lease reaper looks for live local jobs only.
CREATE INDEX jobs_local_live ON jobs (lease_expires_at) WHERE executor = 'local' AND status = 'running';
