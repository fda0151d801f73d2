//! Persistence for Pave: SQLite (embedded default) or PostgreSQL, schema
//! migrations, and the hash-chained event log. Every state change and its
//! event are written in one transaction.
//!
//! This crate knows rows, not HTTP. Keys of entities are the lowercase
//! `kind:namespace/name` strings produced by `pave_model::EntityRef::key`.
//!
//! Both engines are driven through `sqlx::AnyPool` with one set of SQL
//! (placeholders `$N`); times are TEXT (RFC 3339 UTC, milliseconds) and JSON
//! is TEXT on both, so only the DDL differs per engine (`migrations/`).

pub mod deployments;
pub mod local_runs;
pub mod pipeline_templates;
pub mod run_types;
pub mod secrets;
pub mod service_repository;
pub mod types;

mod artifacts;
mod catalog;
mod chain;
mod db;
mod events;
mod run_claim;
mod run_graph;
mod runs;
mod sql;
mod test_results;
mod time;
mod tokens;
mod tx;
mod ulid;
mod verify;

pub use deployments::{
    DeploymentLogRow, DeploymentRow, EnvReleaseRow, EnvironmentRow, NewDeployment, NewLogEntry,
    Transition,
};
pub use local_runs::{CreatedLocalRun, LeasedJob, NewLocalRun, RunExecution};
pub use pipeline_templates::{
    NewPipelineTemplate, PipelineTemplateRow, Published, template_digest,
};
pub use run_claim::MAX_CLAIM_BATCH;
pub use run_types::*;
pub use secrets::{SecretKey, SecretRow};
pub use service_repository::ServiceRepository;
pub use test_results::{
    MAX_MESSAGE_BYTES, QuarantineRow, ReportedTest, TEST_STATUSES, TestObservationRow,
    TestResultRow, reported_tests,
};
pub use tx::StoreTx;
pub use types::*;

