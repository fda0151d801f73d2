//! The catalog room: turns parsed entities into an import plan — identity,
//! owner, and the relations each entity produces (both directions).

use pave_model::{EntityRef, ParsedEntity, SpecErrors};

/// A directed relation between two entities, named as in Backstage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Relation {
    pub source: EntityRef,
    /// `ownedBy`, `ownerOf`, `partOf`, `hasPart`, `dependsOn`, `dependencyOf`,
    /// `providesApi`, `apiProvidedBy`, `consumesApi`, `apiConsumedBy`,
    /// `parentOf`, `childOf`, `memberOf`, `hasMember`.
    pub rel_type: &'static str,
    pub target: EntityRef,
}

/// One entity ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEntity {
    pub parsed: ParsedEntity,
    pub entity_ref: EntityRef,
    /// The owning Group (Component, API, Resource, System, Domain have owners).
    pub owner: Option<EntityRef>,
    /// Every relation this entity produces, both directions, deduplicated and sorted.
    pub relations: Vec<Relation>,
}

/// The validated batch of one apply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportPlan {
    pub entities: Vec<PlannedEntity>,
}

/// Plans an import: derives refs, owners and relations, and rejects the
/// batch if two documents define the same entity (case-insensitively),
/// naming both locations.
pub fn plan_import(parsed: Vec<ParsedEntity>) -> Result<ImportPlan, SpecErrors> {
    let _ = parsed;
    todo!("catalog helper")
}
