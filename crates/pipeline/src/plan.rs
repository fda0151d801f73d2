//! Planning a run: matrix expansion, the DAG of job instances, topological
//! order; and the pure decisions the scheduler and the executor make as a
//! run progresses (does this job/step run, what is the job's and the run's
//! outcome), following GitHub Actions' rules.
//!
//! Rules, in short:
//! * A job or step without `if:` runs on `success()`. An `if:` that calls no
//!   status function is `success() && (<if>)`.
//! * For a job, `success()` means every ancestor (direct and transitive
//!   `needs`) concluded `success`; `failure()` means some ancestor concluded
//!   `failure`; `cancelled()` means the run was cancelled; `always()` is true.
//!   So a failure skips every dependent, transitively, except jobs whose
//!   `if:` uses `always()` or `failure()` (or `!cancelled()` ...).
//! * For a step, `success()` means no earlier step of the job concluded
//!   `failure` (and the run is not cancelled); `failure()` that one did.
//! * `continue-on-error: true`: a failure concludes `success` (dependents
//!   and later steps see success; the run does not fail).
//! * A job's outcome from its steps: `failure` when a step concluded
//!   `failure`, else `cancelled` when one was cancelled, else `success`.
//! * A run's outcome: `failure` when a job concluded `failure`, else
//!   `cancelled` when a job was cancelled, else `success` when a job
//!   succeeded, else (every job skipped) `skipped`. Jobs skipped because
//!   something failed do not hide it: the failed job is in the run.

use pave_model::pipeline_expr::{self, Status};
use pave_model::pipeline_spec::{BoolOrExpr, Combination, JobSpec, PipelineSpec, StepSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a job, step or run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl Outcome {
    /// `success`, `failure`, `cancelled`, `skipped` (GitHub's words).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Cancelled => "cancelled",
            Outcome::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A planned run: job instances in a topological order (a job comes after
/// everything it depends on; ties keep file order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPlan {
    pub jobs: Vec<PlannedJob>,
}

/// One job instance (one matrix combination of a job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedJob {
    /// Unique in the plan: the job id, plus `(axis=value, ...)` for a matrix
    /// instance, e.g. `test (py=3.11, os=linux)`.
    pub key: String,
    /// The job's id in the pipeline.
    pub job_id: String,
    /// Display name: the job's `name:` (matrix expressions resolved) or the key.
    pub name: String,
    /// Job ids this job needs (direct).
    pub needs: Vec<String>,
    /// Job ids of every ancestor (direct and transitive needs), in plan order.
    #[serde(default)]
    pub ancestors: Vec<String>,
    /// Keys of the instances this instance waits for: every instance of each job in `needs`.
    pub depends_on: Vec<String>,
    /// This instance's matrix values (empty without a matrix).
    pub matrix: Map<String, Value>,
    /// The job's spec, with `continue-on-error` expressions (job and steps) resolved.
    pub spec: JobSpec,
    /// Instances sharing a group cancel each other when one fails (`fail-fast`).
    pub fail_fast_group: Option<String>,
    /// At most this many instances of the job run at once (`max-parallel`).
    pub max_parallel: Option<u32>,
}

/// Why a pipeline cannot be planned. `pave.yaml` validation reports these
/// earlier with file positions; the planner re-checks what it relies on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the pipeline has no jobs")]
    NoJobs,
    #[error("job `{job}` needs `{need}`, which is not a job in this pipeline")]
    UnknownNeed { job: String, need: String },
    #[error("`needs` forms a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("job `{job}`: {message}")]
    Matrix { job: String, message: String },
    /// A `uses:` job reached the planner: templates are expanded first
    /// (`pave_model::pipeline_template::expand_templates`).
    #[error("job `{job}` uses template `{uses}`, which was not expanded before planning")]
    UnexpandedTemplate { job: String, uses: String },
    #[error("job `{job}`: `continue-on-error: {expr}`: {message}")]
    Expression {
        job: String,
        expr: String,
        message: String,
    },
}

