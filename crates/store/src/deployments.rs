//! Deployments as durable state machines, environments, and what runs where.
//!
//! The deploy controller owns the rules; this module gives it atomic steps:
//! create (at most one in-flight deployment per service and environment,
//! enforced by a partial unique index so several servers cannot race),
//! transition (compare-and-set on `version`, with log lines and events in
//! the same transaction, and the environment's stable release moved when a
//! deployment succeeds), and a lease so one server drives each deployment.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::{NewEvent, Result, Store, StoreError, StoreTx, sql, time, ulid};

/// States in which a deployment is in flight.
pub const ACTIVE_STATES: &[&str] = &["pending", "progressing", "paused"];

/// An environment on the promotion path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentRow {
    pub name: String,
    /// Order on the promotion path (dev=1, staging=2, prod=3 by default).
    pub position: i64,
    /// `process` (the only runtime so far).
    pub runtime: String,
    pub description: String,
    pub created_at: String,
}

/// What a new deployment is.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub service_key: String,
    pub env: String,
    /// `deploy`, `promote` or `rollback`.
    pub kind: String,
    /// `sha256:<hex>` of the artifact.
    pub digest: String,
    /// The artifact's name in its pipeline.
    pub artifact: String,
    pub run_id: Option<String>,
    pub sha: Option<String>,
    /// `rolling`, `blue-green` or `canary`.
    pub strategy: String,
    /// Everything the controller needs (deploy spec, artifact location).
    pub spec: Value,
    /// The stable deployment it replaces, if any.
    pub previous_id: Option<String>,
    pub actor: String,
}

/// A stored deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRow {
    pub id: String,
    pub service_key: String,
    pub env: String,
    pub number: i64,
    pub kind: String,
    pub digest: String,
    pub artifact: String,
    pub run_id: Option<String>,
    pub sha: Option<String>,
    pub strategy: String,
    pub spec: Value,
    /// pending | progressing | paused | succeeded | failed | rolled_back | aborted
    pub status: String,
    /// The controller's position in the strategy.
    pub phase: Value,
    /// Bumped by every transition.
    pub version: i64,
    pub previous_id: Option<String>,
    pub reason: Option<String>,
    pub actor: String,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

impl DeploymentRow {
    /// True while the deployment is in flight.
    pub fn is_active(&self) -> bool {
        ACTIVE_STATES.contains(&self.status.as_str())
    }
}

/// One line of a deployment's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentLogRow {
    pub seq: i64,
    pub time: String,
    /// step | analysis | decision | instance | note
    pub kind: String,
    pub message: String,
    pub data: Value,
}

/// A log line to append.
#[derive(Debug, Clone)]
pub struct NewLogEntry {
    pub kind: String,
    pub message: String,
    pub data: Value,
}

impl NewLogEntry {
    /// A log line of `kind` with structured data.
    pub fn new(kind: &str, message: impl Into<String>, data: Value) -> NewLogEntry {
        NewLogEntry {
            kind: kind.into(),
            message: message.into(),
            data,
        }
    }
}

/// One step of the state machine, applied atomically.
#[derive(Debug, Clone, Default)]
pub struct Transition {
    pub status: String,
    pub phase: Value,
    pub reason: Option<String>,
    pub log: Vec<NewLogEntry>,
    pub events: Vec<NewEvent>,
    /// Make this deployment the environment's stable release.
    pub make_stable: bool,
}

/// The stable release of a service in an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvReleaseRow {
    pub service_key: String,
    pub env: String,
    pub deployment_id: String,
    pub digest: String,
    pub sha: Option<String>,
    pub since: String,
}

const COLUMNS: &str = "id, service_key, env, number, kind, digest, artifact, run_id, sha, strategy, spec, \
     status, phase, version, previous_id, reason, actor, lease_owner, lease_expires_at, created_at, \
     updated_at, finished_at";

