//! Whether an answer may be stored, and for how long (SPEC §1.1, RFC 9111
//! §3): explicit freshness (`s-maxage` over `max-age`, then `Expires`), or
//! the route's `default_ttl` for statuses cacheable by default; never
//! `no-store`, `private`, `Set-Cookie`, `Vary: *`, or an answer to a request
//! with `Authorization` unless the answer allows it.

use super::route::RouteCache;
use pingora_cache::cache_control::{CacheControl, Cacheable as Cc, InterpretCacheControl};
use pingora_cache::filters::{calculate_expires_header_time, calculate_serve_stale_durations};
use pingora_cache::{CacheMeta, CacheMetaDefaults, NoCacheReason, RespCacheable};
use pingora_http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// Statuses stored when the answer gives explicit freshness.
fn storable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 302 | 307 | 308 | 404 | 405 | 410 | 414 | 451 | 501
    )
}

/// Statuses stored without explicit freshness, for `default_ttl`.
fn cacheable_by_default(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

fn no_default(_: http::StatusCode) -> Option<Duration> {
    None
}

const NOT: RespCacheable = RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);

/// Whether the head forbids storing whatever its `Cache-Control` says.
fn forbidden(resp: &ResponseHeader) -> bool {
    resp.headers.contains_key(http::header::SET_COOKIE)
        || resp.headers.get_all(http::header::VARY).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii() == b"*")
        })
}

fn too_large(resp: &ResponseHeader, max: usize) -> bool {
    resp.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > max)
}

/// The storage decision for `resp`, answer to `req`, on a route caching with `rc`.
pub fn decide(rc: &RouteCache, req: &RequestHeader, resp: &ResponseHeader) -> RespCacheable {
    let status = resp.status.as_u16();
    if !storable(status) || forbidden(resp) {
        return NOT;
    }
    if too_large(resp, rc.max_object_size) {
        return RespCacheable::Uncacheable(NoCacheReason::ResponseTooLarge);
    }
    let cc = CacheControl::from_resp_headers(resp);
    let authorized = req.headers.contains_key(http::header::AUTHORIZATION);
    if authorized
        && !cc
            .as_ref()
            .is_some_and(|c| c.allow_caching_authorized_req())
    {
        return NOT;
    }
    if cc.as_ref().is_some_and(|c| c.is_cacheable() == Cc::No) {
        return NOT;
    }
    let now = SystemTime::now();
    let until = |ttl: Duration| match ttl.is_zero() {
        // Stored, but stale at once: revalidated before use.
        true => now.checked_sub(Duration::from_secs(1)),
        false => now.checked_add(ttl),
    };
    let fresh_until = cc
        .as_ref()
        .and_then(|c| c.fresh_duration())
        .and_then(until)
        .or_else(|| calculate_expires_header_time(resp))
        .or_else(|| {
            (cacheable_by_default(status) && !rc.default_ttl.is_zero())
                .then(|| until(rc.default_ttl))
                .flatten()
        });
    let Some(fresh_until) = fresh_until else {
        return NOT;
    };
    let defaults = CacheMetaDefaults::new(no_default, rc.swr, rc.sie);
    let (swr, sie) = calculate_serve_stale_durations(cc.as_ref(), &defaults);
    let mut head = resp.clone();
    if let Some(c) = &cc {
        c.strip_private_headers(&mut head);
    }
    RespCacheable::Cacheable(CacheMeta::new(fresh_until, now, swr, sie, head))
}
