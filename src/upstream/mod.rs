//! Upstream groups: the backends of one `upstreams.<name>` entry, a Pingora
//! `LoadBalancer` with the configured selection, and per-backend state that
//! outlives reloads (in-flight counters, health).

pub mod balancer;
pub mod breaker;
pub mod health;
mod pick;
pub mod retry_budget;
pub mod selection;
pub mod sticky;
pub mod window;

pub use balancer::Balancer;

use crate::config::model::{Algorithm, Source, UpstreamConfig};
pub use crate::values::HashKey;
use crate::values::Timeouts;
pub use breaker::{Admit, BreakerSpec, BreakerState, Circuit};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::{Backend, HealthRegistry};
use selection::Counters;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// A backend as compiled from the file (or the admin overlay, or DNS).
#[derive(Debug, Clone)]
pub struct BackendSpec {
    /// Resolved address.
    pub addr: SocketAddr,
    /// Name for logs and metrics.
    pub label: Arc<str>,
    /// Weight, 1..=1000.
    pub weight: u32,
    /// `enabled: false` backends take no traffic.
    pub enabled: bool,
    /// Draining backends take no new requests.
    pub draining: bool,
    /// Where it came from.
    pub source: Source,
}

/// Everything needed to build a [`Group`], already checked.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// Its name in the file.
    pub name: Arc<str>,
    /// The definition (kept to reuse the group when it is unchanged).
    pub config: UpstreamConfig,
    /// What consistent_hash hashes.
    pub hash_key: HashKey,
    /// The backends in file order.
    pub backends: Vec<BackendSpec>,
    /// Timeouts towards the backends.
    pub timeouts: Timeouts,
    /// Host header sent instead of the client's.
    pub host_header: Option<http::HeaderValue>,
    /// Circuit breaker limits.
    pub breaker: Option<BreakerSpec>,
    /// Cookie name and value key for session affinity.
    pub sticky: Option<sticky::StickySpec>,
    /// Backends not in the previous group wait for one passing health check.
    pub probation: bool,
    /// TLS towards the backends.
    pub tls: Option<TlsSpec>,
    /// HTTP/1.1, h2 (over TLS) or h2c.
    pub protocol: crate::config::model::UpstreamProtocol,
    /// Panic below this share (0..=1) of backends in service; 0: never.
    pub panic_threshold: f64,
    /// Slow-start ramp of a backend entering service.
    pub slow_start: Option<std::time::Duration>,
    /// Retry budget.
    pub retry_budget: Option<retry_budget::BudgetSpec>,
    /// Built after start-up: backends new to the group are entering service.
    pub later: bool,
}

/// TLS towards an upstream's backends, checked at compile time.
#[derive(Debug, Clone)]
pub struct TlsSpec {
    /// Server name sent and verified (empty: the backend's IP).
    pub sni: String,
    /// Verify the certificate chain and name.
    pub verify: bool,
    /// CAs to trust instead of the system's (DER).
    pub ca: Option<Vec<Vec<u8>>>,
}

/// Concurrent streams weir opens on one h2 connection to a backend.
pub const H2_STREAMS: usize = 128;

/// A peer for `addr` speaking the group's protocol and TLS.
fn make_peer(addr: SocketAddr, spec: &GroupSpec) -> HttpPeer {
    use crate::config::model::UpstreamProtocol;
    use pingora_core::protocols::ALPN;
    let mut peer = match &spec.tls {
        Some(t) => {
            let sni = if t.sni.is_empty() {
                addr.ip().to_string()
            } else {
                t.sni.clone()
            };
            let mut p = HttpPeer::new(addr, true, sni);
            p.options.verify_cert = t.verify;
            p.options.verify_hostname = t.verify;
            if let Some(ders) = &t.ca {
                let certs: Vec<pingora_core::utils::tls::WrappedX509> = ders
                    .iter()
                    .map(|d| {
                        pingora_core::utils::tls::WrappedX509::new(
                            d.clone(),
                            pingora_core::utils::tls::parse_x509,
                        )
                    })
                    .collect();
                p.options.ca = Some(Arc::from(certs.into_boxed_slice()));
            }
            p
        }
        None => HttpPeer::new(addr, false, String::new()),
    };
    match spec.protocol {
        UpstreamProtocol::Http1 => {}
        UpstreamProtocol::H2 | UpstreamProtocol::H2c => {
            peer.options.alpn = ALPN::H2;
            peer.options.max_h2_streams = H2_STREAMS;
        }
    }
    peer
}

