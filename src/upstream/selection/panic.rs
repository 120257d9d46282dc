//! Panic mode (Envoy's panic threshold): when fewer than `panic_threshold`
//! of a group's enabled backends are in service (healthy, out of probation,
//! circuit closed), weir balances over every enabled backend, healthy or
//! not: better some requests fail than all of them go to the few left.
//! The state is re-judged at most every [`RECHECK`] (not per request), each
//! change is logged once, recorded in the events ring, and shown in
//! `/status` and `weir_upstream_panic`.

use super::slow_start::now_ms;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// How stale the judgement may be.
pub const RECHECK_MS: u64 = 100;

/// A group's panic state.
#[derive(Debug)]
pub struct Panic {
    /// Share (0..=1) of backends in service below which the group panics.
    threshold: f64,
    checked_ms: AtomicU64,
    on: AtomicBool,
}

impl Panic {
    /// A group that panics below `threshold` (0..=1).
    pub fn new(threshold: f64) -> Panic {
        Panic {
            threshold,
            checked_ms: AtomicU64::new(0),
            on: AtomicBool::new(false),
        }
    }

    /// Whether the group is in panic mode (as last judged).
    pub fn is_on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Judges again when the last judgement is stale: `count` gives
    /// (in service, enabled). Returns whether the group panics.
    pub fn check(&self, upstream: &str, count: impl FnOnce() -> (usize, usize)) -> bool {
        let now = now_ms();
        let last = self.checked_ms.load(Relaxed);
        // 0: never judged (the clock starts at 1).
        if (last != 0 && now < last + RECHECK_MS)
            || self
                .checked_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return self.on.load(Relaxed);
        }
        let (up, total) = count();
        let on = total > 0 && (up as f64) < self.threshold * total as f64;
        if self.on.swap(on, Relaxed) != on {
            let pct = self.threshold * 100.0;
            let message = match on {
                true => format!("panic mode ON: {up} of {total} backends in service, below {pct}%; balancing over every enabled backend"),
                false => format!("panic mode OFF: {up} of {total} backends in service"),
            };
            log::warn!("upstream {upstream}: {message}");
            crate::observe::events::record("panic", Some(upstream), None, message);
        }
        on
    }
}
