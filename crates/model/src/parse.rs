//! Parsing user files into catalog entities, with located errors.
//!
//! Every error names the file, a 1-based line and column, what is wrong and,
//! where it can be said, what was expected. Reading a file collects all the
//! validation errors it finds (names, references, required fields, types);
//! malformed YAML and a `pave.yaml` whose shape does not match stop at the
//! first problem.

use crate::entity::{Entity, Kind, Link, Metadata};
use crate::error::{SpecError, SpecErrors};
use crate::node::{Entry, Node, NodeKind, Pos, entries_into_map, parse_documents};
use crate::node_de::{DeError, DeErrorKind, from_node};
use crate::reference::EntityRef;
use crate::service_spec::PaveSpec;
use crate::suggest::did_you_mean;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// An entity parsed from a user's file, with where its document starts.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEntity {
    /// The validated entity.
    pub entity: Entity,
    /// The file as the client named it.
    pub file: String,
    /// 1-based line where the entity's document starts (its first key).
    pub line: usize,
    /// 1-based column where the entity's document starts.
    pub column: usize,
}

/// A `spec` field that holds entity references, per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefField {
    /// Field name inside `spec` (e.g. `dependsOn`).
    pub field: &'static str,
    /// Kind assumed when a reference omits `kind:`.
    pub default_kind: Kind,
    /// True for a list of references, false for a single one.
    pub many: bool,
}

const fn rf(field: &'static str, default_kind: Kind, many: bool) -> RefField {
    RefField {
        field,
        default_kind,
        many,
    }
}

/// The reference fields Backstage defines in `spec` for `kind`.
pub fn reference_fields(kind: Kind) -> &'static [RefField] {
    const COMPONENT: &[RefField] = &[
        rf("owner", Kind::Group, false),
        rf("system", Kind::System, false),
        rf("subcomponentOf", Kind::Component, false),
        rf("providesApis", Kind::Api, true),
        rf("consumesApis", Kind::Api, true),
        rf("dependsOn", Kind::Component, true),
        rf("dependencyOf", Kind::Component, true),
    ];
    const API: &[RefField] = &[
        rf("owner", Kind::Group, false),
        rf("system", Kind::System, false),
    ];
    const RESOURCE: &[RefField] = &[
        rf("owner", Kind::Group, false),
        rf("system", Kind::System, false),
        rf("dependsOn", Kind::Component, true),
        rf("dependencyOf", Kind::Component, true),
    ];
    const SYSTEM: &[RefField] = &[
        rf("owner", Kind::Group, false),
        rf("domain", Kind::Domain, false),
    ];
    const DOMAIN: &[RefField] = &[rf("owner", Kind::Group, false)];
    const GROUP: &[RefField] = &[
        rf("parent", Kind::Group, false),
        rf("children", Kind::Group, true),
        rf("members", Kind::User, true),
    ];
    const USER: &[RefField] = &[rf("memberOf", Kind::Group, true)];
    match kind {
        Kind::Component => COMPONENT,
        Kind::Api => API,
        Kind::Resource => RESOURCE,
        Kind::System => SYSTEM,
        Kind::Domain => DOMAIN,
        Kind::Group => GROUP,
        Kind::User => USER,
        Kind::Location => &[],
    }
}

/// Required `spec` fields per kind (Location needs `target` or `targets`, checked apart).
fn required_spec_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Component => &["type", "lifecycle", "owner"],
        Kind::Api => &["type", "lifecycle", "owner", "definition"],
        Kind::Resource => &["type", "owner"],
        Kind::System | Kind::Domain => &["owner"],
        Kind::Group => &["type", "children"],
        Kind::User => &["memberOf"],
        Kind::Location => &[],
    }
}

/// True when `file` names a `pave.yaml` (its name ends with `pave.yaml` or `pave.yml`).
fn is_pave_yaml(file: &str) -> bool {
    let name = file.rsplit(['/', '\\']).next().unwrap_or(file);
    name.ends_with("pave.yaml") || name.ends_with("pave.yml")
}

/// Parses one file: a `pave.yaml` (file named `pave.yaml`/`pave.yml`) yields
/// one Component (its pipeline is validated, then dropped; see
/// [`parse_pave_yaml`]); a Backstage file yields one entity per YAML document.
pub fn parse_file(file: &str, content: &str) -> Result<Vec<ParsedEntity>, SpecErrors> {
    if is_pave_yaml(file) {
        return parse_pave_yaml(file, content).map(|doc| vec![doc.service]);
    }
    let docs = parse_documents(content)
        .map_err(|e| SpecError::new(file, e.pos.line, e.pos.column, e.message))?;
    parse_backstage(file, docs)
}

