//! The canary judged against the stable release under the same traffic, in
//! the spirit of Kayenta's judge. Per metric, a one-sided Mann-Whitney U test
//! on the per-interval values asks "is the canary worse than the baseline by
//! more than a tolerance?" (the baseline's values are shifted up by the
//! tolerance before ranking), and the canary's overall level must be beyond
//! the tolerance too. Significance alone would fail healthy canaries on
//! differences nobody would notice; a tolerance alone would fail them on noise.
//!
//! Tolerances: the canary's error rate may exceed the baseline's by
//! [`ERROR_RATE_ABS_TOLERANCE`] or [`ERROR_RATE_REL_TOLERANCE`] of it,
//! whichever is larger; its median per-interval p95 latency may exceed the
//! baseline's by [`LATENCY_REL_TOLERANCE`] or [`LATENCY_ABS_TOLERANCE`],
//! whichever is larger. No verdict before each side has
//! [`MIN_SAMPLES`](super::mann_whitney::MIN_SAMPLES) intervals with traffic
//! and `min_requests` requests. Before the window ends the significance level
//! is [`EARLY_FAIL_ALPHA`] (the test is repeated after every interval);
//! at its end it is `1 - confidence`.

use super::mann_whitney::{MIN_SAMPLES, canary_greater};
use super::thresholds::{EARLY_FAIL_ALPHA, quantile_points, undecided};
use super::types::{CheckResult, IntervalSample, Metric, Observation, Outcome, Quantile};
use super::types::{millis, percent, round_sig};

/// Error-rate points (a fraction) the canary may exceed the baseline by.
pub const ERROR_RATE_ABS_TOLERANCE: f64 = 0.01;
/// Relative error-rate excess allowed (0.5 = 50% more than the baseline's).
pub const ERROR_RATE_REL_TOLERANCE: f64 = 0.5;
/// Relative latency excess allowed (0.25 = 25% slower than the baseline).
pub const LATENCY_REL_TOLERANCE: f64 = 0.25;
/// Latency excess in seconds always allowed (differences of a few
/// milliseconds are noise at any ratio).
pub const LATENCY_ABS_TOLERANCE: f64 = 0.005;

/// One result per metric.
pub(super) fn compare(
    metrics: &[Metric],
    confidence: f64,
    min_requests: u64,
    obs: &Observation<'_>,
) -> Vec<CheckResult> {
    metrics
        .iter()
        .map(|m| compare_metric(*m, confidence, min_requests, obs))
        .collect()
}

/// Per-interval values of one side, with the requests behind them.
struct Side {
    values: Vec<f64>,
    requests: u64,
    /// The side's overall level: pooled error rate, or median p95.
    level: f64,
}

fn side(metric: Metric, samples: &[IntervalSample]) -> Side {
    match metric {
        Metric::ErrorRate => {
            let with_traffic = samples.iter().filter(|s| s.requests > 0);
            let values = with_traffic
                .clone()
                .map(|s| s.errors.min(s.requests) as f64 / s.requests as f64)
                .collect();
            let requests: u64 = with_traffic.clone().map(|s| s.requests).sum();
            let errors: u64 = with_traffic.map(|s| s.errors.min(s.requests)).sum();
            let level = if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            };
            Side {
                values,
                requests,
                level,
            }
        }
        Metric::Latency => {
            let points = quantile_points(samples, Quantile::P95);
            let values: Vec<f64> = points.iter().map(|(v, _)| *v).collect();
            let requests = points.iter().map(|(_, r)| r).sum();
            Side {
                level: median(&values),
                values,
                requests,
            }
        }
    }
}

fn compare_metric(
    metric: Metric,
    confidence: f64,
    min_requests: u64,
    obs: &Observation<'_>,
) -> CheckResult {
    let label = match metric {
        Metric::ErrorRate => "error-rate".to_string(),
        Metric::Latency => "latency p95".to_string(),
    };
    let check = format!("compare-baseline {label} (confidence {confidence})");
    let result = |outcome, value, threshold, detail| CheckResult {
        check: check.clone(),
        outcome,
        value,
        threshold,
        detail,
    };
    if !(confidence > 0.5 && confidence < 1.0) {
        return result(
            Outcome::Inconclusive,
            None,
            None,
            format!("confidence {confidence} is not between 0.5 and 1"),
        );
    }
    let canary = side(metric, obs.canary);
    let baseline = side(metric, obs.baseline);
    let enough = |s: &Side| s.values.len() >= MIN_SAMPLES && s.requests >= min_requests.max(1);
    if !enough(&canary) || !enough(&baseline) {
        let detail = format!(
            "canary has {} intervals / {} requests, baseline {} / {}; each needs {MIN_SAMPLES} intervals and {min_requests} requests",
            canary.values.len(),
            canary.requests,
            baseline.values.len(),
            baseline.requests
        );
        return result(undecided(obs.window_complete), None, None, detail);
    }
    let (allowance, show): (f64, fn(f64) -> String) = match metric {
        Metric::ErrorRate => (
            (baseline.level * ERROR_RATE_REL_TOLERANCE).max(ERROR_RATE_ABS_TOLERANCE),
            percent,
        ),
        Metric::Latency => (
            (baseline.level * LATENCY_REL_TOLERANCE).max(LATENCY_ABS_TOLERANCE),
            millis,
        ),
    };
    let allowed = baseline.level + allowance;
    // Test the canary against the baseline shifted up by the tolerance: a
    // significant result means the canary is worse by *more* than the
    // tolerance (Kayenta's rule: the shift's confidence bound lies beyond the
    // allowed increase), not merely worse.
    let shifted: Vec<f64> = baseline.values.iter().map(|v| v + allowance).collect();
    let Some(test) = canary_greater(&canary.values, &shifted) else {
        return result(
            undecided(obs.window_complete),
            None,
            None,
            "the measurements hold values that are not numbers".to_string(),
        );
    };
    let alpha = if obs.window_complete {
        1.0 - confidence
    } else {
        (1.0 - confidence).min(EARLY_FAIL_ALPHA)
    };
    let significant = test.p_value < alpha;
    let beyond_tolerance = canary.level > allowed;
    let seen = format!(
        "canary {} vs baseline {} (allowed up to {}), Mann-Whitney p = {} for canary > baseline + tolerance, over {} vs {} intervals",
        show(canary.level),
        show(baseline.level),
        show(allowed),
        round_sig(test.p_value),
        canary.values.len(),
        baseline.values.len()
    );
    let (outcome, why) = if significant && beyond_tolerance {
        (
            Outcome::Fail,
            format!("worse than baseline beyond tolerance: {seen}"),
        )
    } else if !obs.window_complete {
        (Outcome::Running, format!("{seen} so far"))
    } else {
        (
            Outcome::Pass,
            format!(
                "not worse beyond tolerance (failing needs p < {}): {seen}",
                round_sig(alpha)
            ),
        )
    };
    result(outcome, Some(canary.level), Some(allowed), why)
}

/// The median; 0 for no values (callers check counts first).
fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}
