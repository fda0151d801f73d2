//! Per-release traffic metrics, cheap on the hot path: a request costs a few
//! relaxed atomic increments. Each release keeps a ring of per-second buckets
//! covering the last [`WINDOW_SECONDS`] (requests, status classes, latency
//! histogram; allocated on first use) and cumulative counters for Prometheus.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::histogram::{self, AtomicHistogram, LatencyHistogram};

/// How many seconds of per-second buckets each release keeps (15 minutes).
pub const WINDOW_SECONDS: u64 = 900;

/// Upper bounds (seconds) of the Prometheus histogram buckets, counted exactly.
pub(crate) const PROMETHEUS_BOUNDS_MICROS: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 60_000_000,
];

/// Identity of a release's traffic: the labels of its metrics.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseKey {
    /// Service name.
    pub service: String,
    /// Environment name.
    pub env: String,
    /// Release identifier.
    pub release: String,
}

/// One second of one release's traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SecondStats {
    /// The second (Unix time) these counts belong to.
    pub unix_s: u64,
    /// Responses sent (including the proxy's own 502/503 for this release).
    pub requests: u64,
    /// Responses by status class: index 0 = 1xx, ..., 4 = 5xx.
    pub status_classes: [u64; 5],
    /// Attempts that could not reach one of the release's instances and were
    /// retried elsewhere (not counted in `requests` unless the retry also failed here).
    pub connect_failures: u64,
    /// Latency from request arrival to the response head.
    pub latency: LatencyHistogram,
}

/// A release's traffic over a time range, as analysis reads it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Responses sent.
    pub requests: u64,
    /// Responses with a 5xx status.
    pub errors_5xx: u64,
    /// Attempts that could not reach an instance and were retried elsewhere.
    pub connect_failures: u64,
    /// `errors_5xx / requests` (0 when there were no requests).
    pub error_rate: f64,
    /// Median latency to the response head; `None` when there were no requests.
    #[serde(serialize_with = "millis")]
    pub p50: Option<Duration>,
    /// 95th percentile latency; `None` when there were no requests.
    #[serde(serialize_with = "millis")]
    pub p95: Option<Duration>,
    /// 99th percentile latency; `None` when there were no requests.
    #[serde(serialize_with = "millis")]
    pub p99: Option<Duration>,
}

fn millis<S: serde::Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
        None => s.serialize_none(),
    }
}

/// One slot of the ring; `second` tells which second its counts belong to.
struct SecondSlot {
    second: AtomicU64,
    requests: AtomicU64,
    status_classes: [AtomicU64; 5],
    connect_failures: AtomicU64,
    latency: AtomicHistogram,
}

/// All counters of one release. Routes hold an `Arc` of it so that recording
/// never looks anything up.
pub(crate) struct ReleaseMetrics {
    pub(crate) key: ReleaseKey,
    slots: Box<[OnceLock<Box<SecondSlot>>]>,
    /// Serializes the rare reset of a slot for a new second.
    rotate: Mutex<()>,
    /// Cumulative responses by status code 100..=599 (index = code - 100).
    pub(crate) by_code: Box<[AtomicU64]>,
    /// Cumulative responses per Prometheus bucket (non-cumulative here; the last is +Inf).
    pub(crate) prometheus_buckets: [AtomicU64; PROMETHEUS_BOUNDS_MICROS.len() + 1],
    pub(crate) latency_sum_micros: AtomicU64,
    last_second: AtomicU64,
}

fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ReleaseMetrics {
    fn new(key: ReleaseKey) -> Self {
        ReleaseMetrics {
            key,
            slots: (0..WINDOW_SECONDS).map(|_| OnceLock::new()).collect(),
            rotate: Mutex::new(()),
            by_code: (100..600).map(|_| AtomicU64::new(0)).collect(),
            prometheus_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_micros: AtomicU64::new(0),
            last_second: AtomicU64::new(0),
        }
    }

    /// Records one response: its status code and latency to the response head.
    pub(crate) fn record(&self, status: u16, latency: Duration) {
        let now = now_unix_s();
        let micros = histogram::micros(latency);
        let class = usize::from(status.clamp(100, 599) / 100 - 1);
        let slot = self.slot_for(now);
        slot.requests.fetch_add(1, Ordering::Relaxed);
        slot.status_classes[class].fetch_add(1, Ordering::Relaxed);
        slot.latency.record(micros);
        self.by_code[usize::from(status.clamp(100, 599) - 100)].fetch_add(1, Ordering::Relaxed);
        let bucket = PROMETHEUS_BOUNDS_MICROS.partition_point(|bound| *bound < micros);
        self.prometheus_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
        if self.last_second.load(Ordering::Relaxed) != now {
            self.last_second.store(now, Ordering::Relaxed);
        }
    }

    /// Counts an attempt that could not reach an instance and was retried.
    pub(crate) fn record_connect_failure(&self) {
        let now = now_unix_s();
        self.slot_for(now)
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
        self.last_second.store(now, Ordering::Relaxed);
    }

    /// The slot for `second`, reset first if it still holds an older second.
    fn slot_for(&self, second: u64) -> &SecondSlot {
        let slot = self.slots[(second % WINDOW_SECONDS) as usize].get_or_init(|| {
            Box::new(SecondSlot {
                second: AtomicU64::new(second),
                requests: AtomicU64::new(0),
                status_classes: std::array::from_fn(|_| AtomicU64::new(0)),
                connect_failures: AtomicU64::new(0),
                latency: AtomicHistogram::new(),
            })
        });
        if slot.second.load(Ordering::Acquire) != second {
            // Once per second per release: zero the counters, then publish the
            // new second, so a recorder that sees the new second counts into zeroed slots.
            let _guard = self
                .rotate
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if slot.second.load(Ordering::Acquire) < second {
                slot.requests.store(0, Ordering::Relaxed);
                for class in &slot.status_classes {
                    class.store(0, Ordering::Relaxed);
                }
                slot.connect_failures.store(0, Ordering::Relaxed);
                slot.latency.clear();
                slot.second.store(second, Ordering::Release);
            }
        }
        slot
    }

    /// The counts of one second, if the ring still holds it.
    fn second(&self, second: u64) -> Option<SecondStats> {
        let slot = self.slots[(second % WINDOW_SECONDS) as usize].get()?;
        if slot.second.load(Ordering::Acquire) != second {
            return None;
        }
        let mut stats = SecondStats {
            unix_s: second,
            requests: slot.requests.load(Ordering::Relaxed),
            status_classes: std::array::from_fn(|i| slot.status_classes[i].load(Ordering::Relaxed)),
            connect_failures: slot.connect_failures.load(Ordering::Relaxed),
            latency: LatencyHistogram::new(),
        };
        slot.latency.add_to(&mut stats.latency);
        // A reset that raced with this read means the second is gone.
        (slot.second.load(Ordering::Acquire) == second).then_some(stats)
    }
}