/// A parsed `pave.yaml`: the service's entity, its pipeline and its deploy section.
#[derive(Debug, Clone, PartialEq)]
pub struct PaveDocument {
    pub service: ParsedEntity,
    pub pipeline: Option<crate::pipeline_spec::PipelineSpec>,
    /// How the service is started, health-checked and rolled out per environment.
    pub deploy: Option<crate::deploy_spec::DeploySpec>,
}

/// Parses a `pave.yaml` (whatever the file is called) and validates all of
/// it, the pipeline included; every error is located in `file`.
pub fn parse_pave_yaml(file: &str, content: &str) -> Result<PaveDocument, SpecErrors> {
    let docs = parse_documents(content)
        .map_err(|e| SpecError::new(file, e.pos.line, e.pos.column, e.message))?;
    parse_pave(file, docs)
}

/// Collects errors for one file.
struct Errs<'f> {
    file: &'f str,
    list: Vec<SpecError>,
}

impl Errs<'_> {
    fn push(&mut self, pos: Pos, message: String, expected: Option<String>) {
        let mut e = SpecError::new(self.file, pos.line, pos.column, message);
        e.expected = expected;
        self.list.push(e);
    }

    /// Reports a value of the wrong type at the value.
    fn wrong_type(&mut self, path: &str, node: &Node, expected: &str) {
        self.push(
            node.pos,
            format!("`{path}` must be {expected}, found {}", node.type_name()),
            Some(expected.to_string()),
        );
    }

    fn missing(&mut self, pos: Pos, message: String, expected: Option<String>) {
        self.push(pos, message, expected);
    }
}

// ---------------------------------------------------------------- pave.yaml

const PAVE_TOP: &str = "a mapping with `service` (and optionally `pipeline`, `deploy`)";

