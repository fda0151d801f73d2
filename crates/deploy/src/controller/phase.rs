//! The controller's durable position inside one deployment, stored as the
//! deployment's `phase` JSON. Every field is wall-clock based so that a new
//! server process, after a crash, picks up exactly where the old one was.

use serde::{Deserialize, Serialize};

/// Where a deployment is in its strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Nothing started yet.
    #[default]
    Start,
    /// New instances started; waiting for them to be healthy.
    WaitHealthy,
    /// Rolling: replacing instance `index` (see [`Phase::index`]).
    Rolling,
    /// Blue-green: preview is up, analysing it (or about to switch).
    Preview,
    /// Canary: executing step [`Phase::step`].
    Steps,
    /// All traffic on the new release; retiring the old one.
    Finish,
}

/// A command from a human, consumed by the next controller tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// Stop the deployment and put all traffic back on the stable release.
    Abort { actor: String },
    /// Hold at the current step.
    Pause { actor: String },
    /// Continue a paused deployment (also ends a `pause: {}` step).
    Resume { actor: String },
    /// Skip the rest of the current step (pause or analysis).
    PromoteStep { actor: String },
}

/// The controller's durable state for one deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub stage: Stage,
    /// Canary step index, or rolling instance index.
    #[serde(default)]
    pub step: usize,
    /// When the current stage or step began (Unix ms).
    #[serde(default)]
    pub since_ms: u64,
    /// Current share of traffic on the new release (0..=100).
    #[serde(default)]
    pub weight: u32,
    /// The stable deployment serving traffic when this one started.
    #[serde(default)]
    pub stable_id: Option<String>,
    /// Instances of the stable release, when this one started.
    #[serde(default)]
    pub stable_replicas: u32,
    /// Start of the current analysis window (Unix ms).
    #[serde(default)]
    pub analysis_since_ms: Option<u64>,
    /// The first time the new release took traffic (Unix ms), for detection figures.
    #[serde(default)]
    pub first_traffic_ms: Option<u64>,
    /// A human command waiting for the next tick.
    #[serde(default)]
    pub command: Option<Command>,
    /// Set by `resume` / `promote --step`: end the current step now.
    #[serde(default)]
    pub skip_step: bool,
    /// Until when the replaced release stays warm (blue-green), Unix ms.
    #[serde(default)]
    pub keep_previous_until_ms: Option<u64>,
    /// The last analysis sample seq logged (avoid logging a second twice).
    #[serde(default)]
    pub last_logged_s: u64,
}

impl Phase {
    /// Reads the stored phase (an empty object is a fresh start).
    pub fn from_json(v: &serde_json::Value) -> Phase {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }

    /// The stored form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
