//! Passive circuit breaker per backend: `threshold` real-traffic failures in
//! a row, or a failed share of at least `rate.threshold` of the requests of
//! the current window (once it holds `min_requests`), open it; an open
//! backend gets no new requests; after `open_for` exactly one trial request
//! is let through (half-open) and its outcome closes or re-opens it. Each
//! opening in a row (no clean close between) doubles `open_for`, up to
//! `max_open_for`. The group may refuse an opening (its ejection cap,
//! `max_open_percent`): the backend then stays in service. The state lives
//! in [`BreakerState`], which a backend keeps across reloads; the limits
//! come from the group's spec.
//!
//! The failure-rate window is a tumbling one: its counts start over when
//! `window` has passed since it began (lock-free, three atomics).

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};
use std::time::{Duration, Instant};

/// `upstreams.*.circuit_breaker`, compiled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSpec {
    /// Failures in a row that open the circuit.
    pub threshold: u32,
    /// How long it stays open before a trial (the first time).
    pub open_for: Duration,
    /// The longest an opening in a row lasts.
    pub max_open_for: Duration,
    /// Opening on a failure ratio, if configured.
    pub rate: Option<RateSpec>,
    /// Most open circuits in the group, as a share of its backends (0..=1).
    pub max_open_share: f64,
}

/// `circuit_breaker.failure_rate`, compiled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    /// Failed share (0..=1) that opens.
    pub threshold: f64,
    /// Requests the window must hold first.
    pub min_requests: u32,
    /// How long a window lasts.
    pub window: Duration,
}

impl Eq for BreakerSpec {}

impl BreakerSpec {
    /// How long the `streak`-th opening in a row lasts (1: `open_for`).
    pub fn open_duration(&self, streak: u32) -> Duration {
        let factor = 1u32 << streak.saturating_sub(1).min(20);
        self.open_for.saturating_mul(factor).min(self.max_open_for)
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// A circuit's state as shown in `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Traffic flows.
    Closed,
    /// No new traffic.
    Open,
    /// One trial request is deciding.
    HalfOpen,
}

impl Circuit {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

/// Whether a backend may take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Yes.
    Yes,
    /// Yes, as the one trial of a half-open circuit.
    Trial,
    /// No.
    No,
}

fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Names a backend in log lines: its address and upstream.
pub type Who<'a> = (std::net::SocketAddr, &'a str);

/// Requests and failures of the current failure-rate window.
#[derive(Debug, Default)]
struct Window {
    start_ms: AtomicU64,
    requests: AtomicU32,
    failures: AtomicU32,
}

impl Window {
    /// Counts one outcome; whether the window's failed share now opens.
    fn record(&self, failed: bool, r: &RateSpec) -> bool {
        let now = now_ms();
        let start = self.start_ms.load(Acquire);
        if now >= start + r.window.as_millis() as u64
            && self
                .start_ms
                .compare_exchange(start, now, AcqRel, Acquire)
                .is_ok()
        {
            self.clear();
        }
        let requests = self.requests.fetch_add(1, Relaxed) + 1;
        let failures = match failed {
            true => self.failures.fetch_add(1, Relaxed) + 1,
            false => return false,
        };
        requests >= r.min_requests && f64::from(failures) >= r.threshold * f64::from(requests)
    }

    fn clear(&self) {
        self.requests.store(0, Relaxed);
        self.failures.store(0, Relaxed);
    }
}

/// The live state of one backend's circuit.
#[derive(Debug, Default)]
pub struct BreakerState {
    failures: AtomicU32,
    state: AtomicU8,
    opened_at_ms: AtomicU64,
    /// How long the current opening lasts.
    open_ms: AtomicU64,
    /// Openings in a row (0 after a clean close).
    streak: AtomicU32,
    window: Window,
}

impl BreakerState {
    /// The state for `/status` and metrics.
    pub fn circuit(&self) -> Circuit {
        match self.state.load(Acquire) {
            OPEN => Circuit::Open,
            HALF_OPEN => Circuit::HalfOpen,
            _ => Circuit::Closed,
        }
    }

    fn expired(&self) -> bool {
        now_ms() >= self.opened_at_ms.load(Acquire) + self.open_ms.load(Acquire)
    }

    /// Openings in a row so far (0 after a clean close).
    pub fn streak(&self) -> u32 {
        self.streak.load(Relaxed)
    }

    /// Starts an opening: the next in a row; returns how long it lasts. The
    /// time is stored before the state flips, so nobody sees OPEN with an
    /// old opening time (and takes a trial at once).
    fn start_opening(&self, spec: &BreakerSpec) -> Duration {
        let streak = self.streak.fetch_add(1, Relaxed) + 1;
        let d = spec.open_duration(streak);
        self.open_ms.store(d.as_millis() as u64, Release);
        self.opened_at_ms.store(now_ms(), Release);
        self.window.clear();
        d
    }

    /// Whether a request may go to this backend now. With `claim`, a
    /// half-open trial is taken (only one caller wins it); without, an
    /// expired open circuit merely counts as available.
    pub fn admit(&self, claim: bool) -> Admit {
        match self.state.load(Acquire) {
            CLOSED => Admit::Yes,
            OPEN if self.expired() => {
                if !claim {
                    Admit::Yes
                } else if self
                    .state
                    .compare_exchange(OPEN, HALF_OPEN, AcqRel, Acquire)
                    .is_ok()
                {
                    Admit::Trial
                } else {
                    Admit::No
                }
            }
            _ => Admit::No,
        }
    }

