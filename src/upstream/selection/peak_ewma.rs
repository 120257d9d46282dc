//! `peak_ewma` (Finagle's and Linkerd's): each backend's cost is an
//! exponentially weighted moving average of its response latency (time to
//! the response head) that jumps to a slower answer at once ("peak") and
//! decays towards faster ones with time constant [`DECAY`]; of two backends
//! drawn at random, the lower cost × (in flight + 1) wins. A backend left
//! alone sees its cost decay towards zero, so a backend that was slow is
//! tried again after a few [`DECAY`]s and wins back its share once it
//! answers fast.
//!
//! The state ([`Ewma`]) lives in a backend's `Shared` and outlives reloads.
//! Its two atomics are updated without a lock: two answers racing may lose
//! one sample, which an average does not miss.

use super::p2c::{two_of, TwoThenRing};
use super::{BackendList, Counters};
use crate::upstream::Shared;
use pingora_load_balancing::selection::BackendSelection;
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The time constant of the decay: a sample weighs 1/e of its weight after
/// this long. 5 s: a backend that turned slow is avoided at once (peak),
/// and one that was slow is tried again within seconds under load (the
/// others' cost grows with their in-flight count), about 3 × 5 s when idle.
pub const DECAY: Duration = Duration::from_secs(5);

/// Added to every cost (1 µs), so that in-flight counts still decide
/// between backends whose cost has decayed to nothing.
const FLOOR_NS: f64 = 1_000.0;

/// The cost of a backend with no answer yet (30 ms, Linkerd's default
/// RTT): without it a cold backend would win every draw until its first
/// answer came back, however slow that answer is.
pub const UNSEEN: Duration = Duration::from_millis(30);

fn clock_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // +1: a stamp of 0 means "no sample yet".
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// A backend's peak-EWMA latency.
#[derive(Debug, Default)]
pub struct Ewma {
    /// The cost in nanoseconds, as `f64` bits.
    cost: AtomicU64,
    /// When it was last updated (ns since the process epoch; 0: never).
    stamp: AtomicU64,
}

fn weight(elapsed_ns: u64) -> f64 {
    (-(elapsed_ns as f64) / DECAY.as_nanos() as f64).exp()
}

/// The cost after a sample of `rtt` ns, `elapsed` ns after the last one:
/// the sample itself when slower (peak), else the decayed average.
fn next_cost(old: f64, elapsed: u64, rtt: f64) -> f64 {
    if rtt > old {
        return rtt;
    }
    let w = weight(elapsed);
    old * w + rtt * (1.0 - w)
}

impl Ewma {
    /// Records an answer that took `rtt`.
    pub fn observe(&self, rtt: Duration) {
        let now = clock_ns();
        let stamp = self.stamp.load(Relaxed);
        let old = match stamp {
            0 => UNSEEN.as_nanos() as f64,
            _ => f64::from_bits(self.cost.load(Relaxed)),
        };
        let new = next_cost(old, now.saturating_sub(stamp), rtt.as_nanos() as f64);
        self.cost.store(new.to_bits(), Relaxed);
        self.stamp.store(now, Relaxed);
    }

    /// The cost now: the last value decayed for the time since (as if a
    /// zero-latency sample were observed), in nanoseconds.
    pub fn cost_ns(&self) -> f64 {
        let stamp = self.stamp.load(Relaxed);
        if stamp == 0 {
            return UNSEEN.as_nanos() as f64;
        }
        f64::from_bits(self.cost.load(Relaxed)) * weight(clock_ns().saturating_sub(stamp))
    }
}

/// Two random choices by latency × load.
pub struct PeakEwma {
    backends: Box<[Backend]>,
    shared: Box<[Arc<Shared>]>,
}

impl BackendList for PeakEwma {
    fn list(&self) -> &[Backend] {
        &self.backends
    }
}

impl PeakEwma {
    fn score(&self, i: usize) -> f64 {
        let s = &self.shared[i];
        let load = s.in_flight.load(Relaxed) as f64 + 1.0;
        (s.latency.cost_ns() + FLOOR_NS) * load / self.backends[i].weight.max(1) as f64
    }

    fn choose(&self) -> (usize, usize) {
        let (a, b) = two_of(self.backends.len());
        if a != b && self.score(b) < self.score(a) {
            (b, a)
        } else {
            (a, b)
        }
    }
}

impl BackendSelection for PeakEwma {
    type Iter = TwoThenRing<PeakEwma>;
    type Config = Counters;

    fn build_with_config(backends: &BTreeSet<Backend>, counters: &Counters) -> Self {
        let backends: Box<[Backend]> = backends.iter().cloned().collect();
        let shared = backends
            .iter()
            .map(|b| {
                b.addr
                    .as_inet()
                    .and_then(|a| counters.get(a).cloned())
                    .unwrap_or_default()
            })
            .collect();
        PeakEwma { backends, shared }
    }

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Counters::default())
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> Self::Iter {
        let (first, second) = self.choose();
        TwoThenRing {
            sel: self.clone(),
            first,
            second,
            step: 0,
            len: self.backends.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rises_at_once_and_decays_towards_faster_answers() {
        let e = Ewma::default();
        assert_eq!(e.cost_ns(), UNSEEN.as_nanos() as f64);
        e.observe(Duration::from_millis(10));
        e.observe(Duration::from_millis(200));
        assert!(e.cost_ns() > 190e6, "peak: {}", e.cost_ns());
        e.observe(Duration::from_millis(10));
        // A sample right after barely moves it…
        assert!(e.cost_ns() > 150e6, "{}", e.cost_ns());
        // …but time does: 3 decay constants later it is near the new latency.
        let later = 3 * DECAY.as_nanos() as u64;
        assert!(200e6 * weight(later) < 12e6);
        assert!(next_cost(e.cost_ns(), later, 10e6) < 20e6);
    }
}