/// Cheap `Clone` handle to the metrics of every release the proxy has routed to.
#[derive(Clone, Default)]
pub struct ProxyMetrics {
    pub(crate) releases: Arc<RwLock<HashMap<ReleaseKey, Arc<ReleaseMetrics>>>>,
    /// Requests whose Host matched no route.
    pub(crate) unrouted: Arc<AtomicU64>,
}

impl ProxyMetrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters of a release, created on first use (called when a route is set).
    pub(crate) fn release(&self, key: &ReleaseKey) -> Arc<ReleaseMetrics> {
        if let Some(found) = self.read().get(key) {
            return found.clone();
        }
        let mut releases = self.releases.write().unwrap_or_else(|p| p.into_inner());
        releases
            .entry(key.clone())
            .or_insert_with(|| Arc::new(ReleaseMetrics::new(key.clone())))
            .clone()
    }

    /// Forgets releases no route refers to any more and that served nothing in the window.
    pub(crate) fn prune(&self) {
        let now = now_unix_s();
        let mut releases = self.releases.write().unwrap_or_else(|p| p.into_inner());
        releases.retain(|_, metrics| {
            Arc::strong_count(metrics) > 1
                || metrics.last_second.load(Ordering::Relaxed) + WINDOW_SECONDS > now
        });
    }

    pub(crate) fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<ReleaseKey, Arc<ReleaseMetrics>>> {
        self.releases.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Per-second stats of `release` (summed over services/envs that share the
    /// name) for every second in `[from_unix_s, to_unix_s)` still in the window,
    /// oldest first, zeros where nothing happened.
    pub fn seconds(&self, release: &str, from_unix_s: u64, to_unix_s: u64) -> Vec<SecondStats> {
        let matching: Vec<Arc<ReleaseMetrics>> = self
            .read()
            .values()
            .filter(|m| m.key.release == release)
            .cloned()
            .collect();
        let now = now_unix_s();
        let from = from_unix_s.max((now + 1).saturating_sub(WINDOW_SECONDS));
        let to = to_unix_s.min(now + 1);
        (from..to)
            .map(|second| {
                let mut total = SecondStats {
                    unix_s: second,
                    ..SecondStats::default()
                };
                for metrics in &matching {
                    if let Some(stats) = metrics.second(second) {
                        total.requests += stats.requests;
                        for (sum, n) in total.status_classes.iter_mut().zip(stats.status_classes) {
                            *sum += n;
                        }
                        total.connect_failures += stats.connect_failures;
                        total.latency.merge(&stats.latency);
                    }
                }
                total
            })
            .collect()
    }

    /// Totals, 5xx rate and latency quantiles of `release` over `[from_unix_s, to_unix_s)`.
    pub fn summary(&self, release: &str, from_unix_s: u64, to_unix_s: u64) -> Summary {
        let mut latency = LatencyHistogram::new();
        let mut summary = Summary::default();
        for second in self.seconds(release, from_unix_s, to_unix_s) {
            summary.requests += second.requests;
            summary.errors_5xx += second.status_classes[4];
            summary.connect_failures += second.connect_failures;
            latency.merge(&second.latency);
        }
        if summary.requests > 0 {
            summary.error_rate = summary.errors_5xx as f64 / summary.requests as f64;
        }
        summary.p50 = latency.quantile(0.50);
        summary.p95 = latency.quantile(0.95);
        summary.p99 = latency.quantile(0.99);
        summary
    }

    /// Requests answered 404 because their Host matched no route.
    pub fn unrouted_requests(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed)
    }

    /// Writes every release's counters in the Prometheus text format (see `prometheus.rs`).
    pub fn render_prometheus(&self, out: &mut String) {
        super::prometheus::render(self, out);
    }
}
