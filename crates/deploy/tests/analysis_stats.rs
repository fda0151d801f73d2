//! The statistics under the judge, against reference values, and the
//! Prometheus success-condition syntax.
//!
//! Reference values were computed with SciPy 1.17.1 (not a test dependency):
//! `scipy.stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic",
//! use_continuity=True)`, `scipy.stats.norm.sf(z)` and
//! `scipy.stats.binom.sf(k - 1, n, p)` (= P(X >= k)).

use pave_deploy::analysis::mann_whitney::canary_greater;
use pave_deploy::analysis::stats::{binomial_sf, normal_sf};
use pave_deploy::analysis::{Check, Comparison, Condition, Metric, default_checks};

fn assert_close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs().max(1e-300);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual:e}, scipy says {expected:e}"
    );
}

/// (name, canary, baseline, scipy's U, scipy's p-value)
type MannWhitneyCase = (&'static str, &'static [f64], &'static [f64], f64, f64);

#[test]
fn mann_whitney_matches_scipy() {
    let cases: [MannWhitneyCase; 5] = [
        (
            "no ties",
            &[3.1, 4.2, 5.0, 6.3, 7.7, 8.1],
            &[1.0, 2.2, 3.3, 4.4, 5.5],
            24.0,
            0.06034540026372278,
        ),
        (
            "ties across samples",
            &[1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0],
            &[1.0, 1.0, 2.0, 2.0, 3.0, 5.0],
            25.5,
            0.2771755367108924,
        ),
        (
            "error rates against a mostly-zero baseline",
            &[0.1, 0.05, 0.15, 0.1, 0.0, 0.2, 0.1],
            &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.005],
            45.0,
            0.0030464770292573115,
        ),
        (
            "canary better",
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[6.0, 7.0, 8.0, 9.0, 10.0],
            0.0,
            0.9966923245172357,
        ),
        ("all values equal", &[0.2; 5], &[0.2; 6], 15.0, 1.0),
    ];
    for (name, canary, baseline, u, p) in cases {
        let test = canary_greater(canary, baseline).expect("both sides have values");
        assert_eq!(test.u, u, "{name}: U");
        assert_close(test.p_value, p, name);
    }
}

#[test]
fn mann_whitney_refuses_empty_or_non_numeric_samples() {
    assert!(canary_greater(&[], &[1.0]).is_none());
    assert!(canary_greater(&[1.0], &[]).is_none());
    assert!(canary_greater(&[1.0, f64::NAN], &[1.0]).is_none());
}

#[test]
fn normal_tail_matches_scipy() {
    let cases = [
        (-2.0, 0.9772498680518208),
        (0.0, 0.5),
        (0.5, 0.3085375387259869),
        (1.96, 0.024997895148220435),
        (3.0, 0.0013498980316300933),
        (5.0, 2.866515718791933e-07),
        (8.0, 6.22096057427174e-16),
    ];
    for (z, expected) in cases {
        assert_close(normal_sf(z), expected, &format!("P(Z > {z})"));
    }
}

#[test]
fn binomial_tail_matches_scipy() {
    let cases = [
        (5, 60, 0.01, 0.00034575434785519586),
        (4, 40, 0.01, 0.0006856064270094535),
        (6, 100, 0.01, 0.0005345344639930342),
        (1, 1000, 0.001, 0.6323045752290359),
        (500, 1000, 0.5, 0.5126125090891802),
        (10, 10, 0.5, 0.0009765625),
        (3, 20, 0.5, 0.9997987747192383),
        (2, 1_000_000, 0.5, 1.0),
        (60, 1000, 0.05, 0.08673217838486103),
    ];
    for (k, n, p, expected) in cases {
        assert_close(
            binomial_sf(k, n, p),
            expected,
            &format!("P(X >= {k} | {n}, {p})"),
        );
    }
    assert_eq!(binomial_sf(0, 10, 0.3), 1.0);
    assert_eq!(binomial_sf(11, 10, 0.3), 0.0);
    assert_eq!(binomial_sf(1, 10, 0.0), 0.0);
}

#[test]
fn conditions_parse_every_operator() {
    let cases = [
        ("< 0.05", Comparison::Less, 0.05),
        ("<= 1", Comparison::LessOrEqual, 1.0),
        ("> 0", Comparison::Greater, 0.0),
        (">=0.99", Comparison::GreaterOrEqual, 0.99),
        ("  == 0 ", Comparison::Equal, 0.0),
        ("< -1.5e3", Comparison::Less, -1500.0),
    ];
    for (text, op, threshold) in cases {
        let c: Condition = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!((c.op, c.threshold), (op, threshold), "{text}");
    }
    let c: Condition = "<= 1".parse().expect("valid");
    assert!(c.holds(1.0) && !c.holds(1.5) && !c.holds(f64::NAN));
    assert_eq!(c.to_string(), "<= 1");
    let ge: Condition = ">= 0.99".parse().expect("valid");
    assert_eq!(ge.worst(&[0.995, 0.98, 1.0]), Some(0.98));
}

#[test]
fn conditions_reject_anything_else_with_the_reason() {
    let cases = [
        ("0.05", "does not start with"),
        ("= 0", "does not start with"),
        ("!= 0", "does not start with"),
        ("<", "number is missing"),
        ("< abc", "`abc` is not a number"),
        ("<< 1", "`< 1` is not a number"),
        ("< 1 2", "`1 2` is not a number"),
        ("< NaN", "must be finite"),
        ("", "does not start with"),
    ];
    for (text, reason) in cases {
        let err = text.parse::<Condition>().expect_err(text).to_string();
        assert!(err.contains(reason), "{text:?}: {err}");
        assert!(err.contains("e.g. `< 0.05`"), "{text:?}: {err}");
    }
}

#[test]
fn default_checks_are_error_rate_and_baseline_comparison() {
    let checks = default_checks();
    assert_eq!(checks[0], Check::ErrorRate { max: 0.01 });
    assert_eq!(
        checks[1],
        Check::CompareBaseline {
            metrics: vec![Metric::ErrorRate, Metric::Latency],
            confidence: 0.98
        }
    );
    assert_eq!(checks[0].describe(), "error-rate <= 1%");
}
