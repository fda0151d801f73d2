//! Read models shared by the API and the portal: summaries of catalog rows.

use pave_store::{EntityRow, RelationRow};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A service (a catalog Component) as lists show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServiceSummary {
    pub name: String,
    pub namespace: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Owner team name (the Group's name).
    pub owner: Option<String>,
    pub system: Option<String>,
    pub lifecycle: Option<String>,
    #[serde(rename = "type")]
    pub component_type: Option<String>,
    pub tags: Vec<String>,
    pub updated_at: String,
}

/// A link on an entity page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkView {
    pub url: String,
    pub title: Option<String>,
}

/// A team (a catalog Group) as lists show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TeamSummary {
    pub name: String,
    pub namespace: String,
    pub title: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub group_type: Option<String>,
    pub parent: Option<String>,
    /// How many services this team owns.
    pub services: usize,
}

fn str_at<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(doc, |v, key| v.get(key))
        .and_then(Value::as_str)
}

fn string_at(doc: &Value, path: &[&str]) -> Option<String> {
    str_at(doc, path).map(str::to_string)
}

/// The name part of a `[kind:][namespace/]name` reference.
pub fn ref_name(reference: &str) -> &str {
    let rest = reference.split_once(':').map_or(reference, |(_, r)| r);
    rest.rsplit_once('/').map_or(rest, |(_, n)| n)
}

/// Summary of a Component row.
pub fn service_summary(row: &EntityRow) -> ServiceSummary {
    let doc = &row.document;
    ServiceSummary {
        name: row.name.clone(),
        namespace: row.namespace.clone(),
        title: string_at(doc, &["metadata", "title"]),
        description: string_at(doc, &["metadata", "description"]),
        owner: str_at(doc, &["spec", "owner"]).map(|o| ref_name(o).to_string()),
        system: str_at(doc, &["spec", "system"]).map(|s| ref_name(s).to_string()),
        lifecycle: string_at(doc, &["spec", "lifecycle"]),
        component_type: string_at(doc, &["spec", "type"]),
        tags: doc
            .pointer("/metadata/tags")
            .and_then(Value::as_array)
            .map(|tags| {
                tags.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        updated_at: row.updated_at.clone(),
    }
}

/// One annotation of an entity.
pub fn annotation(row: &EntityRow, name: &str) -> Option<String> {
    row.document
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(name))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The links of an entity.
pub fn links(row: &EntityRow) -> Vec<LinkView> {
    row.document
        .pointer("/metadata/links")
        .and_then(Value::as_array)
        .map(|links| {
            links
                .iter()
                .filter_map(|l| {
                    Some(LinkView {
                        url: l.get("url")?.as_str()?.to_string(),
                        title: l.get("title").and_then(Value::as_str).map(str::to_string),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Summary of a Group row, given how many services it owns.
pub fn team_summary(row: &EntityRow, services: usize) -> TeamSummary {
    let doc = &row.document;
    TeamSummary {
        name: row.name.clone(),
        namespace: row.namespace.clone(),
        title: string_at(doc, &["metadata", "title"])
            .or_else(|| string_at(doc, &["spec", "profile", "displayName"])),
        description: string_at(doc, &["metadata", "description"]),
        group_type: string_at(doc, &["spec", "type"]),
        parent: str_at(doc, &["spec", "parent"]).map(|p| ref_name(p).to_string()),
        services,
    }
}

/// Relations grouped by type: `{ "ownedBy": ["group:default/payments"], ... }`.
pub fn group_relations(relations: &[RelationRow]) -> BTreeMap<String, Vec<String>> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in relations {
        grouped
            .entry(r.rel_type.clone())
            .or_default()
            .push(r.target_key.clone());
    }
    for targets in grouped.values_mut() {
        targets.sort();
        targets.dedup();
    }
    grouped
}

/// Counts Components per owner key.
pub fn services_per_owner(components: &[EntityRow]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in components {
        if let Some(owner) = &c.owner_key {
            *counts.entry(owner.clone()).or_insert(0) += 1;
        }
    }
    counts
}
