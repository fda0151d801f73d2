//! Prometheus text exposition (format 0.0.4) of the proxy's cumulative counters.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::metrics::{PROMETHEUS_BOUNDS_MICROS, ProxyMetrics, ReleaseMetrics};

/// Writes `pave_edge_requests_total` (by status code) and the
/// `pave_edge_request_duration_seconds` histogram for every release, sorted by labels.
pub(crate) fn render(metrics: &ProxyMetrics, out: &mut String) {
    let mut releases: Vec<Arc<ReleaseMetrics>> = metrics.read().values().cloned().collect();
    releases.sort_by(|a, b| a.key.cmp(&b.key));

    out.push_str("# HELP pave_edge_requests_total Responses sent by Pave's edge proxy, by release and status code.\n");
    out.push_str("# TYPE pave_edge_requests_total counter\n");
    for release in &releases {
        let labels = labels(release);
        for (offset, count) in release.by_code.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                let code = offset + 100;
                let _ = writeln!(
                    out,
                    "pave_edge_requests_total{{{labels},code=\"{code}\"}} {count}"
                );
            }
        }
    }

    out.push_str("# HELP pave_edge_request_duration_seconds Time from request arrival to the response head.\n");
    out.push_str("# TYPE pave_edge_request_duration_seconds histogram\n");
    for release in &releases {
        let labels = labels(release);
        let mut cumulative = 0;
        for (index, count) in release.prometheus_buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = match PROMETHEUS_BOUNDS_MICROS.get(index) {
                Some(micros) => format_seconds(*micros),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "pave_edge_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = format_seconds(release.latency_sum_micros.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "pave_edge_request_duration_seconds_sum{{{labels}}} {sum}"
        );
        let _ = writeln!(
            out,
            "pave_edge_request_duration_seconds_count{{{labels}}} {cumulative}"
        );
    }

    out.push_str("# HELP pave_edge_unrouted_requests_total Requests whose Host matched no route (answered 404).\n");
    out.push_str("# TYPE pave_edge_unrouted_requests_total counter\n");
    let _ = writeln!(
        out,
        "pave_edge_unrouted_requests_total {}",
        metrics.unrouted_requests()
    );
}

fn labels(release: &ReleaseMetrics) -> String {
    format!(
        "service=\"{}\",env=\"{}\",release=\"{}\"",
        escape(&release.key.service),
        escape(&release.key.env),
        escape(&release.key.release)
    )
}

/// Microseconds as a decimal number of seconds, without float rounding noise.
fn format_seconds(micros: u64) -> String {
    let fraction = format!("{:06}", micros % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{}", micros / 1_000_000)
    } else {
        format!("{}.{fraction}", micros / 1_000_000)
    }
}

/// Label value escaping required by the text format: backslash, quote, newline.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(format_seconds(100), "0.0001");
        assert_eq!(format_seconds(2_500_000), "2.5");
        assert_eq!(format_seconds(60_000_000), "60");
        assert_eq!(format_seconds(0), "0");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
