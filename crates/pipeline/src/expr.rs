//! Expressions: the parser and evaluator live in
//! [`pave_model::pipeline_expr`] (so that `pave.yaml` validation can check
//! them); this module re-exports them and builds the evaluation context —
//! the JSON object of contexts (`env`, `matrix`, `needs`, `steps`, `pave`,
//! `secrets`, `job`, `runner`) an expression is evaluated against.

pub use pave_model::pipeline_expr::*;

use crate::plan::Outcome;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The `pave` context: what is being run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaveContext {
    /// The commit being built.
    pub sha: String,
    /// The ref (`refs/heads/main`), or empty when unknown.
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub run_id: String,
    pub service: String,
}

/// `needs.<job>`: a finished needed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeedContext {
    /// The job's conclusion (aggregated over its matrix instances).
    pub result: Outcome,
    pub outputs: BTreeMap<String, String>,
}

/// `steps.<id>`: a finished earlier step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepContext {
    /// Before `continue-on-error`.
    pub outcome: Outcome,
    /// After `continue-on-error` (a failure allowed to continue is `success`).
    pub conclusion: Outcome,
    pub outputs: BTreeMap<String, String>,
}

/// Everything an expression can see. Build one per job, then add steps and
/// env layers as the job progresses; [`Contexts::to_value`] gives the object
/// for [`evaluate`] / [`interpolate`] / [`eval_condition`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contexts {
    pub pave: PaveContext,
    /// Resolved environment so far (pipeline, then job, then step `env`).
    pub env: BTreeMap<String, String>,
    pub matrix: Map<String, Value>,
    pub needs: BTreeMap<String, NeedContext>,
    pub steps: BTreeMap<String, StepContext>,
    pub secrets: BTreeMap<String, String>,
    /// `job.status`: the job's status so far (`None` outside a job).
    pub job_status: Option<Outcome>,
    /// `runner.os`: `Linux`, `macOS` or `Windows`.
    pub runner_os: String,
}

/// GitHub's name for this machine's OS (`runner.os`).
pub fn runner_os() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "macOS",
        "windows" => "Windows",
        other => other,
    }
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

impl Contexts {
    /// Contexts for one job: `pave`, `matrix`, `needs` and `secrets`; `env`
    /// starts empty (add layers with [`Contexts::push_env`]).
    pub fn for_job(
        pave: PaveContext,
        matrix: Map<String, Value>,
        needs: BTreeMap<String, NeedContext>,
        secrets: BTreeMap<String, String>,
    ) -> Contexts {
        Contexts {
            pave,
            matrix,
            needs,
            secrets,
            job_status: Some(Outcome::Success),
            runner_os: runner_os().to_string(),
            ..Contexts::default()
        }
    }

    /// The JSON object of all contexts.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "pave".into(),
            serde_json::to_value(&self.pave).unwrap_or(Value::Null),
        );
        m.insert("env".into(), string_map(&self.env));
        m.insert("matrix".into(), Value::Object(self.matrix.clone()));
        m.insert(
            "needs".into(),
            serde_json::to_value(&self.needs).unwrap_or(Value::Null),
        );
        m.insert(
            "steps".into(),
            serde_json::to_value(&self.steps).unwrap_or(Value::Null),
        );
        m.insert("secrets".into(), string_map(&self.secrets));
        let mut job = Map::new();
        if let Some(s) = self.job_status {
            job.insert("status".into(), Value::String(s.as_str().into()));
        }
        m.insert("job".into(), Value::Object(job));
        let mut runner = Map::new();
        runner.insert("os".into(), Value::String(self.runner_os.clone()));
        m.insert("runner".into(), Value::Object(runner));
        Value::Object(m)
    }

    /// Adds an `env` layer: each value is interpolated against the contexts
    /// as they are before the layer (values in one layer do not see each
    /// other, as in GitHub), then overrides earlier layers.
    pub fn push_env(
        &mut self,
        layer: &BTreeMap<String, String>,
        status: Status,
    ) -> Result<(), ExprError> {
        let ctx = self.to_value();
        let mut resolved = Vec::with_capacity(layer.len());
        for (k, v) in layer {
            let value = interpolate(v, &ctx, status).map_err(|e| ExprError {
                message: format!("env `{k}`: {}", e.message),
                offset: e.offset,
            })?;
            resolved.push((k.clone(), value));
        }
        self.env.extend(resolved);
        Ok(())
    }
}