impl RunPlan {
    /// The instance with this key.
    pub fn get(&self, key: &str) -> Option<&PlannedJob> {
        self.jobs.iter().find(|j| j.key == key)
    }

    /// The instances of a job.
    pub fn instances<'a>(&'a self, job_id: &'a str) -> impl Iterator<Item = &'a PlannedJob> {
        self.jobs.iter().filter(move |j| j.job_id == job_id)
    }

    /// The other instances of `key`'s fail-fast group, to cancel when `key`
    /// fails (none when it has `continue-on-error` or no group).
    pub fn fail_fast_siblings(&self, key: &str) -> Vec<&str> {
        let Some(job) = self.get(key) else {
            return Vec::new();
        };
        let Some(group) = &job.fail_fast_group else {
            return Vec::new();
        };
        if job.spec.continue_on_error.is_true() {
            return Vec::new();
        }
        self.jobs
            .iter()
            .filter(|j| j.key != key && j.fail_fast_group.as_ref() == Some(group))
            .map(|j| j.key.as_str())
            .collect()
    }

    /// Conclusions per job id from instance outcomes (by key): each instance's
    /// outcome after `continue-on-error`, aggregated with [`aggregate_outcomes`].
    /// Jobs with no reported instance are left out.
    pub fn conclusions_by_job(&self, outcomes: &[(String, Outcome)]) -> Vec<(String, Outcome)> {
        let mut out: Vec<(String, Vec<Outcome>)> = Vec::new();
        for (key, o) in outcomes {
            let Some(job) = self.get(key) else { continue };
            let c = job_conclusion(job, *o);
            match out.iter_mut().find(|(id, _)| *id == job.job_id) {
                Some((_, list)) => list.push(c),
                None => out.push((job.job_id.clone(), vec![c])),
            }
        }
        out.into_iter()
            .map(|(id, list)| (id, aggregate_outcomes(list)))
            .collect()
    }
}

