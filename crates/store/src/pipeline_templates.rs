//! The registry of reusable pipeline templates: one immutable row per
//! `(name, version)`. Publishing the same body again is a no-op; a different
//! body for a published version is refused, so `uses: name@version` always
//! means the same jobs. Publishing appends `dev.pave.pipelinetemplate.published.0.1.0`
//! in the same transaction. The store keeps text; parsing and validation are
//! the caller's (`pave_model::pipeline_template`).

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;

use crate::{NewEvent, Result, Store, StoreError, events, sql, time};

const PUBLISHED: &str = "dev.pave.pipelinetemplate.published.0.1.0";

/// A template version to publish (already validated by the caller).
#[derive(Debug, Clone)]
pub struct NewPipelineTemplate {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// The template document as the user wrote it.
    pub body: String,
}

/// A stored template version, without its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineTemplateRow {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// `sha256:<hex>` of the body.
    pub digest: String,
    pub created_at: String,
    pub created_by: String,
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new version was stored (and its event appended).
    Created(PipelineTemplateRow),
    /// This exact body was already published under this version; nothing changed.
    Unchanged(PipelineTemplateRow),
}

/// `sha256:<hex>` of a template body.
pub fn template_digest(body: &str) -> String {
    let d = Sha256::digest(body.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in d {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Store {
    /// Publishes a template version: stores it and appends its event, or
    /// answers `Unchanged` for an identical body, or `Conflict` when the
    /// version holds a different body.
    pub async fn publish_pipeline_template(
        &self,
        t: &NewPipelineTemplate,
        actor: &str,
    ) -> Result<Published> {
        let digest = template_digest(&t.body);
        let mut tx = self.begin().await?;
        let conn = tx.connection();
        // Serializes publishers (across servers on PostgreSQL), so the check
        // below and the insert see the same state.
        events::lock_head(conn).await?;
        let existing = sqlx::query(
            "SELECT name, version, description, digest, created_at, created_by \
             FROM pipeline_templates WHERE name = $1 AND version = $2",
        )
        .bind(t.name.clone())
        .bind(t.version.clone())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = existing {
            let row = from_row(&row)?;
            tx.rollback().await?;
            if row.digest == digest {
                return Ok(Published::Unchanged(row));
            }
            return Err(StoreError::Conflict(format!(
                "pipeline template {}@{} is already published with other content ({}); versions are immutable: publish a new version",
                t.name, t.version, row.digest
            )));
        }
        let now = time::now();
        sqlx::query(
            "INSERT INTO pipeline_templates (name, version, description, body, digest, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(t.name.clone())
        .bind(t.version.clone())
        .bind(t.description.clone())
        .bind(t.body.clone())
        .bind(digest.clone())
        .bind(now.clone())
        .bind(actor.to_string())
        .execute(&mut *conn)
        .await?;
        tx.append_event(&NewEvent {
            event_type: PUBLISHED.to_string(),
            subject: format!("pipelinetemplate:{}@{}", t.name, t.version),
            actor: actor.to_string(),
            payload: json!({ "name": t.name, "version": t.version, "digest": digest }),
        })
        .await?;
        tx.commit().await?;
        Ok(Published::Created(PipelineTemplateRow {
            name: t.name.clone(),
            version: t.version.clone(),
            description: t.description.clone(),
            digest,
            created_at: now,
            created_by: actor.to_string(),
        }))
    }

    /// Every published version, by name then publication time.
    pub async fn list_pipeline_templates(&self) -> Result<Vec<PipelineTemplateRow>> {
        sqlx::query(
            "SELECT name, version, description, digest, created_at, created_by \
             FROM pipeline_templates ORDER BY name, created_at, version",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
    }

    /// One version with its body, if published.
    pub async fn get_pipeline_template(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<(PipelineTemplateRow, String)>> {
        let row = sqlx::query(
            "SELECT name, version, description, digest, created_at, created_by, body \
             FROM pipeline_templates WHERE name = $1 AND version = $2",
        )
        .bind(name.to_string())
        .bind(version.to_string())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let body: String = sql::get(&r, "body")?;
                Ok(Some((from_row(&r)?, body)))
            }
        }
    }
}

fn from_row(row: &AnyRow) -> Result<PipelineTemplateRow> {
    Ok(PipelineTemplateRow {
        name: sql::get(row, "name")?,
        version: sql::get(row, "version")?,
        description: sql::get(row, "description")?,
        digest: sql::get(row, "digest")?,
        created_at: sql::get(row, "created_at")?,
        created_by: sql::get(row, "created_by")?,
    })
}