    /// A request through this backend succeeded. Only the trial closes an
    /// open circuit: a request admitted before it opened proves nothing.
    pub fn success(&self, spec: &BreakerSpec, who: Who<'_>, trial: bool) {
        if trial {
            if self
                .state
                .compare_exchange(HALF_OPEN, CLOSED, AcqRel, Acquire)
                .is_ok()
            {
                self.failures.store(0, Relaxed);
                self.streak.store(0, Relaxed);
                self.window.clear();
                log::info!(
                    "circuit for backend {} in {} is CLOSED (trial request succeeded)",
                    who.0,
                    who.1
                );
                crate::observe::events::circuit(who, "closed (trial request succeeded)");
            }
            return;
        }
        if let Some(r) = &spec.rate {
            self.window.record(false, r);
        }
        // Loads first: the common case writes nothing to the shared line.
        if self.failures.load(Relaxed) != 0 && self.state.load(Acquire) == CLOSED {
            self.failures.store(0, Relaxed);
        }
    }

    /// A request through this backend failed (connect error, timeout,
    /// 502/503/504). `may_open` is asked before a closed circuit opens (the
    /// group's ejection cap); when it says no, the backend stays in service.
    pub fn failure(
        &self,
        spec: &BreakerSpec,
        who: Who<'_>,
        trial: bool,
        may_open: impl Fn() -> bool,
    ) {
        if trial {
            let d = self.start_opening(spec);
            self.state.store(OPEN, Release);
            log::info!(
                "circuit for backend {} in {} is OPEN again (trial request failed); trial in {d:?}",
                who.0,
                who.1
            );
            crate::observe::events::circuit(who, &format!("open again for {d:?} (trial failed)"));
            return;
        }
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        let by_rate = spec
            .rate
            .as_ref()
            .is_some_and(|r| self.window.record(true, r));
        if (n < spec.threshold && !by_rate) || self.state.load(Acquire) != CLOSED || !may_open() {
            return;
        }
        let d = self.start_opening(spec);
        if self
            .state
            .compare_exchange(CLOSED, OPEN, AcqRel, Acquire)
            .is_err()
        {
            return;
        }
        let why = match n >= spec.threshold {
            true => format!("{n} failures in a row"),
            false => "its failure rate".to_string(),
        };
        log::info!(
            "circuit for backend {} in {} is OPEN after {why}; trial in {d:?}",
            who.0,
            who.1
        );
        crate::observe::events::circuit(who, &format!("open for {d:?} after {why}"));
    }

    /// A trial ended without an outcome (client gone): another may try at once.
    pub fn release_trial(&self) {
        let _ = self
            .state
            .compare_exchange(HALF_OPEN, OPEN, AcqRel, Acquire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Who<'static> = (
        std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1),
        "up",
    );

    fn spec(threshold: u32, open_for_ms: u64) -> BreakerSpec {
        BreakerSpec {
            threshold,
            open_for: Duration::from_millis(open_for_ms),
            max_open_for: Duration::from_millis(open_for_ms * 4),
            rate: None,
            max_open_share: 1.0,
        }
    }

    #[test]
    fn opens_after_threshold_and_allows_one_trial() {
        let spec = spec(2, 0);
        let yes = || true;
        let b = BreakerState::default();
        b.failure(&spec, W, false, yes);
        assert_eq!(b.circuit(), Circuit::Closed);
        b.failure(&spec, W, false, yes);
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(b.admit(true), Admit::Trial);
        assert_eq!(b.admit(true), Admit::No);
        b.failure(&spec, W, true, yes);
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(b.admit(true), Admit::Trial);
        // A request admitted before the circuit opened does not close it.
        b.failure(&spec, W, true, yes);
        b.success(&spec, W, false);
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(b.admit(true), Admit::Trial);
        b.success(&spec, W, true);
        assert_eq!(b.circuit(), Circuit::Closed);
        assert_eq!(b.admit(true), Admit::Yes);
    }

    #[test]
    fn open_for_doubles_in_a_row_up_to_the_cap_and_resets_on_close() {
        let spec = spec(1, 100);
        let d = |n| spec.open_duration(n).as_millis();
        assert_eq!((d(1), d(2), d(3), d(4), d(9)), (100, 200, 400, 400, 400));
        let b = BreakerState::default();
        b.failure(&spec, W, false, || true);
        assert_eq!(b.streak(), 1);
        b.state.store(HALF_OPEN, Release);
        b.failure(&spec, W, true, || true);
        assert_eq!(b.streak(), 2);
        assert_eq!(b.open_ms.load(Relaxed), 200);
        b.state.store(HALF_OPEN, Release);
        b.success(&spec, W, true);
        assert_eq!(b.streak(), 0);
    }

    #[test]
    fn failure_rate_waits_for_min_requests_and_the_cap_can_refuse() {
        let mut spec = spec(100, 1000);
        spec.rate = Some(RateSpec {
            threshold: 0.5,
            min_requests: 6,
            window: Duration::from_secs(60),
        });
        let b = BreakerState::default();
        for _ in 0..2 {
            b.success(&spec, W, false);
            b.failure(&spec, W, false, || true);
        }
        assert_eq!(b.circuit(), Circuit::Closed, "4 requests < min_requests");
        b.success(&spec, W, false);
        b.failure(&spec, W, false, || false);
        assert_eq!(b.circuit(), Circuit::Closed, "the group refused");
        b.failure(&spec, W, false, || true);
        assert_eq!(b.circuit(), Circuit::Open, "4 of 7 failed");
    }
}
