//! The compiled route table. Matching is first-match in file order and does
//! not allocate: the host picks a precomputed candidate list (exact hosts are
//! a hash lookup; any other host walks the wildcard and host-less rules),
//! then each candidate checks listener, path prefix, method and headers.

use crate::config::validate::METHODS;
use crate::policy::headers::HeaderOps;
use crate::policy::rewrite::PathRewrite;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Host condition of a route.
#[derive(Debug, Clone)]
pub enum HostMatch {
    /// No host condition.
    Any,
    /// Lower-cased exact host.
    Exact(Box<str>),
    /// `*.example.com` stored as `.example.com`.
    Suffix(Box<str>),
}

impl HostMatch {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => **h == *host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(&**s),
        }
    }
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Proxy to the upstream group at this index of the snapshot.
    Upstream(usize),
    /// Answer directly.
    Respond {
        /// Status code.
        status: u16,
        /// Body bytes.
        body: Bytes,
        /// Content-Type value.
        content_type: HeaderValue,
    },
}

/// Per-route timeouts, already merged with the upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connect timeout.
    pub connect: Duration,
    /// Read timeout (gap between bytes).
    pub read: Duration,
    /// Write timeout.
    pub write: Duration,
    /// Idle timeout of pooled connections.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            write: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// Position in file order (set by [`Router::new`]).
    pub index: usize,
    /// Name for logs and metrics.
    pub name: Arc<str>,
    /// Bit i set: applies to listener i.
    pub listeners: u64,
    /// Host condition.
    pub host: HostMatch,
    /// Path prefix, if any.
    pub prefix: Option<Box<str>>,
    /// Allowed methods as a bit mask over [`METHODS`]; `None` = any.
    pub methods: Option<u16>,
    /// Required headers.
    pub headers: Box<[(HeaderName, HeaderValue)]>,
    /// What to do.
    pub action: Action,
    /// Path sent upstream.
    pub rewrite: PathRewrite,
    /// Timeouts towards the backend.
    pub timeouts: Timeouts,
    /// Extra tries on other backends.
    pub retries: u32,
    /// Retry idempotent requests after a read timeout.
    pub retry_on_timeout: bool,
    /// Changes to the upstream request.
    pub request_headers: HeaderOps,
    /// Changes to the response.
    pub response_headers: HeaderOps,
    /// Metric handles.
    pub metrics: crate::metrics::RouteMetrics,
}

/// Result of matching a request.
#[derive(Debug)]
pub enum Match<'a> {
    /// This route serves it.
    Found(&'a Route),
    /// Routes would match but for the method; the mask lists theirs.
    MethodNotAllowed(u16),
    /// Nothing matches.
    NotFound,
}

/// The route table.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
    by_host: HashMap<Box<str>, Box<[u32]>>,
    fallback: Box<[u32]>,
}

/// Bit for a method in a method mask (unknown methods get no bit).
pub fn method_bit(m: &Method) -> u16 {
    METHODS
        .iter()
        .position(|x| *x == m.as_str())
        .map(|i| 1 << i)
        .unwrap_or(0)
}

/// Formats a method mask for an `Allow` header.
pub fn allow_header(mask: u16) -> String {
    METHODS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, m)| *m)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Segment-aware prefix test: `/v1` matches `/v1` and `/v1/x`, not `/v10`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// Lower-cases a Host value and drops its port and trailing dot into `buf`.
