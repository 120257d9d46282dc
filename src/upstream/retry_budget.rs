//! Retry budget per upstream (Envoy's `retry_budget`, Finagle's
//! `RetryBudget`): retries in flight may be at most `ratio` × requests in
//! flight, with `min_retries` always allowed, so that retries cannot
//! multiply the load exactly when backends are overloaded. A retry the
//! budget refuses is counted in `weir_retry_budget_exhausted_total`, and the
//! client gets the answer it would have got without a retry.
//!
//! Two counters per group, moved by guards that a request holds: one for
//! the request while it is in flight, one per retry granted to it.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// `retry_budget`, compiled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSpec {
    /// Share (0..=1) of the requests in flight that may be retries.
    pub ratio: f64,
    /// Retries in flight always allowed.
    pub min_retries: usize,
}

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicUsize,
    retries: AtomicUsize,
}

/// A group's budget.
#[derive(Debug)]
pub struct Budget {
    spec: BudgetSpec,
    counts: Arc<Counts>,
    exhausted: Option<prometheus::IntCounter>,
}

/// A request's hold on its group's budget: counted in flight until dropped,
/// with the retries it was granted.
#[derive(Debug)]
pub struct Hold {
    counts: Arc<Counts>,
    retries: usize,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.counts.requests.fetch_sub(1, Relaxed);
        self.counts.retries.fetch_sub(self.retries, Relaxed);
    }
}

impl Budget {
    /// A budget for upstream `name`.
    pub fn new(spec: BudgetSpec, name: &str) -> Budget {
        Budget {
            spec,
            counts: Arc::default(),
            exhausted: crate::metrics::retry_budget_exhausted(name),
        }
    }

    /// Counts a request in flight until the hold is dropped.
    pub fn hold(&self) -> Hold {
        self.counts.requests.fetch_add(1, Relaxed);
        Hold {
            counts: self.counts.clone(),
            retries: 0,
        }
    }

    /// Grants `hold` one more retry if the budget allows it now; a refusal
    /// is counted.
    pub fn try_retry(&self, hold: &mut Hold) -> bool {
        let requests = self.counts.requests.load(Relaxed) as f64;
        let retries = self.counts.retries.load(Relaxed);
        let ok =
            retries < self.spec.min_retries || (retries + 1) as f64 <= self.spec.ratio * requests;
        if ok {
            self.counts.retries.fetch_add(1, Relaxed);
            hold.retries += 1;
        } else if let Some(c) = &self.exhausted {
            c.inc();
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_ratio_but_min_retries_always_pass() {
        let b = Budget::new(
            BudgetSpec {
                ratio: 0.2,
                min_retries: 1,
            },
            "t",
        );
        let mut holds: Vec<Hold> = (0..10).map(|_| b.hold()).collect();
        let granted = holds
            .iter_mut()
            .map(|h| b.try_retry(h))
            .filter(|ok| *ok)
            .count();
        assert_eq!(granted, 2, "20% of 10 in flight");
        drop(holds);
        let mut one = b.hold();
        assert!(b.try_retry(&mut one), "min_retries");
        assert!(!b.try_retry(&mut one));
    }
}
