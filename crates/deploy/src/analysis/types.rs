//! The analysis vocabulary: which checks to run, the measurements they read,
//! and the results they give back (stored with the deployment and shown in
//! the CLI and portal, hence `Serialize`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::condition::Condition;

/// One analysis check, converted by the controller from the spec's `CheckSpec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Check {
    /// The canary's 5xx fraction must stay at or below `max` (a fraction, 0.01 = 1%).
    ErrorRate { max: f64 },
    /// The canary's latency quantile must stay at or below `max`.
    Latency { quantile: Quantile, max: Duration },
    /// The canary must not be worse than the stable release under the same
    /// traffic (one-sided Mann-Whitney U per metric, plus an effect-size tolerance).
    CompareBaseline {
        metrics: Vec<Metric>,
        confidence: f64,
    },
    /// A PromQL instant query whose every series must satisfy `success`.
    Prometheus {
        address: String,
        query: String,
        success: Condition,
    },
}

impl Check {
    /// A short name for results, e.g. `error-rate <= 1%` or `latency p95 <= 300ms`.
    pub fn describe(&self) -> String {
        match self {
            Check::ErrorRate { max } => format!("error-rate <= {}", percent(*max)),
            Check::Latency { quantile, max } => {
                format!("latency {quantile} <= {}", millis(max.as_secs_f64()))
            }
            Check::CompareBaseline {
                metrics,
                confidence,
            } => {
                let names: Vec<String> = metrics.iter().map(Metric::to_string).collect();
                format!(
                    "compare-baseline [{}] (confidence {confidence})",
                    names.join(", ")
                )
            }
            Check::Prometheus { query, success, .. } => format!("prometheus `{query}` {success}"),
        }
    }
}

/// A latency quantile the proxy measures per interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantile {
    /// The median.
    P50,
    /// The 95th percentile.
    P95,
    /// The 99th percentile.
    P99,
}

impl Quantile {
    /// This quantile's value in one interval, in seconds.
    pub fn of(self, sample: &IntervalSample) -> Option<f64> {
        match self {
            Quantile::P50 => sample.p50,
            Quantile::P95 => sample.p95,
            Quantile::P99 => sample.p99,
        }
    }
}

impl fmt::Display for Quantile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quantile::P50 => "p50",
            Quantile::P95 => "p95",
            Quantile::P99 => "p99",
        })
    }
}

/// A metric the baseline comparison judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// The per-interval 5xx fraction.
    ErrorRate,
    /// The per-interval p95 latency (the spec's `latency`).
    Latency,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::ErrorRate => "error-rate",
            Metric::Latency => "latency",
        })
    }
}

/// What to judge and how much data is needed before judging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisConfig {
    /// The checks; an empty list passes at the end of the window.
    pub checks: Vec<Check>,
    /// Canary requests needed before any check may fail or pass on traffic.
    pub min_requests: u64,
    /// Length of one measurement interval (the controller's sampling period).
    pub interval: Duration,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            checks: default_checks(),
            min_requests: DEFAULT_MIN_REQUESTS,
            interval: Duration::from_secs(1),
        }
    }
}

/// The minimum request count used when a spec gives none.
pub const DEFAULT_MIN_REQUESTS: u64 = 20;

/// The checks used when a spec names none: the canary's error rate at most
/// 1%, and error rate and p95 latency no worse than the stable release's
/// (within the comparison's tolerances) at 98% confidence.
pub fn default_checks() -> Vec<Check> {
    vec![
        Check::ErrorRate { max: 0.01 },
        Check::CompareBaseline {
            metrics: vec![Metric::ErrorRate, Metric::Latency],
            confidence: 0.98,
        },
    ]
}

/// What one release served during one interval, as the proxy measured it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct IntervalSample {
    /// Start of the interval, seconds since the Unix epoch.
    pub start_unix_s: u64,
    /// Requests completed in the interval.
    pub requests: u64,
    /// Of those, responses with a 5xx status (or no response at all).
    pub errors: u64,
    /// Median latency in seconds; `None` without requests.
    pub p50: Option<f64>,
    /// 95th percentile latency in seconds.
    pub p95: Option<f64>,
    /// 99th percentile latency in seconds.
    pub p99: Option<f64>,
}

/// Everything measured so far in the current analysis window.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The canary's intervals since it first took traffic in this window.
    pub canary: &'a [IntervalSample],
    /// The stable release's intervals over the same time.
    pub baseline: &'a [IntervalSample],
    /// True on the last call of the window: only then may a check pass.
    pub window_complete: bool,
}

/// What a check, or the whole analysis, concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Healthy over the whole window: promote.
    Pass,
    /// Clearly unhealthy: roll back.
    Fail,
    /// Not enough data (or the source failed) to decide: a human decides.
    Inconclusive,
    /// Window still open and nothing has failed yet: ask again later.
    Running,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Inconclusive => "inconclusive",
            Outcome::Running => "running",
        })
    }
}

/// One check's conclusion and the values behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Which check, e.g. `error-rate <= 1%`.
    pub check: String,
    /// Its conclusion.
    pub outcome: Outcome,
    /// The measured value it judged (a fraction, seconds, a ratio, or the query's value).
    pub value: Option<f64>,
    /// The limit that value was held against, in the same unit.
    pub threshold: Option<f64>,
    /// A sentence saying which values led to the outcome.
    pub detail: String,
}

/// The analysis' conclusion over all checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Fail if any check failed; otherwise Running while the window is open;
    /// at its end Inconclusive if any check was, else Pass.
    pub outcome: Outcome,
    /// One result per check (a baseline comparison gives one per metric).
    pub checks: Vec<CheckResult>,
}

impl Verdict {
    /// One line saying why: the checks that decided the outcome and their details.
    pub fn reason(&self) -> String {
        let deciding: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.outcome == self.outcome)
            .map(|c| format!("{}: {}", c.check, c.detail))
            .collect();
        if deciding.is_empty() {
            format!("analysis {}", self.outcome)
        } else {
            format!("analysis {}: {}", self.outcome, deciding.join("; "))
        }
    }
}

/// Formats a fraction as a percentage without noise digits (`0.01` → `1%`).
pub(crate) fn percent(fraction: f64) -> String {
    format!("{}%", round_sig(fraction * 100.0))
}

/// Formats seconds as milliseconds without noise digits (`0.3` → `300ms`).
pub(crate) fn millis(seconds: f64) -> String {
    format!("{}ms", round_sig(seconds * 1000.0))
}

/// Rounds to four significant digits so `0.07 * 100` prints as `7`.
pub(crate) fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}
