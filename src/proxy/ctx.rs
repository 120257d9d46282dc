//! Per-request state, grouped by concern: the snapshot and route the request
//! uses, the backends tried, timings and the ids that go into logs.

use crate::router::Route;
use crate::snapshot::Snapshot;
use crate::upstream::{BackendInfo, Group};
use http::HeaderValue;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// Most tries per request (first try + `MAX_RETRIES`).
pub(super) const MAX_TRIES: usize = crate::config::validate::MAX_RETRIES as usize + 1;

/// Decrements a backend's in-flight counter when dropped.
pub struct InFlight(pub(super) Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Per-request state.
pub struct Ctx {
    pub(super) snap: Arc<Snapshot>,
    pub(super) route: Option<usize>,
    pub(super) group: Option<usize>,
    pub(super) upstream_uri: Option<http::Uri>,
    pub(super) tried: [Option<SocketAddr>; MAX_TRIES],
    pub(super) attempts: usize,
    pub(super) backend: Option<Arc<BackendInfo>>,
    pub(super) in_flight: Option<InFlight>,
    pub(super) request_id: Option<HeaderValue>,
    pub(super) request_id_is_new: bool,
    pub(super) client: Option<IpAddr>,
    pub(super) peer_trusted: bool,
    pub(super) start: Instant,
    pub(super) sent_upstream: Option<Instant>,
    pub(super) upstream_status: u16,
}

impl Ctx {
    pub(super) fn route(&self) -> Option<&Route> {
        self.route.map(|i| &self.snap.router.routes()[i])
    }

    pub(super) fn group(&self) -> Option<&Arc<Group>> {
        self.group.map(|i| &self.snap.groups[i])
    }

    pub(super) fn was_tried(&self, addr: SocketAddr) -> bool {
        self.tried[..self.attempts.min(MAX_TRIES)].contains(&Some(addr))
    }

    pub(super) fn may_retry(&self) -> bool {
        let retries = self.route().map_or(0, |r| r.retries as usize);
        self.attempts <= retries && self.attempts < MAX_TRIES
    }
}
