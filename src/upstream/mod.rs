//! Upstream groups: the backends of one `upstreams.<name>` entry, a Pingora
//! `LoadBalancer` with the configured selection, and per-backend state that
//! outlives reloads (in-flight counters, health).

pub mod health;
pub mod selection;

use crate::config::model::{Algorithm, Source, UpstreamConfig};
use crate::config::validate::resolve;
use crate::router::Timeouts;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::discovery;
use pingora_load_balancing::selection::{Consistent, FNVHash, Random, RoundRobin};
use pingora_load_balancing::{Backend, Backends, HealthRegistry, LoadBalancer};
use selection::{Counters, LeastConnections, SmoothWeighted};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

/// What `consistent_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client address.
    ClientIp,
    /// A request header's value (missing: client address).
    Header(http::HeaderName),
    /// A cookie's value (missing: client address).
    Cookie(Box<str>),
    /// The normalized path.
    Path,
}

impl HashKey {
    /// Parses `client_ip`, `header:NAME`, `cookie:NAME` or `path`.
    pub fn parse(text: &str) -> Option<HashKey> {
        match text.split_once(':') {
            None if text == "client_ip" => Some(HashKey::ClientIp),
            None if text == "path" => Some(HashKey::Path),
            Some(("header", name)) => http::HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(HashKey::Header),
            Some(("cookie", name)) if !name.is_empty() => Some(HashKey::Cookie(name.into())),
            _ => None,
        }
    }
}

/// A backend as weir sees it: config, a prebuilt peer and live counters.
#[derive(Debug)]
pub struct BackendInfo {
    /// Address traffic goes to.
    pub addr: SocketAddr,
    /// Name for logs and metrics (the address unless named).
    pub label: Arc<str>,
    /// Weight.
    pub weight: u32,
    /// `enabled: false` backends take no traffic.
    pub enabled: bool,
    /// Draining backends take no new requests.
    pub draining: bool,
    /// Where it came from.
    pub source: Source,
    /// Time-to-first-byte histogram.
    pub ttfb: Option<prometheus::Histogram>,
    /// Peer with the upstream's default timeouts.
    pub peer: HttpPeer,
    /// Requests in flight right now (shared across reloads).
    pub in_flight: Arc<AtomicUsize>,
    /// Requests sent.
    pub requests: AtomicU64,
    /// Failed attempts (connect or proxy errors).
    pub failures: AtomicU64,
}

/// The selection algorithms, each over Pingora's `LoadBalancer`.
pub enum Balancer {
    /// Pingora's round robin.
    RoundRobin(LoadBalancer<RoundRobin>),
    /// Smooth weighted round robin.
    Weighted(LoadBalancer<SmoothWeighted>),
    /// Fewest in flight.
    LeastConnections(LoadBalancer<LeastConnections>),
    /// Pingora's random.
    Random(LoadBalancer<Random>),
    /// Pingora's Ketama.
    ConsistentHash(LoadBalancer<Consistent>),
    /// FNV hash of the client address.
    IpHash(LoadBalancer<FNVHash>),
}

macro_rules! each_lb {
    ($self:expr, $lb:ident => $e:expr) => {
        match $self {
            Balancer::RoundRobin($lb) => $e,
            Balancer::Weighted($lb) => $e,
            Balancer::LeastConnections($lb) => $e,
            Balancer::Random($lb) => $e,
            Balancer::ConsistentHash($lb) => $e,
            Balancer::IpHash($lb) => $e,
        }
    };
}

/// Most candidates looked at per selection.
const MAX_ITERATIONS: usize = 256;

impl Balancer {
    /// First backend the algorithm offers that `accept` takes; `accept` gets
    /// the backend and whether it is healthy.
    pub fn select_with(
        &self,
        key: &[u8],
        accept: impl Fn(&Backend, bool) -> bool,
    ) -> Option<Backend> {
        each_lb!(self, lb => lb.select_with(key, MAX_ITERATIONS, accept))
    }

    /// Whether a backend is healthy and enabled.
    pub fn ready(&self, b: &Backend) -> bool {
        each_lb!(self, lb => lb.backends().ready(b))
    }
}

/// Polls a future that is known to be ready at once (static discovery).
fn now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

fn make_lb<S>(
    set: BTreeSet<Backend>,
    registry: &Arc<HealthRegistry>,
    config: Option<S::Config>,
) -> LoadBalancer<S>
where
    S: pingora_load_balancing::selection::BackendSelection + 'static,
    S::Iter: pingora_load_balancing::selection::BackendIter,
{
    let backends =
        Backends::new_with_health_registry(discovery::Static::new(set), registry.clone());
    let lb = LoadBalancer::from_backends_with_config(backends, config);
    // Static discovery never waits and never fails.
    let _ = now(lb.update());
    lb
}

/// One upstream group.
pub struct Group {
    /// Its name in the file.
    pub name: Arc<str>,
    /// The definition it was built from (to reuse it on reload when unchanged).
    pub config: UpstreamConfig,
    /// What consistent_hash hashes.
    pub hash_key: HashKey,
    /// The selector.
    pub balancer: Balancer,
    /// Backends by address (enabled and disabled).
    pub backends: HashMap<SocketAddr, Arc<BackendInfo>>,
    /// Backends in file order.
    pub order: Vec<SocketAddr>,
    /// Shared health state and the configured check.
    pub registry: Arc<HealthRegistry>,
    /// Backend labels the health check logs and counts under.
    pub labels: health::Labels,
    /// Retries counted for this upstream.
    pub retries: Option<prometheus::IntCounter>,
    /// Check schedule, if health checking is on.
    pub health: Option<health::Schedule>,
    /// Host header sent upstream instead of the client's.
    pub host_header: Option<http::HeaderValue>,
    /// The group's timeouts (routes may override).
    pub timeouts: Timeouts,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("name", &self.name).finish()
    }
}

