//! Reusable pipeline templates: a YAML document with a header, declared
//! inputs, optional outputs and `jobs` of the same shape as `pipeline.jobs`,
//! used from a pipeline as `jobs.<id>: { uses: <name>@<version>, with: {...} }`.
//!
//! ```yaml
//! template: { name: rust-ci, version: 1.2.0, description: "Build and test a crate" }
//! inputs:
//!   toolchain: { description: "rustup toolchain", default: stable }
//!   package:   { required: true }
//! outputs:
//!   binary: ${{ jobs.build.outputs.path }}
//! jobs:
//!   build:
//!     outputs: { path: "${{ steps.b.outputs.path }}" }
//!     steps: [ { id: b, run: "cargo +${{ inputs.toolchain }} build -p ${{ inputs.package }}" } ]
//! ```
//!
//! Rules: the version is explicit (`MAJOR.MINOR.PATCH`, optional
//! `-prerelease`); every `${{ inputs.x }}` names a declared input; an input
//! is either `required: true` or has a `default` (or neither: then it is
//! `''`); an output is exactly `${{ jobs.<job>.outputs.<name> }}` of a job
//! that declares that output; a template's jobs do not `uses:` other
//! templates (nesting is rejected, so there are no cycles or depth limits to
//! reason about). The jobs are validated as a pipeline, with every input
//! replaced by its default, so a published template is known to be
//! well-formed. Expansion into a caller's pipeline is in [`expand`].

mod expand;
mod refs;

pub use expand::{expand_templates, template_refs};

use crate::error::{SpecError, SpecErrors};
use crate::node::{Entry, Node, NodeKind, Pos, parse_documents};
use crate::node_de::from_node;
use crate::parse::de_error;
use crate::pipeline_spec::{self, Ignored, JobSpec, OrderedMap, PipelineSpec};
use crate::suggest::did_you_mean;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Largest template document accepted.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

/// The rule for template versions, for messages.
pub const VERSION_RULE: &str =
    "an explicit version MAJOR.MINOR.PATCH (e.g. 1.2.0), optionally with -prerelease";

/// The rule for input names, for messages.
const INPUT_RULE: &str = "a letter or `_`, then letters, digits, `-` or `_`";

/// A parsed, validated pipeline template.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineTemplate {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// Declared inputs, in file order.
    pub inputs: Vec<(String, TemplateInput)>,
    /// Declared outputs, in file order.
    pub outputs: Vec<(String, TemplateOutput)>,
    /// The template's job ids, in file order.
    pub job_ids: Vec<String>,
    /// The `jobs:` tree as written (inputs not yet substituted).
    jobs: Node,
    /// The `jobs:` key, where problems with the jobs as a whole are reported.
    jobs_key: Pos,
}

/// One declared input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value when the caller's `with:` does not set it (a scalar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The caller must set it.
    #[serde(default)]
    pub required: bool,
}

/// One declared output: `${{ jobs.<job>.outputs.<output> }}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateOutput {
    pub job: String,
    pub output: String,
}

/// The document as typed deserialization reads it; `jobs` is checked as a pipeline.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    template: RawHeader,
    #[serde(default)]
    inputs: OrderedMap<Option<TemplateInputFields>>,
    #[serde(default)]
    outputs: OrderedMap<String>,
    #[allow(dead_code)]
    jobs: Ignored,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    version: String,
    #[serde(default)]
    description: Option<String>,
}

/// [`TemplateInput`] with unknown fields refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateInputFields {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    default: Option<Value>,
    #[serde(default)]
    required: bool,
}

