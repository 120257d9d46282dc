//! `least_request`: the power of two choices (Envoy's P2C). Of two backends
//! drawn at random, the one with fewer requests in flight per unit of
//! weight wins; the loser is offered next, then every other backend in ring
//! order (for when the caller refuses the first: unhealthy, open circuit,
//! already tried). Selecting is a few atomic loads, no lock and no
//! allocation.

use super::{BackendList, Counters};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

thread_local! {
    /// Per-thread xorshift state: no shared line between workers.
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1
}

/// A uniform random index below `n` (`n` > 0), from a per-thread xorshift.
pub fn random_below(n: usize) -> usize {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        ((u128::from(x) * n as u128) >> 64) as usize
    })
}

/// Two distinct random indices below `n` (the same one twice when `n` is 1).
pub fn two_of(n: usize) -> (usize, usize) {
    if n < 2 {
        return (0, 0);
    }
    let a = random_below(n);
    let mut b = random_below(n - 1);
    if b >= a {
        b += 1;
    }
    (a, b)
}

/// Offers `first`, then `second`, then every backend from `first + 1` on in
/// ring order (Pingora's `UniqueIterator` drops the repeats).
pub struct TwoThenRing<S> {
    pub(super) sel: Arc<S>,
    pub(super) first: usize,
    pub(super) second: usize,
    pub(super) step: usize,
    pub(super) len: usize,
}

impl<S: BackendList> BackendIter for TwoThenRing<S> {
    fn next(&mut self) -> Option<&Backend> {
        if self.len == 0 || self.step >= self.len + 2 {
            return None;
        }
        let i = match self.step {
            0 => self.first,
            1 => self.second,
            k => (self.first + k - 1) % self.len,
        };
        self.step += 1;
        self.sel.list().get(i)
    }
}

/// Envoy's `LEAST_REQUEST` with two choices.
pub struct LeastRequest {
    backends: Box<[Backend]>,
    in_flight: Box<[Arc<AtomicUsize>]>,
}

impl BackendList for LeastRequest {
    fn list(&self) -> &[Backend] {
        &self.backends
    }
}

impl LeastRequest {
    /// The winner and the loser of one draw of two.
    fn choose(&self) -> (usize, usize) {
        let (a, b) = two_of(self.backends.len());
        if a == b {
            return (a, b);
        }
        // a's load per weight below b's, compared without division.
        let load = |i: usize| self.in_flight[i].load(Relaxed) as u64 + 1;
        let weight = |i: usize| self.backends[i].weight.max(1) as u64;
        if load(b) * weight(a) < load(a) * weight(b) {
            (b, a)
        } else {
            (a, b)
        }
    }
}

impl BackendSelection for LeastRequest {
    type Iter = TwoThenRing<LeastRequest>;
    type Config = Counters;

    fn build_with_config(backends: &BTreeSet<Backend>, counters: &Counters) -> Self {
        let backends: Box<[Backend]> = backends.iter().cloned().collect();
        let in_flight = backends
            .iter()
            .map(|b| {
                b.addr
                    .as_inet()
                    .and_then(|a| counters.get(a))
                    .map(|s| s.in_flight.clone())
                    .unwrap_or_default()
            })
            .collect();
        LeastRequest {
            backends,
            in_flight,
        }
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
    use crate::upstream::Shared;
    use std::collections::HashMap;

    #[test]
    fn two_of_is_distinct_and_covers_all() {
        let mut seen = [0usize; 4];
        for _ in 0..400 {
            let (a, b) = two_of(4);
            assert_ne!(a, b);
            seen[a] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        assert_eq!(two_of(1), (0, 0));
    }

    #[test]
    fn the_busy_backend_loses_every_draw_it_is_in() {
        let set: BTreeSet<Backend> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|a| Backend::new(a).unwrap())
            .collect();
        let mut map = HashMap::new();
        for (i, a) in ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .enumerate()
        {
            let s = Shared::default();
            s.in_flight.store(if i == 0 { 10 } else { 1 }, Relaxed);
            map.insert(a.parse().unwrap(), Arc::new(s));
        }
        let lr = Arc::new(LeastRequest::build_with_config(&set, &Arc::new(map)));
        for _ in 0..200 {
            let mut it = lr.iter(b"");
            assert_ne!(it.next().unwrap().addr.to_string(), "127.0.0.1:1");
        }
    }
}
