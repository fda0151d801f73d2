//! Log-linear latency histogram: 16 linear sub-buckets per power of two of
//! microseconds, so any recorded latency from 32 µs to 67 s is represented
//! within [`RELATIVE_ERROR`] (below 32 µs buckets are exact microseconds).
//! The atomic form is written on the hot path; [`LatencyHistogram`] is the
//! plain snapshot that callers merge and query.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::ser::{SerializeSeq, Serializer};

/// log2 of the number of linear sub-buckets per octave.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Highest octave kept apart; anything at or above 2^26 µs (≈67 s) lands in the last bucket.
const MAX_OCTAVE: u32 = 25;
/// Number of buckets: exact values below 2·SUB, then SUB per octave up to `MAX_OCTAVE`.
pub const BUCKETS: usize = ((MAX_OCTAVE - SUB_BITS) as usize + 1) * SUB as usize + SUB as usize;
/// Worst-case relative error of a quantile read from the histogram (half a bucket's width).
pub const RELATIVE_ERROR: f64 = 1.0 / (2 * SUB) as f64;

/// Bucket index of a latency in microseconds.
pub fn bucket_of(micros: u64) -> usize {
    if micros < 2 * SUB {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros();
    if octave > MAX_OCTAVE {
        return BUCKETS - 1;
    }
    let shift = octave - SUB_BITS;
    (shift as u64 * SUB + (micros >> shift)) as usize
}

/// Inclusive lower and exclusive upper bound of a bucket, in microseconds.
pub fn bucket_bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < 2 * SUB {
        return (index, index + 1);
    }
    let shift = index / SUB - 1;
    let mantissa = index - shift * SUB;
    (mantissa << shift, (mantissa + 1) << shift)
}

/// Midpoint of a bucket: the value a quantile falling in it reports.
fn bucket_value(index: usize) -> u64 {
    let (low, high) = bucket_bounds(index);
    if high - low == 1 {
        low
    } else {
        (low + high) / 2
    }
}

/// Histogram written concurrently with relaxed atomics (one increment per sample).
pub(crate) struct AtomicHistogram {
    counts: Box<[AtomicU32]>,
}

impl AtomicHistogram {
    pub(crate) fn new() -> Self {
        AtomicHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    pub(crate) fn record(&self, micros: u64) {
        self.counts[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn clear(&self) {
        for count in self.counts.iter() {
            count.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_to(&self, into: &mut LatencyHistogram) {
        for (total, count) in into.counts.iter_mut().zip(self.counts.iter()) {
            *total += u64::from(count.load(Ordering::Relaxed));
        }
    }
}

/// A snapshot of request latencies; serializes as `[[upper_bound_us, count], ...]` over non-empty buckets.
#[derive(Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LatencyHistogram(count={})", self.count())
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample (used by tests and by callers building their own histograms).
    pub fn record(&mut self, latency: Duration) {
        self.counts[bucket_of(micros(latency))] += 1;
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another histogram's samples to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (total, count) in self.counts.iter_mut().zip(&other.counts) {
            *total += count;
        }
    }

    /// The q-quantile (0.0..=1.0): the sample of rank ⌈q·n⌉ (at least 1), within
    /// [`RELATIVE_ERROR`]; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_micros(bucket_value(index)));
            }
        }
        None
    }
}

/// Whole microseconds of a duration, saturating.
pub(crate) fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)
}

impl serde::Serialize for LatencyHistogram {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let non_empty = self.counts.iter().filter(|c| **c > 0).count();
        let mut seq = serializer.serialize_seq(Some(non_empty))?;
        for (index, count) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            seq.serialize_element(&(bucket_bounds(index).1, count))?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_the_range() {
        let mut expected_low = 0;
        for index in 0..BUCKETS {
            let (low, high) = bucket_bounds(index);
            assert_eq!(low, expected_low, "bucket {index}");
            assert_eq!(bucket_of(low), index);
            assert_eq!(bucket_of(high - 1), index);
            expected_low = high;
        }
        assert!(expected_low >= 60_000_000, "covers 60 s");
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn bucket_midpoints_are_within_the_stated_error() {
        for index in (2 * SUB as usize)..BUCKETS {
            let (low, high) = bucket_bounds(index);
            let mid = bucket_value(index) as f64;
            for v in [low, high - 1] {
                assert!(
                    (mid - v as f64).abs() / v as f64 <= RELATIVE_ERROR,
                    "bucket {index}"
                );
            }
        }
    }
}