fn parse_pave(file: &str, mut docs: Vec<Node>) -> Result<PaveDocument, SpecErrors> {
    if docs.len() > 1 {
        let p = docs[1].pos;
        return Err(SpecError::new(
            file,
            p.line,
            p.column,
            format!(
                "pave.yaml must hold a single YAML document, found {}",
                docs.len()
            ),
        )
        .expected("one document")
        .into());
    }
    let Some(root) = docs.pop() else {
        return Err(SpecError::new(file, 1, 1, "pave.yaml is empty")
            .expected(PAVE_TOP)
            .into());
    };
    if root.entries().is_none() {
        let p = root.pos;
        return Err(SpecError::new(
            file,
            p.line,
            p.column,
            format!("expected a mapping, found {}", root.type_name()),
        )
        .expected(PAVE_TOP)
        .into());
    }
    if let Some(p) = root.entry("pipeline") {
        let errs = crate::pipeline_spec::reject_unsupported(file, &p.value);
        if !errs.is_empty() {
            return Err(SpecErrors(errs));
        }
    }
    let spec: PaveSpec = from_node(&root, root.pos).map_err(|e| de_error(file, root.pos, e))?;

    let mut errs = Errs {
        file,
        list: Vec::new(),
    };
    // `from_node` succeeded, so `service` is a mapping holding these fields.
    let svc_entry = root.entry("service");
    let svc_pos = svc_entry.map_or(root.pos, |e| e.key_pos);
    let field = |key: &str| svc_entry.and_then(|e| e.value.entry(key)).map(|e| &e.value);
    let pos_of = |key: &str| field(key).map_or(svc_pos, |n| n.pos);
    let item_pos = |key: &str, i: usize| match field(key).map(|n| &n.kind) {
        Some(NodeKind::Seq(items)) => items.get(i).map_or(svc_pos, |n| n.pos),
        _ => svc_pos,
    };

    let s = &spec.service;
    if let Err(rule) = crate::entity_name_rule(&s.name) {
        errs.push(
            pos_of("name"),
            format!(
                "invalid name `{}` in `service.name`: must be {rule}",
                s.name
            ),
            Some(rule.to_string()),
        );
    }
    check_ref(
        &mut errs,
        pos_of("owner"),
        &|| "service.owner".to_string(),
        &s.owner,
        Kind::Group,
        "default",
    );
    if let Some(system) = &s.system {
        check_ref(
            &mut errs,
            pos_of("system"),
            &|| "service.system".to_string(),
            system,
            Kind::System,
            "default",
        );
    }
    for (key, list, kind) in [
        ("dependsOn", &s.depends_on, Kind::Component),
        ("providesApis", &s.provides_apis, Kind::Api),
        ("consumesApis", &s.consumes_apis, Kind::Api),
    ] {
        for (i, r) in list.iter().enumerate() {
            check_ref(
                &mut errs,
                item_pos(key, i),
                &|| format!("service.{key}[{i}]"),
                r,
                kind,
                "default",
            );
        }
    }
    if let (Some(pipeline), Some(p)) = (&spec.pipeline, root.entry("pipeline")) {
        errs.list.extend(crate::pipeline_spec::validate(
            file, pipeline, &p.value, p.key_pos,
        ));
    }
    let deploy = match root.entry("deploy") {
        Some(d) => match crate::deploy_parse::parse_deploy(file, &d.value, d.key_pos) {
            Ok(spec) => Some(spec),
            Err(list) => {
                errs.list.extend(list);
                None
            }
        },
        None => None,
    };
    if !errs.list.is_empty() {
        errs.list.sort_by_key(|e| (e.line, e.column));
        return Err(SpecErrors(errs.list));
    }

    let s = spec.service;
    let mut annotations = BTreeMap::new();
    annotations.insert("pave.dev/source".to_string(), "pave.yaml".to_string());
    let mut out_spec = Map::new();
    out_spec.insert(
        "type".into(),
        Value::String(s.component_type.unwrap_or_else(|| "service".into())),
    );
    out_spec.insert(
        "lifecycle".into(),
        Value::String(s.lifecycle.unwrap_or_else(|| "production".into())),
    );
    out_spec.insert("owner".into(), Value::String(s.owner));
    if let Some(system) = s.system {
        out_spec.insert("system".into(), Value::String(system));
    }
    for (key, list) in [
        ("dependsOn", s.depends_on),
        ("providesApis", s.provides_apis),
        ("consumesApis", s.consumes_apis),
    ] {
        if !list.is_empty() {
            out_spec.insert(
                key.into(),
                Value::Array(list.into_iter().map(Value::String).collect()),
            );
        }
    }
    let entity = Entity {
        api_version: "backstage.io/v1alpha1".into(),
        kind: Kind::Component,
        metadata: Metadata {
            name: s.name,
            namespace: "default".into(),
            title: None,
            description: s.description,
            labels: BTreeMap::new(),
            annotations,
            tags: s.tags,
            links: s.links,
            extra: Map::new(),
        },
        spec: out_spec,
        extra: Map::new(),
    };
    Ok(PaveDocument {
        service: ParsedEntity {
            entity,
            file: file.to_string(),
            line: root.pos.line,
            column: root.pos.column,
        },
        pipeline: spec.pipeline,
        deploy,
    })
}

/// Turns a typed-deserialization error into a located spec error.
pub(crate) fn de_error(file: &str, root_pos: Pos, e: DeError) -> SpecError {
    let pos = e.pos.unwrap_or(root_pos);
    let place = if e.path.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in `{}`", e.path)
    };
    let (message, expected) = match e.kind {
        DeErrorKind::UnknownField { field, expected } => {
            let mut m = format!("unknown field `{field}` {place}");
            if let Some(s) = did_you_mean(&field, expected) {
                m.push_str(&format!("; did you mean `{s}`?"));
            }
            (m, Some(format!("one of: {}", expected.join(", "))))
        }
        DeErrorKind::MissingField(field) => (
            format!("missing required field `{field}` {place}"),
            Some(format!("a `{field}` field")),
        ),
        DeErrorKind::InvalidType { found, expected } => {
            let expected = if expected.starts_with("struct ") || expected == "a map" {
                "a mapping".to_string()
            } else {
                expected
            };
            let what = if e.path.is_empty() {
                "the document".to_string()
            } else {
                format!("`{}`", e.path)
            };
            (
                format!("{what} must be {expected}, found {found}"),
                Some(expected),
            )
        }
        DeErrorKind::Custom(m) => (format!("{m} {place}"), None),
    };
    let mut err = SpecError::new(file, pos.line, pos.column, message);
    err.expected = expected;
    err
}

/// Reports a malformed reference at `pos`.
fn check_ref(
    errs: &mut Errs<'_>,
    pos: Pos,
    path: &dyn Fn() -> String,
    value: &str,
    default_kind: Kind,
    namespace: &str,
) {
    if let Err(e) = EntityRef::split(value, default_kind, namespace) {
        errs.push(
            pos,
            format!("invalid entity reference `{value}` in `{}`: {e}", path()),
            Some(format!(
                "a reference `[kind:][namespace/]name` (default kind {default_kind}), each part 1-63 characters of [a-zA-Z0-9] separated by single '-', '_' or '.'"
            )),
        );
    }
}

