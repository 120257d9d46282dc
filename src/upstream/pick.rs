//! Choosing a backend in a group: the algorithm's candidates filtered by
//! health, tries, circuit and probation, with the group-level rules over
//! them (panic mode, slow start, the ejection cap), and the effective
//! weight `/status` and the metrics show.

use super::{Admit, BackendInfo, BreakerSpec, Circuit, Group};
use pingora_load_balancing::Backend;
use std::net::SocketAddr;
use std::sync::Arc;

impl Group {
    /// The backend the algorithm offers for `key` that is healthy, not
    /// `tried` and admitted by its circuit and probation, with whether it is
    /// a half-open circuit's trial; `claim` takes that trial (without, this
    /// only asks whether one is available). In panic mode every enabled
    /// backend not tried is admitted; a backend in slow start is taken with
    /// its ramp's probability (a second pass without the ramp follows when
    /// nothing else takes the request). The HTTP and tcp paths both select
    /// through here.
    pub fn pick(
        &self,
        key: &[u8],
        tried: impl Fn(SocketAddr) -> bool,
        claim: bool,
    ) -> Option<(Arc<BackendInfo>, bool)> {
        let panic = self.in_panic();
        let first = self.pick_pass(key, &tried, claim, panic, self.slow_start);
        match (first, self.slow_start) {
            (None, Some(_)) => self.pick_pass(key, &tried, claim, panic, None),
            (found, _) => found,
        }
    }

    fn pick_pass(
        &self,
        key: &[u8],
        tried: &impl Fn(SocketAddr) -> bool,
        claim: bool,
        panic: bool,
        ramp: Option<std::time::Duration>,
    ) -> Option<(Arc<BackendInfo>, bool)> {
        let trial = std::cell::Cell::new(false);
        let accept = |b: &Backend, healthy: bool| {
            let Some(addr) = b.addr.as_inet() else {
                return false;
            };
            if tried(*addr) {
                return false;
            }
            if panic {
                return true;
            }
            if !healthy {
                return false;
            }
            if let Some(ramp) = ramp {
                if !self
                    .backends
                    .get(addr)
                    .is_some_and(|i| i.shared.entered.admit(ramp))
                {
                    return false;
                }
            }
            if !self.gated {
                return true;
            }
            match self.backends.get(addr).map(|i| self.admit(i, claim)) {
                Some(Admit::Yes) => true,
                Some(Admit::Trial) => {
                    trial.set(true);
                    true
                }
                _ => false,
            }
        };
        let info = match &self.single {
            Some((only, info)) => accept(only, self.balancer.ready(only)).then(|| info.clone())?,
            None => {
                let chosen = self.balancer.select_with(key, accept)?;
                self.backends.get(chosen.addr.as_inet()?)?.clone()
            }
        };
        Some((info, trial.get()))
    }

    /// Whether the group is in panic mode (re-judged at most every 100 ms).
    pub fn in_panic(&self) -> bool {
        let Some(p) = &self.panic else { return false };
        p.check(&self.name, || {
            let enabled = self.order.iter().filter(|a| {
                self.backends
                    .get(a)
                    .is_some_and(|b| b.enabled && !b.draining)
            });
            let (mut up, mut total) = (0, 0);
            for a in enabled {
                total += 1;
                up += usize::from(self.is_up(*a));
            }
            (up, total)
        })
    }

    /// The weight a backend takes traffic with now: 0 when out of service
    /// (unless the group panics), its weight scaled by its slow-start ramp.
    pub fn effective_weight(&self, info: &BackendInfo) -> f64 {
        let in_panic = self.panic.as_ref().is_some_and(|p| p.is_on());
        let serving = info.enabled && !info.draining && (in_panic || self.is_up(info.addr));
        if !serving {
            return 0.0;
        }
        let ramp = self
            .slow_start
            .map_or(1.0, |d| info.shared.entered.factor(d));
        f64::from(info.weight) * ramp
    }

    /// The ejection cap (`max_open_percent`): whether one more circuit may
    /// open, counting the enabled backends and those whose circuit is not
    /// closed. One may always open. Asked only when a circuit would open.
    /// Two circuits opening at the same instant may both pass (the count
    /// is read, not reserved): the cap can be exceeded by one, briefly.
    pub(super) fn may_open_another(&self, spec: &BreakerSpec) -> bool {
        let enabled = self.backends.values().filter(|b| b.enabled);
        let (mut total, mut open) = (0usize, 0usize);
        for b in enabled {
            total += 1;
            open += usize::from(b.shared.breaker.circuit() != Circuit::Closed);
        }
        let cap = ((total as f64 * spec.max_open_share).floor() as usize).max(1);
        let ok = open < cap;
        if !ok {
            log::debug!(
                "{}: {open} of {total} circuits open already (max_open_percent); a failing backend stays in service",
                self.name
            );
        }
        ok
    }
}