/// Per-backend state that outlives group rebuilds (reloads, admin and DNS
/// changes), keyed by address.
#[derive(Debug, Default)]
pub struct Shared {
    /// Requests in flight right now.
    pub in_flight: Arc<AtomicUsize>,
    /// The circuit breaker's state.
    pub breaker: BreakerState,
    /// Added after start: takes no traffic until a health check passes.
    pub probation: AtomicBool,
    /// Recent requests, errors and latency, for the status page.
    pub window: window::Window,
    /// Peak-EWMA latency (`peak_ewma` reads it).
    pub latency: selection::peak_ewma::Ewma,
    /// When it last entered service (slow start).
    pub entered: selection::slow_start::Entered,
}

impl Shared {
    /// The backend enters service (UP again, circuit closed, added): slow
    /// start ramps its share from now.
    pub fn enter_service(&self) {
        self.entered.now();
    }
}

/// A backend as weir sees it: config, a prebuilt peer and live counters.
#[derive(Debug)]
pub struct BackendInfo {
    /// Address traffic goes to.
    pub addr: SocketAddr,
    /// `addr` as text, for the access log (formatted once, not per request).
    pub addr_text: Box<str>,
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
    /// State kept across reloads (in flight, circuit, probation).
    pub shared: Arc<Shared>,
    /// The opaque sticky-cookie value that names this backend.
    pub sticky_value: http::HeaderValue,
    /// Requests sent.
    pub requests: AtomicU64,
    /// Failed attempts (connect or proxy errors).
    pub failures: AtomicU64,
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
    /// The one backend that takes traffic, when there is exactly one: every
    /// algorithm would pick it, so [`Group::pick`] skips the balancer (as
    /// nginx does for a single-server upstream; Pingora's `select_with`
    /// builds a hash set per call).
    pub single: Option<(Backend, Arc<BackendInfo>)>,
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
    /// Circuit breaker limits, if configured.
    pub breaker: Option<BreakerSpec>,
    /// Sticky cookie name and the backend each value names.
    pub sticky: Option<sticky::Sticky>,
    /// Whether selection must look at per-backend state (breaker, probation).
    gated: bool,
    /// Panic mode, when `panic_threshold` is above 0%.
    pub panic: Option<selection::panic::Panic>,
    /// Slow-start ramp, when set and the algorithm walks candidates.
    pub slow_start: Option<std::time::Duration>,
    /// Retry budget, if configured.
    pub budget: Option<retry_budget::Budget>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("name", &self.name).finish()
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
    /// Builds a group from a checked spec. `previous` is the group of the
    /// same name in the running snapshot: per-backend state is kept for
    /// addresses that stay, and its health registry when the health check
    /// did not change.
    pub fn build(spec: GroupSpec, previous: Option<&Group>) -> Group {
        let name: &str = &spec.name;
        let mut backends = HashMap::new();
        let mut order = Vec::new();
        let mut set = BTreeSet::new();
        for b in &spec.backends {
            let addr = b.addr;
            let shared = match previous.and_then(|p| p.backends.get(&addr)) {
                Some(i) => {
                    if spec.config.health_check.is_none() {
                        // No check will ever end it: without one a backend is UP.
                        i.shared.probation.store(false, Relaxed);
                    }
                    i.shared.clone()
                }
                None => {
                    let s = Shared::default();
                    s.probation.store(spec.probation, Relaxed);
                    if spec.later {
                        s.enter_service();
                    }
                    Arc::new(s)
                }
            };
            let mut peer = make_peer(addr, &spec);
            apply_timeouts(&mut peer, &spec.timeouts);
            let info = BackendInfo {
                addr,
                addr_text: addr.to_string().into(),
                ttfb: crate::metrics::ttfb(name, &b.label),
                label: b.label.clone(),
                weight: b.weight,
                enabled: b.enabled,
                draining: b.draining,
                source: b.source,
                peer,
                sticky_value: sticky::value_for(spec.sticky.as_ref(), name, addr),
                shared,
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
        let cfg = &spec.config;
        let (registry, labels) = match previous {
            Some(p)
                if p.config.health_check == cfg.health_check
                    && p.config.host_header == cfg.host_header
                    && p.config.tls == cfg.tls
                    && p.config.send_proxy_protocol == cfg.send_proxy_protocol =>
            {
                (p.registry.clone(), p.labels.clone())
            }
            _ => {
                let r = Arc::new(HealthRegistry::new());
                let labels = health::Labels::default();
                if let Some(hc) = &cfg.health_check {
                    let check = health::build_check(
                        name,
                        hc,
                        cfg.host_header.as_deref(),
                        spec.tls.as_ref(),
                        cfg.send_proxy_protocol,
                        labels.clone(),
                    );
                    r.set_health_check(check);
                }
                (r, labels)
            }
        };
        labels.store(Arc::new(
            backends
                .iter()
                .map(|(a, i)| (*a, (i.label.clone(), i.shared.clone())))
                .collect(),
        ));
        let counters: Counters = Arc::new(
            backends
                .iter()
                .map(|(a, i)| (*a, i.shared.clone()))
                .collect(),
        );
        let single = match (set.len(), set.first()) {
            (1, Some(b)) => b
                .addr
                .as_inet()
                .and_then(|a| backends.get(a))
                .map(|info| (b.clone(), info.clone())),
            _ => None,
        };
        let balancer = Balancer::build(cfg.algorithm, set, &registry, counters);
        let gated =
            spec.breaker.is_some() || backends.values().any(|b| b.shared.probation.load(Relaxed));
        let sticky = spec
            .sticky
            .as_ref()
            .map(|s| sticky::Sticky::new(&s.cookie, backends.values()));
        let hashing = matches!(cfg.algorithm, Algorithm::ConsistentHash | Algorithm::IpHash);
        let slow_start = spec.slow_start.filter(|d| !d.is_zero() && !hashing);
        let panic = (spec.panic_threshold > 0.0)
            .then(|| selection::panic::Panic::new(spec.panic_threshold));
        let budget = spec
            .retry_budget
            .map(|b| retry_budget::Budget::new(b, name));
        Group {
            name: spec.name.clone(),
            retries: crate::metrics::retries(name),
            health: cfg.health_check.as_ref().map(health::Schedule::new),
            config: spec.config,
            hash_key: spec.hash_key,
            balancer,
            backends,
            order,
            single,
            registry,
            labels,
            host_header: spec.host_header,
            timeouts: spec.timeouts,
            breaker: spec.breaker,
            sticky,
            gated,
            panic,
            slow_start,
            budget,
        }
    }

    /// Points the health check's labels (and probation flags) at this
    /// group's backends.
    pub fn publish_labels(&self) {
        self.labels.store(Arc::new(
            self.backends
                .iter()
                .map(|(a, i)| (*a, (i.label.clone(), i.shared.clone())))
                .collect(),
        ));
    }

    /// Whether selection must consult per-backend state ([`Group::admit`]).
    pub fn is_gated(&self) -> bool {
        self.gated
    }

    /// Whether a backend may take a new request, judged by weir's own
    /// per-backend state (circuit breaker, probation); `claim` takes a
    /// half-open trial. Health and enabled state are Pingora's.
    pub fn admit(&self, info: &BackendInfo, claim: bool) -> Admit {
        if !self.gated {
            return Admit::Yes;
        }
        if info.shared.probation.load(Relaxed) {
            return Admit::No;
        }
        match &self.breaker {
            Some(_) => info.shared.breaker.admit(claim),
            None => Admit::Yes,
        }
    }

    /// The circuit of a backend (closed when no breaker is configured).
    pub fn circuit(&self, info: &BackendInfo) -> Circuit {
        match self.breaker {
            Some(_) => info.shared.breaker.circuit(),
            None => Circuit::Closed,
        }
    }

    /// Records the outcome of a request to `info` for its circuit.
    pub fn outcome(&self, info: &BackendInfo, ok: bool, trial: bool) {
        let Some(spec) = &self.breaker else { return };
        let who = (info.addr, &*self.name);
        if ok {
            info.shared.breaker.success(spec, who, trial);
            if trial && info.shared.breaker.circuit() == Circuit::Closed {
                info.shared.enter_service();
            }
        } else {
            let may_open = || self.may_open_another(spec);
            info.shared.breaker.failure(spec, who, trial, may_open);
        }
    }

    /// Whether the algorithm hashes a key (consistent_hash, ip_hash); the
    /// others ignore it, so it is not computed for them.
    pub fn uses_key(&self) -> bool {
        matches!(
            self.balancer,
            Balancer::ConsistentHash(_) | Balancer::IpHash(_)
        )
    }

    /// Whether a backend takes traffic: enabled, not draining, healthy,
    /// out of probation and with a closed circuit.
    pub fn is_up(&self, addr: SocketAddr) -> bool {
        self.backends.get(&addr).is_some_and(|b| {
            b.enabled
                && !b.draining
                && !b.shared.probation.load(Relaxed)
                && self.circuit(b) == Circuit::Closed
        }) && self.is_healthy(addr)
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

/// The bytes of a client address the hashing algorithms hash (empty when
/// the client is unknown), written into `buf`.
pub fn client_key(client: Option<std::net::IpAddr>, buf: &mut [u8; 16]) -> &[u8] {
    match client {
        Some(std::net::IpAddr::V4(a)) => {
            buf[..4].copy_from_slice(&a.octets());
            &buf[..4]
        }
        Some(std::net::IpAddr::V6(a)) => {
            *buf = a.octets();
            &buf[..]
        }
        None => b"",
    }
}