/// Plans a run of `spec`.
pub fn plan(spec: &PipelineSpec) -> Result<RunPlan, PlanError> {
    if spec.jobs.is_empty() {
        return Err(PlanError::NoJobs);
    }
    for (id, job) in spec.jobs.iter() {
        if let Some(uses) = &job.uses {
            return Err(PlanError::UnexpandedTemplate {
                job: id.clone(),
                uses: uses.clone(),
            });
        }
        for need in &job.needs {
            if !spec.jobs.contains_key(need) {
                return Err(PlanError::UnknownNeed {
                    job: id.clone(),
                    need: need.clone(),
                });
            }
        }
    }
    let order = topo_order(spec)?;

    // Ancestors per job id, in plan order.
    let mut ancestors: Vec<(String, Vec<String>)> = Vec::new();
    for id in &order {
        let job = spec.jobs.get(id).expect("ordered ids are jobs");
        let mut set: Vec<String> = Vec::new();
        for need in &job.needs {
            let theirs = ancestors
                .iter()
                .find(|(j, _)| j == need)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
            set.extend(theirs);
            set.push(need.clone());
        }
        let mut ordered: Vec<String> = order.iter().filter(|j| set.contains(j)).cloned().collect();
        ordered.dedup();
        ancestors.push((id.clone(), ordered));
    }

    let mut jobs: Vec<PlannedJob> = Vec::new();
    for (id, anc) in ancestors {
        let job = spec.jobs.get(&id).expect("ordered ids are jobs");
        let matrix = job.strategy.as_ref().and_then(|s| s.matrix.as_ref());
        let combos: Vec<Combination> = match matrix {
            Some(m) => m.expand().map_err(|message| PlanError::Matrix {
                job: id.clone(),
                message,
            })?,
            None => vec![Vec::new()],
        };
        let combos = if combos.is_empty() {
            // Every combination excluded: GitHub runs nothing for this job.
            return Err(PlanError::Matrix {
                job: id.clone(),
                message: "`exclude` removes every matrix combination".into(),
            });
        } else {
            combos
        };
        let depends_on: Vec<String> = jobs
            .iter()
            .filter(|j| job.needs.contains(&j.job_id))
            .map(|j| j.key.clone())
            .collect();
        let fail_fast_group = job
            .strategy
            .as_ref()
            .filter(|s| s.fail_fast && s.matrix.is_some())
            .map(|_| id.clone());
        let max_parallel = job.strategy.as_ref().and_then(|s| s.max_parallel);
        for combo in combos {
            let mut key = instance_key(&id, &combo);
            if jobs.iter().any(|j| j.key == key) {
                let mut n = 2;
                while jobs.iter().any(|j| j.key == format!("{key} #{n}")) {
                    n += 1;
                }
                key = format!("{key} #{n}");
            }
            let matrix_map: Map<String, Value> = combo.iter().cloned().collect();
            let ctx = pipeline_expr::context([("matrix", Value::Object(matrix_map.clone()))]);
            let name = match &job.name {
                Some(n) if n.contains("${{") => {
                    pipeline_expr::interpolate(n, &ctx, Status::OK).unwrap_or_else(|_| n.clone())
                }
                Some(n) if !combo.is_empty() => {
                    format!("{n} {}", &key[id.len() + 1..])
                }
                Some(n) => n.clone(),
                None => key.clone(),
            };
            let mut spec_i = job.clone();
            spec_i.continue_on_error = resolve_flag(&id, &job.continue_on_error, &ctx)?;
            for step in &mut spec_i.steps {
                step.continue_on_error = resolve_flag(&id, &step.continue_on_error, &ctx)?;
            }
            jobs.push(PlannedJob {
                key,
                job_id: id.clone(),
                name,
                needs: job.needs.clone(),
                ancestors: anc.clone(),
                depends_on: depends_on.clone(),
                matrix: matrix_map,
                spec: spec_i,
                fail_fast_group: fail_fast_group.clone(),
                max_parallel,
            });
        }
    }
    Ok(RunPlan { jobs })
}

fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn instance_key(id: &str, combo: &Combination) -> String {
    if combo.is_empty() {
        return id.to_string();
    }
    let parts: Vec<String> = combo
        .iter()
        .map(|(k, v)| format!("{k}={}", display_value(v)))
        .collect();
    format!("{id} ({})", parts.join(", "))
}

/// Resolves a `continue-on-error` expression against the matrix.
fn resolve_flag(job: &str, flag: &BoolOrExpr, ctx: &Value) -> Result<BoolOrExpr, PlanError> {
    let BoolOrExpr::Expr(src) = flag else {
        return Ok(flag.clone());
    };
    let err = |message: String| PlanError::Expression {
        job: job.to_string(),
        expr: src.clone(),
        message,
    };
    let t = pipeline_expr::parse_template(src).map_err(|e| err(e.to_string()))?;
    let mut exprs = t.exprs();
    let value = match (exprs.next(), exprs.next(), t.segments.len()) {
        (Some(e), None, 1) => pipeline_expr::truthy(
            &pipeline_expr::evaluate(e, ctx, Status::OK).map_err(|e| err(e.to_string()))?,
        ),
        _ => t
            .render(ctx, Status::OK)
            .map_err(|e| err(e.to_string()))?
            .trim()
            .eq_ignore_ascii_case("true"),
    };
    Ok(BoolOrExpr::Bool(value))
}

/// Job ids in a topological order (file order among jobs that are ready
/// together), or the first cycle found.
fn topo_order(spec: &PipelineSpec) -> Result<Vec<String>, PlanError> {
    let ids: Vec<&str> = spec.jobs.keys().collect();
    let mut placed: Vec<String> = Vec::with_capacity(ids.len());
    while placed.len() < ids.len() {
        let next = spec
            .jobs
            .iter()
            .find(|(id, job)| !placed.contains(id) && job.needs.iter().all(|n| placed.contains(n)));
        match next {
            Some((id, _)) => placed.push(id.clone()),
            None => return Err(PlanError::Cycle(find_cycle(spec, &placed))),
        }
    }
    Ok(placed)
}

