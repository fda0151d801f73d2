//! The routing table: Host → route, swapped atomically, and the per-request
//! choice of release (smooth weighted round robin over a precomputed
//! schedule, indexed by a per-route atomic counter) and instance (round robin).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use hyper::header::HeaderValue;
use hyper::http::uri::Authority;

use super::metrics::{ProxyMetrics, ReleaseKey, ReleaseMetrics};

/// Where one Host's traffic goes: the releases (usually stable and canary) and their weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Releases receiving traffic; weights should sum to 100.
    pub backends: Vec<Backend>,
}

/// One release behind a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Service name (metrics label).
    pub service: String,
    /// Environment name (metrics label).
    pub env: String,
    /// Release identifier: metrics key and the `x-pave-release` response header.
    pub release: String,
    /// Share of requests, 0..=100 (a weight of 0 receives no traffic).
    pub weight: u32,
    /// The release's instances, chosen round robin.
    pub instances: Vec<SocketAddr>,
}

/// Why a route is not well formed (see [`Route::validate`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// A weight above 100.
    #[error("release {release}: weight {weight} is above 100")]
    WeightAbove100 { release: String, weight: u32 },
    /// Weights that do not add up to 100.
    #[error("weights add up to {0}, not 100")]
    WeightsNot100(u32),
    /// A release with traffic but nowhere to send it.
    #[error("release {0} has weight but no instances")]
    NoInstances(String),
}

impl Route {
    /// Checks the contract the controller should keep: weights 0..=100 adding up
    /// to 100, and instances for every weighted release. The proxy still
    /// serves a route that breaks it (weights above 100 count as 100; traffic
    /// is split by the weights' actual proportions; no weight at all is a 503).
    pub fn validate(&self) -> Result<(), RouteError> {
        for backend in &self.backends {
            if backend.weight > 100 {
                return Err(RouteError::WeightAbove100 {
                    release: backend.release.clone(),
                    weight: backend.weight,
                });
            }
            if backend.weight > 0 && backend.instances.is_empty() {
                return Err(RouteError::NoInstances(backend.release.clone()));
            }
        }
        let total: u32 = self.backends.iter().map(|b| b.weight).sum();
        if total != 100 {
            return Err(RouteError::WeightsNot100(total));
        }
        Ok(())
    }
}

/// A backend ready for the hot path: parsed authorities, its metrics, its counter.
pub(crate) struct LiveBackend {
    pub(crate) release: String,
    pub(crate) weight: u32,
    pub(crate) instances: Vec<Authority>,
    pub(crate) release_header: HeaderValue,
    pub(crate) metrics: Arc<ReleaseMetrics>,
    next_instance: AtomicUsize,
}

impl LiveBackend {
    /// Index of the instance to try first (round robin); the caller walks on from it on failure.
    pub(crate) fn first_instance(&self) -> usize {
        self.next_instance.fetch_add(1, Ordering::Relaxed) % self.instances.len().max(1)
    }
}

/// A route compiled for forwarding; replaced whole on every `set`.
pub(crate) struct LiveRoute {
    pub(crate) spec: Route,
    pub(crate) backends: Vec<LiveBackend>,
    /// Backend indices in smooth-WRR order; one period is the sum of the weights.
    schedule: Vec<usize>,
    next_slot: AtomicU64,
    /// Per backend: the other backends with weight, tried when all its instances refuse.
    fallbacks: Vec<Vec<usize>>,
    /// Per backend: how many attempts a request chosen for it may make.
    attempts: Vec<usize>,
}

impl LiveRoute {
    fn new(spec: Route, metrics: &ProxyMetrics) -> Self {
        let backends: Vec<LiveBackend> = spec
            .backends
            .iter()
            .map(|b| LiveBackend {
                release: b.release.clone(),
                weight: b.weight.min(100),
                // SocketAddr always renders as a valid authority.
                instances: b
                    .instances
                    .iter()
                    .filter_map(|a| Authority::try_from(a.to_string()).ok())
                    .collect(),
                release_header: HeaderValue::from_str(&b.release)
                    .unwrap_or_else(|_| HeaderValue::from_static("invalid-release-name")),
                metrics: metrics.release(&ReleaseKey {
                    service: b.service.clone(),
                    env: b.env.clone(),
                    release: b.release.clone(),
                }),
                next_instance: AtomicUsize::new(0),
            })
            .collect();
        let schedule = smooth_schedule(&backends.iter().map(|b| b.weight).collect::<Vec<_>>());
        let fallbacks: Vec<Vec<usize>> = (0..backends.len())
            .map(|chosen| {
                (0..backends.len())
                    .filter(|i| *i != chosen && backends[*i].weight > 0)
                    .collect()
            })
            .collect();
        let attempts = (0..backends.len())
            .map(|chosen| {
                backends[chosen].instances.len()
                    + fallbacks[chosen]
                        .iter()
                        .map(|i| backends[*i].instances.len())
                        .sum::<usize>()
            })
            .collect();
        LiveRoute {
            spec,
            backends,
            schedule,
            next_slot: AtomicU64::new(0),
            fallbacks,
            attempts,
        }
    }