/// Checks a template version: `MAJOR.MINOR.PATCH` with an optional
/// `-prerelease` of `[0-9A-Za-z.-]`.
pub fn check_version(version: &str) -> Result<(), &'static str> {
    let (core, pre) = match version.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (version, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() != 3 || !parts.iter().all(numeric) {
        return Err(VERSION_RULE);
    }
    if let Some(pre) = pre
        && (pre.is_empty()
            || pre.len() > 40
            || !pre
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
    {
        return Err(VERSION_RULE);
    }
    Ok(())
}

/// Splits `name@version`; `None` unless both parts are present.
pub fn split_uses(uses: &str) -> Option<(&str, &str)> {
    let (name, version) = uses.split_once('@')?;
    let (name, version) = (name.trim(), version.trim());
    (!name.is_empty() && !version.is_empty() && !version.contains('@')).then_some((name, version))
}

fn valid_input_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Parses and validates a template document; every error is located in `file`.
pub fn parse_template(file: &str, content: &str) -> Result<PipelineTemplate, SpecErrors> {
    const TOP: &str = "a mapping with `template`, `inputs`, `outputs` and `jobs`";
    if content.len() > MAX_TEMPLATE_BYTES {
        return Err(SpecError::new(
            file,
            0,
            0,
            format!("a template may be at most {MAX_TEMPLATE_BYTES} bytes"),
        )
        .into());
    }
    let mut docs = parse_documents(content)
        .map_err(|e| SpecError::new(file, e.pos.line, e.pos.column, e.message))?;
    if docs.len() != 1 {
        let p = docs.get(1).map_or(Pos::new(1, 1), |d| d.pos);
        return Err(SpecError::new(
            file,
            p.line,
            p.column,
            format!(
                "a pipeline template is one YAML document, found {}",
                docs.len()
            ),
        )
        .expected(TOP)
        .into());
    }
    let root = docs.remove(0);
    if root.entries().is_none() {
        return Err(SpecError::new(
            file,
            root.pos.line,
            root.pos.column,
            format!("expected a mapping, found {}", root.type_name()),
        )
        .expected(TOP)
        .into());
    }
    let raw: RawTemplate = from_node(&root, root.pos).map_err(|e| de_error(file, root.pos, e))?;
    let mut errs: Vec<SpecError> = Vec::new();
    let at = |path: &[&str]| -> Pos {
        let mut cur = &root;
        for k in path {
            match cur.entry(k) {
                Some(e) => cur = &e.value,
                None => break,
            }
        }
        cur.pos
    };
    let mut push = |pos: Pos, message: String, expected: Option<&str>| {
        let mut e = SpecError::new(file, pos.line, pos.column, message);
        e.expected = expected.map(str::to_string);
        errs.push(e);
    };
    let h = &raw.template;
    if let Err(rule) = crate::entity_name_rule(&h.name) {
        push(
            at(&["template", "name"]),
            format!("invalid template name `{}` in `template.name`", h.name),
            Some(rule),
        );
    }
    if let Err(rule) = check_version(&h.version) {
        push(
            at(&["template", "version"]),
            format!("`template.version` must be explicit, found `{}`", h.version),
            Some(rule),
        );
    }
    let mut inputs = Vec::new();
    for (name, fields) in raw.inputs.iter() {
        let pos = at(&["inputs", name]);
        if !valid_input_name(name) {
            push(
                pos,
                format!("invalid input name `{name}` in `inputs`"),
                Some(INPUT_RULE),
            );
        }
        let input = match fields {
            Some(f) => TemplateInput {
                description: f.description.clone(),
                default: f.default.clone(),
                required: f.required,
            },
            None => TemplateInput {
                description: None,
                default: None,
                required: false,
            },
        };
        if input.required && input.default.is_some() {
            push(
                pos,
                format!("input `{name}` is `required` and has a `default`; it can be only one"),
                Some("`required: true` or `default: <value>`"),
            );
        }
        if matches!(input.default, Some(Value::Array(_) | Value::Object(_))) {
            push(
                at(&["inputs", name, "default"]),
                format!("the default of input `{name}` must be a string, number or boolean"),
                None,
            );
        }
        inputs.push((name.clone(), input));
    }
    let Some(jobs_entry) = root.entry("jobs") else {
        return Err(SpecErrors(errs));
    };
    let declared: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
    let mut undeclared = Vec::new();
    check_input_refs(
        &jobs_entry.value,
        None,
        &declared,
        &mut undeclared,
        &mut push,
    );

    // Validation sees each input as its default ('' without one; undeclared
    // names too, as they are reported above).
    let mut placeholders: BTreeMap<String, Value> = undeclared
        .into_iter()
        .map(|n| (n, Value::String(String::new())))
        .collect();
    for (n, i) in &inputs {
        let v = i.default.clone().unwrap_or(Value::String(String::new()));
        placeholders.insert(n.clone(), v);
    }
    let mut template = PipelineTemplate {
        name: h.name.clone(),
        version: h.version.clone(),
        description: h.description.clone(),
        inputs,
        outputs: Vec::new(),
        job_ids: jobs_entry
            .value
            .entries()
            .map(|es| es.iter().map(|e| e.key.clone()).collect())
            .unwrap_or_default(),
        jobs: jobs_entry.value.clone(),
        jobs_key: jobs_entry.key_pos,
    };
    let spec = match template.check_jobs(file, &placeholders) {
        Ok(spec) => Some(spec),
        Err(SpecErrors(more)) => {
            errs.extend(more);
            None
        }
    };
    if let Some(spec) = &spec {
        for (id, job) in spec.jobs.iter() {
            if job.uses.is_some() {
                let pos = at(&["jobs", id, "uses"]);
                let mut e = SpecError::new(
                    file,
                    pos.line,
                    pos.column,
                    format!(
                        "template job `{id}` has `uses:`; a template cannot use another template"
                    ),
                );
                e.expected = Some("`steps:`".into());
                errs.push(e);
            }
        }
    }
    for (name, text) in raw.outputs.iter() {
        let pos = at(&["outputs", name]);
        match parse_output(text) {
            None => errs.push(
                SpecError::new(
                    file,
                    pos.line,
                    pos.column,
                    format!("output `{name}` must be one job output, found `{text}`"),
                )
                .expected("`${{ jobs.<job>.outputs.<name> }}`"),
            ),
            Some(out) => {
                if let Some(spec) = &spec
                    && let Some(msg) = output_problem(spec, &out)
                {
                    errs.push(SpecError::new(
                        file,
                        pos.line,
                        pos.column,
                        format!("output `{name}`: {msg}"),
                    ));
                }
                template.outputs.push((name.clone(), out));
            }
        }
    }
    if !errs.is_empty() {
        errs.sort_by_key(|e| (e.line, e.column));
        return Err(SpecErrors(errs));
    }
    Ok(template)
}

/// `${{ jobs.<job>.outputs.<name> }}` → its parts.
fn parse_output(text: &str) -> Option<TemplateOutput> {
    let regions = refs::regions(text);
    let [r] = regions.as_slice() else { return None };
    if r.outer != (0, text.len()) {
        return None;
    }
    let inner = text[r.inner.0..r.inner.1].trim();
    let found = refs::refs_in(inner, (0, inner.len()));
    let [one] = found.as_slice() else { return None };
    match one.segs.as_slice() {
        [jobs, job, outputs, output]
            if jobs == "jobs"
                && outputs == "outputs"
                && one.start == 0
                && one.end == inner.len() =>
        {
            Some(TemplateOutput {
                job: job.clone(),
                output: output.clone(),
            })
        }
        _ => None,
    }
}

fn output_problem(spec: &PipelineSpec, out: &TemplateOutput) -> Option<String> {
    let ids: Vec<&str> = spec.jobs.keys().collect();
    let Some(job) = spec.jobs.get(&out.job) else {
        let hint = did_you_mean(&out.job, &ids)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Some(format!(
            "`jobs.{}` is not a job of this template (jobs: {}){hint}",
            out.job,
            ids.join(", ")
        ));
    };
    if job.outputs.contains_key(&out.output) {
        return None;
    }
    let names: Vec<&str> = job.outputs.keys().map(String::as_str).collect();
    let hint = did_you_mean(&out.output, &names)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    Some(format!(
        "job `{}` has no output `{}` (its outputs: {}){hint}",
        out.job,
        out.output,
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}

/// Reports every `inputs.<x>` whose `x` is not declared, at its string.
fn check_input_refs(
    node: &Node,
    key: Option<&str>,
    declared: &[&str],
    undeclared: &mut Vec<String>,
    push: &mut dyn FnMut(Pos, String, Option<&str>),
) {
    match &node.kind {
        NodeKind::Str(s) => {
            for r in refs::all_refs(s, key == Some("if")) {
                if r.segs[0] != "inputs" {
                    continue;
                }
                let Some(name) = r.segs.get(1) else {
                    push(
                        node.pos,
                        format!("in `{s}`: `inputs` must be followed by an input name"),
                        Some("`inputs.<name>`"),
                    );
                    continue;
                };
                if !declared.contains(&name.as_str()) {
                    undeclared.push(name.clone());
                    let mut m = format!("`inputs.{name}` is not a declared input of this template");
                    if let Some(s) = did_you_mean(name, declared) {
                        m.push_str(&format!("; did you mean `{s}`?"));
                    }
                    let expected = if declared.is_empty() {
                        "an input declared under `inputs:`".to_string()
                    } else {
                        format!("one of: {}", declared.join(", "))
                    };
                    push(node.pos, m, Some(&expected));
                }
            }
        }
        NodeKind::Seq(items) => {
            for i in items {
                check_input_refs(i, None, declared, undeclared, push);
            }
        }
        NodeKind::Map(entries) => {
            for e in entries {
                check_input_refs(&e.value, Some(&e.key), declared, undeclared, push);
            }
        }
        _ => {}
    }
}

impl PipelineTemplate {
    /// `name@version`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The declared input `name`.
    pub fn input(&self, name: &str) -> Option<&TemplateInput> {
        self.inputs.iter().find(|(n, _)| n == name).map(|(_, i)| i)
    }

    /// The declared output `name`.
    pub fn output(&self, name: &str) -> Option<&TemplateOutput> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, o)| o)
    }

    /// The jobs with `values` substituted for the inputs, validated as a
    /// pipeline (errors located in the template's `file`).
    fn check_jobs(
        &self,
        file: &str,
        values: &BTreeMap<String, Value>,
    ) -> Result<PipelineSpec, SpecErrors> {
        let mut jobs = self.jobs.clone();
        substitute(&mut jobs, None, values);
        let root = Node {
            kind: NodeKind::Map(vec![Entry {
                key: "jobs".into(),
                key_pos: self.jobs_key,
                value: jobs,
            }]),
            pos: self.jobs_key,
        };
        let unsupported = pipeline_spec::reject_unsupported(file, &root);
        if !unsupported.is_empty() {
            return Err(SpecErrors(unsupported.into_iter().map(unprefix).collect()));
        }
        let spec: PipelineSpec = from_node(&root, self.jobs_key)
            .map_err(|e| unprefix(de_error(file, self.jobs_key, e)))?;
        let errs = pipeline_spec::validate(file, &spec, &root, self.jobs_key);
        if !errs.is_empty() {
            return Err(SpecErrors(errs.into_iter().map(unprefix).collect()));
        }
        Ok(spec)
    }

    /// The template's jobs for one use: job ids renamed by `rename` (in
    /// `needs` and in `needs.<id>` expressions), then `values` (one per
    /// declared input) substituted. Renaming comes first so that a caller's
    /// value mentioning its own jobs is never mistaken for a template job.
    pub(crate) fn instantiate(
        &self,
        values: &BTreeMap<String, Value>,
        rename: &dyn Fn(&str) -> String,
    ) -> Result<OrderedMap<JobSpec>, String> {
        let mut jobs = self.jobs.clone();
        rename_needs_refs(&mut jobs, None, &self.job_ids, rename);
        substitute(&mut jobs, None, values);
        let spec: OrderedMap<JobSpec> = from_node(&jobs, self.jobs_key).map_err(|e| {
            let err = de_error(&self.key(), self.jobs_key, e);
            format!("with these inputs, {}", err.message)
        })?;
        Ok(OrderedMap(
            spec.0
                .into_iter()
                .map(|(id, mut job)| {
                    job.needs = job.needs.iter().map(|n| rename(n)).collect();
                    (rename(&id), job)
                })
                .collect(),
        ))
    }
}