/// A cycle among the jobs not yet placed: from the first of them, follow the
/// first unplaced need until a job repeats.
fn find_cycle(spec: &PipelineSpec, placed: &[String]) -> Vec<String> {
    let unplaced = |id: &str| !placed.iter().any(|p| p == id);
    let Some(mut cur) = spec.jobs.keys().find(|id| unplaced(id)) else {
        return Vec::new();
    };
    let mut path: Vec<&str> = Vec::new();
    loop {
        if let Some(start) = path.iter().position(|p| *p == cur) {
            let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
            cycle.push(cur.to_string());
            return cycle;
        }
        path.push(cur);
        let next = spec
            .jobs
            .get(cur)
            .and_then(|j| j.needs.iter().find(|n| unplaced(n)));
        match next {
            Some(n) => cur = n,
            None => return path.iter().map(|s| s.to_string()).collect(),
        }
    }
}

// ------------------------------------------------------ outcome decisions

/// Whether a job or step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Run,
    /// Does not run; concludes `skipped`. The reason is for logs and the portal.
    Skip(String),
    /// The `if:` could not be evaluated (e.g. `fromJSON` of bad JSON); the
    /// job or step concludes `failure`, as in GitHub.
    Fail(String),
}

/// Aggregates outcomes (e.g. a job's matrix instances): `failure` wins, then
/// `cancelled`, then `success`; all skipped (or none) is `skipped`.
pub fn aggregate_outcomes(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
    let mut best = Outcome::Skipped;
    let rank = |o: Outcome| match o {
        Outcome::Failure => 3,
        Outcome::Cancelled => 2,
        Outcome::Success => 1,
        Outcome::Skipped => 0,
    };
    for o in outcomes {
        if rank(o) > rank(best) {
            best = o;
        }
    }
    best
}

/// A job instance's conclusion: a failure with `continue-on-error` concludes `success`.
pub fn job_conclusion(job: &PlannedJob, outcome: Outcome) -> Outcome {
    if outcome == Outcome::Failure && job.spec.continue_on_error.is_true() {
        Outcome::Success
    } else {
        outcome
    }
}

/// A step's conclusion: a failure with `continue-on-error` concludes `success`.
pub fn step_conclusion(step: &StepSpec, outcome: Outcome) -> Outcome {
    if outcome == Outcome::Failure && step.continue_on_error.is_true() {
        Outcome::Success
    } else {
        outcome
    }
}

fn decide(
    condition: Option<&str>,
    ctx: &Value,
    status: Status,
    blocked: impl FnOnce() -> String,
) -> Decision {
    let cond = condition.unwrap_or("");
    let parsed = match pipeline_expr::parse_condition(cond) {
        Ok(e) => e,
        Err(e) => return Decision::Fail(format!("invalid `if: {cond}`: {e}")),
    };
    let implicit = cond.trim().is_empty() || !parsed.uses_status_function();
    let full = pipeline_expr::with_implicit_success(parsed);
    match pipeline_expr::evaluate(&full, ctx, status) {
        Ok(v) if pipeline_expr::truthy(&v) => Decision::Run,
        Ok(_) if implicit && !status.success => Decision::Skip(blocked()),
        Ok(_) if !status.success => {
            Decision::Skip(format!("`if: {}` is false ({})", cond.trim(), blocked()))
        }
        Ok(_) => Decision::Skip(format!("`if: {}` is false", cond.trim())),
        Err(e) => Decision::Fail(format!("`if: {cond}` could not be evaluated: {e}")),
    }
}