fn deployment_from_row(row: &AnyRow) -> Result<DeploymentRow> {
    Ok(DeploymentRow {
        id: sql::get(row, "id")?,
        service_key: sql::get(row, "service_key")?,
        env: sql::get(row, "env")?,
        number: sql::get(row, "number")?,
        kind: sql::get(row, "kind")?,
        digest: sql::get(row, "digest")?,
        artifact: sql::get(row, "artifact")?,
        run_id: sql::get(row, "run_id")?,
        sha: sql::get(row, "sha")?,
        strategy: sql::get(row, "strategy")?,
        spec: sql::json(&sql::get::<String>(row, "spec")?, "deployment spec")?,
        status: sql::get(row, "status")?,
        phase: sql::json(&sql::get::<String>(row, "phase")?, "deployment phase")?,
        version: sql::get(row, "version")?,
        previous_id: sql::get(row, "previous_id")?,
        reason: sql::get(row, "reason")?,
        actor: sql::get(row, "actor")?,
        lease_owner: sql::get(row, "lease_owner")?,
        lease_expires_at: sql::get(row, "lease_expires_at")?,
        created_at: sql::get(row, "created_at")?,
        updated_at: sql::get(row, "updated_at")?,
        finished_at: sql::get(row, "finished_at")?,
    })
}

fn env_from_row(row: &AnyRow) -> Result<EnvironmentRow> {
    Ok(EnvironmentRow {
        name: sql::get(row, "name")?,
        position: sql::get(row, "position")?,
        runtime: sql::get(row, "runtime")?,
        description: sql::get(row, "description")?,
        created_at: sql::get(row, "created_at")?,
    })
}

fn release_from_row(row: &AnyRow) -> Result<EnvReleaseRow> {
    Ok(EnvReleaseRow {
        service_key: sql::get(row, "service_key")?,
        env: sql::get(row, "env")?,
        deployment_id: sql::get(row, "deployment_id")?,
        digest: sql::get(row, "digest")?,
        sha: sql::get(row, "sha")?,
        since: sql::get(row, "since")?,
    })
}

/// Appends log lines inside `tx`, numbering them after the deployment's last.
async fn append_log(tx: &mut StoreTx, id: &str, entries: &[NewLogEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let row = sqlx::query(
        "UPDATE deployments SET log_seq = log_seq + $1 WHERE id = $2 RETURNING log_seq",
    )
    .bind(entries.len() as i64)
    .bind(id.to_string())
    .fetch_optional(tx.connection())
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("deployment `{id}`")))?;
    let last: i64 = sql::get(&row, "log_seq")?;
    let now = time::now();
    let first = last - entries.len() as i64 + 1;
    for (i, e) in entries.iter().enumerate() {
        sqlx::query(
            "INSERT INTO deployment_log (deployment_id, seq, time, kind, message, data) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(first + i as i64)
        .bind(now.clone())
        .bind(e.kind.clone())
        .bind(e.message.clone())
        .bind(e.data.to_string())
        .execute(tx.connection())
        .await?;
    }
    Ok(())
}

