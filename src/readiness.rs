//! Readiness, as `GET /ready` reports it: ready once every listener is bound
//! (the config is loaded before any service starts), not ready from the
//! moment a stop or an upgrade hand-over begins (the shared `draining` flag,
//! raised by [`crate::shutdown`] and the server's phase watcher).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Whether this process should be sent new traffic.
#[derive(Debug)]
pub struct Readiness {
    unbound: AtomicUsize,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    /// `listeners` still to bind; `draining` is raised when a stop begins.
    pub fn new(listeners: usize, draining: Arc<AtomicBool>) -> Arc<Readiness> {
        Arc::new(Readiness {
            unbound: AtomicUsize::new(listeners),
            draining,
        })
    }

    /// `n` listeners are bound (or were given up by an upgrading process).
    pub fn bound(&self, n: usize) {
        let _ = self
            .unbound
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// Every listener is bound and no stop or hand-over has begun.
    pub fn is_ready(&self) -> bool {
        self.unbound.load(Ordering::Acquire) == 0 && !self.draining.load(Ordering::Acquire)
    }

    /// A stop or an upgrade hand-over has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_after_every_bind_until_draining() {
        let draining = Arc::new(AtomicBool::new(false));
        let r = Readiness::new(2, draining.clone());
        assert!(!r.is_ready());
        r.bound(1);
        assert!(!r.is_ready());
        r.bound(1);
        assert!(r.is_ready());
        r.bound(1);
        assert!(r.is_ready());
        draining.store(true, Ordering::Release);
        assert!(!r.is_ready());
    }
}
