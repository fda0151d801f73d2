//! The planner's rules applied to stored rows: which waiting job runs or is
//! skipped, the run's outcome, a matrix's fail-fast and max-parallel, and
//! the `needs`/`pave` contexts an `if:` (and an agent) sees. The store calls
//! these inside its transaction, with only the rows a decision needs (each
//! row's `spec` is its planned job; the run's plan is never read).

use crate::views::ref_name;
use pave_pipeline::expr::{Contexts, NeedContext, PaveContext};
use pave_pipeline::matrix_rules::{fail_fast_reason, leg_rules, triggers_fail_fast};
use pave_pipeline::plan::{
    Decision, Outcome, PlannedJob, aggregate_outcomes, job_conclusion, job_should_run, run_outcome,
};
use pave_store::{JobDecision, JobRow, NewJob, RunRow, Scheduler};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Decides with `pave_pipeline::plan` (GitHub Actions' rules).
pub struct PlanScheduler;

/// Parses a stored outcome word.
pub fn parse_outcome(s: &str) -> Option<Outcome> {
    match s {
        "success" => Some(Outcome::Success),
        "failure" => Some(Outcome::Failure),
        "cancelled" => Some(Outcome::Cancelled),
        "skipped" => Some(Outcome::Skipped),
        _ => None,
    }
}

/// The `pave` context of a run.
pub fn pave_context(run: &RunRow) -> PaveContext {
    PaveContext {
        sha: run.sha.clone(),
        git_ref: run.git_ref.clone(),
        run_id: run.id.clone(),
        service: ref_name(&run.service_key).to_string(),
    }
}

/// The planned job of a row (its stored spec).
fn planned(job: &JobRow) -> Result<PlannedJob, String> {
    planned_spec(&job.key, &job.spec)
}

fn planned_spec(key: &str, spec: &Value) -> Result<PlannedJob, String> {
    serde_json::from_value(spec.clone()).map_err(|e| format!("job `{key}`: stored spec: {e}"))
}

/// Rows with their planned jobs.
fn with_plans(jobs: &[JobRow]) -> Result<Vec<(&JobRow, PlannedJob)>, String> {
    jobs.iter().map(|j| Ok((j, planned(j)?))).collect()
}

/// Each job id's conclusion over its instances that have an outcome (after
/// `continue-on-error`); ids with none are left out.
fn conclusions(rows: &[(&JobRow, PlannedJob)]) -> Vec<(String, Outcome)> {
    let mut by_job: HashMap<&str, Vec<Outcome>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (row, plan) in rows {
        let Some(outcome) = row.outcome.as_deref().and_then(parse_outcome) else {
            continue;
        };
        let list = by_job.entry(row.job_id.as_str()).or_insert_with(|| {
            order.push(row.job_id.as_str());
            Vec::new()
        });
        list.push(job_conclusion(plan, outcome));
    }
    order
        .into_iter()
        .map(|id| {
            let list = by_job.remove(id).unwrap_or_default();
            (id.to_string(), aggregate_outcomes(list))
        })
        .collect()
}

/// `needs.<job>` for the job ids in `needs`: each job's conclusion over its
/// instances among `jobs`, and their outputs merged (string values only).
pub fn needs_context(
    jobs: &[JobRow],
    needs: &[String],
) -> Result<BTreeMap<String, NeedContext>, String> {
    let rows = with_plans(jobs)?;
    Ok(needs_from(&rows, &conclusions(&rows), needs))
}

fn needs_from(
    rows: &[(&JobRow, PlannedJob)],
    conclusions: &[(String, Outcome)],
    needs: &[String],
) -> BTreeMap<String, NeedContext> {
    needs
        .iter()
        .map(|id| {
            let result = conclusions
                .iter()
                .find(|(j, _)| j == id)
                .map_or(Outcome::Skipped, |(_, o)| *o);
            let mut outputs = BTreeMap::new();
            for (job, _) in rows.iter().filter(|(j, _)| &j.job_id == id) {
                if let Value::Object(map) = &job.outputs {
                    for (k, v) in map {
                        if let Value::String(s) = v {
                            outputs.insert(k.clone(), s.clone());
                        }
                    }
                }
            }
            (id.clone(), NeedContext { result, outputs })
        })
        .collect()
}

impl Scheduler for PlanScheduler {
    fn decide(
        &self,
        run: &RunRow,
        jobs: &[JobRow],
        ready: &[usize],
    ) -> Result<Vec<JobDecision>, String> {
        let rows = with_plans(jobs)?;
        let conclusions = conclusions(&rows);
        ready
            .iter()
            .map(|&i| {
                let (_, job) = rows.get(i).ok_or("ready index out of range")?;
                let ctx = Contexts::for_job(
                    pave_context(run),
                    job.matrix.clone(),
                    needs_from(&rows, &conclusions, &job.needs),
                    BTreeMap::new(),
                )
                .to_value();
                Ok(
                    match job_should_run(job, &conclusions, &ctx, run.cancel_requested) {
                        Decision::Run => JobDecision::Queue,
                        Decision::Skip(reason) => JobDecision::Conclude {
                            outcome: "skipped".into(),
                            reason,
                        },
                        Decision::Fail(reason) => JobDecision::Conclude {
                            outcome: "failure".into(),
                            reason,
                        },
                    },
                )
            })
            .collect()
    }

    fn run_outcome(&self, _run: &RunRow, jobs: &[JobRow]) -> Result<String, String> {
        let mut list = Vec::with_capacity(jobs.len());
        for row in jobs {
            let outcome = row
                .outcome
                .as_deref()
                .and_then(parse_outcome)
                .unwrap_or(Outcome::Skipped);
            list.push((planned(row)?, outcome));
        }
        Ok(run_outcome(&list).as_str().to_string())
    }

    fn max_parallel(&self, job: &NewJob) -> Result<Option<u32>, String> {
        Ok(leg_rules(&planned_spec(&job.key, &job.spec)?).max_parallel)
    }

    fn fail_fast(&self, _run: &RunRow, job: &JobRow) -> Result<Option<String>, String> {
        let Some(outcome) = job.outcome.as_deref().and_then(parse_outcome) else {
            return Ok(None);
        };
        // Asked on every report: a spec this build cannot read (an older
        // shape) means no matrix rules, not a report that cannot complete.
        let Ok(job_plan) = planned(job) else {
            return Ok(None);
        };
        let rules = leg_rules(&job_plan);
        Ok(triggers_fail_fast(rules, outcome).then(|| fail_fast_reason(&job.key)))
    }
}
