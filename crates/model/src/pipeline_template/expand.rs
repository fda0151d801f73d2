//! Expanding `uses: <template>@<version>` jobs of a pipeline into the
//! template's jobs. Pure: templates come from a resolver the caller supplies
//! (the server's registry, or `pave run`'s local directory and server).
//!
//! The wiring, for a caller job `C` using a template with jobs `T1..Tn`:
//! * Ids: a one-job template keeps the caller's id `C`; otherwise each job
//!   becomes `C-<template job id>`. An id that clashes with another job of
//!   the pipeline is an error.
//! * `needs`: every template job needs what `C` needs (the same DAG as
//!   giving it to the template's root jobs only, since the others follow
//!   them, and it lets `with:` values use `needs.<x>.outputs` anywhere);
//!   jobs that need `C` need all of `C`'s jobs.
//! * `needs.C.outputs.<o>` resolves to the template job output that the
//!   template's output `o` names. `needs.C.result` (or `needs.C` itself) is
//!   only meaningful for a one-job template, and is an error otherwise.
//! * `if:` of `C` goes to the template's root jobs (`(<C's>) && (<own>)`
//!   when a root has its own); `env:` of `C` is set under each job's own
//!   env (the template's values win); `strategy:` of `C` is given to each
//!   template job (one that has its own strategy is an error);
//!   `continue-on-error` and a non-default `timeout-minutes` of `C` apply to
//!   each template job that does not set them; `name:` of `C` names a
//!   one-job template's job. `outputs`, `artifacts` and `defaults` on `C`
//!   are errors: declare them in the template.
//! * `with:` values replace `${{ inputs.<x> }}`; inputs not given take their
//!   default. Unknown keys and missing required inputs are errors located
//!   at the caller's `with:`.

use super::{PipelineTemplate, check_version, refs, split_uses};
use crate::error::{SpecError, SpecErrors};
use crate::node::{Node, NodeKind, Pos, parse_documents};
use crate::pipeline_spec::{
    self, BoolOrExpr, DEFAULT_TIMEOUT_MINUTES, JobSpec, OrderedMap, PipelineSpec,
};
use crate::suggest::did_you_mean;
use serde_json::Value;
use std::collections::BTreeMap;

/// The distinct `(name, version)` pairs a pipeline's jobs `uses:`, in file
/// order (malformed `uses:` values are left to validation).
pub fn template_refs(spec: &PipelineSpec) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (_, job) in spec.jobs.iter() {
        if let Some((n, v)) = job.uses.as_deref().and_then(split_uses) {
            let pair = (n.to_string(), v.to_string());
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
    }
    out
}

/// Positions in the caller's `pave.yaml`, found again from its text.
struct Locator {
    /// The `pipeline:` value, when the text parses.
    pipeline: Option<Node>,
    anchor: Pos,
}

impl Locator {
    fn new(content: &str) -> Locator {
        let root = parse_documents(content).ok().and_then(|mut d| d.pop());
        let entry = root.as_ref().and_then(|r| r.entry("pipeline"));
        Locator {
            anchor: entry.map_or(Pos::default(), |e| e.key_pos),
            pipeline: entry.map(|e| e.value.clone()),
        }
    }

    fn job(&self, id: &str) -> Option<&Node> {
        let jobs = self.pipeline.as_ref()?.entry("jobs")?;
        jobs.value.entry(id).map(|e| &e.value)
    }

    /// The value of `jobs.<id>.<field>`, else the job, else `pipeline:`.
    fn field(&self, id: &str, field: &str) -> Pos {
        match self.job(id) {
            Some(j) => j.entry(field).map_or(j.pos, |e| e.value.pos),
            None => self.anchor,
        }
    }

    /// The key `jobs.<id>.with.<key>`, else `with:`.
    fn with_key(&self, id: &str, key: &str) -> Pos {
        let with = self.job(id).and_then(|j| j.entry("with"));
        match with {
            Some(w) => w.value.entry(key).map_or(w.key_pos, |e| e.key_pos),
            None => self.field(id, "uses"),
        }
    }
}

/// One expanded `uses:` job.
struct Expansion {
    template: PipelineTemplate,
    /// New job ids, in template order.
    ids: Vec<String>,
    /// Template job id → new id.
    renamed: BTreeMap<String, String>,
}

