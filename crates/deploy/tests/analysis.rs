//! The judge on simulated canaries: thresholds and the minimum request count,
//! a 10%-5xx canary failing from few intervals, a 3x-slower canary failing,
//! and healthy canaries under noisy but equal traffic never failing across
//! many seeded trials.

use std::time::Duration;

use pave_deploy::analysis::{
    AnalysisConfig, Check, IntervalSample, Metric, Observation, Outcome, Quantile, Verdict,
    default_checks, evaluate,
};

/// SplitMix64: a tiny deterministic PRNG, so every trial is reproducible.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// How a simulated release behaves.
#[derive(Clone, Copy)]
struct Release {
    /// Mean requests per interval (each interval varies by +-25%).
    requests: f64,
    /// Chance that a request answers 5xx.
    error_rate: f64,
    /// Median latency in seconds (log-normal, sigma 0.5).
    median_s: f64,
}

/// One interval of traffic: noisy request count, Bernoulli errors, log-normal
/// latencies with occasional 5x spikes (GC pauses, cold caches), and
/// nearest-rank quantiles as the proxy would report.
fn interval(rng: &mut Rng, release: Release, start: u64) -> IntervalSample {
    let requests = (release.requests * (0.75 + 0.5 * rng.uniform())).round() as u64;
    let mut errors = 0;
    let mut latencies = Vec::with_capacity(requests as usize);
    for _ in 0..requests {
        if rng.uniform() < release.error_rate {
            errors += 1;
        }
        let spike = if rng.uniform() < 0.02 { 5.0 } else { 1.0 };
        latencies.push(release.median_s * (0.5 * rng.normal()).exp() * spike);
    }
    latencies.sort_by(f64::total_cmp);
    let q = |p: f64| -> Option<f64> {
        let rank = ((p * latencies.len() as f64).ceil() as usize).max(1);
        latencies.get(rank - 1).copied()
    };
    IntervalSample {
        start_unix_s: start,
        requests,
        errors,
        p50: q(0.50),
        p95: q(0.95),
        p99: q(0.99),
    }
}

/// The result of running one simulated analysis window.
struct Run {
    /// The interval (1-based) whose evaluation first failed, if any.
    failed_at: Option<usize>,
    /// The last verdict (the failing one, or the end-of-window one).
    verdict: Verdict,
}

/// Feeds the judge one interval at a time, as the controller does, and stops
/// at the first Fail or after the final (window-complete) evaluation.
async fn run_window(
    config: &AnalysisConfig,
    seed: u64,
    canary: Release,
    baseline: Release,
    intervals: usize,
) -> Run {
    let mut rng = Rng(seed);
    let (mut c, mut b) = (Vec::new(), Vec::new());
    for i in 0..intervals {
        let start = 1_700_000_000 + i as u64;
        c.push(interval(&mut rng, canary, start));
        b.push(interval(&mut rng, baseline, start));
        let obs = Observation {
            canary: &c,
            baseline: &b,
            window_complete: i + 1 == intervals,
        };
        let verdict = evaluate(config, &obs).await;
        assert!(
            obs.window_complete || verdict.outcome != Outcome::Pass,
            "only the end of the window may pass: {verdict:?}"
        );
        if verdict.outcome == Outcome::Fail {
            return Run {
                failed_at: Some(i + 1),
                verdict,
            };
        }
        if obs.window_complete {
            return Run {
                failed_at: None,
                verdict,
            };
        }
    }
    panic!("a window needs at least one interval");
}

fn config(checks: Vec<Check>) -> AnalysisConfig {
    AnalysisConfig {
        checks,
        min_requests: 20,
        interval: Duration::from_secs(1),
    }
}

/// 10% of 200 req/s goes to the canary, 90% to the stable release.
const CANARY: Release = Release {
    requests: 20.0,
    error_rate: 0.002,
    median_s: 0.05,
};
const STABLE: Release = Release {
    requests: 180.0,
    ..CANARY
};

#[tokio::test]
async fn healthy_canary_with_default_checks_is_never_failed_and_passes_at_the_end() {
    let config = config(default_checks());
    for seed in 0..200 {
        let run = run_window(&config, seed, CANARY, STABLE, 30).await;
        assert_eq!(
            run.verdict.outcome,
            Outcome::Pass,
            "seed {seed}: {}",
            run.verdict.reason()
        );
    }
}

