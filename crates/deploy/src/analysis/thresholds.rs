//! Absolute thresholds on the canary alone: its error rate and a latency
//! quantile, judged only once it has served `min_requests`.
//!
//! At the end of the window the observed value is held against the limit as
//! written. Before the end a check fails only on strong evidence (see
//! [`EARLY_FAIL_ALPHA`]), because the controller asks after every interval
//! and a healthy canary must not be failed by one unlucky interval.

use super::stats::binomial_sf;
use super::types::{CheckResult, IntervalSample, Observation, Outcome, Quantile, millis, percent};

/// Before the window ends a check may fail only when data this extreme would
/// arise with probability below this if the canary were exactly at its limit.
/// Small, because the same cumulative data is tested after every interval.
pub const EARLY_FAIL_ALPHA: f64 = 0.001;

/// The outcome of a check that cannot decide yet: Running while the window
/// is open, Inconclusive once it is over.
pub(super) fn undecided(window_complete: bool) -> Outcome {
    if window_complete {
        Outcome::Inconclusive
    } else {
        Outcome::Running
    }
}

/// The canary's 5xx fraction must stay at or below `max`.
///
/// Early fail: an exact one-sided binomial test of "the canary's true error
/// rate is above `max`" on all its requests so far, at [`EARLY_FAIL_ALPHA`].
/// A canary at 10% errors against a 1% limit typically fails after about 40 requests.
pub(super) fn error_rate(max: f64, min_requests: u64, obs: &Observation<'_>) -> CheckResult {
    let requests: u64 = obs.canary.iter().map(|s| s.requests).sum();
    let errors: u64 = obs.canary.iter().map(|s| s.errors.min(s.requests)).sum();
    let check = format!("error-rate <= {}", percent(max));
    if requests == 0 || requests < min_requests {
        return CheckResult {
            check,
            outcome: undecided(obs.window_complete),
            value: None,
            threshold: Some(max),
            detail: format!(
                "the canary served {requests} requests; {min_requests} are needed before judging"
            ),
        };
    }
    let rate = errors as f64 / requests as f64;
    let seen = format!(
        "{errors} of {requests} canary requests ({}) were 5xx",
        percent(rate)
    );
    let (outcome, detail) = if obs.window_complete {
        if rate > max {
            (
                Outcome::Fail,
                format!("{seen}, above the {} limit", percent(max)),
            )
        } else {
            (
                Outcome::Pass,
                format!("{seen}, within the {} limit", percent(max)),
            )
        }
    } else {
        let p = binomial_sf(errors, requests, max);
        if rate > max && p < EARLY_FAIL_ALPHA {
            let detail = format!(
                "{seen}: clearly above the {} limit (p = {p:.2e} that a canary at the limit does this)",
                percent(max)
            );
            (Outcome::Fail, detail)
        } else {
            (Outcome::Running, format!("{seen} so far"))
        }
    };
    CheckResult {
        check,
        outcome,
        value: Some(rate),
        threshold: Some(max),
        detail,
    }
}

/// The canary's latency quantile must stay at or below `max` (seconds).
///
/// The window's value is the request-weighted mean of the per-interval
/// quantiles (the proxy reports quantiles per interval, not raw latencies).
/// Early fail: a sign test over the intervals (how many were above `max`) at
/// [`EARLY_FAIL_ALPHA`], which needs at least ten intervals all above it, and
/// the weighted value above `max` too.
pub(super) fn latency(
    quantile: Quantile,
    max: f64,
    min_requests: u64,
    obs: &Observation<'_>,
) -> CheckResult {
    let check = format!("latency {quantile} <= {}", millis(max));
    let points = quantile_points(obs.canary, quantile);
    let requests: u64 = points.iter().map(|(_, r)| r).sum();
    if requests == 0 || requests < min_requests {
        return CheckResult {
            check,
            outcome: undecided(obs.window_complete),
            value: None,
            threshold: Some(max),
            detail: format!(
                "the canary served {requests} requests with latency data; {min_requests} are needed before judging"
            ),
        };
    }
    let weighted = points.iter().map(|(v, r)| v * *r as f64).sum::<f64>() / requests as f64;
    let above = points.iter().filter(|(v, _)| *v > max).count() as u64;
    let intervals = points.len() as u64;
    let seen = format!(
        "canary {quantile} {} (request-weighted over {intervals} intervals, {above} above the limit)",
        millis(weighted)
    );
    let (outcome, detail) = if obs.window_complete {
        if weighted > max {
            (Outcome::Fail, format!("{seen}, above {}", millis(max)))
        } else {
            (Outcome::Pass, format!("{seen}, within {}", millis(max)))
        }
    } else if weighted > max && binomial_sf(above, intervals, 0.5) < EARLY_FAIL_ALPHA {
        (
            Outcome::Fail,
            format!("{seen}: consistently above {}", millis(max)),
        )
    } else {
        (Outcome::Running, format!("{seen} so far"))
    };
    CheckResult {
        check,
        outcome,
        value: Some(weighted),
        threshold: Some(max),
        detail,
    }
}

/// (quantile value, requests) of every interval that has both.
pub(super) fn quantile_points(samples: &[IntervalSample], quantile: Quantile) -> Vec<(f64, u64)> {
    samples
        .iter()
        .filter(|s| s.requests > 0)
        .filter_map(|s| {
            quantile
                .of(s)
                .filter(|v| v.is_finite())
                .map(|v| (v, s.requests))
        })
        .collect()
}
