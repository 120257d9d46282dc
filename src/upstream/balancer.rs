//! The selection algorithms: one enum over Pingora's `LoadBalancer` for each,
//! built from a group's backends in service.

use super::selection::p2c::LeastRequest;
use super::selection::peak_ewma::PeakEwma;
use super::selection::{Counters, LeastConnections, SmoothWeighted};
use crate::config::model::Algorithm;
use pingora_load_balancing::discovery;
use pingora_load_balancing::selection::{Consistent, FNVHash, Random, RoundRobin};
use pingora_load_balancing::{Backend, Backends, HealthRegistry, LoadBalancer};
use std::collections::BTreeSet;
use std::sync::Arc;

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
    /// Two random choices by requests in flight.
    LeastRequest(LoadBalancer<LeastRequest>),
    /// Two random choices by peak-EWMA latency × load.
    PeakEwma(LoadBalancer<PeakEwma>),
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
            Balancer::LeastRequest($lb) => $e,
            Balancer::PeakEwma($lb) => $e,
        }
    };
}

/// Most candidates looked at per selection.
const MAX_ITERATIONS: usize = 256;

impl Balancer {
    /// The balancer of `algorithm` over `set`, sharing `registry`'s health
    /// state; `counters` are the per-backend loads and latencies that
    /// least_connections, least_request and peak_ewma read.
    pub fn build(
        algorithm: Algorithm,
        set: BTreeSet<Backend>,
        registry: &Arc<HealthRegistry>,
        counters: Counters,
    ) -> Balancer {
        match algorithm {
            Algorithm::RoundRobin => Balancer::RoundRobin(make_lb(set, registry, None)),
            Algorithm::Weighted => Balancer::Weighted(make_lb(set, registry, None)),
            Algorithm::LeastConnections => {
                Balancer::LeastConnections(make_lb(set, registry, Some(counters)))
            }
            Algorithm::Random => Balancer::Random(make_lb(set, registry, None)),
            Algorithm::ConsistentHash => Balancer::ConsistentHash(make_lb(set, registry, None)),
            Algorithm::IpHash => Balancer::IpHash(make_lb(set, registry, None)),
            Algorithm::LeastRequest => {
                Balancer::LeastRequest(make_lb(set, registry, Some(counters)))
            }
            Algorithm::PeakEwma => Balancer::PeakEwma(make_lb(set, registry, Some(counters))),
        }
    }

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
