//! The planner's rules applied to stored rows: which waiting job runs or is
//! skipped, the run's outcome, and the `needs`/`pave` contexts an `if:` (and
//! an agent) sees. The store calls these inside its transaction.

use crate::views::ref_name;
use pave_pipeline::expr::{Contexts, NeedContext, PaveContext};
use pave_pipeline::plan::{Decision, Outcome, PlannedJob, RunPlan, job_should_run, run_outcome};
use pave_store::{JobDecision, JobRow, RunRow, Scheduler};
use serde_json::Value;
use std::collections::BTreeMap;

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

/// The run's plan as stored (its `jobs`; other keys are ignored).
pub fn stored_plan(run: &RunRow) -> Result<RunPlan, String> {
    serde_json::from_value(run.plan.clone()).map_err(|e| format!("stored plan: {e}"))
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

/// `needs.<job>` for the job ids in `needs`: each job's conclusion over its
/// instances, and their outputs merged (string values only).
pub fn needs_context(
    plan: &RunPlan,
    jobs: &[JobRow],
    needs: &[String],
) -> BTreeMap<String, NeedContext> {
    let outcomes: Vec<(String, Outcome)> = jobs
        .iter()
        .filter_map(|j| {
            let o = j.outcome.as_deref().and_then(parse_outcome)?;
            Some((j.key.clone(), o))
        })
        .collect();
    let conclusions = plan.conclusions_by_job(&outcomes);
    needs
        .iter()
        .map(|id| {
            let result = conclusions
                .iter()
                .find(|(j, _)| j == id)
                .map_or(Outcome::Skipped, |(_, o)| *o);
            let mut outputs = BTreeMap::new();
            for job in jobs.iter().filter(|j| &j.job_id == id) {
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

/// The planned job of a row: from the run's plan, else the row's own spec.
fn planned(plan: &RunPlan, job: &JobRow) -> Result<PlannedJob, String> {
    match plan.get(&job.key) {
        Some(p) => Ok(p.clone()),
        None => serde_json::from_value(job.spec.clone())
            .map_err(|e| format!("job `{}`: stored spec: {e}", job.key)),
    }
}

impl Scheduler for PlanScheduler {
    fn decide(
        &self,
        run: &RunRow,
        jobs: &[JobRow],
        ready: &[usize],
    ) -> Result<Vec<JobDecision>, String> {
        let plan = stored_plan(run)?;
        let outcomes: Vec<(String, Outcome)> = jobs
            .iter()
            .filter_map(|j| Some((j.key.clone(), parse_outcome(j.outcome.as_deref()?)?)))
            .collect();
        let conclusions = plan.conclusions_by_job(&outcomes);
        ready
            .iter()
            .map(|&i| {
                let row = jobs.get(i).ok_or("ready index out of range")?;
                let job = planned(&plan, row)?;
                let ctx = Contexts::for_job(
                    pave_context(run),
                    job.matrix.clone(),
                    needs_context(&plan, jobs, &job.needs),
                    BTreeMap::new(),
                )
                .to_value();
                Ok(
                    match job_should_run(&job, &conclusions, &ctx, run.cancel_requested) {
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

    fn run_outcome(&self, run: &RunRow, jobs: &[JobRow]) -> Result<String, String> {
        let plan = stored_plan(run)?;
        let mut list = Vec::with_capacity(jobs.len());
        for row in jobs {
            let outcome = row
                .outcome
                .as_deref()
                .and_then(parse_outcome)
                .unwrap_or(Outcome::Skipped);
            list.push((planned(&plan, row)?, outcome));
        }
        Ok(run_outcome(&list).as_str().to_string())
    }
}
