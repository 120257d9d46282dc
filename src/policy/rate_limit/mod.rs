//! `rate_limit`: requests per second per key (`client_ip`, or
//! `header:NAME` falling back to the client address); 429 with
//! `Retry-After` past it, counted in `weir_rate_limited_total{route}`.
//!
//! Locally, counts live in pingora-limits' `Rate`: a count-min sketch of a
//! fixed size per route (two windows of `HASHES` × `SLOTS` counters), so
//! memory stays the same however many distinct keys arrive; a flood of keys
//! can only make estimates too high, never let a hot key through. With
//! `shared`, counts live in Redis ([`shared`]) and every weir that names the
//! same server shares one budget.

pub mod shared;

use super::{Answer, Decision, RequestView};
use crate::config::model::RateLimitConfig;
use crate::config::Issue;
use crate::values::HashKey;
use http::header::RETRY_AFTER;
use http::{HeaderName, HeaderValue};
use pingora_limits::rate::Rate;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::Duration;

/// Rows of the local sketch.
const HASHES: usize = 4;
/// Counters per row: with 8,192, even 20,000 distinct keys in one second
/// leave a fresh key's estimate near zero. 4 × 8,192 × 8 bytes × 2 windows
/// = 512 KiB per rate-limited route.
const SLOTS: usize = 8192;

/// What the budget is counted per.
#[derive(Debug, Clone)]
enum KeySource {
    ClientIp,
    Header(HeaderName),
}

/// The key of one request.
#[derive(Hash)]
enum Key<'a> {
    Ip(Option<IpAddr>),
    Bytes(&'a [u8]),
}

enum Store {
    Local(std::sync::Arc<Rate>),
    Shared(shared::SharedLimit),
}

/// A compiled rate limit.
pub struct RateLimit {
    limit: u32,
    key: KeySource,
    store: Store,
    limited: Option<prometheus::IntCounter>,
}

impl RateLimit {
    /// Compiles `rate_limit` at `base` for the route named `route`.
    pub fn compile(
        cfg: &RateLimitConfig,
        route: &str,
        base: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<RateLimit> {
        if cfg.requests_per_second == 0 {
            issues.push(Issue::new(
                format!("{base}.requests_per_second"),
                "must be at least 1",
            ));
        }
        let key = match cfg.key.as_deref().map(HashKey::parse) {
            None | Some(Some(HashKey::ClientIp)) => KeySource::ClientIp,
            Some(Some(HashKey::Header(h))) => KeySource::Header(h),
            Some(_) => {
                issues.push(Issue::new(
                    format!("{base}.key"),
                    "write client_ip or header:NAME",
                ));
                KeySource::ClientIp
            }
        };
        let store = match &cfg.shared {
            None => Store::Local(std::sync::Arc::new(Rate::new_with_estimator_config(
                Duration::from_secs(1),
                HASHES,
                SLOTS,
            ))),
            Some(s) => Store::Shared(shared::SharedLimit::compile(
                s,
                route,
                &format!("{base}.shared"),
                issues,
            )?),
        };
        Some(RateLimit {
            limit: cfg.requests_per_second,
            key,
            store,
            limited: crate::metrics::rate_limited(route),
        })
    }

    /// Keeps counting in `prev`'s windows (the same route, unchanged, in the
    /// snapshot being replaced), so a rebuild does not hand out a new budget.
    pub fn carry_over(&mut self, prev: &RateLimit) {
        if let (Store::Local(_), Store::Local(old)) = (&self.store, &prev.store) {
            self.store = Store::Local(old.clone());
        }
    }

    fn key<'a>(&self, v: &'a RequestView<'_>) -> Key<'a> {
        match &self.key {
            KeySource::Header(h) => match v.req.headers.get(h) {
                Some(val) if !val.is_empty() => Key::Bytes(val.as_bytes()),
                _ => Key::Ip(v.client),
            },
            KeySource::ClientIp => Key::Ip(v.client),
        }
    }

    /// 429 once the key's budget for this second is spent.
    pub async fn request(&self, v: &RequestView<'_>) -> Decision {
        let key = self.key(v);
        let over = match &self.store {
            Store::Local(rate) => rate.observe(&key, 1) > self.limit as isize,
            Store::Shared(s) => match s.count(key_id(&key)).await {
                shared::Outcome::Counted(n) => n > i64::from(self.limit),
                shared::Outcome::Allow => false,
                shared::Outcome::Deny => return Decision::Respond(unavailable()),
            },
        };
        if !over {
            return Decision::Continue;
        }
        if let Some(c) = &self.limited {
            c.inc();
        }
        Decision::Respond(Answer {
            status: 429,
            header: Some((RETRY_AFTER, HeaderValue::from_static("1"))),
            body: None,
        })
    }
}

/// The answer when a shared limit cannot be checked and `on_error: deny`.
fn unavailable() -> Answer {
    Answer {
        status: 503,
        header: Some((RETRY_AFTER, HeaderValue::from_static("1"))),
        body: Some("rate limit unavailable\n"),
    }
}

/// A stable id of a key for the shared store: the same in every process
/// of the same build, and of bounded length whatever the header holds.
fn key_id(key: &Key<'_>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keys_do_not_inflate_a_fresh_key() {
        let rate = Rate::new_with_estimator_config(Duration::from_secs(1), HASHES, SLOTS);
        for i in 0..20_000u32 {
            rate.observe(&Key::Bytes(&i.to_be_bytes()), 1);
        }
        // Each counter holds ~2.4 foreign counts on average; the minimum over
        // 4 rows stays far below any useful limit (P(>= 8) is ~1e-10).
        let fresh = rate.observe(&Key::Bytes(b"fresh"), 1);
        assert!(fresh <= 8, "fresh key estimated at {fresh}");
    }
}
