//! From the spec and the proxy's per-second counters to what analysis reads:
//! checks, configuration and per-interval samples.

use std::time::Duration;

use pave_model::deploy_spec::{self as spec, AnalysisSpec, CheckSpec};

use crate::analysis::{AnalysisConfig, Check, IntervalSample, Metric, Quantile};
use crate::proxy::{LatencyHistogram, ProxyMetrics};

/// The analysis configuration for a step (its own checks, or the strategy's).
pub(super) fn config(analysis: &AnalysisSpec, step_checks: Option<&[CheckSpec]>) -> AnalysisConfig {
    let checks = step_checks.unwrap_or(&analysis.checks);
    AnalysisConfig {
        checks: checks.iter().filter_map(check).collect(),
        min_requests: analysis.min_requests,
        interval: analysis.interval,
    }
}

/// One check in analysis' terms (a Prometheus condition the model already
/// validated; one that still fails to parse is dropped with a warning).
fn check(c: &CheckSpec) -> Option<Check> {
    Some(match c {
        CheckSpec::ErrorRate { max } => Check::ErrorRate { max: *max },
        CheckSpec::Latency { quantile, max } => Check::Latency {
            quantile: match quantile {
                spec::Quantile::P50 => Quantile::P50,
                spec::Quantile::P95 => Quantile::P95,
                spec::Quantile::P99 => Quantile::P99,
            },
            max: *max,
        },
        CheckSpec::CompareBaseline {
            metrics,
            confidence,
        } => Check::CompareBaseline {
            metrics: metrics
                .iter()
                .map(|m| match m {
                    spec::Metric::ErrorRate => Metric::ErrorRate,
                    spec::Metric::Latency => Metric::Latency,
                })
                .collect(),
            confidence: *confidence,
        },
        CheckSpec::Prometheus {
            address,
            query,
            success,
        } => match success.parse() {
            Ok(success) => Check::Prometheus {
                address: address.clone(),
                query: query.clone(),
                success,
            },
            Err(e) => {
                tracing::warn!(condition = %success, error = %e, "dropping a prometheus check whose condition does not parse");
                return None;
            }
        },
    })
}

/// `release`'s traffic in `[from_ms, to_ms)` as consecutive intervals of
/// `interval` (complete seconds only; at least one second per interval).
pub(super) fn samples(
    metrics: &ProxyMetrics,
    release: &str,
    from_ms: u64,
    to_ms: u64,
    interval: Duration,
) -> Vec<IntervalSample> {
    let per = interval.as_secs().max(1);
    let from_s = from_ms.div_ceil(1000);
    let to_s = to_ms / 1000;
    let seconds = metrics.seconds(release, from_s, to_s);
    seconds
        .chunks(per as usize)
        .filter(|c| c.len() as u64 == per)
        .map(|chunk| {
            let mut latency = LatencyHistogram::new();
            let mut s = IntervalSample {
                start_unix_s: chunk[0].unix_s,
                ..IntervalSample::default()
            };
            for sec in chunk {
                s.requests += sec.requests;
                s.errors += sec.status_classes[4];
                latency.merge(&sec.latency);
            }
            s.p50 = latency.quantile(0.50).map(|d| d.as_secs_f64());
            s.p95 = latency.quantile(0.95).map(|d| d.as_secs_f64());
            s.p99 = latency.quantile(0.99).map(|d| d.as_secs_f64());
            s
        })
        .collect()
}
