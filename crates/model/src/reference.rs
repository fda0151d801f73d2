//! Entity references: `[kind:][namespace/]name`.

use crate::entity::Kind;
use serde::{Deserialize, Serialize};

/// A fully qualified reference to a catalog entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

/// Why a reference string is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("empty entity reference")]
    Empty,
    #[error("unknown kind `{0}` in entity reference")]
    UnknownKind(String),
    #[error("invalid {part} `{value}` in entity reference: {rule}")]
    InvalidPart {
        part: &'static str,
        value: String,
        rule: &'static str,
    },
}

impl EntityRef {
    /// Builds a reference; `namespace` and `name` must already be valid.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> EntityRef {
        EntityRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// Parses `[kind:][namespace/]name`, filling in defaults.
    pub fn parse(
        s: &str,
        default_kind: Kind,
        default_namespace: &str,
    ) -> Result<EntityRef, RefError> {
        let (kind, namespace, name) = EntityRef::split(s, default_kind, default_namespace)?;
        Ok(EntityRef::new(kind, namespace, name))
    }

    /// Checks `[kind:][namespace/]name` without allocating; returns its parts.
    pub(crate) fn split<'a>(
        s: &'a str,
        default_kind: Kind,
        default_namespace: &'a str,
    ) -> Result<(Kind, &'a str, &'a str), RefError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(RefError::Empty);
        }
        let (kind, rest) = match s.split_once(':') {
            Some((k, rest)) => (
                Kind::parse(k).ok_or_else(|| RefError::UnknownKind(k.to_string()))?,
                rest,
            ),
            None => (default_kind, s),
        };
        let (namespace, name) = match rest.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => (default_namespace, rest),
        };
        if let Err(rule) = crate::entity_name_rule(namespace) {
            return Err(RefError::InvalidPart {
                part: "namespace",
                value: namespace.to_string(),
                rule,
            });
        }
        if let Err(rule) = crate::entity_name_rule(name) {
            return Err(RefError::InvalidPart {
                part: "name",
                value: name.to_string(),
                rule,
            });
        }
        Ok((kind, namespace, name))
    }

    /// The store key: lowercase `kind:namespace/name` (names are unique
    /// case-insensitively per kind and namespace).
    pub fn key(&self) -> String {
        format!(
            "{}:{}/{}",
            self.kind.as_str().to_ascii_lowercase(),
            self.namespace.to_ascii_lowercase(),
            self.name.to_ascii_lowercase()
        )
    }
}

impl std::fmt::Display for EntityRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.kind.as_str().to_ascii_lowercase(),
            self.namespace,
            self.name
        )
    }
}
