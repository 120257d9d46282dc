//! Response caching and compression (SPEC §1.1). weir builds on
//! pingora-cache's HTTP cache state machine (freshness, revalidation,
//! `304`/`206` from the cache, `Vary`, the cache lock, stale serving) and
//! brings its own storage ([`memory`]) and policy: the key ([`key`]), what
//! may be stored ([`decide`]), the status header and metrics, invalidation
//! and purges. Compression ([`compress`]) arms Pingora's response
//! compression module per response. The proxy calls the functions here
//! from its `ProxyHttp` hooks; routes without a `cache` block never reach
//! them.

pub mod compress;
pub mod decide;
pub mod disk;
pub mod encoder;
pub mod entry;
pub mod hit;
pub mod key;
pub mod memory;
pub mod route;
pub mod stats;
pub mod status;
pub mod tiers;
pub mod url_index;
pub mod variants;

use memory::MemoryStorage;
use pingora_cache::key::HashBinary;
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_cache::{CacheMeta, CacheOptionOverrides, CachePhase, NoCacheReason, VarianceBuilder};
use pingora_error::{Error, ErrorSource, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
pub use route::{KeyPart, Outcome, RouteCache};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;
use tiers::Tiers;

/// The process's memory tier, made on first use with the size of the
/// config of that moment (a later change of `cache.memory` needs a restart).
static STORAGE: OnceLock<&'static Tiers> = OnceLock::new();

/// How long one fill may hold a key's lock before waiters compete again.
const LOCK_AGE: Duration = Duration::from_secs(60);

static LOCK: LazyLock<&'static CacheKeyLockImpl> =
    LazyLock::new(|| Box::leak(CacheLock::new_boxed(LOCK_AGE)));

fn storage(rc: &RouteCache) -> &'static Tiers {
    STORAGE.get_or_init(|| {
        stats::init();
        let disk = rc.disk.as_ref().and_then(|(path, size)| {
            disk::DiskTier::open(path, *size)
                .map_err(|e| log::error!("cache: disk tier {} unusable: {e}", path.display()))
                .ok()
        });
        Box::leak(Box::new(Tiers {
            memory: MemoryStorage::new(rc.memory),
            disk,
        }))
    })
}

/// `request_cache_filter`: a `GET` or `HEAD` on a caching route uses the cache.
pub fn enable(session: &mut Session, rc: &RouteCache) {
    let m = &session.req_header().method;
    if *m != http::Method::GET && *m != http::Method::HEAD {
        return;
    }
    let mut o = CacheOptionOverrides::default();
    o.wait_timeout = Some(rc.lock_timeout);
    session
        .cache
        .enable(storage(rc), None, None, Some(*LOCK), Some(o));
    session.cache.set_max_file_size_bytes(rc.max_object_size);
}

/// Keeps an encoded copy of an entry (see [`variants`]).
pub fn store_encoded(entry: entry::Entry) {
    if let Some(s) = STORAGE.get() {
        s.store_encoded(entry);
    }
}

/// `cache_key_callback`.
pub fn cache_key(session: &Session, rc: &RouteCache) -> pingora_cache::CacheKey {
    key::key(session.req_header(), rc)
}

/// `response_cache_filter`.
pub fn cacheable(
    session: &Session,
    rc: &RouteCache,
    resp: &ResponseHeader,
) -> pingora_cache::RespCacheable {
    decide::decide(rc, session.req_header(), resp)
}

/// `cache_vary_filter`: the variant of `req` under the entry's `Vary`.
pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
    let vary = meta.headers().get_all(http::header::VARY);
    let mut b = VarianceBuilder::new();
    let mut any = false;
    for v in vary.iter() {
        for name in v.as_bytes().split(|c| *c == b',') {
            let name = name.trim_ascii();
            if name.is_empty() {
                continue;
            }
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            let value = req
                .headers
                .get(name.as_str())
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default();
            b.add_owned_name_value(name, value);
            any = true;
        }
    }
    if any {
        b.finalize()
    } else {
        None
    }
}

/// `should_serve_stale`: during a refresh (within the entry's window), or
/// when the backend failed (5xx, refused, timeout).
pub fn serve_stale(error: Option<&Error>) -> bool {
    match error {
        None => true,
        Some(e) => {
            matches!(e.etype(), ErrorType::HTTPStatus(s) if *s >= 500)
                || e.esource() == &ErrorSource::Upstream
        }
    }
}

fn outcome(phase: CachePhase) -> Outcome {
    match phase {
        CachePhase::Hit => Outcome::Hit,
        CachePhase::Miss => Outcome::Miss,
        CachePhase::Stale => Outcome::Stale,
        CachePhase::StaleUpdating => Outcome::Updating,
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => Outcome::Revalidated,
        CachePhase::Expired => Outcome::Expired,
        CachePhase::Disabled(NoCacheReason::NeverEnabled)
        | CachePhase::Bypass
        | CachePhase::Uninit
        | CachePhase::CacheKey => Outcome::Bypass,
        CachePhase::Disabled(_) => Outcome::Miss,
    }
}

/// `response_filter` on a caching route: the status header, the metric,
/// and invalidation after a successful unsafe method.
pub fn respond(session: &Session, rc: &RouteCache, resp: &mut ResponseHeader) {
    if resp.status.is_informational() {
        return;
    }
    let o = outcome(session.cache.phase());
    rc.count(o);
    if let Some(h) = &rc.status_header {
        let _ = resp.insert_header(h.clone(), o.header());
    }
    let req = session.req_header();
    let unsafe_method = matches!(
        req.method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::DELETE
    );
    if unsafe_method && resp.status.as_u16() < 400 {
        if let Some(s) = STORAGE.get() {
            s.purge_url(&key::request_url(req));
        }
    }
}

/// Removes the entries of `host` (any host when empty) and `path` (every
/// path under it with `prefix`); how many.
pub fn purge(host: &str, path: &str, prefix: bool) -> usize {
    let Some(s) = STORAGE.get() else {
        return 0;
    };
    let mut buf = [0u8; 256];
    let given = !host.is_empty();
    let host = crate::router::normalize_host(host.as_bytes(), &mut buf);
    if given && host.is_empty() {
        return 0;
    }
    if given && !prefix {
        return s.purge_url(&key::url(host, path, None));
    }
    s.purge_matching(|u| {
        let (h, p) = u.split_once('\0').unwrap_or(("", u));
        (host.is_empty() || h == host)
            && match prefix {
                true => under(p, path),
                false => p == path,
            }
    })
}

/// Whether `p` (path and query) is `prefix` or under it, segment-aware.
fn under(p: &str, prefix: &str) -> bool {
    match p.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with(['/', '?']),
        None => false,
    }
}
