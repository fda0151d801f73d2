//! `template.yaml`: the model and its located parser.
//!
//! ```yaml
//! name: python-http
//! title: Python HTTP service
//! description: A standard-library-only HTTP service.
//! version: 1.0.0
//! parameters:
//!   type: object
//!   required: [name, owner]
//!   properties:
//!     name: { type: string, pattern: "^[a-z0-9]+$", description: Service name }
//!     owner: { type: string }
//! post-create:
//!   - python3 -m unittest
//! ```
//!
//! Unknown keys are refused with a did-you-mean; every error names the file,
//! line and column.

use crate::error::{Located, ScaffoldError};
use pave_model::suggest::did_you_mean;
use pave_model::{Entry, Node, NodeKind, Pos};
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// A semantic version `MAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Incompatible changes.
    pub major: u64,
    /// Compatible additions.
    pub minor: u64,
    /// Fixes.
    pub patch: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Version, String> {
        let bad = || format!("`{s}` is not a version MAJOR.MINOR.PATCH (e.g. 1.0.0)");
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let num = |p: &str| -> Result<u64, String> {
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        Ok(Version {
            major: num(parts[0])?,
            minor: num(parts[1])?,
            patch: num(parts[2])?,
        })
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A parameter's JSON Schema type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// `string`
    String,
    /// `integer`
    Integer,
    /// `number`
    Number,
    /// `boolean`
    Boolean,
}

impl ParamType {
    /// The JSON Schema name.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
        }
    }
}

/// One parameter (a property of the `parameters` schema).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parameter {
    /// Property name (the template variable).
    pub name: String,
    /// JSON Schema type.
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// Listed in `required`.
    pub required: bool,
    /// `description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `default` (already checked against the type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// `enum`.
    #[serde(rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// `pattern` (a regular expression searched in the value, as JSON Schema does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `minLength` in characters.
    #[serde(rename = "minLength", skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    /// `maxLength` in characters.
    #[serde(rename = "maxLength", skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// `minimum`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// `maximum`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
}

/// A parsed `template.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// Template name (catalog name rule).
    pub name: String,
    /// Human title.
    pub title: String,
    /// What the template makes.
    pub description: String,
    /// Template version.
    pub version: Version,
    /// Parameters in declaration order.
    pub parameters: Vec<Parameter>,
    /// Shell commands run in the new repository after rendering.
    #[serde(rename = "post-create")]
    pub post_create: Vec<String>,
}

impl Manifest {
    /// The parameter called `name`.
    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters.iter().find(|p| p.name == name)
    }
}

const TOP: &[&str] = &[
    "name",
    "title",
    "description",
    "version",
    "parameters",
    "post-create",
];
const SCHEMA: &[&str] = &["type", "properties", "required", "description", "title"];
const PROPERTY: &[&str] = &[
    "type",
    "description",
    "title",
    "default",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
];

/// Parses `content` of the file called `file` (used in error messages).
pub fn parse_manifest(file: &str, content: &str) -> Result<Manifest, ScaffoldError> {
    let docs = pave_model::parse_yaml_documents(content).map_err(|e| {
        ScaffoldError::Manifest(vec![Located {
            file: file.to_string(),
            line: e.pos.line,
            column: e.pos.column,
            message: e.message,
        }])
    })?;
    let mut p = Parser {
        file,
        errs: Vec::new(),
    };
    let manifest = match docs.as_slice() {
        [doc] => p.manifest(doc),
        [] => {
            p.err(Pos::new(1, 1), "the file is empty; expected a mapping with name, title, description, version, parameters");
            None
        }
        [_, second, ..] => {
            p.err(second.pos, "expected one YAML document, found several");
            None
        }
    };
    match manifest {
        Some(m) if p.errs.is_empty() => Ok(m),
        _ => Err(ScaffoldError::Manifest(p.errs)),
    }
}

struct Parser<'f> {
    file: &'f str,
    errs: Vec<Located>,
}