#[tokio::test]
async fn healthy_canary_with_real_error_rates_is_never_failed_by_the_comparison() {
    // Both releases fail 3% of requests and see equal traffic: the per-interval
    // error rates and latencies differ by noise only.
    let config = config(vec![Check::CompareBaseline {
        metrics: vec![Metric::ErrorRate, Metric::Latency],
        confidence: 0.98,
    }]);
    let noisy = Release {
        requests: 40.0,
        error_rate: 0.03,
        median_s: 0.08,
    };
    for seed in 1_000..1_200 {
        let run = run_window(&config, seed, noisy, noisy, 20).await;
        assert_eq!(
            run.verdict.outcome,
            Outcome::Pass,
            "seed {seed}: {}",
            run.verdict.reason()
        );
    }
}

#[tokio::test]
async fn canary_with_ten_percent_5xx_fails_within_a_few_intervals() {
    let config = config(default_checks());
    let broken = Release {
        error_rate: 0.10,
        ..CANARY
    };
    let mut fail_points = Vec::new();
    for seed in 0..200 {
        let run = run_window(&config, seed, broken, STABLE, 30).await;
        let at = run
            .failed_at
            .unwrap_or_else(|| panic!("seed {seed} never failed: {}", run.verdict.reason()));
        let cause = run
            .verdict
            .checks
            .iter()
            .find(|c| c.outcome == Outcome::Fail)
            .expect("a failed verdict names its failed check");
        assert_eq!(cause.check, "error-rate <= 1%");
        assert_eq!(cause.threshold, Some(0.01));
        assert!(
            cause.value.is_some_and(|v| v > 0.03),
            "seed {seed}: {cause:?}"
        );
        assert!(cause.detail.contains("5xx"), "{}", cause.detail);
        fail_points.push(at);
    }
    fail_points.sort();
    let (median, p95, worst) = (fail_points[100], fail_points[189], fail_points[199]);
    println!(
        "10% 5xx canary at ~20 requests per interval: failed after {median} intervals (median), {p95} (95th percentile), {worst} (worst of 200)"
    );
    // With one-second intervals: 95% of rollbacks start within 5 s of the
    // canary taking traffic, and even the unluckiest trials within 12 s.
    assert!(p95 <= 5, "95th percentile detection took {p95} intervals");
    assert!(worst <= 12, "slowest detection took {worst} intervals");
}

#[tokio::test]
async fn canary_three_times_slower_at_p95_fails_the_comparison() {
    let config = config(default_checks());
    let slow = Release {
        median_s: CANARY.median_s * 3.0,
        ..CANARY
    };
    let mut fail_points = Vec::new();
    for seed in 0..100 {
        let run = run_window(&config, seed, slow, STABLE, 30).await;
        let at = run
            .failed_at
            .unwrap_or_else(|| panic!("seed {seed} passed: {}", run.verdict.reason()));
        let cause = run
            .verdict
            .checks
            .iter()
            .find(|c| c.outcome == Outcome::Fail)
            .expect("a failed verdict names its failed check");
        assert_eq!(
            cause.check,
            "compare-baseline latency p95 (confidence 0.98)"
        );
        let (value, allowed) = (cause.value.unwrap_or(0.0), cause.threshold.unwrap_or(0.0));
        assert!(value > allowed, "{cause:?}");
        fail_points.push(at);
    }
    fail_points.sort();
    println!(
        "3x slower canary: failed after median {} intervals, worst {}",
        fail_points[fail_points.len() / 2],
        fail_points[fail_points.len() - 1]
    );
}

#[tokio::test]
async fn latency_threshold_fails_a_slow_canary_and_passes_a_fast_one() {
    let config = config(vec![Check::Latency {
        quantile: Quantile::P95,
        max: Duration::from_millis(250),
    }]);
    // Healthy p95 is about 130ms (log-normal 50ms median plus 2% 5x spikes,
    // nearest-rank over ~20 requests); 3x slower is about 390ms.
    let slow = Release {
        median_s: CANARY.median_s * 3.0,
        ..CANARY
    };
    for seed in 0..50 {
        let run = run_window(&config, seed, slow, STABLE, 30).await;
        assert!(
            run.failed_at.is_some(),
            "seed {seed}: {}",
            run.verdict.reason()
        );
        let cause = &run.verdict.checks[0];
        assert_eq!(cause.check, "latency p95 <= 250ms");
        assert!(cause.value.is_some_and(|v| v > 0.25), "{cause:?}");

        let run = run_window(&config, seed, CANARY, STABLE, 30).await;
        assert_eq!(
            run.verdict.outcome,
            Outcome::Pass,
            "seed {seed}: {}",
            run.verdict.reason()
        );
    }
}

fn samples(per_interval: &[(u64, u64)]) -> Vec<IntervalSample> {
    per_interval
        .iter()
        .enumerate()
        .map(|(i, &(requests, errors))| IntervalSample {
            start_unix_s: i as u64,
            requests,
            errors,
            p50: (requests > 0).then_some(0.02),
            p95: (requests > 0).then_some(0.05),
            p99: (requests > 0).then_some(0.08),
        })
        .collect()
}