/// Merges optional timeouts over a base.
pub fn merge_timeouts(
    base: Timeouts,
    over: Option<&crate::config::model::TimeoutsConfig>,
) -> Timeouts {
    let Some(o) = over else { return base };
    Timeouts {
        connect: o.connect.map_or(base.connect, |d| d.0),
        read: o.read.map_or(base.read, |d| d.0),
        write: o.write.map_or(base.write, |d| d.0),
        idle: o.idle.map_or(base.idle, |d| d.0),
    }
}

/// Sets a peer's timeouts.
pub fn apply_timeouts(peer: &mut HttpPeer, t: &Timeouts) {
    peer.options.connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer.options.idle_timeout = Some(t.idle);
}

impl Group {
    /// Builds a group from a validated definition. `previous` is the group of
    /// the same name in the running snapshot: its in-flight counters are kept
    /// for addresses that stay, and its health registry when the health check
    /// did not change.
    pub fn build(
        name: &str,
        cfg: &UpstreamConfig,
        previous: Option<&Group>,
    ) -> Result<Group, String> {
        let timeouts = merge_timeouts(Timeouts::default(), cfg.timeouts.as_ref());
        let mut backends = HashMap::new();
        let mut order = Vec::new();
        let mut set = BTreeSet::new();
        for entry in &cfg.backends {
            let b = entry.long();
            let addr = resolve(&b.address)?;
            let in_flight = previous
                .and_then(|p| p.backends.get(&addr))
                .map(|i| i.in_flight.clone())
                .unwrap_or_default();
            let mut peer = HttpPeer::new(addr, false, String::new());
            apply_timeouts(&mut peer, &timeouts);
            let label: Arc<str> = b.name.clone().unwrap_or_else(|| addr.to_string()).into();
            let info = BackendInfo {
                addr,
                ttfb: crate::metrics::ttfb(name, &label),
                label,
                weight: b.weight,
                enabled: b.enabled,
                draining: b.draining,
                source: b.source,
                peer,
                in_flight,
                requests: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            };
            if b.enabled && !b.draining {
                set.insert(Backend {
                    addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(addr),
                    weight: b.weight as usize,
                    ext: Default::default(),
                });
            }
            order.push(addr);
            backends.insert(addr, Arc::new(info));
        }
        let (registry, labels) = match previous {
            Some(p)
                if p.config.health_check == cfg.health_check
                    && p.config.host_header == cfg.host_header =>
            {
                (p.registry.clone(), p.labels.clone())
            }
            _ => {
                let r = Arc::new(HealthRegistry::new());
                let labels = health::Labels::default();
                if let Some(hc) = &cfg.health_check {
                    let check =
                        health::build_check(name, hc, cfg.host_header.as_deref(), labels.clone());
                    r.set_health_check(check);
                }
                (r, labels)
            }
        };
        labels.store(Arc::new(
            backends
                .iter()
                .map(|(a, i)| (*a, i.label.clone()))
                .collect(),
        ));
        let counters: Counters = Arc::new(
            backends
                .iter()
                .map(|(a, i)| (*a, i.in_flight.clone()))
                .collect(),
        );
        let balancer = match cfg.algorithm {
            Algorithm::RoundRobin => Balancer::RoundRobin(make_lb(set, &registry, None)),
            Algorithm::Weighted => Balancer::Weighted(make_lb(set, &registry, None)),
            Algorithm::LeastConnections => {
                Balancer::LeastConnections(make_lb(set, &registry, Some(counters)))
            }
            Algorithm::Random => Balancer::Random(make_lb(set, &registry, None)),
            Algorithm::ConsistentHash => Balancer::ConsistentHash(make_lb(set, &registry, None)),
            Algorithm::IpHash => Balancer::IpHash(make_lb(set, &registry, None)),
        };
        let hash_key = cfg
            .hash_key
            .as_deref()
            .and_then(HashKey::parse)
            .unwrap_or(HashKey::ClientIp);
        let host_header = match &cfg.host_header {
            Some(h) => Some(
                http::HeaderValue::from_str(h).map_err(|_| format!("invalid host_header {h:?}"))?,
            ),
            None => None,
        };
        Ok(Group {
            name: name.into(),
            config: cfg.clone(),
            hash_key,
            balancer,
            backends,
            order,
            registry,
            labels,
            retries: crate::metrics::retries(name),
            health: cfg.health_check.as_ref().map(health::Schedule::new),
            host_header,
            timeouts,
        })
    }

    /// Whether the algorithm hashes a key (consistent_hash, ip_hash); the
    /// others ignore it, so it is not computed for them.
    pub fn uses_key(&self) -> bool {
        matches!(
            self.balancer,
            Balancer::ConsistentHash(_) | Balancer::IpHash(_)
        )
    }

    /// Whether a backend takes traffic: enabled, not draining, healthy.
    pub fn is_up(&self, addr: SocketAddr) -> bool {
        self.backends
            .get(&addr)
            .is_some_and(|b| b.enabled && !b.draining)
            && self.is_healthy(addr)
    }

    /// Whether a backend in the selection set passes its health checks.
    pub fn is_healthy(&self, addr: SocketAddr) -> bool {
        self.balancer.ready(&Backend {
            addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(addr),
            weight: self.backends.get(&addr).map_or(1, |b| b.weight as usize),
            ext: Default::default(),
        })
    }
}