// ---------------------------------------------------------- Backstage files

const KINDS: [&str; 8] = [
    "Component",
    "API",
    "Resource",
    "System",
    "Domain",
    "Group",
    "User",
    "Location",
];

fn parse_backstage(file: &str, docs: Vec<Node>) -> Result<Vec<ParsedEntity>, SpecErrors> {
    let mut errs = Errs {
        file,
        list: Vec::new(),
    };
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        let before = errs.list.len();
        let kind = validate_doc(&mut errs, &doc);
        errs.list[before..].sort_by_key(|e| (e.line, e.column));
        if errs.list.len() == before
            && let Some(kind) = kind
        {
            let pos = doc.pos;
            out.push(ParsedEntity {
                entity: build_entity(doc, kind),
                file: file.to_string(),
                line: pos.line,
                column: pos.column,
            });
        }
    }
    if errs.list.is_empty() {
        Ok(out)
    } else {
        Err(SpecErrors(errs.list))
    }
}

/// Checks one document; returns its kind when the kind itself is valid.
fn validate_doc(errs: &mut Errs<'_>, doc: &Node) -> Option<Kind> {
    if doc.entries().is_none() {
        errs.push(
            doc.pos,
            format!(
                "expected an entity descriptor mapping, found {}",
                doc.type_name()
            ),
            Some("a mapping with apiVersion, kind, metadata and spec".into()),
        );
        return None;
    }

    match doc.entry("apiVersion") {
        None => errs.missing(
            doc.pos,
            "missing required field `apiVersion`".into(),
            Some("`backstage.io/v1alpha1`".into()),
        ),
        Some(e) => match e.value.as_str() {
            None => errs.wrong_type("apiVersion", &e.value, "a string"),
            Some(v) if !v.starts_with("backstage.io/") => errs.push(
                e.value.pos,
                format!("unsupported apiVersion `{v}`"),
                Some("`backstage.io/v1alpha1` (a `backstage.io/` version)".into()),
            ),
            Some(_) => {}
        },
    }

    let kind = match doc.entry("kind") {
        None => {
            errs.missing(
                doc.pos,
                "missing required field `kind`".into(),
                Some(kinds_expected()),
            );
            None
        }
        Some(e) => match e.value.as_str() {
            None => {
                errs.wrong_type("kind", &e.value, "a string");
                None
            }
            Some(k) => {
                let exact = Kind::ALL.into_iter().find(|kind| kind.as_str() == k);
                if exact.is_none() {
                    let suggestion = Kind::parse(k)
                        .map(Kind::as_str)
                        .or_else(|| did_you_mean(k, &KINDS));
                    let mut m = format!("unknown kind `{k}`");
                    if let Some(s) = suggestion {
                        m.push_str(&format!("; did you mean `{s}`?"));
                    }
                    errs.push(e.value.pos, m, Some(kinds_expected()));
                }
                exact
            }
        },
    };

    let namespace = validate_metadata(errs, doc);

    match doc.entry("spec") {
        // An empty `spec:` reads as an empty mapping.
        Some(e) if e.value.entries().is_none() && e.value.kind != NodeKind::Null => {
            errs.wrong_type("spec", &e.value, "a mapping")
        }
        spec => {
            if let Some(kind) = kind {
                validate_spec(
                    errs,
                    doc,
                    spec,
                    kind,
                    namespace.as_deref().unwrap_or("default"),
                );
            }
        }
    }
    kind
}

fn kinds_expected() -> String {
    format!("one of: {}", KINDS.join(", "))
}

