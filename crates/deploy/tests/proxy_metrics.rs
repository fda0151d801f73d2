//! The edge proxy's per-release metrics: exact counts by status class, the
//! latency histogram's accuracy, and the Prometheus rendering.

mod proxy_support;

use std::collections::HashMap;
use std::time::Duration;

use pave_deploy::proxy::{HISTOGRAM_RELATIVE_ERROR, LatencyHistogram};
use proxy_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_by_release_and_status_class_are_exact() {
    let proxy = start_proxy().await;
    let (a, b) = (named_backend("a").await, named_backend("b").await);
    proxy.routes.set(
        "api.prod.localhost",
        route(vec![backend("r1", 100, vec![a])]),
    );
    proxy.routes.set(
        "api.staging.localhost",
        route(vec![backend("r2", 100, vec![b])]),
    );
    let client = client();
    let before = now_s();
    for (path, times) in [
        ("/", 7),
        ("/status/302", 2),
        ("/status/404", 3),
        ("/status/503", 4),
        ("/status/500", 1),
    ] {
        for _ in 0..times {
            get(&client, proxy.addr, "api.prod.localhost", path).await;
        }
    }
    get(&client, proxy.addr, "api.staging.localhost", "/").await;
    let after = now_s();

    let seconds = proxy.metrics.seconds("r1", before, after + 1);
    assert_eq!(
        seconds.len() as u64,
        after + 1 - before,
        "one entry per second, zeros included"
    );
    let mut classes = [0u64; 5];
    let mut requests = 0;
    let mut latencies = 0;
    for second in &seconds {
        requests += second.requests;
        latencies += second.latency.count();
        for (sum, n) in classes.iter_mut().zip(second.status_classes) {
            *sum += n;
        }
    }
    assert_eq!((requests, latencies), (17, 17));
    assert_eq!(classes, [0, 7, 2, 3, 5]);

    let summary = proxy.metrics.summary("r1", before, after + 1);
    assert_eq!((summary.requests, summary.errors_5xx), (17, 5));
    assert!((summary.error_rate - 5.0 / 17.0).abs() < 1e-12);
    let (p50, p95, p99) = (
        summary.p50.unwrap(),
        summary.p95.unwrap(),
        summary.p99.unwrap(),
    );
    assert!(p50 <= p95 && p95 <= p99 && p99 < Duration::from_secs(60));
    assert_eq!(proxy.metrics.summary("r2", before, after + 1).requests, 1);

    let empty = proxy.metrics.summary("never-deployed", before, after + 1);
    assert_eq!(
        (empty.requests, empty.error_rate, empty.p99),
        (0, 0.0, None)
    );
    // The API view serializes (latencies in milliseconds, sparse histogram).
    let json = serde_json::to_value(&seconds).unwrap();
    assert!(json.as_array().is_some_and(|a| a.len() == seconds.len()));
    assert!(
        serde_json::to_value(&summary).unwrap()["p99"]
            .as_f64()
            .is_some()
    );
}

#[test]
fn histogram_quantiles_are_within_the_stated_error() {
    // Latencies spread log-uniformly from 50 µs to 60 s (a fixed LCG: reproducible).
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut samples = Vec::new();
    let mut histogram = LatencyHistogram::new();
    for _ in 0..20_000 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
        let micros = (50f64.ln() + unit * (60e6f64.ln() - 50f64.ln())).exp() as u64;
        let sample = Duration::from_micros(micros);
        samples.push(sample);
        histogram.record(sample);
    }
    samples.sort();
    assert_eq!(histogram.count(), samples.len() as u64);
    for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
        let rank = ((q * samples.len() as f64).ceil() as usize).max(1);
        let exact = samples[rank - 1].as_secs_f64();
        let estimate = histogram.quantile(q).unwrap().as_secs_f64();
        let error = (estimate - exact).abs() / exact;
        assert!(
            error <= HISTOGRAM_RELATIVE_ERROR,
            "q={q}: exact {exact} estimate {estimate} error {error}"
        );
    }
    const { assert!(HISTOGRAM_RELATIVE_ERROR <= 0.032) };
    assert_eq!(LatencyHistogram::new().quantile(0.5), None);
}

/// One parsed sample: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// A small parser of the Prometheus text format: every sample belongs to a
/// declared family, label sets are well formed, values are numbers, and
/// histogram buckets are cumulative and end with +Inf equal to _count.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "histogram", "gauge"].contains(&kind), "{line}");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.is_empty() && !line.starts_with('#'),
            "unexpected line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                parse_labels(rest.strip_suffix('}').expect("closing brace")),
            ),
            None => (series, Vec::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        samples.push((name.to_string(), labels, value));
    }
    samples
}

fn parse_labels(mut rest: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("label=\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_rendering_parses_and_matches_the_counts() {
    let proxy = start_proxy().await;
    let a = named_backend("a").await;
    let mut odd = backend("rel \"quoted\"\\", 100, vec![a]);
    odd.service = "web".into();
    proxy.routes.set(
        "api.prod.localhost",
        route(vec![backend("r1", 100, vec![a])]),
    );
    proxy.routes.set("web.prod.localhost", route(vec![odd]));
    let client = client();
    for path in ["/", "/", "/status/404", "/status/503"] {
        get(&client, proxy.addr, "api.prod.localhost", path).await;
    }
    get(&client, proxy.addr, "web.prod.localhost", "/").await;
    get(&client, proxy.addr, "unknown.prod.localhost", "/").await;

    let mut text = String::new();
    proxy.metrics.render_prometheus(&mut text);
    let samples = parse_prometheus(&text);
    let find = |name: &str, want: &[(&str, &str)]| -> Vec<f64> {
        samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, value)| *value)
            .collect()
    };
    let r1 = [("service", "api"), ("env", "prod"), ("release", "r1")];
    assert_eq!(
        find(
            "pave_edge_requests_total",
            &[r1[0], r1[1], r1[2], ("code", "200")]
        ),
        vec![2.0]
    );
    assert_eq!(
        find("pave_edge_requests_total", &[r1[2], ("code", "404")]),
        vec![1.0]
    );
    assert_eq!(
        find("pave_edge_requests_total", &[r1[2], ("code", "503")]),
        vec![1.0]
    );
    assert_eq!(
        find(
            "pave_edge_requests_total",
            &[("release", "rel \"quoted\"\\"), ("service", "web")]
        ),
        vec![1.0]
    );
    assert_eq!(find("pave_edge_unrouted_requests_total", &[]), vec![1.0]);

    let buckets = find("pave_edge_request_duration_seconds_bucket", &r1);
    assert!(
        buckets.len() > 10 && buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {buckets:?}"
    );
    assert_eq!(buckets.last(), Some(&4.0));
    assert_eq!(
        find("pave_edge_request_duration_seconds_count", &r1),
        vec![4.0]
    );
    let inf = samples
        .iter()
        .filter(|(n, l, _)| {
            n.ends_with("_bucket") && l.iter().any(|(k, v)| k == "le" && v == "+Inf")
        })
        .count();
    assert_eq!(inf, 2, "one +Inf bucket per release");
    assert!(find("pave_edge_request_duration_seconds_sum", &r1)[0] > 0.0);
}
