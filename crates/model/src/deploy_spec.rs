//! The `deploy` section of `pave.yaml`: how to start the service, how to
//! check its health, and a rollout strategy per environment.
//!
//! ```yaml
//! deploy:
//!   run: python3 app.py            # Pave sets PORT
//!   health: { path: /healthz }
//!   replicas: 1
//!   environments:
//!     dev:     { strategy: rolling }
//!     staging: { strategy: blue-green }
//!     prod:
//!       strategy:
//!         canary:
//!           steps: [ { weight: 20 }, { analysis: { duration: 20s } }, { weight: 100 } ]
//! ```
//!
//! The types here are plain data (serializable, stored with each deployment);
//! the located parsing lives in [`crate::deploy_parse`].

use crate::units::serde_ms;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The whole `deploy` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploySpec {
    /// Shell command that starts one instance; Pave sets `PORT`.
    pub run: String,
    /// How Pave decides an instance is healthy.
    pub health: HealthSpec,
    /// Instances per release (1..=16).
    pub replicas: u32,
    /// Extra environment variables for every instance.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Strategy per environment, in the order written.
    pub environments: Vec<EnvironmentDeploy>,
}

impl DeploySpec {
    /// The strategy for `env`, or rolling when the environment is not listed.
    pub fn strategy_for(&self, env: &str) -> Strategy {
        self.environments
            .iter()
            .find(|e| e.name == env)
            .map_or(Strategy::Rolling, |e| e.strategy.clone())
    }
}

/// The health check of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSpec {
    /// HTTP path answered with 2xx when healthy.
    pub path: String,
    /// Time between checks.
    #[serde(with = "serde_ms")]
    pub interval: Duration,
    /// Time one check may take.
    #[serde(with = "serde_ms")]
    pub timeout: Duration,
    /// How long a new instance may take to become healthy before its deployment fails.
    #[serde(with = "serde_ms")]
    pub deadline: Duration,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            path: "/healthz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(60),
        }
    }
}

/// One environment's entry under `deploy.environments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentDeploy {
    /// Environment name (`dev`, `staging`, `prod`, ...).
    pub name: String,
    /// How a new release replaces the old one there.
    pub strategy: Strategy,
}

/// A rollout strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Strategy {
    /// Replace instances one by one; each must be healthy before the next.
    Rolling,
    /// Start the new release beside the old one, optionally analyse it, switch at once.
    BlueGreen(BlueGreenSpec),
    /// Shift traffic in weighted steps with pauses and analysis.
    Canary(CanarySpec),
}

impl Strategy {
    /// The strategy's name as written in YAML.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::BlueGreen(_) => "blue-green",
            Strategy::Canary(_) => "canary",
        }
    }
}

/// Blue-green options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlueGreenSpec {
    /// Analysis of the preview (traffic sent to the preview host) before the switch.
    pub analysis: Option<AnalysisSpec>,
    /// How long the old release stays running after the switch, for instant rollback.
    #[serde(with = "serde_ms")]
    pub keep_old_for: Duration,
}

impl Default for BlueGreenSpec {
    fn default() -> Self {
        BlueGreenSpec {
            analysis: None,
            keep_old_for: Duration::from_secs(300),
        }
    }
}

/// Canary options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanarySpec {
    /// The steps, in order; the last weight step is 100.
    pub steps: Vec<CanaryStep>,
    /// Default checks for every analysis step (and the background analysis).
    pub analysis: AnalysisSpec,
    /// Whether the analysis also runs in the background across all steps.
    pub background_analysis: bool,
}

/// One canary step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CanaryStep {
    /// Send this percentage of traffic to the canary.
    Weight { weight: u32 },
    /// Wait this long, or (None) until a human resumes.
    Pause {
        #[serde(default, with = "opt_ms")]
        duration: Option<Duration>,
    },
    /// Judge the canary for this long.
    Analysis {
        #[serde(with = "serde_ms")]
        duration: Duration,
        /// Checks for this step; the strategy's default checks when absent.
        checks: Option<Vec<CheckSpec>>,
    },
}

/// Analysis settings: which checks, how often, and what to do when unsure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisSpec {
    /// The checks; defaults (error rate, latency, baseline comparison) when omitted.
    pub checks: Vec<CheckSpec>,
    /// Length of one measurement interval.
    #[serde(with = "serde_ms")]
    pub interval: Duration,
    /// Requests the canary must have served before a threshold can fail it.
    pub min_requests: u64,
    /// What an inconclusive analysis does.
    pub on_inconclusive: OnInconclusive,
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        AnalysisSpec {
            checks: default_checks(),
            interval: Duration::from_secs(1),
            min_requests: 20,
            on_inconclusive: OnInconclusive::Pause,
        }
    }
}

/// The checks used when a spec names none.
pub fn default_checks() -> Vec<CheckSpec> {
    vec![
        CheckSpec::ErrorRate { max: 0.01 },
        CheckSpec::CompareBaseline {
            metrics: vec![Metric::ErrorRate, Metric::Latency],
            confidence: 0.98,
        },
    ]
}

/// What an inconclusive analysis leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnInconclusive {
    /// Pause the deployment for a human (`pave resume` / `pave abort`).
    Pause,
    /// Roll back as if it failed.
    Rollback,
    /// Carry on as if it passed.
    Continue,
}

/// One analysis check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CheckSpec {
    /// The canary's 5xx fraction must stay at or below `max`.
    ErrorRate { max: f64 },
    /// The canary's latency quantile must stay at or below `max`.
    Latency {
        quantile: Quantile,
        #[serde(with = "serde_ms")]
        max: Duration,
    },
    /// The canary must not be worse than the stable release (Mann-Whitney U).
    CompareBaseline {
        metrics: Vec<Metric>,
        confidence: f64,
    },
    /// A PromQL query whose result must satisfy `success` (e.g. `< 0.05`).
    Prometheus {
        address: String,
        query: String,
        success: String,
    },
}

/// A latency quantile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantile {
    P50,
    P95,
    P99,
}

/// A metric the baseline comparison can judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    ErrorRate,
    Latency,
}

/// Serde helpers: an optional `Duration` as milliseconds.
mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_millis))
    }
}