/// Checks `metadata`; returns the namespace when it is usable.
fn validate_metadata(errs: &mut Errs<'_>, doc: &Node) -> Option<String> {
    let Some(meta) = doc.entry("metadata") else {
        errs.missing(
            doc.pos,
            "missing required field `metadata`".into(),
            Some("a mapping with `name`".into()),
        );
        return None;
    };
    let Some(entries) = meta.value.entries() else {
        errs.wrong_type("metadata", &meta.value, "a mapping");
        return None;
    };
    let mut namespace = Some("default".to_string());
    let mut has_name = false;
    for e in entries {
        // Paths are only formatted for errors.
        let path = || format!("metadata.{}", e.key);
        match e.key.as_str() {
            "name" | "namespace" => match e.value.as_str() {
                None => {
                    errs.wrong_type(&path(), &e.value, "a string");
                    if e.key == "namespace" {
                        namespace = None;
                    }
                }
                Some(v) => {
                    if let Err(rule) = crate::entity_name_rule(v) {
                        errs.push(
                            e.value.pos,
                            format!("invalid {} `{v}` in `{}`: must be {rule}", e.key, path()),
                            Some(rule.to_string()),
                        );
                        if e.key == "namespace" {
                            namespace = None;
                        }
                    } else if e.key == "namespace" {
                        namespace = Some(v.to_string());
                    }
                }
            },
            "title" | "description" if e.value.as_str().is_none() => {
                errs.wrong_type(&path(), &e.value, "a string");
            }
            "labels" | "annotations" => match e.value.entries() {
                None => errs.wrong_type(&path(), &e.value, "a mapping of strings"),
                Some(items) => {
                    for item in items {
                        if item.value.as_str().is_none() {
                            errs.wrong_type(
                                &format!("{}.{}", path(), item.key),
                                &item.value,
                                "a string",
                            );
                        }
                    }
                }
            },
            "tags" => match &e.value.kind {
                NodeKind::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if item.as_str().is_none() {
                            errs.wrong_type(&format!("{}[{i}]", path()), item, "a string");
                        }
                    }
                }
                _ => errs.wrong_type(&path(), &e.value, "a sequence of strings"),
            },
            "links" => match &e.value.kind {
                NodeKind::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        validate_link(errs, &|| format!("{}[{i}]", path()), item);
                    }
                }
                _ => errs.wrong_type(&path(), &e.value, "a sequence of links"),
            },
            _ => {}
        }
        has_name |= e.key == "name";
    }
    if !has_name {
        errs.missing(
            meta.key_pos,
            "missing required field `metadata.name`".into(),
            Some(format!(
                "a name: {}",
                crate::entity_name_rule("").err().unwrap_or_default()
            )),
        );
    }
    namespace
}

fn validate_link(errs: &mut Errs<'_>, path: &dyn Fn() -> String, item: &Node) {
    let Some(fields) = item.entries() else {
        errs.wrong_type(&path(), item, "a mapping with `url`");
        return;
    };
    let mut has_url = false;
    for f in fields {
        if matches!(f.key.as_str(), "url" | "title" | "icon" | "type") && f.value.as_str().is_none()
        {
            errs.wrong_type(&format!("{}.{}", path(), f.key), &f.value, "a string");
        }
        has_url |= f.key == "url";
    }
    if !has_url {
        errs.missing(
            item.pos,
            format!("missing required field `{}.url`", path()),
            Some("a `url` field".into()),
        );
    }
}

fn validate_spec(
    errs: &mut Errs<'_>,
    doc: &Node,
    spec: Option<&Entry>,
    kind: Kind,
    namespace: &str,
) {
    let anchor = spec.map_or(doc.pos, |e| e.key_pos);
    let get = |key: &str| spec.and_then(|e| e.value.entry(key)).map(|e| &e.value);
    for &field in required_spec_fields(kind) {
        if get(field).is_none() {
            errs.missing(
                anchor,
                format!("missing required field `spec.{field}` for kind {kind}"),
                Some(format!("a `{field}` field in `spec`")),
            );
        }
    }
    for field in ["type", "lifecycle", "target"] {
        if let Some(v) = get(field)
            && v.as_str().is_none()
        {
            errs.wrong_type(&format!("spec.{field}"), v, "a string");
        }
    }
    if kind == Kind::Api
        && let Some(v) = get("definition")
        && !matches!(v.kind, NodeKind::Str(_) | NodeKind::Map(_))
    {
        errs.wrong_type(
            "spec.definition",
            v,
            "a string (or a `$text`/`$json`/`$yaml` placeholder)",
        );
    }
    if kind == Kind::Location {
        match (get("target"), get("targets")) {
            (None, None) => errs.missing(
                anchor,
                "missing required field `spec.target` or `spec.targets` for kind Location".into(),
                Some("a `target` or `targets` field in `spec`".into()),
            ),
            (_, Some(targets)) => match &targets.kind {
                NodeKind::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if item.as_str().is_none() {
                            errs.wrong_type(&format!("spec.targets[{i}]"), item, "a string");
                        }
                    }
                }
                _ => errs.wrong_type("spec.targets", targets, "a sequence of strings"),
            },
            _ => {}
        }
    }
    for rf in reference_fields(kind) {
        let Some(v) = get(rf.field) else { continue };
        let path = || format!("spec.{}", rf.field);
        if rf.many {
            match &v.kind {
                NodeKind::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let item_path = || format!("spec.{}[{i}]", rf.field);
                        match item.as_str() {
                            Some(s) => {
                                check_ref(errs, item.pos, &item_path, s, rf.default_kind, namespace)
                            }
                            None => {
                                errs.wrong_type(&item_path(), item, "a string entity reference")
                            }
                        }
                    }
                }
                _ => errs.wrong_type(&path(), v, "a sequence of entity references"),
            }
        } else {
            match v.as_str() {
                Some(s) => check_ref(errs, v.pos, &path, s, rf.default_kind, namespace),
                None => errs.wrong_type(&path(), v, "a string entity reference"),
            }
        }
    }
}

