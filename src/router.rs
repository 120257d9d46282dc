//! The route matchers. Matching is first-match in file order and does not
//! allocate: the host picks a precomputed candidate list (exact hosts are a
//! hash lookup; any other host walks the wildcard and host-less rules), then
//! each candidate checks listener, path prefix, method and headers. The
//! router knows nothing of what a route does: it answers with the index of
//! the route that matched.

use crate::path::{prefix_matches, prefix_matches_ignore_case};
pub use crate::values::{allow_header, method_bit};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::collections::HashMap;

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
    /// Whether a normalized host satisfies the condition.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => **h == *host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(&**s),
        }
    }
}

/// What a request must look like for one route.
#[derive(Debug)]
pub struct Matcher {
    /// Bit i set: applies to listener i.
    pub listeners: u64,
    /// Host condition.
    pub host: HostMatch,
    /// Path prefix, if any.
    pub prefix: Option<Box<str>>,
    /// The prefix ignores ASCII case.
    pub ignore_case: bool,
    /// Allowed methods as a bit mask over `values::METHODS`; `None` = any.
    pub methods: Option<u16>,
    /// Required headers.
    pub headers: Box<[(HeaderName, HeaderValue)]>,
}

/// Result of matching a request.
#[derive(Debug)]
pub enum Match {
    /// The route at this index (file order) serves it.
    Found(usize),
    /// Routes would match but for the method; the mask lists theirs.
    MethodNotAllowed(u16),
    /// Nothing matches.
    NotFound,
}

/// The route table.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Matcher>,
    by_host: HashMap<Box<str>, Box<[u32]>>,
    fallback: Box<[u32]>,
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
    /// Builds the table from matchers in file order.
    pub fn new(routes: Vec<Matcher>) -> Router {
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

    /// Finds the route for a request. `host` must be normalized
    /// ([`normalize_host`]) and `path` normalized ([`crate::path::normalize`]).
    pub fn find(
        &self,
        listener: usize,
        host: &str,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Match {
        let bit = method_bit(method);
        let mut allowed = 0u16;
        let (candidates, check_host) = match self.by_host.get(host) {
            Some(list) => (&**list, false),
            None => (&*self.fallback, true),
        };
        for &i in candidates {
            let Some(r) = self.routes.get(i as usize) else {
                continue;
            };
            if r.listeners & (1 << listener) == 0
                || (check_host && !r.host.matches(host))
                || !r.prefix.as_deref().is_none_or(|p| {
                    if r.ignore_case {
                        prefix_matches_ignore_case(p, path)
                    } else {
                        prefix_matches(p, path)
                    }
                })
                || !r.headers.iter().all(|(n, v)| headers.get(n) == Some(v))
            {
                continue;
            }
            match r.methods {
                Some(mask) if mask & bit == 0 => allowed |= mask,
                _ => return Match::Found(i as usize),
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

    const NAMES: [&str; 3] = ["wild", "api", "any"];

    fn route(_name: &str, host: HostMatch, prefix: Option<&str>, methods: Option<u16>) -> Matcher {
        Matcher {
            listeners: 1,
            host,
            prefix: prefix.map(Into::into),
            ignore_case: false,
            methods,
            headers: Box::new([]),
        }
    }

    fn name(m: Match) -> String {
        match m {
            Match::Found(i) => NAMES[i].to_string(),
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