/// Replaces every `uses:` job of `spec` with its template's jobs (see the
/// module docs for the wiring). `resolve(name, version)` supplies a template
/// or says why there is none. Errors are located in `file` (whose text is
/// `content`), at the caller's `uses:` or `with:` where possible.
pub fn expand_templates(
    file: &str,
    content: &str,
    spec: &PipelineSpec,
    resolve: &mut dyn FnMut(&str, &str) -> Result<PipelineTemplate, String>,
) -> Result<PipelineSpec, SpecErrors> {
    if spec.jobs.iter().all(|(_, j)| j.uses.is_none()) {
        return Ok(spec.clone());
    }
    let loc = Locator::new(content);
    let mut errs = Errs {
        file,
        list: Vec::new(),
    };

    // 1. Resolve each template and check the caller's `with:`.
    let mut expansions: BTreeMap<String, (Expansion, BTreeMap<String, Value>)> = BTreeMap::new();
    for (id, job) in spec.jobs.iter() {
        let Some(uses) = &job.uses else { continue };
        let uses_pos = loc.field(id, "uses");
        let Some((name, version)) = split_uses(uses) else {
            errs.push(
                uses_pos,
                format!("`pipeline.jobs.{id}.uses` must name a template and an explicit version, found `{uses}`"),
                Some("`<template>@<version>`".into()),
            );
            continue;
        };
        if let Err(rule) = check_version(version) {
            errs.push(
                uses_pos,
                format!("`pipeline.jobs.{id}.uses`: `{uses}` does not name an explicit version"),
                Some(rule.into()),
            );
            continue;
        }
        let template = match resolve(name, version) {
            Ok(t) => t,
            Err(why) => {
                errs.push(uses_pos, format!("`pipeline.jobs.{id}.uses`: {why}"), None);
                continue;
            }
        };
        let values = with_values(id, job, &template, &loc, &mut errs);
        for (field, set) in [
            ("outputs", !job.outputs.is_empty()),
            ("artifacts", !job.artifacts.is_empty()),
            ("defaults", job.defaults.is_some()),
        ] {
            if set {
                errs.push(
                    loc.field(id, field),
                    format!("`pipeline.jobs.{id}.{field}` cannot be set on a job that `uses:` a template; declare it in the template"),
                    None,
                );
            }
        }
        let single = template.job_ids.len() == 1;
        let renamed: BTreeMap<String, String> = template
            .job_ids
            .iter()
            .map(|t| {
                let new = if single {
                    id.clone()
                } else {
                    format!("{id}-{t}")
                };
                (t.clone(), new)
            })
            .collect();
        let ids = template
            .job_ids
            .iter()
            .map(|t| renamed[t].clone())
            .collect();
        if let Some(values) = values {
            expansions.insert(
                id.clone(),
                (
                    Expansion {
                        template,
                        ids,
                        renamed,
                    },
                    values,
                ),
            );
        }
    }
    errs.check()?;

    // 2. Build the new job list in the caller's order.
    let mut jobs: Vec<(String, JobSpec)> = Vec::new();
    for (id, job) in spec.jobs.iter() {
        let Some((exp, values)) = expansions.get(id) else {
            jobs.push((id.clone(), job.clone()));
            continue;
        };
        let rename = |t: &str| exp.renamed.get(t).cloned().unwrap_or_else(|| t.to_string());
        let tjobs = match exp.template.instantiate(values, &rename) {
            Ok(j) => j,
            Err(m) => {
                errs.push(
                    loc.field(id, "uses"),
                    format!("`pipeline.jobs.{id}.uses: {}`: {m}", exp.template.key()),
                    None,
                );
                continue;
            }
        };
        let single = tjobs.len() == 1;
        for (new_id, mut tjob) in tjobs.0 {
            let is_root = tjob.needs.is_empty();
            if tjob.uses.is_some() {
                errs.push(
                    loc.field(id, "uses"),
                    format!("template `{}` has a job that `uses:` another template; nested templates are not supported", exp.template.key()),
                    None,
                );
            }
            apply_caller(id, job, &mut tjob, is_root, single, &loc, &mut errs);
            jobs.push((new_id, tjob));
        }
    }
    errs.check()?;
    // Clashing ids.
    for (i, (new_id, _)) in jobs.iter().enumerate() {
        if jobs[..i].iter().any(|(other, _)| other == new_id) {
            let from = expansions
                .iter()
                .find(|(_, (e, _))| e.ids.contains(new_id))
                .map(|(c, _)| c.as_str());
            let pos = from.map_or(loc.anchor, |c| loc.field(c, "uses"));
            errs.push(
                pos,
                format!("expanding templates gives two jobs with id `{new_id}`; rename the job that clashes"),
                Some("job ids unique after expansion (a template's jobs become `<caller>-<job>`)".into()),
            );
        }
    }

    // 3. Wire `needs` and `needs.<caller>...` expressions to the expanded jobs.
    for (job_id, job) in &mut jobs {
        let mut needs: Vec<String> = Vec::new();
        for n in &job.needs {
            let targets = match expansions.get(n) {
                Some((e, _)) => e.ids.clone(),
                None => vec![n.clone()],
            };
            for t in targets {
                if !needs.contains(&t) {
                    needs.push(t);
                }
            }
        }
        job.needs = needs;
        let pos = loc.job(job_id).map_or_else(
            || {
                expansions
                    .iter()
                    .find(|(_, (e, _))| e.ids.contains(job_id))
                    .map_or(loc.anchor, |(c, _)| loc.field(c, "uses"))
            },
            |n| n.pos,
        );
        let mut problems: Vec<String> = Vec::new();
        for_each_text(job, &mut |text, condition| {
            if !text.contains("needs") {
                return;
            }
            *text = refs::rewrite(text, condition, &mut |segs| {
                wire_ref(segs, &expansions, &mut problems)
            });
        });
        problems.sort();
        problems.dedup();
        for p in problems {
            errs.push(pos, format!("in job `{job_id}`: {p}"), None);
        }
    }
    errs.check()?;

    let out = PipelineSpec {
        jobs: OrderedMap(jobs),
        ..spec.clone()
    };
    // 4. The expanded pipeline must hold together (e.g. a caller's matrix
    // used by a template's expressions); report at the caller's `uses:`.
    let nowhere = Node {
        kind: NodeKind::Null,
        pos: loc.anchor,
    };
    let found = pipeline_spec::validate(file, &out, &nowhere, loc.anchor);
    if found.is_empty() {
        return Ok(out);
    }
    Err(SpecErrors(
        found
            .into_iter()
            .map(|mut e| {
                let caller = expansions.iter().find(|(_, (x, _))| {
                    x.ids.iter().any(|i| {
                        e.message.contains(&format!("`pipeline.jobs.{i}"))
                            || e.message.contains(&format!("job `{i}`"))
                    })
                });
                if let Some((c, (x, _))) = caller {
                    let pos = loc.field(c, "uses");
                    e.line = pos.line;
                    e.column = pos.column;
                    e.message = format!(
                        "after expanding `{c}: uses {}`: {}",
                        x.template.key(),
                        e.message
                    );
                }
                e
            })
            .collect(),
    ))
}

