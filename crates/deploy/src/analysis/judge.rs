//! The judge: runs every configured check on what has been measured so far
//! and combines their outcomes into one verdict.

use super::compare::compare;
use super::prometheus;
use super::thresholds::{error_rate, latency};
use super::types::{AnalysisConfig, Check, CheckResult, Observation, Outcome, Verdict};

/// Judges the observation so far. Call it after every interval with all the
/// window's samples and `window_complete: false`, then once with `true`.
///
/// - Fail as soon as any check fails (a clear failure is detected early).
/// - Running while the window is open and nothing has failed.
/// - At the end: Inconclusive if any check could not decide (too little
///   traffic, Prometheus unreachable, ...), else Pass.
///
/// Prometheus checks query over HTTP (each bounded by
/// [`prometheus::QUERY_TIMEOUT`]); the others are pure.
pub async fn evaluate(config: &AnalysisConfig, obs: &Observation<'_>) -> Verdict {
    let mut checks = Vec::with_capacity(config.checks.len());
    for check in &config.checks {
        match check {
            Check::ErrorRate { max } => checks.push(error_rate(*max, config.min_requests, obs)),
            Check::Latency { quantile, max } => checks.push(latency(
                *quantile,
                max.as_secs_f64(),
                config.min_requests,
                obs,
            )),
            Check::CompareBaseline {
                metrics,
                confidence,
            } => checks.extend(compare(metrics, *confidence, config.min_requests, obs)),
            Check::Prometheus {
                address,
                query,
                success,
            } => checks.push(prometheus::check(address, query, success, obs.window_complete).await),
        }
    }
    let outcome = combine(&checks, obs.window_complete);
    if outcome == Outcome::Fail {
        tracing::info!(
            failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count(),
            "canary analysis failed"
        );
    }
    Verdict { outcome, checks }
}

/// The verdict's outcome from the checks' outcomes.
fn combine(checks: &[CheckResult], window_complete: bool) -> Outcome {
    if checks.iter().any(|c| c.outcome == Outcome::Fail) {
        Outcome::Fail
    } else if !window_complete {
        Outcome::Running
    } else if checks.iter().all(|c| c.outcome == Outcome::Pass) {
        Outcome::Pass
    } else {
        Outcome::Inconclusive
    }
}
