//! Canary analysis: judges a release on measured signals.
//!
//! The controller collects per-interval samples of the canary and of the
//! stable release (the baseline) under the same traffic and calls
//! [`evaluate`] after every interval, then once more when the window ends:
//!
//! - **Fail** may come early, from a few intervals, when the evidence is
//!   strong: the error-rate threshold runs an exact binomial test against
//!   its limit, so a canary at 10% 5xx fails a 1% limit after about 40
//!   requests (the median in simulation: two one-second intervals at 10% of
//!   200 req/s; 95% within five); latency thresholds and the baseline
//!   comparison need about ten and eight intervals. → roll back.
//! - **Pass** only when the window is complete and every check passed. → promote.
//! - **Inconclusive** at the end when a check could not decide: fewer than
//!   `min_requests` requests, too few intervals to compare (see
//!   [`mann_whitney::MIN_SAMPLES`]), or a Prometheus query without a usable
//!   answer. → pause for a human (the spec's `on-inconclusive`).
//! - **Running** otherwise: ask again after the next interval.
//!
//! Healthy canaries must not be rolled back on noise, so no check fails on a
//! single unlucky interval: early failures use a strict significance level
//! ([`thresholds::EARLY_FAIL_ALPHA`]) because the same data is tested again
//! after every interval, and the baseline comparison fails a metric only when
//! it is significantly worse by more than an effect-size tolerance
//! (one-sided Mann-Whitney U at the stated confidence against the baseline
//! shifted by the tolerance, like Kayenta's allowed increase; see
//! [`compare`]). Each side needs [`mann_whitney::MIN_SAMPLES`] intervals and
//! `min_requests` requests before the comparison may say anything.
//!
//! Each [`CheckResult`] says which check, which values and why; the
//! controller stores them with the deployment.

pub mod compare;
pub mod condition;
pub mod judge;
pub mod mann_whitney;
pub mod prometheus;
pub mod stats;
pub mod thresholds;
pub mod types;

pub use condition::{Comparison, Condition, ConditionError};
pub use judge::evaluate;
pub use types::{
    AnalysisConfig, Check, CheckResult, DEFAULT_MIN_REQUESTS, IntervalSample, Metric, Observation,
    Outcome, Quantile, Verdict, default_checks,
};