impl Parser<'_> {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.errs.push(Located {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        });
    }

    /// The entries of a mapping, reporting unknown keys.
    fn map<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<&'n [Entry]> {
        let Some(entries) = node.entries() else {
            self.err(
                node.pos,
                format!("`{what}` must be a mapping, found {}", node.type_name()),
            );
            return None;
        };
        for e in entries {
            if !allowed.contains(&e.key.as_str()) {
                let mut m = format!("unknown key `{}` in {what}", e.key);
                match did_you_mean(&e.key, allowed) {
                    Some(s) => m.push_str(&format!("; did you mean `{s}`?")),
                    None => m.push_str(&format!(" (expected one of: {})", allowed.join(", "))),
                }
                self.err(e.key_pos, m);
            }
        }
        Some(entries)
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Str(s) => Some(s.clone()),
            _ => {
                self.err(
                    node.pos,
                    format!("`{what}` must be a string, found {}", node.type_name()),
                );
                None
            }
        }
    }

    fn required_string(&mut self, doc: &Node, key: &str) -> Option<String> {
        match doc.entry(key) {
            Some(e) => self.string(&e.value, key),
            None => {
                self.err(doc.pos, format!("missing required key `{key}`"));
                None
            }
        }
    }

    fn manifest(&mut self, doc: &Node) -> Option<Manifest> {
        self.map(doc, "template.yaml", TOP)?;
        let name = self.required_string(doc, "name");
        if let (Some(n), Some(e)) = (&name, doc.entry("name"))
            && let Err(rule) = pave_model::entity_name_rule(n)
        {
            self.err(
                e.value.pos,
                format!("template name `{n}` breaks the name rule: {rule}"),
            );
        }
        let title = self.required_string(doc, "title");
        let description = self.required_string(doc, "description");
        let version = match doc.entry("version") {
            None => {
                self.err(
                    doc.pos,
                    "missing required key `version` (MAJOR.MINOR.PATCH)",
                );
                None
            }
            Some(e) => {
                let text = match &e.value.kind {
                    NodeKind::Str(s) => Some(s.clone()),
                    NodeKind::Num(n) => Some(n.to_string()),
                    _ => None,
                };
                match text.map(|t| t.parse::<Version>()) {
                    Some(Ok(v)) => Some(v),
                    Some(Err(m)) => {
                        self.err(e.value.pos, m);
                        None
                    }
                    None => {
                        self.err(e.value.pos, "`version` must be a string MAJOR.MINOR.PATCH");
                        None
                    }
                }
            }
        };
        let parameters = match doc.entry("parameters") {
            Some(e) => self.schema(&e.value),
            None => Vec::new(),
        };
        let post_create = match doc.entry("post-create") {
            Some(e) => self.commands(&e.value),
            None => Vec::new(),
        };
        Some(Manifest {
            name: name?,
            title: title?,
            description: description?,
            version: version?,
            parameters,
            post_create,
        })
    }

    fn commands(&mut self, node: &Node) -> Vec<String> {
        let NodeKind::Seq(items) = &node.kind else {
            self.err(
                node.pos,
                format!(
                    "`post-create` must be a list of commands, found {}",
                    node.type_name()
                ),
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|i| self.string(i, "post-create[]"))
            .collect()
    }

    fn schema(&mut self, node: &Node) -> Vec<Parameter> {
        let Some(_) = self.map(node, "parameters", SCHEMA) else {
            return Vec::new();
        };
        match node.entry("type") {
            Some(e) if e.value.as_str() == Some("object") => {}
            Some(e) => self.err(e.value.pos, "`parameters.type` must be `object`"),
            None => self.err(node.pos, "`parameters` needs `type: object`"),
        }
        let mut required: Vec<(String, Pos)> = Vec::new();
        if let Some(e) = node.entry("required") {
            match &e.value.kind {
                NodeKind::Seq(items) => {
                    for i in items {
                        if let Some(s) = self.string(i, "required[]") {
                            required.push((s, i.pos));
                        }
                    }
                }
                _ => self.err(e.value.pos, "`required` must be a list of parameter names"),
            }
        }
        let mut params = Vec::new();
        if let Some(e) = node.entry("properties")
            && let Some(entries) = self.map_any(&e.value, "properties")
        {
            for p in entries {
                if let Some(param) = self.property(p, &required) {
                    params.push(param);
                }
            }
        }
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        for (r, pos) in &required {
            if !names.contains(&r.as_str()) {
                let mut m = format!("`required` names `{r}`, which is not in `properties`");
                if let Some(s) = did_you_mean(r, &names) {
                    m.push_str(&format!("; did you mean `{s}`?"));
                }
                self.err(*pos, m);
            }
        }
        params
    }

    fn map_any<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Entry]> {
        match node.entries() {
            Some(e) => Some(e),
            None => {
                self.err(
                    node.pos,
                    format!("`{what}` must be a mapping, found {}", node.type_name()),
                );
                None
            }
        }
    }

    fn property(&mut self, entry: &Entry, required: &[(String, Pos)]) -> Option<Parameter> {
        let name = entry.key.clone();
        let what = format!("parameter `{name}`");
        let node = &entry.value;
        self.map(node, &what, PROPERTY)?;
        if !is_identifier(&name) {
            self.err(entry.key_pos, format!("{what}: a parameter name must be an identifier ([A-Za-z_][A-Za-z0-9_]*) so templates can use it"));
        }
        let ty = match node.entry("type") {
            None => {
                self.err(
                    node.pos,
                    format!("{what} needs a `type` (string, integer, number or boolean)"),
                );
                None
            }
            Some(e) => match e.value.as_str() {
                Some("string") => Some(ParamType::String),
                Some("integer") => Some(ParamType::Integer),
                Some("number") => Some(ParamType::Number),
                Some("boolean") => Some(ParamType::Boolean),
                other => {
                    let mut m = format!("{what}: unsupported type `{}`", other.unwrap_or("?"));
                    if let Some(s) = other
                        .and_then(|o| did_you_mean(o, &["string", "integer", "number", "boolean"]))
                    {
                        m.push_str(&format!("; did you mean `{s}`?"));
                    } else {
                        m.push_str(" (expected string, integer, number or boolean)");
                    }
                    self.err(e.value.pos, m);
                    None
                }
            },
        };
        let description = node
            .entry("description")
            .and_then(|e| self.string(&e.value, "description"));
        let pattern = node.entry("pattern").and_then(|e| {
            let p = self.string(&e.value, "pattern")?;
            if let Err(err) = regex_lite::Regex::new(&p) {
                self.err(e.value.pos, format!("{what}: invalid pattern: {err}"));
            }
            Some(p)
        });
        let mut count = |key: &str| -> Option<u64> {
            let e = node.entry(key)?;
            match &e.value.kind {
                NodeKind::Num(n) if n.as_u64().is_some() => n.as_u64(),
                _ => {
                    self.err(
                        e.value.pos,
                        format!("{what}: `{key}` must be a non-negative integer"),
                    );
                    None
                }
            }
        };
        let min_length = count("minLength");
        let max_length = count("maxLength");
        let mut bound = |key: &str| -> Option<f64> {
            let e = node.entry(key)?;
            match &e.value.kind {
                NodeKind::Num(n) => n.as_f64(),
                _ => {
                    self.err(e.value.pos, format!("{what}: `{key}` must be a number"));
                    None
                }
            }
        };
        let minimum = bound("minimum");
        let maximum = bound("maximum");
        let allowed = node.entry("enum").and_then(|e| match &e.value.kind {
            NodeKind::Seq(items) if !items.is_empty() => Some(
                items
                    .iter()
                    .map(|i| i.clone().into_value())
                    .collect::<Vec<_>>(),
            ),
            _ => {
                self.err(
                    e.value.pos,
                    format!("{what}: `enum` must be a non-empty list"),
                );
                None
            }
        });
        let ty = ty?;
        let mut param = Parameter {
            required: required.iter().any(|(r, _)| *r == name),
            name,
            ty,
            description,
            default: None,
            allowed,
            pattern,
            min_length,
            max_length,
            minimum,
            maximum,
        };
        if let Some(e) = node.entry("default") {
            let value = e.value.clone().into_value();
            match crate::params::check(&param, &value) {
                Ok(()) => param.default = Some(value),
                Err(pe) => self.err(
                    e.value.pos,
                    format!("{what}: default breaks `{}`: {}", pe.rule, pe.message),
                ),
            }
        }
        Some(param)
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
