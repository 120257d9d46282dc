//! Passive circuit breaker per backend: `threshold` real-traffic failures in
//! a row open it; an open backend gets no new requests; after `open_for`
//! exactly one trial request is let through (half-open) and its outcome
//! closes or re-opens it. The state lives in [`BreakerState`], which a
//! backend keeps across reloads; the limits come from the group's spec.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};
use std::time::{Duration, Instant};

/// `upstreams.*.circuit_breaker`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSpec {
    /// Failures in a row that open the circuit.
    pub threshold: u32,
    /// How long it stays open before a trial.
    pub open_for: Duration,
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

/// The live state of one backend's circuit.
#[derive(Debug, Default)]
pub struct BreakerState {
    failures: AtomicU32,
    state: AtomicU8,
    opened_at_ms: AtomicU64,
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

    fn expired(&self, spec: &BreakerSpec) -> bool {
        now_ms() >= self.opened_at_ms.load(Acquire) + spec.open_for.as_millis() as u64
    }

    /// Whether a request may go to this backend now. With `claim`, a
    /// half-open trial is taken (only one caller wins it); without, an
    /// expired open circuit merely counts as available.
    pub fn admit(&self, spec: &BreakerSpec, claim: bool) -> Admit {
        match self.state.load(Acquire) {
            CLOSED => Admit::Yes,
            OPEN if self.expired(spec) => {
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
    pub fn success(&self, who: Who<'_>, trial: bool) {
        if trial {
            if self
                .state
                .compare_exchange(HALF_OPEN, CLOSED, AcqRel, Acquire)
                .is_ok()
            {
                self.failures.store(0, Relaxed);
                log::info!(
                    "circuit for backend {} in {} is CLOSED (trial request succeeded)",
                    who.0,
                    who.1
                );
            }
            return;
        }
        // Loads first: the common case writes nothing to the shared line.
        if self.failures.load(Relaxed) != 0 && self.state.load(Acquire) == CLOSED {
            self.failures.store(0, Relaxed);
        }
    }

    /// A request through this backend failed (connect error, timeout,
    /// 502/503/504).
    pub fn failure(&self, spec: &BreakerSpec, who: Who<'_>, trial: bool) {
        if trial {
            self.opened_at_ms.store(now_ms(), Relaxed);
            self.state.store(OPEN, Release);
            log::info!(
                "circuit for backend {} in {} is OPEN again (trial request failed)",
                who.0,
                who.1
            );
            return;
        }
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if n >= spec.threshold && self.state.load(Acquire) == CLOSED {
            // The time is stored before the state flips, so nobody sees OPEN
            // with an old opening time (and takes a trial at once).
            self.opened_at_ms.store(now_ms(), Release);
            if self
                .state
                .compare_exchange(CLOSED, OPEN, AcqRel, Acquire)
                .is_err()
            {
                return;
            }
            log::info!(
                "circuit for backend {} in {} is OPEN after {n} failures in a row; trial in {:?}",
                who.0,
                who.1,
                spec.open_for
            );
        }
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

    #[test]
    fn opens_after_threshold_and_allows_one_trial() {
        let spec = BreakerSpec {
            threshold: 2,
            open_for: Duration::from_millis(0),
        };
        let b = BreakerState::default();
        b.failure(&spec, W, false);
        assert_eq!(b.circuit(), Circuit::Closed);
        b.failure(&spec, W, false);
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(b.admit(&spec, true), Admit::Trial);
        assert_eq!(b.admit(&spec, true), Admit::No);
        b.failure(&spec, W, true);
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(b.admit(&spec, true), Admit::Trial);
        // A request admitted before the circuit opened does not close it.
        b.failure(&spec, W, true);
        b.success(W, false);
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(b.admit(&spec, true), Admit::Trial);
        b.success(W, true);
        assert_eq!(b.circuit(), Circuit::Closed);
        assert_eq!(b.admit(&spec, true), Admit::Yes);
    }
}
