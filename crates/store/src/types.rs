//! Row and input types of the store.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An entity to create or update.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityInput {
    /// Lowercase `kind:namespace/name`.
    pub key: String,
    /// Canonical kind spelling (`Component`, `API`, `Group`, ...).
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Key of the owning Group, when the entity has an owner.
    pub owner_key: Option<String>,
    /// The whole entity document (Backstage shape), stored as JSON.
    pub document: Value,
    /// Where it came from, e.g. `catalog/payments.yaml:12:1`.
    pub origin: Option<String>,
    /// Relations this entity produces (both directions, see `RelationRow`).
    pub relations: Vec<RelationRow>,
}

/// A stored entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityRow {
    pub key: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub owner_key: Option<String>,
    pub document: Value,
    pub origin: Option<String>,
    /// Bumped on every change; starts at 1.
    pub generation: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A directed relation `source --type--> target`. The entity that produces a
/// relation stores both directions (e.g. `ownedBy` and the reverse `ownerOf`);
/// re-applying that entity replaces exactly the relations it produced.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RelationRow {
    pub source_key: String,
    /// Backstage relation name: `ownedBy`, `ownerOf`, `partOf`, `hasPart`, ...
    pub rel_type: String,
    pub target_key: String,
}

/// Which entities to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityFilter {
    /// Canonical kind spelling, matched case-insensitively.
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub owner_key: Option<String>,
    pub limit: Option<i64>,
}

/// What an apply changed, as entity keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

/// A token to store. The secret itself never reaches the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewToken {
    pub name: String,
    /// `viewer`, `developer`, `approver` or `admin`.
    pub role: String,
    pub team: Option<String>,
    /// Lowercase hex sha256 of the secret.
    pub secret_hash: String,
}

/// A stored token (without its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRow {
    /// ULID.
    pub id: String,
    pub name: String,
    pub role: String,
    pub team: Option<String>,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// CDEvents-style type, e.g. `dev.cdevents.pipelinerun.finished.0.2.0`.
    pub event_type: String,
    /// What it is about, e.g. `component:default/hello` or `token:01J...`.
    pub subject: String,
    /// Who did it, e.g. `token:01J...(ci-bot)` or `system`.
    pub actor: String,
    pub payload: Value,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    /// Position in the log, 1-based, gapless.
    pub seq: i64,
    /// ULID.
    pub id: String,
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    pub event_type: String,
    pub subject: String,
    pub actor: String,
    pub payload: Value,
    /// Lowercase hex; 64 zeros for the first event.
    pub prev_hash: String,
    /// Lowercase hex sha256(prev_hash bytes || canonical JSON of the event).
    pub hash: String,
}

/// Which events to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    /// Only events at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only events with this exact subject.
    pub subject: Option<String>,
    /// Only events with seq greater than this.
    pub after_seq: Option<i64>,
    /// At most this many (default 100, at most 10 000).
    pub limit: Option<i64>,
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub ok: bool,
    /// Entries checked.
    pub checked: i64,
    /// Seq and hash of the last entry that verified.
    pub head_seq: i64,
    pub head_hash: String,
    /// The first entry that failed, if any.
    pub failure: Option<VerifyFailure>,
}

/// The first broken entry and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyFailure {
    /// The seq at which the chain breaks.
    pub seq: i64,
    /// The event id found at that position, if any.
    pub id: Option<String>,
    /// e.g. "hash mismatch: content was edited", "gap: entry 41 missing", "prev_hash does not match entry 40".
    pub reason: String,
}