/// Builds the entity from a document `validate_doc` accepted.
fn build_entity(doc: Node, kind: Kind) -> Entity {
    let mut api_version = String::new();
    let mut metadata = Metadata {
        name: String::new(),
        namespace: "default".into(),
        title: None,
        description: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        tags: Vec::new(),
        links: Vec::new(),
        extra: Map::new(),
    };
    let mut spec = Map::new();
    let mut extra = Map::new();
    let NodeKind::Map(entries) = doc.kind else {
        return Entity {
            api_version,
            kind,
            metadata,
            spec,
            extra,
        };
    };
    for e in entries {
        match (e.key.as_str(), e.value.kind) {
            ("apiVersion", NodeKind::Str(v)) => api_version = v,
            ("kind", _) => {}
            ("metadata", NodeKind::Map(fields)) => fill_metadata(&mut metadata, fields),
            ("spec", NodeKind::Map(fields)) => spec = entries_into_map(fields),
            ("spec", NodeKind::Null) => {}
            (_, value_kind) => {
                let value = Node {
                    kind: value_kind,
                    pos: e.value.pos,
                };
                extra.insert(e.key, value.into_value());
            }
        }
    }
    Entity {
        api_version,
        kind,
        metadata,
        spec,
        extra,
    }
}

fn string_map(entries: Vec<Entry>) -> BTreeMap<String, String> {
    entries
        .into_iter()
        .filter_map(|e| match e.value.kind {
            NodeKind::Str(s) => Some((e.key, s)),
            _ => None,
        })
        .collect()
}

/// Fills the typed metadata fields; everything else goes to `extra`
/// unchanged. `links` whose items carry fields `Link` does not model are kept
/// whole in `extra` so that nothing is lost.
fn fill_metadata(m: &mut Metadata, fields: Vec<Entry>) {
    for e in fields {
        match (e.key.as_str(), e.value.kind) {
            ("name", NodeKind::Str(s)) => m.name = s,
            ("namespace", NodeKind::Str(s)) => m.namespace = s,
            ("title", NodeKind::Str(s)) => m.title = Some(s),
            ("description", NodeKind::Str(s)) => m.description = Some(s),
            ("labels", NodeKind::Map(items)) => m.labels = string_map(items),
            ("annotations", NodeKind::Map(items)) => m.annotations = string_map(items),
            ("tags", NodeKind::Seq(items)) => {
                m.tags = items
                    .into_iter()
                    .filter_map(|n| match n.kind {
                        NodeKind::Str(s) => Some(s),
                        _ => None,
                    })
                    .collect();
            }
            ("links", NodeKind::Seq(items)) => match typed_links(&items) {
                Some(links) => m.links = links,
                None => {
                    let value = Node {
                        kind: NodeKind::Seq(items),
                        pos: e.value.pos,
                    };
                    m.extra.insert(e.key, value.into_value());
                }
            },
            (_, kind) => {
                let value = Node {
                    kind,
                    pos: e.value.pos,
                };
                m.extra.insert(e.key, value.into_value());
            }
        }
    }
}

fn typed_links(items: &[Node]) -> Option<Vec<Link>> {
    items
        .iter()
        .map(|item| {
            let mut link = Link {
                url: String::new(),
                title: None,
                icon: None,
                link_type: None,
            };
            for f in item.entries()? {
                let v = f.value.as_str()?.to_string();
                match f.key.as_str() {
                    "url" => link.url = v,
                    "title" => link.title = Some(v),
                    "icon" => link.icon = Some(v),
                    "type" => link.link_type = Some(v),
                    _ => return None,
                }
            }
            Some(link)
        })
        .collect()
}