/// Errors found so far, located in the caller's file.
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

    /// Stops here when anything was reported.
    fn check(&mut self) -> Result<(), SpecErrors> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(SpecErrors(std::mem::take(&mut self.list)))
        }
    }
}

/// The value of every input for one use, or `None` after reporting problems.
fn with_values(
    id: &str,
    job: &JobSpec,
    template: &PipelineTemplate,
    loc: &Locator,
    errs: &mut Errs<'_>,
) -> Option<BTreeMap<String, Value>> {
    let mut ok = true;
    let names: Vec<&str> = template.inputs.iter().map(|(n, _)| n.as_str()).collect();
    for (k, v) in &job.with {
        if template.input(k).is_none() {
            let mut m = format!(
                "`pipeline.jobs.{id}.with.{k}`: template `{}` has no input `{k}`",
                template.key()
            );
            if let Some(s) = did_you_mean(k, &names) {
                m.push_str(&format!("; did you mean `{s}`?"));
            }
            let expected = if names.is_empty() {
                "no `with:` (the template declares no inputs)".to_string()
            } else {
                format!("one of: {}", names.join(", "))
            };
            errs.push(loc.with_key(id, k), m, Some(expected));
            ok = false;
        } else if matches!(v, Value::Array(_) | Value::Object(_)) {
            errs.push(
                loc.with_key(id, k),
                format!("`pipeline.jobs.{id}.with.{k}` must be a string, number or boolean"),
                None,
            );
            ok = false;
        }
    }
    let mut values = BTreeMap::new();
    for (name, input) in &template.inputs {
        let value = match (job.with.get(name), &input.default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) if input.required => {
                let what = input
                    .description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                let pos = match loc.job(id).and_then(|j| j.entry("with")) {
                    Some(w) => w.key_pos,
                    None => loc.field(id, "uses"),
                };
                errs.push(
                    pos,
                    format!(
                        "template `{}` requires input `{name}`{what}; set it in `pipeline.jobs.{id}.with`",
                        template.key()
                    ),
                    Some(format!("`with: {{ {name}: <value> }}`")),
                );
                ok = false;
                continue;
            }
            (None, None) => Value::String(String::new()),
        };
        values.insert(name.clone(), value);
    }
    ok.then_some(values)
}

