//! Slow start (HAProxy's `slowstart`, Envoy's slow start): a backend that
//! enters service (added at run time, UP again after failing its health
//! checks, or its circuit closed) takes a share of traffic rising linearly
//! from 10% to its full weight over `slow_start`.
//!
//! It works as an admission rule over any algorithm that walks candidates
//! (round_robin, weighted, random, least_connections, least_request,
//! peak_ewma): a ramping backend offered by the algorithm is taken with
//! probability equal to its ramp factor, else the next candidate is. The
//! hashing algorithms (consistent_hash, ip_hash) are left alone: skipping
//! a backend there would move clients off their backend, which is what
//! they exist to avoid. Nothing is read unless the group has a
//! `slow_start`, and then one atomic load per candidate unless it ramps.

use super::p2c::random_below;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The share a backend gets when it enters service.
pub const FLOOR: f64 = 0.1;

/// Milliseconds since the process epoch, plus one (0 means "not ramping").
pub fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// When a backend last entered service (0: not since the start).
#[derive(Debug, Default)]
pub struct Entered(AtomicU64);

impl Entered {
    /// The backend enters service now.
    pub fn now(&self) {
        self.0.store(now_ms(), Relaxed);
    }

    /// Its ramp factor (FLOOR..=1) over `ramp`; 1 once the ramp is over.
    pub fn factor(&self, ramp: Duration) -> f64 {
        let at = self.0.load(Relaxed);
        if at == 0 {
            return 1.0;
        }
        let elapsed = now_ms().saturating_sub(at) as f64;
        let total = ramp.as_millis().max(1) as f64;
        if elapsed >= total {
            // Over: later reads stop at the first load.
            self.0.store(0, Relaxed);
            return 1.0;
        }
        FLOOR + (1.0 - FLOOR) * elapsed / total
    }

    /// Whether a candidate is taken this time (always, once ramped up).
    pub fn admit(&self, ramp: Duration) -> bool {
        let f = self.factor(ramp);
        f >= 1.0 || (random_below(1 << 20) as f64) < f * f64::from(1u32 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_from_the_floor_to_full() {
        let e = Entered::default();
        assert_eq!(e.factor(Duration::from_secs(10)), 1.0);
        e.now();
        let f = e.factor(Duration::from_secs(10));
        assert!((FLOOR..0.12).contains(&f), "{f}");
        let taken = (0..10_000)
            .filter(|_| e.admit(Duration::from_secs(1000)))
            .count();
        assert!((800..1200).contains(&taken), "{taken}");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(e.factor(Duration::from_millis(1)), 1.0);
        assert_eq!(e.0.load(Relaxed), 0, "a finished ramp is forgotten");
    }
}
