//! Per-request state, grouped by concern: the snapshot and route the request
//! uses, the policies' state, the backends tried and their outcomes,
//! timings and the ids that go into logs.

use crate::policy::State;
use crate::snapshot::{Route, Snapshot};
use crate::upstream::{BackendInfo, Group};
use http::HeaderValue;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// Most tries per request (first try + `MAX_RETRIES`).
pub(super) const MAX_TRIES: usize = crate::values::MAX_RETRIES as usize + 1;

/// Decrements a backend's in-flight counter when dropped.
pub struct InFlight(pub(super) Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The one trial request of a half-open circuit: when dropped without an
/// outcome (the client went away), the trial goes to the next request.
pub struct Trial(pub(super) Option<Arc<BackendInfo>>);

impl Trial {
    /// The outcome is known: dropping no longer releases the trial.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Trial {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.shared.breaker.release_trial();
        }
    }
}

/// Per-request state.
pub struct Ctx {
    pub(super) snap: Arc<Snapshot>,
    pub(super) route: Option<usize>,
    pub(super) group: Option<usize>,
    pub(super) policy: State,
    pub(super) tried: [Option<SocketAddr>; MAX_TRIES],
    pub(super) attempts: usize,
    pub(super) backend: Option<Arc<BackendInfo>>,
    pub(super) in_flight: Option<InFlight>,
    pub(super) trial: Option<Trial>,
    /// The attempt's outcome is known (for the circuit breaker).
    pub(super) reported: bool,
    /// The current attempt ended in a 5xx that is retried elsewhere.
    pub(super) retrying_5xx: bool,
    pub(super) set_cookie: Option<HeaderValue>,
    /// weir sent `100 Continue` itself.
    pub(super) sent_continue: bool,
    /// The connection came over TLS.
    pub(super) https: bool,
    pub(super) request_id: Option<HeaderValue>,
    pub(super) request_id_is_new: bool,
    pub(super) client: Option<IpAddr>,
    pub(super) peer_trusted: bool,
    pub(super) start: Instant,
    pub(super) sent_upstream: Option<Instant>,
    pub(super) upstream_status: u16,
    /// The request's hold on its upstream's retry budget.
    pub(super) budget: Option<crate::upstream::retry_budget::Hold>,
    /// Counted as started in the upgrade account (and not yet as ended).
    pub(super) counted: bool,
    /// The request's trace context and spans (with `tracing` only).
    pub(super) trace: Option<Box<crate::trace::RequestTrace>>,
}

impl Ctx {
    /// A fresh context on `snap`.
    pub(super) fn new(snap: Arc<Snapshot>) -> Ctx {
        Ctx {
            snap,
            route: None,
            group: None,
            policy: State::default(),
            tried: [None; MAX_TRIES],
            attempts: 0,
            backend: None,
            in_flight: None,
            trial: None,
            reported: false,
            retrying_5xx: false,
            set_cookie: None,
            sent_continue: false,
            https: false,
            request_id: None,
            request_id_is_new: false,
            client: None,
            peer_trusted: false,
            start: Instant::now(),
            sent_upstream: None,
            upstream_status: 0,
            budget: None,
            counted: false,
            trace: None,
        }
    }

    pub(super) fn route(&self) -> Option<&Route> {
        self.route.and_then(|i| self.snap.routes.get(i))
    }

    pub(super) fn group(&self) -> Option<&Arc<Group>> {
        self.group.and_then(|i| self.snap.groups.get(i))
    }

    pub(super) fn was_tried(&self, addr: SocketAddr) -> bool {
        self.tried[..self.attempts.min(MAX_TRIES)].contains(&Some(addr))
    }

    pub(super) fn may_retry(&self) -> bool {
        let retries = self.route().map_or(0, |r| r.retries as usize);
        self.attempts <= retries && self.attempts < MAX_TRIES
    }

    /// Takes one retry from the upstream's budget (always granted without
    /// one); a refusal is counted there.
    pub(super) fn spend_retry(&mut self) -> bool {
        let Some(group) = self.group().cloned() else {
            return true;
        };
        match (&group.budget, self.budget.as_mut()) {
            (Some(b), Some(hold)) => b.try_retry(hold),
            _ => true,
        }
    }

    /// Records the current attempt's outcome for the circuit breaker, once.
    pub(super) fn report(&mut self, ok: bool) {
        if self.reported {
            return;
        }
        self.reported = true;
        let is_trial = match self.trial.take() {
            Some(t) => {
                t.disarm();
                true
            }
            None => false,
        };
        if let (Some(g), Some(b)) = (self.group(), &self.backend) {
            g.outcome(b, ok, is_trial);
        }
    }
}