async fn judge(checks: Vec<Check>, canary: &[IntervalSample], complete: bool) -> Verdict {
    let baseline = samples(&[(100, 0); 10]);
    let obs = Observation {
        canary,
        baseline: &baseline,
        window_complete: complete,
    };
    evaluate(&config(checks), &obs).await
}

#[tokio::test]
async fn error_rate_waits_for_the_minimum_request_count() {
    let one_percent = || vec![Check::ErrorRate { max: 0.01 }];
    // 19 requests, all failing: not judged yet, whatever they say.
    let few = samples(&[(19, 19)]);
    let mid = judge(one_percent(), &few, false).await;
    assert_eq!(mid.outcome, Outcome::Running);
    let end = judge(one_percent(), &few, true).await;
    assert_eq!(end.outcome, Outcome::Inconclusive);
    assert_eq!(end.checks[0].value, None);
    assert!(
        end.checks[0].detail.contains("19 requests; 20 are needed"),
        "{}",
        end.checks[0].detail
    );
    // The 20th request makes it judgeable, and 20 failures are clear at once.
    let enough = samples(&[(20, 20)]);
    let verdict = judge(one_percent(), &enough, false).await;
    assert_eq!(verdict.outcome, Outcome::Fail);
    assert_eq!(verdict.checks[0].value, Some(1.0));
}

#[tokio::test]
async fn error_rate_mid_window_needs_strong_evidence_but_the_end_holds_the_limit() {
    let check = || vec![Check::ErrorRate { max: 0.01 }];
    // 3 of 200 (1.5%) is over the limit but could be a 1% canary's bad luck.
    let slightly_over = samples(&[(100, 2), (100, 1)]);
    assert_eq!(
        judge(check(), &slightly_over, false).await.outcome,
        Outcome::Running
    );
    let end = judge(check(), &slightly_over, true).await;
    assert_eq!(end.outcome, Outcome::Fail);
    assert_eq!(end.checks[0].value, Some(0.015));
    assert!(
        end.checks[0].detail.contains("3 of 200"),
        "{}",
        end.checks[0].detail
    );
    // 1 of 200 (0.5%) passes at the end.
    let under = samples(&[(100, 1), (100, 0)]);
    let end = judge(check(), &under, true).await;
    assert_eq!(end.outcome, Outcome::Pass);
    assert_eq!(end.checks[0].check, "error-rate <= 1%");
}

#[tokio::test]
async fn comparison_without_enough_intervals_is_inconclusive_at_the_end() {
    let canary = samples(&[(100, 0); 3]);
    let compare = vec![Check::CompareBaseline {
        metrics: vec![Metric::ErrorRate],
        confidence: 0.98,
    }];
    assert_eq!(
        judge(compare.clone(), &canary, false).await.outcome,
        Outcome::Running
    );
    let end = judge(compare, &canary, true).await;
    assert_eq!(end.outcome, Outcome::Inconclusive);
    assert!(
        end.checks[0].detail.contains("canary has 3 intervals"),
        "{}",
        end.checks[0].detail
    );
    assert!(
        end.reason().contains("compare-baseline error-rate"),
        "{}",
        end.reason()
    );
}

#[tokio::test]
async fn no_canary_traffic_at_all_is_inconclusive_not_a_pass() {
    let end = judge(default_checks(), &[], true).await;
    assert_eq!(end.outcome, Outcome::Inconclusive);
    // error-rate, and one comparison per metric.
    assert_eq!(end.checks.len(), 3);
    assert!(
        end.checks
            .iter()
            .all(|c| c.outcome == Outcome::Inconclusive)
    );
}

#[tokio::test]
async fn no_checks_pass_at_the_end_and_run_until_then() {
    let canary = samples(&[(100, 0)]);
    assert_eq!(
        judge(vec![], &canary, false).await.outcome,
        Outcome::Running
    );
    assert_eq!(judge(vec![], &canary, true).await.outcome, Outcome::Pass);
}

#[tokio::test]
async fn verdicts_serialize_for_the_store_and_the_cli() {
    let canary = samples(&[(20, 20)]);
    let verdict = judge(vec![Check::ErrorRate { max: 0.01 }], &canary, false).await;
    let json = serde_json::to_value(&verdict).expect("a verdict serializes");
    assert_eq!(json["outcome"], "fail");
    assert_eq!(json["checks"][0]["check"], "error-rate <= 1%");
    assert_eq!(json["checks"][0]["threshold"], 0.01);
    let back: Verdict = serde_json::from_value(json).expect("and reads back");
    assert_eq!(back, verdict);
}