/// Applies the caller job's `needs`, `if`, `env`, `strategy`,
/// `continue-on-error`, `timeout-minutes` and `name` to one template job.
fn apply_caller(
    caller_id: &str,
    caller: &JobSpec,
    tjob: &mut JobSpec,
    is_root: bool,
    single: bool,
    loc: &Locator,
    errs: &mut Errs<'_>,
) {
    for n in &caller.needs {
        if !tjob.needs.contains(n) {
            tjob.needs.push(n.clone());
        }
    }
    if is_root && let Some(cond) = &caller.condition {
        tjob.condition = Some(match &tjob.condition {
            Some(own) => format!("({}) && ({})", bare(cond), bare(own)),
            None => cond.clone(),
        });
    }
    for (k, v) in &caller.env {
        tjob.env.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if let Some(strategy) = &caller.strategy {
        if tjob.strategy.is_some() {
            errs.push(
                loc.field(caller_id, "strategy"),
                format!("`pipeline.jobs.{caller_id}.strategy` cannot be combined with the template job's own `strategy`"),
                None,
            );
        } else {
            tjob.strategy = Some(strategy.clone());
        }
    }
    if !matches!(caller.continue_on_error, BoolOrExpr::Bool(false))
        && matches!(tjob.continue_on_error, BoolOrExpr::Bool(false))
    {
        tjob.continue_on_error = caller.continue_on_error.clone();
    }
    if caller.timeout_minutes != DEFAULT_TIMEOUT_MINUTES
        && tjob.timeout_minutes == DEFAULT_TIMEOUT_MINUTES
    {
        tjob.timeout_minutes = caller.timeout_minutes;
    }
    if single && caller.name.is_some() {
        tjob.name = caller.name.clone();
    }
}

/// A condition without its `${{ }}` wrapper, so two can be joined.
fn bare(cond: &str) -> String {
    let t = cond.trim();
    match t.strip_prefix("${{").and_then(|r| r.strip_suffix("}}")) {
        Some(inner) if !inner.contains("${{") => inner.trim().to_string(),
        _ => t.to_string(),
    }
}

/// Rewrites one `needs.<caller>...` reference to the expanded jobs.
fn wire_ref(
    segs: &[String],
    expansions: &BTreeMap<String, (Expansion, BTreeMap<String, Value>)>,
    problems: &mut Vec<String>,
) -> Option<(usize, String)> {
    let [needs, caller, rest @ ..] = segs else {
        return None;
    };
    if needs != "needs" {
        return None;
    }
    let (exp, _) = expansions.get(caller)?;
    let key = exp.template.key();
    match rest {
        [outputs, name, ..] if outputs == "outputs" => match exp.template.output(name) {
            Some(o) => {
                let job = exp
                    .renamed
                    .get(&o.job)
                    .cloned()
                    .unwrap_or_else(|| o.job.clone());
                Some((4, format!("needs.{job}.outputs.{}", o.output)))
            }
            None => {
                let names: Vec<&str> = exp
                    .template
                    .outputs
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect();
                let hint = did_you_mean(name, &names)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                problems.push(format!(
                    "`needs.{caller}.outputs.{name}`: template `{key}` has no output `{name}` (its outputs: {}){hint}",
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                ));
                None
            }
        },
        _ if exp.ids.len() == 1 => None,
        _ => {
            problems.push(format!(
                "`needs.{caller}{}` is ambiguous: `{caller}` expands to the {} jobs of template `{key}` ({}); use its outputs, or `needs.<one of them>`",
                rest.first().map(|r| format!(".{r}")).unwrap_or_default(),
                exp.ids.len(),
                exp.ids.join(", ")
            ));
            None
        }
    }
}

/// Calls `f` on every expression-bearing string of a job (the flag says
/// whether it is an `if:` condition).
fn for_each_text(job: &mut JobSpec, f: &mut dyn FnMut(&mut String, bool)) {
    if let Some(c) = &mut job.condition {
        f(c, true);
    }
    if let Some(n) = &mut job.name {
        f(n, false);
    }
    job.env.values_mut().for_each(|v| f(v, false));
    job.outputs.values_mut().for_each(|v| f(v, false));
    if let BoolOrExpr::Expr(e) = &mut job.continue_on_error {
        f(e, false);
    }
    for step in &mut job.steps {
        if let Some(c) = &mut step.condition {
            f(c, true);
        }
        for v in [
            &mut step.name,
            &mut step.run,
            &mut step.shell,
            &mut step.working_directory,
            &mut step.junit,
        ]
        .into_iter()
        .flatten()
        {
            f(v, false);
        }
        step.env.values_mut().for_each(|v| f(v, false));
        if let BoolOrExpr::Expr(e) = &mut step.continue_on_error {
            f(e, false);
        }
    }
}
