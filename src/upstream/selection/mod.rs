//! Selection algorithms Pingora does not ship: smooth weighted round robin
//! (nginx's), least connections, and the two power-of-two-choices ones,
//! `least_request` ([`p2c`]) and `peak_ewma` ([`peak_ewma`]); and the
//! group-level rules over them: [`slow_start`] and [`panic`] mode (the
//! ejection cap is the breaker's, `Group::outcome`).

pub mod p2c;
pub mod panic;
pub mod peak_ewma;
pub mod slow_start;

use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// Yields `first`, then every other backend once, in ring order.
pub struct RingIter<S> {
    sel: Arc<S>,
    first: usize,
    step: usize,
    len: usize,
}

/// Something with an indexable list of backends.
pub trait BackendList {
    /// The backends.
    fn list(&self) -> &[Backend];
}

impl<S: BackendList> BackendIter for RingIter<S> {
    fn next(&mut self) -> Option<&Backend> {
        if self.step >= self.len {
            return None;
        }
        let i = (self.first + self.step) % self.len;
        self.step += 1;
        self.sel.list().get(i)
    }
}

/// Smooth weighted round robin: the order nginx produces (weights 5,1,1 give
/// a a b a c a a), precomputed once per backend set so that selecting is one
/// atomic increment and no lock.
pub struct SmoothWeighted {
    backends: Box<[Backend]>,
    schedule: Box<[u32]>,
    counter: AtomicUsize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// nginx's smooth weighted sequence for the given weights (one cycle).
pub fn smooth_schedule(weights: &[usize]) -> Vec<u32> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let w: Vec<i64> = weights.iter().map(|&x| (x / g) as i64).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

impl BackendList for SmoothWeighted {
    fn list(&self) -> &[Backend] {
        &self.backends
    }
}

impl BackendSelection for SmoothWeighted {
    type Iter = RingIter<SmoothWeighted>;
    type Config = ();

    fn build(backends: &BTreeSet<Backend>) -> Self {
        let backends: Box<[Backend]> = backends.iter().cloned().collect();
        let weights: Vec<usize> = backends.iter().map(|b| b.weight.max(1)).collect();
        SmoothWeighted {
            schedule: smooth_schedule(&weights).into_boxed_slice(),
            backends,
            counter: AtomicUsize::new(0),
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> Self::Iter {
        let first = if self.schedule.is_empty() {
            0
        } else {
            self.schedule[self.counter.fetch_add(1, Relaxed) % self.schedule.len()] as usize
        };
        RingIter {
            sel: self.clone(),
            first,
            step: 0,
            len: self.backends.len(),
        }
    }
}

/// Per-backend live state (in-flight counters, latency) keyed by address,
/// shared by every selector built for a group (and carried across reloads),
/// so rebuilding the selector never resets what is in flight (the trap of
/// Pingora #269/#821).
pub type Counters = Arc<HashMap<SocketAddr, Arc<super::Shared>>>;

/// Least connections: the backend with the fewest requests in flight per
/// unit of weight; ties are broken round robin.
pub struct LeastConnections {
    backends: Box<[Backend]>,
    counters: Box<[Arc<AtomicUsize>]>,
    tie: AtomicUsize,
}

impl BackendList for LeastConnections {
    fn list(&self) -> &[Backend] {
        &self.backends
    }
}

impl LeastConnections {
    fn pick(&self) -> usize {
        let n = self.backends.len();
        if n == 0 {
            return 0;
        }
        let start = self.tie.fetch_add(1, Relaxed) % n;
        let mut best = start;
        let mut best_score = u128::MAX;
        for k in 0..n {
            let i = (start + k) % n;
            // compare in/weight without division: in * LCM-free cross scale
            let load = self.counters[i].load(Relaxed) as u128;
            let score = (load << 32) / self.backends[i].weight.max(1) as u128;
            if score < best_score {
                best_score = score;
                best = i;
            }
        }
        best
    }
}

impl BackendSelection for LeastConnections {
    type Iter = RingIter<LeastConnections>;
    type Config = Counters;

    fn build_with_config(backends: &BTreeSet<Backend>, counters: &Counters) -> Self {
        let backends: Box<[Backend]> = backends.iter().cloned().collect();
        let counters = backends
            .iter()
            .map(|b| {
                b.addr
                    .as_inet()
                    .and_then(|a| counters.get(a))
                    .map(|s| s.in_flight.clone())
                    .unwrap_or_default()
            })
            .collect();
        LeastConnections {
            backends,
            counters,
            tie: AtomicUsize::new(0),
        }
    }

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Counters::default())
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> Self::Iter {
        RingIter {
            sel: self.clone(),
            first: self.pick(),
            step: 0,
            len: self.backends.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_schedule_matches_nginx() {
        // nginx: weights a=5 b=1 c=1 → a a b a c a a
        assert_eq!(smooth_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_schedule(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(smooth_schedule(&[2, 2]), vec![0, 1]);
    }

    #[test]
    fn least_connections_prefers_idle() {
        let set: BTreeSet<Backend> = ["127.0.0.1:1", "127.0.0.1:2"]
            .iter()
            .map(|a| Backend::new(a).unwrap())
            .collect();
        let busy = Arc::new(super::super::Shared::default());
        busy.in_flight.store(3, Relaxed);
        let idle = Arc::new(super::super::Shared::default());
        let mut map = HashMap::new();
        map.insert("127.0.0.1:1".parse().unwrap(), busy);
        map.insert("127.0.0.1:2".parse().unwrap(), idle.clone());
        let lc = Arc::new(LeastConnections::build_with_config(&set, &Arc::new(map)));
        for _ in 0..4 {
            let mut it = lc.iter(b"");
            assert_eq!(it.next().unwrap().addr.to_string(), "127.0.0.1:2");
        }
        idle.in_flight.store(5, Relaxed);
        let mut it = lc.iter(b"");
        assert_eq!(it.next().unwrap().addr.to_string(), "127.0.0.1:1");
    }
}