fn names(list: &[&str]) -> String {
    list.iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides whether a job instance runs, once everything it depends on has
/// finished. `results` holds the conclusion of each job id (see
/// [`RunPlan::conclusions_by_job`]) for at least every job in
/// `job.ancestors`; an ancestor missing from it counts as skipped. `ctx` is
/// the evaluation context (see [`crate::expr::Contexts`]); `cancelled` says
/// whether the run was cancelled.
pub fn job_should_run(
    job: &PlannedJob,
    results: &[(String, Outcome)],
    ctx: &Value,
    cancelled: bool,
) -> Decision {
    let mut failed = Vec::new();
    let mut not_ok = Vec::new();
    for a in &job.ancestors {
        match results.iter().find(|(id, _)| id == a).map(|(_, o)| *o) {
            Some(Outcome::Success) => {}
            Some(Outcome::Failure) => failed.push(a.as_str()),
            Some(o) => not_ok.push((a.as_str(), o)),
            None => not_ok.push((a.as_str(), Outcome::Skipped)),
        }
    }
    let status = Status {
        success: failed.is_empty() && not_ok.is_empty() && !cancelled,
        failure: !failed.is_empty(),
        cancelled,
    };
    decide(job.spec.condition.as_deref(), ctx, status, || {
        if cancelled {
            "the run was cancelled".to_string()
        } else if !failed.is_empty() {
            format!("needed job {} failed", names(&failed))
        } else {
            let list: Vec<String> = not_ok
                .iter()
                .map(|(id, o)| {
                    format!(
                        "`{id}` {}",
                        if *o == Outcome::Cancelled {
                            "was cancelled"
                        } else {
                            "was skipped"
                        }
                    )
                })
                .collect();
            format!("needed job {}", list.join(", "))
        }
    })
}

/// Decides whether a step runs. `previous` holds the earlier steps of the
/// job with their outcomes (before `continue-on-error`; this function applies it).
pub fn step_should_run(
    step: &StepSpec,
    previous: &[(&StepSpec, Outcome)],
    ctx: &Value,
    cancelled: bool,
) -> Decision {
    let mut failed = Vec::new();
    let mut was_cancelled = cancelled;
    for (i, (s, o)) in previous.iter().enumerate() {
        match step_conclusion(s, *o) {
            Outcome::Failure => failed.push(step_label(s, i)),
            Outcome::Cancelled => was_cancelled = true,
            _ => {}
        }
    }
    let status = Status {
        success: failed.is_empty() && !was_cancelled,
        failure: !failed.is_empty(),
        cancelled: was_cancelled,
    };
    decide(step.condition.as_deref(), ctx, status, || {
        if was_cancelled {
            "the job was cancelled".to_string()
        } else {
            let f: Vec<&str> = failed.iter().map(String::as_str).collect();
            format!("an earlier step failed: {}", names(&f))
        }
    })
}

/// How a step is called in messages: its name, its id, or its position.
pub fn step_label(step: &StepSpec, index: usize) -> String {
    step.name
        .clone()
        .or_else(|| step.id.clone())
        .unwrap_or_else(|| format!("step {}", index + 1))
}

/// A job's outcome from its steps' outcomes (before `continue-on-error`).
pub fn job_outcome_from_steps(steps: &[(&StepSpec, Outcome)]) -> Outcome {
    let mut cancelled = false;
    for (s, o) in steps {
        match step_conclusion(s, *o) {
            Outcome::Failure => return Outcome::Failure,
            Outcome::Cancelled => cancelled = true,
            _ => {}
        }
    }
    if cancelled {
        Outcome::Cancelled
    } else {
        Outcome::Success
    }
}

/// The run's outcome from every job instance's outcome (before `continue-on-error`).
pub fn run_outcome(jobs: &[(PlannedJob, Outcome)]) -> Outcome {
    if jobs.is_empty() {
        return Outcome::Success;
    }
    aggregate_outcomes(jobs.iter().map(|(j, o)| job_conclusion(j, *o)))
}
