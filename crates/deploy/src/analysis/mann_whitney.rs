//! The Mann-Whitney U test, one-sided: "are the canary's values larger than
//! the baseline's?" (larger = worse for error rates and latencies).
//!
//! Ranks use average ranks for ties; the variance is tie-corrected; the
//! p-value comes from the normal approximation with continuity correction
//! (what `scipy.stats.mannwhitneyu(x, y, alternative="greater",
//! method="asymptotic")` computes). The approximation is poor for very small
//! samples, so callers must not judge on fewer than
//! [`MIN_SAMPLES`] values per side.

use super::stats::normal_sf;

/// The fewest values per side the judge accepts before the test may fail a
/// canary; below it a comparison stays Running (or Inconclusive at the end).
pub const MIN_SAMPLES: usize = 5;

/// The result of one test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample (the canary): how many (canary, baseline) pairs
    /// have the canary larger, ties counting one half.
    pub u: f64,
    /// The standardized statistic after continuity correction.
    pub z: f64,
    /// P(U >= u) if both samples came from the same distribution.
    pub p_value: f64,
}

/// Tests whether `canary` tends to be larger than `baseline`. `None` when a
/// side is empty or holds a non-finite value.
pub fn canary_greater(canary: &[f64], baseline: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (canary.len(), baseline.len());
    if n1 == 0 || n2 == 0 || canary.iter().chain(baseline).any(|v| !v.is_finite()) {
        return None;
    }
    // Pool both samples, remembering which side each value came from.
    let mut pooled: Vec<(f64, bool)> = canary
        .iter()
        .map(|&v| (v, true))
        .chain(baseline.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));

    let n = pooled.len();
    let mut canary_rank_sum = 0.0;
    let mut tie_term = 0.0; // sum over tie groups of t^3 - t
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && pooled[end].0 == pooled[start].0 {
            end += 1;
        }
        // Ranks start..end (0-based) share their average, 1-based.
        let average_rank = (start + end + 1) as f64 / 2.0;
        let in_canary = pooled[start..end].iter().filter(|(_, c)| *c).count();
        canary_rank_sum += average_rank * in_canary as f64;
        let t = (end - start) as f64;
        tie_term += t * t * t - t;
        start = end;
    }

    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = canary_rank_sum - n1f * (n1f + 1.0) / 2.0;
    let mean = n1f * n2f / 2.0;
    let variance = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    if variance <= 0.0 {
        // Every value is the same: no evidence either way.
        return Some(MannWhitney {
            u,
            z: 0.0,
            p_value: 1.0,
        });
    }
    let z = (u - mean - 0.5) / variance.sqrt();
    Some(MannWhitney {
        u,
        z,
        p_value: normal_sf(z),
    })
}
