//! The compiled, immutable form of a config: route table, routes (matcher +
//! action + policy chain), upstream groups and listener list. The proxy
//! holds it in one `ArcSwap`; a reload builds a new one (`crate::compile`)
//! and swaps it whole, so routes and groups always agree, and a request
//! keeps the version it started with.

use crate::config::model::FileConfig;
use crate::metrics::{BackendSample, RouteMetrics};
use crate::policy::redirect::Redirect;
use crate::policy::Chain;
use crate::router::{Matcher, Router};
use crate::upstream::{Circuit, Group};
use crate::values::{CidrSet, Timeouts};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::HeaderValue;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The live snapshot, shared by the proxy and background services.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// What a matched route does (exactly one per route).
#[derive(Debug)]
pub enum Action {
    /// Proxy to the upstream group at this index of the snapshot.
    Upstream(usize),
    /// Answer directly.
    Respond {
        /// Status code.
        status: u16,
        /// Body bytes.
        body: Bytes,
        /// Content-Type value.
        content_type: HeaderValue,
    },
    /// Answer with a redirect.
    Redirect(Redirect),
}

/// Which failures a route retries, beyond connect failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// Read timeouts (idempotent requests only).
    pub timeout: bool,
    /// 502/503/504 answers (idempotent requests only).
    pub status_5xx: bool,
}

/// One compiled route: what it does and the policies on the way.
#[derive(Debug)]
pub struct Route {
    /// Position in file order (the router's answer).
    pub index: usize,
    /// Name for logs and metrics.
    pub name: Arc<str>,
    /// What to do.
    pub action: Action,
    /// Policies, in the order they run.
    pub policies: Chain,
    /// Timeouts towards the backend.
    pub timeouts: Timeouts,
    /// Extra tries on other backends.
    pub retries: u32,
    /// Which failures are retried.
    pub retry_on: RetryOn,
    /// Metric handles.
    pub metrics: RouteMetrics,
    /// Caching (SPEC §1.1), if the route has a `cache` block.
    pub cache: Option<Arc<crate::cache::RouteCache>>,
    /// Compression, if the route has a `compression` block.
    pub compression: Option<Arc<crate::cache::compress::Compression>>,
}

/// Per-listener limits, by listener index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Largest request-target, and largest header fields together, in bytes.
    pub max_header_size: usize,
    /// Connections come over TLS (`X-Forwarded-Proto: https`, `$scheme`).
    pub https: bool,
    /// Deadline for a whole request head, from its first byte.
    pub header_timeout: std::time::Duration,
    /// Idle seconds allowed between requests (`None`: no keep-alive).
    pub keepalive: Option<u64>,
    /// Most connections served at once (`None`: unlimited).
    pub max_connections: Option<usize>,
    /// Connections start with a PROXY protocol header.
    pub proxy_protocol: bool,
}

/// The rule of [`Snapshot::listener_index`] over bound addresses in
/// listener order: the one bound to exactly `local`, else the wildcard of
/// `local`'s family on its port, else `None`. Code that identifies a
/// connection's listener before a request exists (the connection front,
/// PROXY protocol before TLS) uses it with the same addresses.
pub fn find_listener(
    mut bound: impl Iterator<Item = SocketAddr> + Clone,
    local: Option<SocketAddr>,
) -> Option<usize> {
    let local = local?;
    if let Some(i) = bound.clone().position(|a| a == local) {
        return Some(i);
    }
    let wildcard = match local {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], local.port())),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], local.port())),
    };
    bound.position(|a| a == wildcard)
}

/// A route as the compiler hands it over: its matcher and the route.
pub type CompiledRoute = (Matcher, Route);

