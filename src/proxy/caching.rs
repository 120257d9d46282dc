//! The proxy's cache and compression hooks: each finds the route's
//! compiled blocks in the context and calls into [`crate::cache`]. Routes
//! without them return at the first check.

use super::Ctx;
use crate::cache;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, CacheMeta, NoCacheReason, RespCacheable};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

fn route_cache(ctx: &Ctx) -> Option<&cache::RouteCache> {
    ctx.route().and_then(|r| r.cache.as_deref())
}

/// `request_cache_filter`.
pub(super) fn enable(session: &mut Session, ctx: &Ctx) {
    // A background refresh runs the hooks again: it must fill, not bypass.
    if let (Some(rc), Some(_)) = (route_cache(ctx), ctx.group()) {
        cache::enable(session, rc);
    }
}

/// `cache_key_callback`.
pub(super) fn key(session: &Session, ctx: &Ctx) -> Result<CacheKey> {
    match route_cache(ctx) {
        Some(rc) => Ok(cache::cache_key(session, rc)),
        None => Error::e_explain(
            ErrorType::InternalError,
            "cache key on a route without cache",
        ),
    }
}

/// `response_cache_filter`.
pub(super) fn cacheable(session: &Session, resp: &ResponseHeader, ctx: &Ctx) -> RespCacheable {
    match route_cache(ctx) {
        Some(rc) => cache::cacheable(session, rc, resp),
        None => RespCacheable::Uncacheable(NoCacheReason::NeverEnabled),
    }
}

/// `cache_vary_filter`.
pub(super) fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
    cache::variance(meta, req)
}

/// `cache_hit_filter` on a fresh entry (a stale one may be replaced by the
/// backend's answer): a compressed hit may be served from a kept encoded copy.
pub(super) fn hit(
    session: &mut Session,
    meta: &CacheMeta,
    handler: &mut pingora_cache::storage::HitHandler,
    ctx: &Ctx,
) {
    if let Some(c) = ctx.route().and_then(|r| r.compression.as_deref()) {
        cache::variants::on_hit(session, c, meta, handler);
    }
}

/// `response_filter`: the status header, counts, invalidation, compression.
pub(super) fn response(session: &mut Session, resp: &mut ResponseHeader, ctx: &Ctx) {
    let Some(route) = ctx.route() else {
        return;
    };
    if let Some(rc) = route.cache.as_deref() {
        cache::respond(session, rc, resp);
    }
    if let Some(c) = route.compression.as_deref() {
        cache::compress::apply(session, c, resp);
    }
}