/// Pipeline messages name `pipeline.jobs...`; in a template the path is `jobs...`.
fn unprefix(mut e: SpecError) -> SpecError {
    e.message = e.message.replace("`pipeline.", "`");
    e
}

/// Rewrites `needs.<template job>` in every expression of the tree.
fn rename_needs_refs(
    node: &mut Node,
    key: Option<&str>,
    ids: &[String],
    rename: &dyn Fn(&str) -> String,
) {
    match &mut node.kind {
        NodeKind::Str(s) if s.contains("needs") => {
            *s = refs::rewrite(s, key == Some("if"), &mut |segs| match segs {
                [needs, id, ..] if needs == "needs" && ids.contains(id) => {
                    Some((2, format!("needs.{}", rename(id))))
                }
                _ => None,
            });
        }
        NodeKind::Seq(items) => {
            for i in items {
                rename_needs_refs(i, None, ids, rename);
            }
        }
        NodeKind::Map(entries) => {
            for e in entries {
                rename_needs_refs(&mut e.value, Some(&e.key), ids, rename);
            }
        }
        _ => {}
    }
}

/// The text a value interpolates as (`${{ }}` of a string gives the string).
fn interpolated(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The value as an expression literal.
fn literal(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// The input named by an expression that is exactly `inputs.<name>`.
fn whole_input(inner: &str) -> Option<&str> {
    let inner = inner.trim();
    let found = refs::refs_in(inner, (0, inner.len()));
    match found.as_slice() {
        [r] if r.start == 0
            && r.end == inner.len()
            && r.segs.len() == 2
            && r.segs[0] == "inputs" =>
        {
            Some(&inner[7..])
        }
        _ => None,
    }
}

/// Substitutes input values in every string of the tree: `${{ inputs.x }}`
/// on its own becomes the value's text (a whole scalar that is only that
/// becomes the value itself, so `timeout-minutes: ${{ inputs.t }}` stays a
/// number); `inputs.x` inside a larger expression becomes a literal.
fn substitute(node: &mut Node, key: Option<&str>, values: &BTreeMap<String, Value>) {
    match &mut node.kind {
        NodeKind::Str(s) => {
            if let Some(kind) = substituted(s, key == Some("if"), values) {
                node.kind = kind;
            }
        }
        NodeKind::Seq(items) => {
            for i in items {
                substitute(i, None, values);
            }
        }
        NodeKind::Map(entries) => {
            for e in entries {
                substitute(&mut e.value, Some(&e.key), values);
            }
        }
        _ => {}
    }
}

/// One string with inputs substituted; `None` when it names no input.
fn substituted(s: &str, condition: bool, values: &BTreeMap<String, Value>) -> Option<NodeKind> {
    if !s.contains("inputs") {
        return None;
    }
    let mut literal_of = |segs: &[String]| match segs {
        [inputs, name, ..] if inputs == "inputs" => values.get(name).map(|v| (2, literal(v))),
        _ => None,
    };
    if condition {
        return Some(NodeKind::Str(refs::rewrite(s, true, &mut literal_of)));
    }
    let regions = refs::regions(s);
    if let [r] = regions.as_slice()
        && r.outer == (0, s.len())
        && let Some(v) = whole_input(&s[r.inner.0..r.inner.1]).and_then(|n| values.get(n))
    {
        return Some(match v {
            Value::Bool(b) => NodeKind::Bool(*b),
            Value::Number(n) => NodeKind::Num(n.clone()),
            other => NodeKind::Str(interpolated(other)),
        });
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for r in regions {
        out.push_str(&s[last..r.outer.0]);
        match whole_input(&s[r.inner.0..r.inner.1]).and_then(|n| values.get(n)) {
            Some(v) => out.push_str(&interpolated(v)),
            None => {
                out.push_str("${{");
                out.push_str(&refs::rewrite_range(s, r.inner, &mut literal_of));
                out.push_str("}}");
            }
        }
        last = r.outer.1;
    }
    out.push_str(&s[last..]);
    Some(NodeKind::Str(out))
}