/// Everything the request path needs, compiled.
#[derive(Debug)]
pub struct Snapshot {
    /// Route matchers, index-aligned with `routes`.
    pub router: Router,
    /// Routes in file order.
    pub routes: Vec<Route>,
    /// Upstream groups; routes refer to them by index.
    pub groups: Vec<Arc<Group>>,
    /// Listener addresses by index (the bit positions of a matcher's listeners).
    pub listeners: Vec<(Arc<str>, SocketAddr)>,
    /// Listener limits, index-aligned with `listeners`.
    pub limits: Vec<ListenerLimits>,
    /// Certificates of https listeners, index-aligned with `listeners`.
    pub certs: Vec<Option<Arc<crate::tls::CertSet>>>,
    /// Peers whose X-Forwarded-For is believed.
    pub trusted_proxies: CidrSet,
    /// The config it was built from.
    pub config: FileConfig,
    /// For each listener (index-aligned with `listeners`), the index in
    /// `groups` of the upstream a `tcp` listener relays to; `None` for
    /// http/https listeners. Read per connection, so a reload can point a
    /// tcp listener at another group.
    pub tcp_upstreams: Vec<Option<usize>>,
}

impl Snapshot {
    /// Assembles a snapshot from compiled parts.
    pub fn new(
        routes: Vec<CompiledRoute>,
        groups: Vec<Arc<Group>>,
        listeners: Vec<(Arc<str>, SocketAddr)>,
        limits: Vec<ListenerLimits>,
        certs: Vec<Option<Arc<crate::tls::CertSet>>>,
        trusted_proxies: CidrSet,
        config: FileConfig,
    ) -> Snapshot {
        let (matchers, mut routes): (Vec<Matcher>, Vec<Route>) = routes.into_iter().unzip();
        for (i, r) in routes.iter_mut().enumerate() {
            r.index = i;
        }
        Snapshot {
            router: Router::new(matchers),
            routes,
            groups,
            listeners,
            limits,
            certs,
            trusted_proxies,
            config,
            tcp_upstreams: Vec::new(),
        }
    }

    /// The upstream group of the `tcp` listener at `listener`, if it has one.
    pub fn tcp_group(&self, listener: usize) -> Option<&Arc<Group>> {
        let g = (*self.tcp_upstreams.get(listener)?)?;
        self.groups.get(g)
    }

    /// Index of the listener that accepted a connection whose local
    /// (destination) address is `local`: the listener bound to exactly that
    /// address, else the wildcard listener of the socket's family on that
    /// port (`0.0.0.0:P` for IPv4, `[::]:P` for IPv6, IPv4-mapped addresses
    /// included: only an IPv6 socket yields them), else `None` — never
    /// another listener. Pingora hands one service's connections over
    /// without saying which endpoint accepted them, so the address is all
    /// there is; these two rules identify the endpoint exactly, because two
    /// sockets cannot both be bound to the same address and port.
    pub fn listener_index(&self, local: Option<SocketAddr>) -> Option<usize> {
        find_listener(self.listeners.iter().map(|(_, a)| *a), local)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.contains(ip)
    }

    /// Every backend's live state, for metrics.
    pub fn samples(&self) -> impl Iterator<Item = BackendSample<'_>> {
        self.groups.iter().flat_map(|g| {
            g.order.iter().filter_map(move |addr| {
                let b = g.backends.get(addr)?;
                Some(BackendSample {
                    upstream: &g.name,
                    backend: &b.label,
                    in_flight: b
                        .shared
                        .in_flight
                        .load(std::sync::atomic::Ordering::Relaxed),
                    up: g.is_up(*addr),
                    circuit_open: g.circuit(b) != Circuit::Closed,
                    panic: g.in_panic(),
                    effective_weight: g.effective_weight(b),
                })
            })
        })
    }

    /// (listener, certificate name, notAfter) of every served certificate.
    pub fn cert_expiries(&self) -> Vec<(&str, &str, i64)> {
        self.listeners
            .iter()
            .zip(&self.certs)
            .filter_map(|((name, _), set)| Some((name, set.as_ref()?)))
            .flat_map(|(name, set)| {
                set.certs
                    .iter()
                    .map(move |c| (&**name, c.label.as_str(), c.not_after))
            })
            .collect()
    }

    /// (upstream, backend label) pairs in `self` that `next` no longer has.
    pub fn removed_in<'a>(&'a self, next: &'a Snapshot) -> Vec<(&'a str, &'a str)> {
        let mut gone = Vec::new();
        for g in &self.groups {
            let kept = next.groups.iter().find(|n| n.name == g.name);
            for b in g.backends.values() {
                if !kept.is_some_and(|n| n.backends.values().any(|x| x.label == b.label)) {
                    gone.push((&*g.name, &*b.label));
                }
            }
        }
        gone
    }
}