impl Store {
    /// The environments in promotion order.
    pub async fn list_environments(&self) -> Result<Vec<EnvironmentRow>> {
        let rows = sqlx::query(
            "SELECT name, position, runtime, description, created_at FROM environments ORDER BY position",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(env_from_row).collect()
    }

    /// Adds an environment at the end of the promotion path (or after
    /// `after`) and appends `environment.created`. `Conflict` when it exists.
    pub async fn create_environment(
        &self,
        name: &str,
        description: &str,
        after: Option<&str>,
        actor: &str,
    ) -> Result<EnvironmentRow> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT name FROM environments WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(tx.connection())
            .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!(
                "environment `{name}` already exists"
            )));
        }
        let position: i64 = match after {
            Some(prev) => {
                let row = sqlx::query("SELECT position FROM environments WHERE name = $1")
                    .bind(prev.to_string())
                    .fetch_optional(tx.connection())
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("environment `{prev}`")))?;
                let p: i64 = sql::get(&row, "position")?;
                // Make room: shift later environments by one, highest first
                // so the unique position never collides mid-statement.
                let later = sqlx::query(
                    "SELECT name, position FROM environments WHERE position > $1 ORDER BY position DESC",
                )
                .bind(p)
                .fetch_all(tx.connection())
                .await?;
                for r in later {
                    let n: String = sql::get(&r, "name")?;
                    let q: i64 = sql::get(&r, "position")?;
                    sqlx::query("UPDATE environments SET position = $1 WHERE name = $2")
                        .bind(q + 1)
                        .bind(n)
                        .execute(tx.connection())
                        .await?;
                }
                p + 1
            }
            None => {
                let row = sqlx::query("SELECT COALESCE(MAX(position), 0) AS p FROM environments")
                    .fetch_one(tx.connection())
                    .await?;
                sql::get::<i64>(&row, "p")? + 1
            }
        };
        let env = EnvironmentRow {
            name: name.to_string(),
            position,
            runtime: "process".into(),
            description: description.to_string(),
            created_at: time::now(),
        };
        sqlx::query(
            "INSERT INTO environments (name, position, runtime, description, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(env.name.clone())
        .bind(env.position)
        .bind(env.runtime.clone())
        .bind(env.description.clone())
        .bind(env.created_at.clone())
        .execute(tx.connection())
        .await?;
        tx.append_event(&NewEvent {
            event_type: "dev.cdevents.environment.created.0.2.0".into(),
            subject: format!("environment:{name}"),
            actor: actor.to_string(),
            payload: json!({ "environment": name, "position": position, "runtime": env.runtime }),
        })
        .await?;
        tx.commit().await?;
        Ok(env)
    }

    /// Records a new deployment (status `pending`) with its first log line
    /// and event. `Conflict` when one is already in flight for the service
    /// and environment; `NotFound` for an unknown environment.
    pub async fn create_deployment(&self, new: &NewDeployment) -> Result<DeploymentRow> {
        let mut tx = self.begin().await?;
        let env = sqlx::query("SELECT name FROM environments WHERE name = $1")
            .bind(new.env.clone())
            .fetch_optional(tx.connection())
            .await?;
        if env.is_none() {
            return Err(StoreError::NotFound(format!("environment `{}`", new.env)));
        }
        if let Some(active) = active_in(&mut tx, &new.service_key, &new.env).await? {
            return Err(busy(&active));
        }
        let row = sqlx::query(
            "SELECT COALESCE(MAX(number), 0) AS n FROM deployments WHERE service_key = $1 AND env = $2",
        )
        .bind(new.service_key.clone())
        .bind(new.env.clone())
        .fetch_one(tx.connection())
        .await?;
        let number = sql::get::<i64>(&row, "n")? + 1;
        let id = ulid::new()?;
        let now = time::now();
        let inserted = sqlx::query(
            "INSERT INTO deployments (id, service_key, env, number, kind, digest, artifact, run_id, sha, \
             strategy, spec, status, phase, version, previous_id, actor, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', '{}', 0, $12, $13, $14, $14)",
        )
        .bind(id.clone())
        .bind(new.service_key.clone())
        .bind(new.env.clone())
        .bind(number)
        .bind(new.kind.clone())
        .bind(new.digest.clone())
        .bind(new.artifact.clone())
        .bind(new.run_id.clone())
        .bind(new.sha.clone())
        .bind(new.strategy.clone())
        .bind(new.spec.to_string())
        .bind(new.previous_id.clone())
        .bind(new.actor.clone())
        .bind(now.clone())
        .execute(tx.connection())
        .await;
        match inserted {
            // Another server inserted first: the partial unique index decided.
            Err(e) if sql::is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!(
                    "a deployment of `{}` to `{}` is already in progress",
                    new.service_key, new.env
                )));
            }
            other => other?,
        };
        append_log(
            &mut tx,
            &id,
            &[NewLogEntry::new(
                "note",
                format!(
                    "{} of {} ({}) to {} with {}",
                    new.kind, new.digest, new.artifact, new.env, new.strategy
                ),
                json!({ "actor": new.actor }),
            )],
        )
        .await?;
        tx.append_event(&NewEvent {
            event_type: "dev.pave.deployment.created.0.1.0".into(),
            subject: format!("deployment:{id}"),
            actor: new.actor.clone(),
            payload: json!({
                "id": id, "service": new.service_key, "environment": new.env, "number": number,
                "kind": new.kind, "artifact": { "digest": new.digest, "name": new.artifact },
                "run_id": new.run_id, "sha": new.sha, "strategy": new.strategy,
            }),
        })
        .await?;
        let row = fetch(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// One deployment.
    pub async fn get_deployment(&self, id: &str) -> Result<Option<DeploymentRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deployments WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    /// Deployments, newest first, optionally of one service and/or environment.
    pub async fn list_deployments(
        &self,
        service_key: Option<&str>,
        env: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeploymentRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deployments \
             WHERE ($1 = '' OR service_key = $1) AND ($2 = '' OR env = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        )))
        .bind(service_key.unwrap_or_default().to_string())
        .bind(env.unwrap_or_default().to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Every in-flight deployment, oldest first.
    pub async fn active_deployments(&self) -> Result<Vec<DeploymentRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deployments \
             WHERE status IN ('pending', 'progressing', 'paused') ORDER BY created_at, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// The deployments that are some environment's stable release (what
    /// runs where, with everything the controller needs to run it).
    pub async fn stable_deployments(&self) -> Result<Vec<DeploymentRow>> {
        let columns: String = COLUMNS
            .split(", ")
            .map(|c| format!("d.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {columns} FROM env_releases r JOIN deployments d ON d.id = r.deployment_id \
             ORDER BY r.service_key, r.env"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Applies one controller step if the deployment is still at
    /// `expected_version` (else `Conflict`: someone else moved it).
    pub async fn transition_deployment(
        &self,
        id: &str,
        expected_version: i64,
        t: Transition,
    ) -> Result<DeploymentRow> {
        let mut tx = self.begin().await?;
        let now = time::now();
        let finished = !ACTIVE_STATES.contains(&t.status.as_str());
        let updated = sqlx::query(
            "UPDATE deployments SET status = $1, phase = $2, reason = COALESCE($3, reason), \
             version = version + 1, updated_at = $4, \
             finished_at = CASE WHEN $5 = 1 THEN $4 ELSE finished_at END \
             WHERE id = $6 AND version = $7",
        )
        .bind(t.status.clone())
        .bind(t.phase.to_string())
        .bind(t.reason.clone())
        .bind(now.clone())
        .bind(i64::from(finished))
        .bind(id.to_string())
        .bind(expected_version)
        .execute(tx.connection())
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "deployment `{id}` changed since version {expected_version}"
            )));
        }
        append_log(&mut tx, id, &t.log).await?;
        let row = fetch(&mut tx, id).await?;
        if t.make_stable {
            sqlx::query("DELETE FROM env_releases WHERE service_key = $1 AND env = $2")
                .bind(row.service_key.clone())
                .bind(row.env.clone())
                .execute(tx.connection())
                .await?;
            sqlx::query(
                "INSERT INTO env_releases (service_key, env, deployment_id, digest, sha, since) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(row.service_key.clone())
            .bind(row.env.clone())
            .bind(row.id.clone())
            .bind(row.digest.clone())
            .bind(row.sha.clone())
            .bind(now)
            .execute(tx.connection())
            .await?;
        }
        tx.append_events(&t.events).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Appends log lines without changing state (analysis samples, notes).
    pub async fn append_deployment_log(&self, id: &str, entries: &[NewLogEntry]) -> Result<()> {
        let mut tx = self.begin().await?;
        append_log(&mut tx, id, entries).await?;
        tx.commit().await
    }

    /// A deployment's log lines after `after_seq`, oldest first.
    pub async fn deployment_log(&self, id: &str, after_seq: i64) -> Result<Vec<DeploymentLogRow>> {
        let rows = sqlx::query(
            "SELECT seq, time, kind, message, data FROM deployment_log \
             WHERE deployment_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(id.to_string())
        .bind(after_seq)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeploymentLogRow {
                    seq: sql::get(r, "seq")?,
                    time: sql::get(r, "time")?,
                    kind: sql::get(r, "kind")?,
                    message: sql::get(r, "message")?,
                    data: sql::json(&sql::get::<String>(r, "data")?, "log data")?,
                })
            })
            .collect()
    }

    /// Takes (or renews) the lease on every in-flight deployment that is
    /// unleased, expired, or already ours; returns them. One server drives
    /// a deployment at a time; a crashed server's deployments pass to the
    /// next one after `ttl_ms`.
    pub async fn lease_deployments(&self, owner: &str, ttl_ms: i64) -> Result<Vec<DeploymentRow>> {
        let now = time::now();
        let until = time::format(chrono::Utc::now() + chrono::Duration::milliseconds(ttl_ms));
        let mut tx = self.begin().await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE deployments SET lease_owner = $1, lease_expires_at = $2 \
             WHERE status IN ('pending', 'progressing', 'paused') \
             AND (lease_owner IS NULL OR lease_owner = $1 OR lease_expires_at < $3) \
             RETURNING {COLUMNS}"
        )))
        .bind(owner.to_string())
        .bind(until)
        .bind(now)
        .fetch_all(tx.connection())
        .await?;
        tx.commit().await?;
        let mut out: Vec<DeploymentRow> = rows
            .iter()
            .map(deployment_from_row)
            .collect::<Result<_>>()?;
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(out)
    }

    /// The stable releases (what runs where), of one service or all.
    pub async fn env_releases(&self, service_key: Option<&str>) -> Result<Vec<EnvReleaseRow>> {
        let rows = sqlx::query(
            "SELECT r.service_key, r.env, r.deployment_id, r.digest, r.sha, r.since \
             FROM env_releases r JOIN environments e ON e.name = r.env \
             WHERE ($1 = '' OR r.service_key = $1) ORDER BY r.service_key, e.position",
        )
        .bind(service_key.unwrap_or_default().to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(release_from_row).collect()
    }

    /// The newest succeeded deployment of a service in an environment whose
    /// artifact differs from `digest`: the rollback target.
    pub async fn previous_good_deployment(
        &self,
        service_key: &str,
        env: &str,
        digest: &str,
    ) -> Result<Option<DeploymentRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deployments WHERE service_key = $1 AND env = $2 \
             AND status = 'succeeded' AND digest <> $3 ORDER BY number DESC LIMIT 1"
        )))
        .bind(service_key.to_string())
        .bind(env.to_string())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(deployment_from_row).transpose()
    }
}

async fn fetch(tx: &mut StoreTx, id: &str) -> Result<DeploymentRow> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM deployments WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(tx.connection())
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("deployment `{id}`")))?;
    deployment_from_row(&row)
}

async fn active_in(
    tx: &mut StoreTx,
    service_key: &str,
    env: &str,
) -> Result<Option<DeploymentRow>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM deployments WHERE service_key = $1 AND env = $2 \
         AND status IN ('pending', 'progressing', 'paused') LIMIT 1"
    )))
    .bind(service_key.to_string())
    .bind(env.to_string())
    .fetch_optional(tx.connection())
    .await?;
    row.as_ref().map(deployment_from_row).transpose()
}

fn busy(active: &DeploymentRow) -> StoreError {
    StoreError::Conflict(format!(
        "deployment #{} ({}) of `{}` to `{}` is still {}; wait for it, or stop it with `pave abort {}`",
        active.number, active.id, active.service_key, active.env, active.status, active.id
    ))
}