    /// The backends a request chosen for `chosen` may try, in order.
    pub(crate) fn try_order(&self, chosen: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(chosen).chain(self.fallbacks[chosen].iter().copied())
    }

    /// How many instances a request chosen for `chosen` may try in all.
    pub(crate) fn attempts_from(&self, chosen: usize) -> usize {
        self.attempts[chosen]
    }

    /// The backend for the next request, or `None` when no backend has weight.
    pub(crate) fn choose(&self) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.schedule.len() as u64;
        Some(self.schedule[slot as usize])
    }
}

/// nginx's smooth weighted round robin unrolled over one period: each backend
/// appears `weight` times, spread out (20/80 → a b b b b a b b b b ...).
fn smooth_schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += i64::from(*w);
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .unwrap_or((0, &0));
        current[best] -= total;
        schedule.push(best);
    }
    schedule
}

/// FNV-1a: hosts are short and the keys are set by the controller, not by
/// clients, so a fast unkeyed hash is safe here and cheaper than SipHash.
#[derive(Default)]
struct HostHasher(u64);

impl std::hash::Hasher for HostHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type HostMap = HashMap<String, Arc<LiveRoute>, std::hash::BuildHasherDefault<HostHasher>>;

/// Cheap `Clone` handle to the Host → route map shared with the proxy.
#[derive(Clone)]
pub struct RouteTable {
    routes: Arc<RwLock<HostMap>>,
    metrics: ProxyMetrics,
}

impl RouteTable {
    /// An empty table whose routes record into `metrics`.
    pub fn new(metrics: ProxyMetrics) -> Self {
        RouteTable {
            routes: Arc::default(),
            metrics,
        }
    }

    /// Routes `host` (case-insensitive, without port) to `route`, replacing any
    /// previous route at once: a request uses either the old route or the new one.
    pub fn set(&self, host: &str, route: Route) {
        let live = Arc::new(LiveRoute::new(route, &self.metrics));
        let old = self.write().insert(normalize_host(host).into_owned(), live);
        drop(old);
        self.metrics.prune();
    }

    /// Stops routing `host`; its requests then get 404. In-flight requests finish.
    pub fn remove(&self, host: &str) {
        let old = self.write().remove(normalize_host(host).as_ref());
        drop(old);
        self.metrics.prune();
    }

    /// The route currently set for `host`.
    pub fn get(&self, host: &str) -> Option<Route> {
        self.lookup(host).map(|live| live.spec.clone())
    }

    /// Every routed host, sorted.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.read().keys().cloned().collect();
        hosts.sort();
        hosts
    }

    /// The compiled route for a request's Host (any case, port allowed).
    pub(crate) fn lookup(&self, host: &str) -> Option<Arc<LiveRoute>> {
        self.read().get(normalize_host(host).as_ref()).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HostMap> {
        self.routes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HostMap> {
        self.routes.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Lowercase host without port or trailing dot; borrows when already normal.
pub(crate) fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = match host.rsplit_once(':') {
        Some((name, port))
            if !name.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && !name.ends_with(':') =>
        {
            name
        }
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_interleaves_by_weight() {
        let schedule = smooth_schedule(&[20, 80]);
        assert_eq!(schedule.len(), 100);
        assert_eq!(schedule.iter().filter(|i| **i == 0).count(), 20);
        // Spread out: never more than 4 of the heavy backend in a row.
        assert!(schedule.windows(5).all(|w| w.contains(&0)));
        assert_eq!(smooth_schedule(&[0, 100]), vec![1; 100]);
        assert!(smooth_schedule(&[0, 0]).is_empty());
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(
            normalize_host("Api.Prod.LOCALHOST:7412"),
            "api.prod.localhost"
        );
        assert_eq!(normalize_host("api.prod.localhost."), "api.prod.localhost");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("::1"), "::1");
    }

    #[test]
    fn validation_names_the_problem() {
        let backend = |release: &str, weight, instances: Vec<SocketAddr>| Backend {
            service: "api".into(),
            env: "prod".into(),
            release: release.into(),
            weight,
            instances,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let ok = Route {
            backends: vec![backend("a", 20, vec![addr]), backend("b", 80, vec![addr])],
        };
        assert_eq!(ok.validate(), Ok(()));
        let short = Route {
            backends: vec![backend("a", 20, vec![addr])],
        };
        assert_eq!(short.validate(), Err(RouteError::WeightsNot100(20)));
        let empty = Route {
            backends: vec![backend("a", 100, vec![])],
        };
        assert_eq!(empty.validate(), Err(RouteError::NoInstances("a".into())));
    }
}