/// Hosts longer than the buffer are returned as "" (they match only host-less routes).
pub fn normalize_host<'b>(raw: &[u8], buf: &'b mut [u8; 256]) -> &'b str {
    let host = if raw.first() == Some(&b'[') {
        match raw.iter().position(|&c| c == b']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.iter().rposition(|&c| c == b':') {
            Some(i) => &raw[..i],
            None => raw,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.len() > buf.len() {
        return "";
    }
    for (d, s) in buf.iter_mut().zip(host) {
        *d = s.to_ascii_lowercase();
    }
    std::str::from_utf8(&buf[..host.len()]).unwrap_or("")
}

impl Router {
    /// Builds the table from routes in file order.
    pub fn new(mut routes: Vec<Route>) -> Router {
        for (i, r) in routes.iter_mut().enumerate() {
            r.index = i;
        }
        let mut by_host: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        for r in &routes {
            if let HostMatch::Exact(h) = &r.host {
                by_host.entry(h.clone()).or_default();
            }
        }
        for (host, list) in by_host.iter_mut() {
            for (i, r) in routes.iter().enumerate() {
                if r.host.matches(host) {
                    list.push(i as u32);
                }
            }
        }
        let fallback = routes
            .iter()
            .enumerate()
            .filter(|(_, r)| !matches!(r.host, HostMatch::Exact(_)))
            .map(|(i, _)| i as u32)
            .collect();
        Router {
            routes,
            by_host: by_host
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
            fallback,
        }
    }

    /// All routes in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the route for a request. `host` must be normalized
    /// ([`normalize_host`]) and `path` normalized ([`crate::path::normalize`]).
    pub fn find(
        &self,
        listener: usize,
        host: &str,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Match<'_> {
        let bit = method_bit(method);
        let mut allowed = 0u16;
        let (candidates, check_host) = match self.by_host.get(host) {
            Some(list) => (&**list, false),
            None => (&*self.fallback, true),
        };
        for &i in candidates {
            let r = &self.routes[i as usize];
            if r.listeners & (1 << listener) == 0
                || (check_host && !r.host.matches(host))
                || !r.prefix.as_deref().is_none_or(|p| prefix_matches(p, path))
                || !r.headers.iter().all(|(n, v)| headers.get(n) == Some(v))
            {
                continue;
            }
            match r.methods {
                Some(mask) if mask & bit == 0 => allowed |= mask,
                _ => return Match::Found(r),
            }
        }
        if allowed != 0 {
            Match::MethodNotAllowed(allowed)
        } else {
            Match::NotFound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: HostMatch, prefix: Option<&str>, methods: Option<u16>) -> Route {
        Route {
            index: 0,
            name: name.into(),
            listeners: 1,
            host,
            prefix: prefix.map(Into::into),
            methods,
            headers: Box::new([]),
            action: Action::Upstream(0),
            rewrite: PathRewrite::None,
            timeouts: Timeouts::default(),
            retries: 1,
            retry_on_timeout: false,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            metrics: crate::metrics::RouteMetrics::new(name, "-"),
        }
    }

    fn name(m: Match<'_>) -> String {
        match m {
            Match::Found(r) => r.name.to_string(),
            Match::MethodNotAllowed(mask) => format!("405 {}", allow_header(mask)),
            Match::NotFound => "404".into(),
        }
    }

    #[test]
    fn first_match_across_exact_wildcard_and_any() {
        let router = Router::new(vec![
            route(
                "wild",
                HostMatch::Suffix(".example.com".into()),
                Some("/w"),
                None,
            ),
            route(
                "api",
                HostMatch::Exact("api.example.com".into()),
                None,
                Some(1),
            ),
            route("any", HostMatch::Any, Some("/v1"), None),
        ]);
        let h = HeaderMap::new();
        let get = Method::GET;
        assert_eq!(
            name(router.find(0, "api.example.com", "/w/x", &get, &h)),
            "wild"
        );
        assert_eq!(
            name(router.find(0, "api.example.com", "/x", &get, &h)),
            "api"
        );
        assert_eq!(
            name(router.find(0, "a.b.example.com", "/w", &get, &h)),
            "wild"
        );
        assert_eq!(name(router.find(0, "example.com", "/w", &get, &h)), "404");
        assert_eq!(name(router.find(0, "other", "/v1/x", &get, &h)), "any");
        assert_eq!(name(router.find(0, "other", "/v10", &get, &h)), "404");
        assert_eq!(
            name(router.find(0, "api.example.com", "/x", &Method::POST, &h)),
            "405 GET"
        );
        assert_eq!(
            name(router.find(1, "api.example.com", "/x", &get, &h)),
            "404"
        );
    }

    #[test]
    fn host_normalization() {
        let mut buf = [0u8; 256];
        assert_eq!(
            normalize_host(b"API.Example.com.:8080", &mut buf),
            "api.example.com"
        );
        assert_eq!(normalize_host(b"[::1]:8080", &mut buf), "[::1]");
    }
}