use std::sync::Arc;
use std::time::Duration;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (one machine).
    Sqlite,
    /// PostgreSQL server (many stateless servers on one database).
    Postgres,
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// `Store::open` got a URL that is neither SQLite nor PostgreSQL.
    #[error("unsupported database url `{0}` (expected sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A stored value is not what the store wrote (bad JSON, wrong type, missing row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The thing an operation needs does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The input clashes with stored state or is malformed (duplicate secret, bad time).
    #[error("conflict: {0}")]
    Conflict(String),
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: sqlx::AnyPool,
    backend: Backend,
    /// SQLite only: serializes this process's write transactions (see `tx.rs`).
    write_gate: Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs migrations.
    /// `sqlite:///abs/path/pave.db` or `sqlite://rel/path.db`, `postgres://user@host:port/db`.
    pub async fn open(url: &str) -> Result<Store> {
        let (pool, backend) = db::connect(url).await?;
        db::migrate(&pool, backend).await?;
        Ok(Store {
            pool,
            backend,
            write_gate: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Cheap liveness check of the database (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The sequence number of the newest event: every state change appends
    /// one, so this is a cheap global "has anything changed?" counter, valid
    /// across servers sharing the database.
    pub async fn head_seq(&self) -> Result<i64> {
        let row = sqlx::query("SELECT seq FROM event_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        sql::get(&row, "seq")
    }

    /// Closes the pool, waiting for connections to finish (graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await
    }

    /// Starts a write transaction in which callers change state and append
    /// events atomically; dropping it without `commit` rolls back.
    ///
    /// While a `StoreTx` is open, do not call other writing `Store` methods
    /// from the same task: they wait for this transaction's lock.
    pub async fn begin(&self) -> Result<StoreTx> {
        tx::StoreTx::begin(self).await
    }

    // ---- catalog ----------------------------------------------------------

    /// Creates or updates entities (with the relations each one produces) in
    /// one transaction, appending one event per created/updated entity.
    /// Entities whose document is unchanged are left alone (no event).
    pub async fn apply_entities(&self, items: &[EntityInput], actor: &str) -> Result<ApplyOutcome> {
        catalog::apply(self, items, actor).await
    }

    /// One entity by key.
    pub async fn get_entity(&self, key: &str) -> Result<Option<EntityRow>> {
        let mut rows = catalog::get_many(&self.pool, self.backend, &[key.to_string()]).await?;
        Ok(rows.pop())
    }

    /// Entities for many keys at once (missing keys are simply absent).
    pub async fn get_entities(&self, keys: &[String]) -> Result<Vec<EntityRow>> {
        catalog::get_many(&self.pool, self.backend, keys).await
    }

    /// Entities matching the filter, ordered by kind, namespace, name.
    pub async fn list_entities(&self, filter: &EntityFilter) -> Result<Vec<EntityRow>> {
        catalog::list(&self.pool, filter).await
    }

    /// Relations whose source is `key` (both directions are stored explicitly).
    pub async fn relations_of(&self, key: &str) -> Result<Vec<RelationRow>> {
        catalog::relations_of(&self.pool, key).await
    }

    /// Points a service at another repository (its `pave.dev/repository*`
    /// annotations) and appends the entity's `updated` event, in one
    /// transaction; true when something changed. `NotFound` for an unknown key.
    pub async fn set_service_repository(
        &self,
        key: &str,
        repo: &ServiceRepository,
        actor: &str,
    ) -> Result<(EntityRow, bool)> {
        service_repository::set(self, key, repo, actor).await
    }

    /// Deletes an entity and the relations it produced; appends an event. False when absent.
    pub async fn delete_entity(&self, key: &str, actor: &str) -> Result<bool> {
        catalog::delete(self, key, actor).await
    }

    // ---- tokens and sessions ---------------------------------------------

    /// Stores a new token (only its hash) and appends `dev.pave.token.created`.
    pub async fn create_token(&self, token: &NewToken, actor: &str) -> Result<TokenRow> {
        tokens::create(self, token, actor).await
    }

    /// The live (not revoked) token with this secret hash.
    pub async fn find_token(&self, secret_hash: &str) -> Result<Option<TokenRow>> {
        tokens::find(&self.pool, secret_hash).await
    }

    /// All tokens, newest first, revoked included.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        tokens::list(&self.pool).await
    }

    /// Revokes a token (and its sessions); appends `dev.pave.token.revoked`. False when absent or already revoked.
    pub async fn revoke_token(&self, id: &str, actor: &str) -> Result<bool> {
        tokens::revoke(self, id, actor).await
    }

    /// Stores a portal session (hash of the cookie value) for a token.
    ///
    /// `expires_at` is any RFC 3339 time (stored normalized to UTC);
    /// `NotFound` when the token does not exist or is revoked.
    pub async fn create_session(
        &self,
        session_hash: &str,
        token_id: &str,
        expires_at: &str,
    ) -> Result<()> {
        tokens::create_session(self, session_hash, token_id, expires_at).await
    }

    /// The token behind a live session (not expired, token not revoked).
    pub async fn find_session(&self, session_hash: &str) -> Result<Option<TokenRow>> {
        tokens::find_session(&self.pool, session_hash).await
    }

    /// Ends a session.
    pub async fn delete_session(&self, session_hash: &str) -> Result<()> {
        tokens::delete_session(self, session_hash).await
    }

    // ---- pipeline runs ----------------------------------------------------

    /// Creates a run with its jobs and appends `pipelinerun.queued`, in one
    /// transaction. `scheduler` decides the jobs that need nothing (queued
    /// or concluded); the rest wait. `Conflict` when the jobs are not in a
    /// topological order or repeat a key.
    pub async fn create_run(&self, run: &NewRun, scheduler: &dyn Scheduler) -> Result<RunRow> {
        runs::create(self, run, scheduler).await
    }

    /// Atomically claims the next runnable job (queued, or running with an
    /// expired lease) for `agent`: a new lease token, `attempt + 1`, the
    /// lease ending `lease` from now; appends `taskrun.started` (and
    /// `pipelinerun.started` on the run's first claim). `None` when nothing
    /// is runnable. Without a scheduler it only reaps stopped jobs of
    /// finished runs; agents go through `claim_jobs`.
    pub async fn claim_job(
        &self,
        agent: &str,
        actor: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedJob>> {
        let mut claimed = run_claim::claim(self, agent, actor, lease, 1, None).await?;
        Ok(claimed.pop())
    }

    /// Claims up to `max` (1-100) runnable jobs for `agent` in one
    /// transaction, each with its own lease token, in queue order; a matrix
    /// leg waits while `max_parallel` of its siblings run. Jobs of runs that
    /// asked them to stop and whose lease expired end `cancelled` first,
    /// advancing their runs with `scheduler`. Empty when nothing is runnable.
    pub async fn claim_jobs(
        &self,
        agent: &str,
        actor: &str,
        lease: Duration,
        max: usize,
        scheduler: &dyn Scheduler,
    ) -> Result<Vec<ClaimedJob>> {
        run_claim::claim(self, agent, actor, lease, max, Some(scheduler)).await
    }

    /// Hands back a job held with `lease_token` that its agent stopped
    /// without finishing (e.g. shutting down): queued again at once, in its
    /// old place, the next claim being a new attempt. A job its run asked to
    /// stop ends `cancelled` instead (advancing the run with `scheduler`).
    /// `Conflict` when the token is no longer current.
    pub async fn release_job(
        &self,
        job_id: &str,
        lease_token: &str,
        actor: &str,
        scheduler: &dyn Scheduler,
    ) -> Result<JobRow> {
        run_claim::release(self, job_id, lease_token, actor, scheduler).await
    }

    /// Extends the lease of a job held with `lease_token` to `lease` from
    /// now. `Conflict` when the token is no longer current (the lease was
    /// lost or the job has ended).
    pub async fn heartbeat(
        &self,
        job_id: &str,
        lease_token: &str,
        lease: Duration,
    ) -> Result<Heartbeat> {
        runs::heartbeat(self, job_id, lease_token, lease).await
    }

    /// Appends log lines of a job held with `lease_token`; returns the seq of
    /// the last line in the run's log. `Conflict` when the lease is lost.
    pub async fn append_logs(
        &self,
        job_id: &str,
        lease_token: &str,
        lines: &[NewLogLine],
    ) -> Result<i64> {
        runs::append_logs(self, job_id, lease_token, lines).await
    }

    /// Finishes a job held with the report's token, appends
    /// `taskrun.finished`, and advances the run with `scheduler` (queue or
    /// conclude the jobs now ready; finish the run with
    /// `pipelinerun.finished` once every job has ended), in one transaction.
    /// `Conflict` for a stale token or a second report.
    pub async fn complete_job(
        &self,
        report: &JobReport,
        scheduler: &dyn Scheduler,
    ) -> Result<CompletedJob> {
        runs::complete(self, report, scheduler).await
    }

    /// Cancels a run: waiting and queued jobs end `cancelled` (status
    /// `skipped`), running jobs get `cancel_requested` (their heartbeats say
    /// so), and the run finishes `cancelled`. `Conflict` when it had finished.
    pub async fn cancel_run(&self, run_id: &str, actor: &str) -> Result<RunRow> {
        runs::cancel(self, run_id, actor).await
    }

    /// One run, with its plan.
    pub async fn get_run(&self, run_id: &str) -> Result<Option<RunRow>> {
        runs::get_run(&self.pool, run_id).await
    }

    /// A service's runs, newest first (plans left out: `Null`); default 1000.
    pub async fn list_runs(&self, service_key: &str, limit: Option<i64>) -> Result<Vec<RunRow>> {
        runs::list_runs(&self.pool, service_key, limit).await
    }

    /// A run's jobs in plan order.
    pub async fn list_jobs(&self, run_id: &str) -> Result<Vec<JobRow>> {
        runs::list_jobs(&self.pool, run_id).await
    }

    /// The jobs a job of the run needs directly (by its `key`), in plan order.
    pub async fn list_needed_jobs(&self, run_id: &str, key: &str) -> Result<Vec<JobRow>> {
        run_graph::needed_jobs(&self.pool, run_id, key).await
    }

    /// One job.
    pub async fn get_job(&self, job_id: &str) -> Result<Option<JobRow>> {
        runs::get_job(&self.pool, job_id).await
    }

    /// A run's log lines with seq greater than `after`, in order (default
    /// 1000, at most 10 000).
    pub async fn read_logs(
        &self,
        run_id: &str,
        after: i64,
        limit: Option<i64>,
    ) -> Result<Vec<LogLineRow>> {
        runs::read_logs(&self.pool, run_id, after, limit).await
    }

    // ---- local runs (`pave run` recorded on the server) ---------------------

    /// Creates a run executed by the calling client (`executor = 'local'`):
    /// every job starts `running`, leased to `holder` with its own token;
    /// agents never claim them. Appends `pipelinerun.queued`/`started` and
    /// `taskrun.started` per job, in one transaction. `Conflict` as for
    /// `create_run`.
    pub async fn create_local_run(&self, run: &NewLocalRun) -> Result<CreatedLocalRun> {
        local_runs::create(self, run).await
    }

    /// Ends the local jobs whose lease expired (their client is gone) as
    /// `failure` ("local runner lost"), advancing their runs with
    /// `scheduler`, instead of re-queueing them. Returns how many ended.
    pub async fn expire_lost_local_jobs(&self, scheduler: &dyn Scheduler) -> Result<usize> {
        local_runs::expire_lost(self, scheduler).await
    }

    /// How a run is executed (`agent` or `local`, dirty tree); `None` when absent.
    pub async fn run_execution(&self, run_id: &str) -> Result<Option<RunExecution>> {
        local_runs::execution(self, run_id).await
    }

    // ---- secrets and webhook deliveries -----------------------------------

    /// Creates or replaces a service's secret, sealed under `key`, and
    /// appends `dev.pave.secret.set` naming the service and the secret (never
    /// the value). `Conflict` for a bad name or a value over 64 KiB.
    pub async fn set_secret(
        &self,
        key: &SecretKey,
        service_key: &str,
        name: &str,
        value: &str,
        actor: &str,
    ) -> Result<SecretRow> {
        secrets::set(self, key, service_key, name, value, actor).await
    }

    /// A service's secrets by name, without values.
    pub async fn list_secrets(&self, service_key: &str) -> Result<Vec<SecretRow>> {
        secrets::list(&self.pool, service_key).await
    }

    /// Deletes a secret and appends `dev.pave.secret.deleted`; false when absent.
    pub async fn delete_secret(&self, service_key: &str, name: &str, actor: &str) -> Result<bool> {
        secrets::delete(self, service_key, name, actor).await
    }

    /// A service's secret values, opened with `key` (for the jobs of its
    /// runs only). `Corrupt` when a value was sealed under another key.
    pub async fn secret_values(
        &self,
        key: &SecretKey,
        service_key: &str,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        secrets::values(&self.pool, key, service_key).await
    }

    /// Records a webhook delivery; false when this (provider, id) was seen before.
    pub async fn record_delivery(&self, provider: &str, id: &str) -> Result<bool> {
        secrets::record_delivery(self, provider, id).await
    }

    /// Forgets a recorded delivery so that a redelivery is handled again.
    pub async fn forget_delivery(&self, provider: &str, id: &str) -> Result<()> {
        secrets::forget_delivery(self, provider, id).await
    }

    // ---- test results and quarantine ---------------------------------------

    /// A run's test case results (written when its jobs completed), in job
    /// order then report order.
    pub async fn list_run_tests(&self, run_id: &str) -> Result<Vec<TestResultRow>> {
        test_results::list_for_run(&self.pool, run_id).await
    }

    /// What flaky detection needs: the non-skipped results since `since`
    /// (a stored-format time) of every test of `service_key` (or of every
    /// service) that failed or passed on retry in that time, at most the
    /// newest `per_test` per test, oldest first per test.
    pub async fn test_observations(
        &self,
        service_key: Option<&str>,
        since: &str,
        per_test: i64,
    ) -> Result<Vec<TestObservationRow>> {
        test_results::flaky_candidates(&self.pool, service_key, since, per_test).await
    }

    /// Quarantines a service's test (it still runs and is recorded but no
    /// longer fails its job) and appends `dev.pave.test.quarantined`.
    /// `Conflict` when already quarantined or the id or reason is malformed.
    pub async fn quarantine_test(
        &self,
        service_key: &str,
        test_id: &str,
        reason: &str,
        actor: &str,
    ) -> Result<QuarantineRow> {
        test_results::quarantine(self, service_key, test_id, reason, actor).await
    }

    /// Releases a quarantined test and appends `dev.pave.test.unquarantined`;
    /// false (and no change) when it was not quarantined.
    pub async fn unquarantine_test(
        &self,
        service_key: &str,
        test_id: &str,
        actor: &str,
    ) -> Result<bool> {
        test_results::unquarantine(self, service_key, test_id, actor).await
    }

    /// The quarantined tests of a service, or of every service.
    pub async fn list_quarantined_tests(
        &self,
        service_key: Option<&str>,
    ) -> Result<Vec<QuarantineRow>> {
        test_results::list_quarantined(&self.pool, service_key).await
    }

    // ---- event log --------------------------------------------------------

    /// Appends one event in its own transaction.
    pub async fn append_event(&self, event: &NewEvent) -> Result<EventRow> {
        let mut tx = self.begin().await?;
        let row = tx.append_event(event).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Reads events in log order.
    pub async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventRow>> {
        events::list(&self.pool, query).await
    }

    /// Walks the whole chain and reports the first entry that does not verify.
    pub async fn verify_chain(&self) -> Result<VerifyReport> {
        verify::verify(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The server runs these futures on a multi-threaded runtime.
    #[allow(dead_code, clippy::let_underscore_future)]
    async fn futures_are_send(store: Store) {
        assert_send(&store);
        assert_send(&store.apply_entities(&[], "a"));
        assert_send(&store.delete_entity("k", "a"));
        assert_send(&store.list_entities(&EntityFilter::default()));
        assert_send(&store.create_token(
            &NewToken {
                name: String::new(),
                role: String::new(),
                team: None,
                secret_hash: String::new(),
            },
            "a",
        ));
        assert_send(&store.revoke_token("id", "a"));
        assert_send(&store.create_session("s", "t", "e"));
        assert_send(&store.find_session("s"));
        assert_send(&store.append_event(&NewEvent {
            event_type: String::new(),
            subject: String::new(),
            actor: String::new(),
            payload: serde_json::Value::Null,
        }));
        assert_send(&store.verify_chain());
        assert_send(&store.begin());
        let Ok(mut tx) = store.begin().await else {
            return;
        };
        assert_send(&tx);
        let ev = NewEvent {
            event_type: String::new(),
            subject: String::new(),
            actor: String::new(),
            payload: serde_json::Value::Null,
        };
        assert_send(&tx.append_event(&ev));
    }
}
