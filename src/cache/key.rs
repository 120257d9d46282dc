//! The cache key of a request: the route's namespace, then each key part
//! length-prefixed (so no two different requests frame to the same bytes);
//! the URL (host, NUL, path and query) rides along as the key's tag for
//! purges and invalidation.

use super::route::{KeyPart, RouteCache};
use pingora_cache::CacheKey;
use pingora_http::RequestHeader;

/// The request's host as routing sees it.
fn host(req: &RequestHeader) -> String {
    let raw = req
        .uri
        .host()
        .map(str::as_bytes)
        .or_else(|| req.headers.get(http::header::HOST).map(|h| h.as_bytes()))
        .unwrap_or(b"");
    let mut buf = [0u8; 256];
    crate::router::normalize_host(raw, &mut buf).to_string()
}

/// `host` NUL `path[?query]`: what purges match.
pub fn url(host: &str, path: &str, query: Option<&str>) -> String {
    let mut u = String::with_capacity(host.len() + path.len() + 2 + query.map_or(0, str::len));
    u.push_str(host);
    u.push('\0');
    u.push_str(path);
    if let Some(q) = query {
        u.push('?');
        u.push_str(q);
    }
    u
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r [u8]> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

fn push(primary: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => {
            primary.extend_from_slice(&(v.len() as u32).to_be_bytes());
            primary.extend_from_slice(v);
        }
        None => primary.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

/// The key of `req` on a route caching with `rc`.
pub fn key(req: &RequestHeader, rc: &RouteCache) -> CacheKey {
    let host = host(req);
    let path = crate::path::normalize(req.uri.path()).unwrap_or_else(|_| req.uri.path().into());
    let query = req.uri.query();
    let mut primary = Vec::with_capacity(64 + host.len() + path.len());
    primary.extend_from_slice(&rc.namespace);
    for part in rc.parts.iter() {
        match part {
            // HEAD is answered from the GET entry.
            KeyPart::Method => push(&mut primary, Some(b"GET")),
            KeyPart::Host => push(&mut primary, Some(host.as_bytes())),
            KeyPart::Path => push(&mut primary, Some(path.as_bytes())),
            KeyPart::Query => push(&mut primary, query.map(str::as_bytes)),
            KeyPart::Header(h) => push(&mut primary, req.headers.get(h).map(|v| v.as_bytes())),
            KeyPart::Cookie(c) => push(&mut primary, cookie(req, c)),
        }
    }
    CacheKey::new(primary, url(&host, &path, query))
}

/// The URL an unsafe request invalidates.
pub fn request_url(req: &RequestHeader) -> String {
    let path = crate::path::normalize(req.uri.path()).unwrap_or_else(|_| req.uri.path().into());
    url(&host(req), &path, req.uri.query())
}
