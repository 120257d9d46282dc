#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests (proptest) of the parts that read untrusted input or decide
//! where a request goes: path normalization against a reference written
//! from SPEC §4, `;`-parameter stripping, the router against a naive
//! first-match reference over generated route tables, the config loader on
//! arbitrary and mutated files, and the small value parsers.
//!
//! Case counts are bounded (at most 256 per property) so the whole file runs
//! in a few seconds in debug. Failures are not persisted to files: proptest
//! prints the minimal input.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::Config as ProptestConfig;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use weir::path::{match_form, normalize, PathError};
use weir::router::{normalize_host, Match};
use weir::values::{parse_size, Cidr, METHODS};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

// ---------------------------------------------------------------------------
// 1. Path normalization
// ---------------------------------------------------------------------------

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// SPEC §4, written the plain way: decode unreserved %XX (other escapes
/// kept, hex upper-cased), reject `%2F` `%00` `%5C` `\` and bad escapes,
/// reject `.;…`/`..;…` segments, resolve dot segments with a stack
/// (climbing above `/` is an error), merge slashes. A directory-like ending
/// (`/`, `/.`, `/..`) keeps its trailing slash.
///
/// `Err` holds every reason found, so the implementation may report any one.
fn reference_normalize(path: &str) -> Result<String, Vec<PathError>> {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(vec![PathError::NotAbsolute]);
    }
    let mut reasons = Vec::new();
    if b.contains(&b'\\') {
        reasons.push(PathError::Ambiguous);
    }
    let mut decoded: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            decoded.push(b[i]);
            i += 1;
            continue;
        }
        let h = b.get(i + 1).copied().and_then(hex_value);
        let l = b.get(i + 2).copied().and_then(hex_value);
        let (Some(h), Some(l)) = (h, l) else {
            reasons.push(PathError::BadEscape);
            decoded.push(b'%');
            i += 1;
            continue;
        };
        let v = h * 16 + l;
        match v {
            b'/' | 0 => reasons.push(PathError::EncodedSlashOrNul),
            b'\\' => reasons.push(PathError::Ambiguous),
            v if unreserved(v) => decoded.push(v),
            _ => {
                decoded.push(b'%');
                decoded.extend(b[i + 1..i + 3].to_ascii_uppercase());
            }
        }
        i += 3;
    }
    let mut stack: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = decoded.split(|&c| c == b'/').collect();
    for seg in &segments {
        if seg.starts_with(b".;") || seg.starts_with(b"..;") {
            reasons.push(PathError::Ambiguous);
        }
        match *seg {
            b"" | b"." => {}
            b".." => {
                if stack.pop().is_none() {
                    reasons.push(PathError::AboveRoot);
                }
            }
            s => stack.push(s),
        }
    }
    if !reasons.is_empty() {
        return Err(reasons);
    }
    let last = segments.last().copied().unwrap_or(b"");
    let trailing = matches!(last, b"" | b"." | b"..");
    let mut out = Vec::new();
    for s in &stack {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing {
        out.push(b'/');
    }
    Ok(String::from_utf8(out).expect("segments split at '/' stay UTF-8"))
}

/// Pieces of request paths: separators, dots, escapes good and bad, `;`, `\`,
/// letters, and a non-ASCII letter.
const PATH_TOKENS: &[&str] = &[
    "/", "/", "/", "/", ".", ".", "..", "%", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "%00",
    "%41", "%7e", "%7E", "%20", "%3b", "%3B", "%e9", "%g1", "%2", "2", "e", "E", "f", "F", "c",
    "0", ";", ";x", "\\", "a", "b", "v1", "x", "~", "-", "_", "é", "ü",
];

/// Whole segments that exercise dot-segment, `;` and escape handling.
const PATH_SEGMENTS: &[&str] = &[
    "", "", ".", ".", "..", "..", "%2e", "%2E%2e", ".%2e", "...", ".;", "..;", ".;x", "..;x",
    "%2e;x", ";", ";x", "a;b", "a", "b", "v1", "\\", "a\\b", "%5c", "%2f", "%00", "%41", "%7e",
    "%20", "%3b", "%", "%g1", "é", "ü%2e",
];

fn raw_path() -> impl Strategy<Value = String> {
    let tokens = prop::collection::vec(select(PATH_TOKENS), 0..14).prop_map(|v| v.concat());
    let segments = prop::collection::vec(
        prop_oneof![
            4 => select(PATH_SEGMENTS).prop_map(str::to_string),
            1 => prop::collection::vec(select(PATH_TOKENS), 1..4).prop_map(|v| v.concat()),
        ],
        0..8,
    )
    .prop_map(|v| v.join("/"));
    prop_oneof![
        5 => tokens.clone().prop_map(|b| format!("/{b}")),
        5 => segments.prop_map(|b| format!("/{b}")),
        1 => tokens,
    ]
}

/// The output of a successful normalization is in normal form.
fn check_normal_form(out: &str) -> Result<(), TestCaseError> {
    prop_assert!(out.starts_with('/'), "{out:?} does not start with /");
    prop_assert!(!out.contains("//"), "{out:?} contains //");
    prop_assert!(!out.contains('\\'), "{out:?} contains a backslash");
    for seg in out.split('/') {
        prop_assert!(seg != "." && seg != "..", "{out:?} has a dot segment");
        prop_assert!(
            !seg.starts_with(".;") && !seg.starts_with("..;"),
            "{out:?} has a .; segment"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn normalize_agrees_with_reference(p in raw_path()) {
        match (normalize(&p), reference_normalize(&p)) {
            (Ok(got), Ok(want)) => prop_assert_eq!(&*got, want.as_str(), "input {:?}", p),
            (Err(e), Err(reasons)) => prop_assert!(
                reasons.contains(&e),
                "input {p:?}: normalize says {e:?}, the reference finds {reasons:?}"
            ),
            (got, want) => prop_assert!(
                false,
                "input {p:?}: normalize gives {got:?}, the reference {want:?}"
            ),
        }
    }

    #[test]
    fn normalize_output_is_normal_and_idempotent(p in raw_path()) {
        if let Ok(once) = normalize(&p) {
            check_normal_form(&once)?;
            let twice = normalize(&once);
            prop_assert_eq!(twice.as_deref(), Ok(&*once), "input {:?}", p);
        }
    }
}

// ---------------------------------------------------------------------------
// 2. match_form
// ---------------------------------------------------------------------------

/// Parameters stripped from each segment; a segment that was only
/// parameters disappears (backends merge the empty segment it leaves).
fn reference_match_form(path: &str) -> String {
    if !path.contains(';') {
        return path.to_string();
    }
    let kept: Vec<&str> = path
        .split('/')
        .enumerate()
        .filter(|(i, seg)| *i == 0 || !seg.starts_with(';'))
        .map(|(_, seg)| seg.split_once(';').map_or(seg, |(head, _)| head))
        .collect();
    match kept.join("/") {
        s if s.is_empty() => "/".to_string(),
        s => s,
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn match_form_strips_segment_parameters(p in raw_path()) {
        let got = match_form(&p);
        let want = reference_match_form(&p);
        prop_assert_eq!(&*got, want.as_str());
        prop_assert!(!got.contains(';'));
        prop_assert_eq!(&*match_form(&got), &*got, "not idempotent");
        if !p.contains(';') {
            prop_assert!(matches!(got, Cow::Borrowed(s) if s == p));
        }
    }

    /// Stripping parameters from a normalized path must not leave a path
    /// that is no longer normal (e.g. an empty segment: `/;x/admin` →
    /// `//admin`, which backends read as `/admin` but no `path_prefix:
    /// /admin` route matches).
    #[test]
    fn match_form_of_a_normal_path_is_normal(p in raw_path()) {
        if let Ok(n) = normalize(&p) {
            let m = match_form(&n);
            check_normal_form(&m)?;
            let again = normalize(&m);
            prop_assert_eq!(
                again.as_deref(),
                Ok(&*m),
                "input {:?}, normalized {:?}",
                p,
                n
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 3. The router against a naive first-match reference
// ---------------------------------------------------------------------------

/// Hosts as a route may write them (case and a trailing dot are ignored).
const ROUTE_HOSTS: &[&str] = &[
    "example.com",
    "api.example.com",
    "API.Example.COM",
    "api.example.com.",
    "a.b.example.com",
    "other.org",
    "xexample.com",
    "*.example.com",
    "*.EXAMPLE.com",
    "*.example.com.",
    "*.b.example.com",
    "*.org",
];

/// Hosts as a client may send them (before case, dot and port are added).
const REQUEST_HOSTS: &[&str] = &[
    "example.com",
    "api.example.com",
    "a.b.example.com",
    "x.a.b.example.com",
    "b.example.com",
    "other.org",
    "x.other.org",
    "xexample.com",
    "example.co",
    ".example.com",
    "localhost",
    "[::1]",
    "",
];

const PREFIXES: &[&str] = &[
    "/", "/v1", "/v1/", "/v10", "/v1/x", "/a", "/a/", "/a/b", "/a%20b",
];

const REQUEST_PATHS: &[&str] = &[
    "/", "/v1", "/v1/", "/v10", "/v1/x", "/v1/x/y", "/v1x", "/v10/x", "/a", "/a/", "/a/b", "/a/bc",
    "/ab", "/a%20b", "/a%20b/c", "/A", "/V1",
];

const ROUTE_HEADER_NAMES: &[&str] = &["x-a", "X-A", "x-b"];
const REQUEST_HEADER_NAMES: &[&str] = &["x-a", "X-A", "x-b", "X-B", "x-c"];
const HEADER_VALUES: &[&str] = &["1", "2", "true"];

#[derive(Debug, Clone)]
struct RouteSpec {
    host: Option<&'static str>,
    prefix: Option<&'static str>,
    /// Bit mask over `METHODS`, never 0.
    methods: Option<u16>,
    headers: BTreeMap<&'static str, &'static str>,
    listeners: Option<Vec<usize>>,
}

#[derive(Debug, Clone)]
struct Request {
    listener: usize,
    host: String,
    path: &'static str,
    /// Index into `METHODS`; `METHODS.len()` is `PURGE` (no bit).
    method: usize,
    headers: BTreeMap<&'static str, &'static str>,
}

fn route_spec(listeners: usize) -> impl Strategy<Value = RouteSpec> {
    (
        prop::option::weighted(0.7, select(ROUTE_HOSTS)),
        prop::option::weighted(0.7, select(PREFIXES)),
        prop::option::weighted(0.4, 1u16..(1 << METHODS.len())),
        prop::collection::btree_map(select(ROUTE_HEADER_NAMES), select(HEADER_VALUES), 0..=2),
        prop::option::weighted(0.3, prop::collection::vec(0..listeners, 0..=2)),
    )
        .prop_map(|(host, prefix, methods, mut headers, listeners)| {
            // Keep header conditions rare enough that routes still match.
            if headers.len() == 2 {
                headers.pop_first();
            }
            RouteSpec {
                host,
                prefix,
                methods,
                headers,
                listeners,
            }
        })
}

fn request(listeners: usize) -> impl Strategy<Value = Request> {
    (
        0..listeners,
        (
            select(REQUEST_HOSTS),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(select(&[":80", ":8080", ":"][..])),
        ),
        select(REQUEST_PATHS),
        0..=METHODS.len(),
        prop::collection::btree_map(select(REQUEST_HEADER_NAMES), select(HEADER_VALUES), 0..=3),
    )
        .prop_map(|(listener, (h, upper, dot, port), path, method, headers)| {
            let mut host = if upper {
                h.to_ascii_uppercase()
            } else {
                h.to_string()
            };
            if dot && !host.is_empty() && !host.starts_with('[') {
                host.push('.');
            }
            if let Some(p) = port {
                host.push_str(p);
            }
            Request {
                listener,
                host,
                path,
                method,
                headers,
            }
        })
}

fn table() -> impl Strategy<Value = (usize, Vec<RouteSpec>, Vec<Request>)> {
    (1usize..=3).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec(route_spec(n), 1..=6),
            prop::collection::vec(request(n), 1..=8),
        )
    })
}

fn router_yaml(listeners: usize, routes: &[RouteSpec]) -> String {
    let mut s = String::from("listeners:\n");
    for i in 0..listeners {
        s.push_str(&format!(
            "  - {{ name: l{i}, address: \"127.0.0.1:{}\" }}\n",
            20000 + i
        ));
    }
    s.push_str("routes:\n");
    for r in routes {
        let mut m = Vec::new();
        if let Some(h) = r.host {
            m.push(format!("host: \"{h}\""));
        }
        if let Some(p) = r.prefix {
            m.push(format!("path_prefix: \"{p}\""));
        }
        if let Some(mask) = r.methods {
            let names: Vec<&str> = METHODS
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, m)| *m)
                .collect();
            m.push(format!("methods: [{}]", names.join(", ")));
        }
        if !r.headers.is_empty() {
            let hs: Vec<String> = r
                .headers
                .iter()
                .map(|(k, v)| format!("\"{k}\": \"{v}\""))
                .collect();
            m.push(format!("headers: {{ {} }}", hs.join(", ")));
        }
        s.push_str(&format!(
            "  - respond: {{ status: 200 }}\n    match: {{ {} }}\n",
            m.join(", ")
        ));
        if let Some(ls) = &r.listeners {
            let names: Vec<String> = ls.iter().map(|i| format!("l{i}")).collect();
            s.push_str(&format!("    listeners: [{}]\n", names.join(", ")));
        }
    }
    s
}

/// Host as SPEC §4 compares it: lower case, no port, no trailing dot.
fn reference_host(raw: &str) -> String {
    let h = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.rfind(':') {
            Some(i) => &raw[..i],
            None => raw,
        }
    };
    h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
}

fn reference_host_matches(rule: &str, host: &str) -> bool {
    let rule = rule.to_ascii_lowercase();
    let rule = rule.strip_suffix('.').unwrap_or(&rule);
    match rule.strip_prefix("*.") {
        // Any depth of subdomain, never the bare domain.
        Some(domain) => host
            .strip_suffix(domain)
            .and_then(|sub| sub.strip_suffix('.'))
            .is_some_and(|sub| !sub.is_empty()),
        None => host == rule,
    }
}

fn reference_prefix_matches(prefix: &str, path: &str) -> bool {
    path == prefix
        || (path.starts_with(prefix)
            && (prefix.ends_with('/') || path[prefix.len()..].starts_with('/')))
}

#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Found(usize),
    MethodNotAllowed(u16),
    NotFound,
}

fn reference_find(routes: &[RouteSpec], req: &Request, host: &str) -> Answer {
    let headers: BTreeMap<String, &str> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), *v))
        .collect();
    let bit = if req.method < METHODS.len() {
        1u16 << req.method
    } else {
        0
    };
    let mut allowed = 0u16;
    for (i, r) in routes.iter().enumerate() {
        let listener_ok = r
            .listeners
            .as_ref()
            .is_none_or(|ls| ls.contains(&req.listener));
        let host_ok = r.host.is_none_or(|h| reference_host_matches(h, host));
        let path_ok = r
            .prefix
            .is_none_or(|p| reference_prefix_matches(p, req.path));
        let headers_ok = r
            .headers
            .iter()
            .all(|(k, v)| headers.get(&k.to_ascii_lowercase()) == Some(v));
        if !(listener_ok && host_ok && path_ok && headers_ok) {
            continue;
        }
        match r.methods {
            Some(mask) if mask & bit == 0 => allowed |= mask,
            _ => return Answer::Found(i),
        }
    }
    if allowed != 0 {
        Answer::MethodNotAllowed(allowed)
    } else {
        Answer::NotFound
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn router_agrees_with_first_match_reference((n, routes, requests) in table()) {
        let yaml = router_yaml(n, &routes);
        let parsed = weir::config::parse_str(&yaml, "t.yaml", &|_| None)
            .unwrap_or_else(|e| panic!("generated config does not parse:\n{e}\n{yaml}"));
        let snapshot = weir::compile::compile(&parsed.config, None)
            .map_err(|issues| parsed.errors(issues))
            .unwrap_or_else(|e| panic!("generated config does not compile:\n{e}\n{yaml}"));
        for req in &requests {
            let mut buf = [0u8; 256];
            let host = normalize_host(req.host.as_bytes(), &mut buf);
            let want_host = reference_host(&req.host);
            prop_assert_eq!(host, want_host.as_str(), "Host {:?}", req.host);
            let method = match METHODS.get(req.method) {
                Some(m) => Method::from_bytes(m.as_bytes()).unwrap(),
                None => Method::from_bytes(b"PURGE").unwrap(),
            };
            let mut headers = HeaderMap::new();
            for (k, v) in &req.headers {
                headers.insert(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_static(v),
                );
            }
            let got = match snapshot.router.find(req.listener, host, req.path, &method, &headers) {
                Match::Found(i) => Answer::Found(i),
                Match::MethodNotAllowed(mask) => Answer::MethodNotAllowed(mask),
                Match::NotFound => Answer::NotFound,
            };
            let want = reference_find(&routes, req, host);
            prop_assert_eq!(got, want, "request {:?}\nconfig:\n{}", req, yaml);
        }
    }
}

// ---------------------------------------------------------------------------
// 4. The config loader never panics and always says where
// ---------------------------------------------------------------------------

/// Loads `text` and checks every error's position and rendering.
fn check_load(text: &str) -> Result<(), TestCaseError> {
    let Err(e) = weir::compile::load_str(text, "t.yaml", &|_| None) else {
        return Ok(());
    };
    prop_assert_eq!(&e.file, "t.yaml");
    prop_assert!(!e.errors.is_empty(), "ConfigErrors without errors");
    let shown = e.to_string();
    let lines = text.lines().count().max(1);
    for err in &e.errors {
        let (line, col) = (err.pos.line, err.pos.col);
        prop_assert!(line >= 1 && col >= 1, "position {line}:{col} in:\n{shown}");
        prop_assert!(
            line <= lines + 1,
            "line {line} past the end ({lines} lines):\n{shown}"
        );
        let at = format!("t.yaml:{line}:{col}:");
        prop_assert!(shown.contains(&at), "{at} missing from:\n{shown}");
    }
    Ok(())
}

/// Whether loading `text` could resolve a host name (a backend address with
/// a `:` that is not `ip:port`): such inputs are skipped so the test never
/// waits on DNS.
fn needs_dns(text: &str) -> bool {
    fn address_needs_dns(v: &serde_yaml::Value) -> bool {
        let addr = match v {
            serde_yaml::Value::String(s) => s.as_str(),
            serde_yaml::Value::Mapping(m) => match m.get("address") {
                Some(serde_yaml::Value::String(s)) => s.as_str(),
                _ => return false,
            },
            _ => return false,
        };
        addr.contains('$') || (addr.contains(':') && addr.parse::<std::net::SocketAddr>().is_err())
    }
    let Ok(serde_yaml::Value::Mapping(root)) = serde_yaml::from_str::<serde_yaml::Value>(text)
    else {
        return false;
    };
    let Some(serde_yaml::Value::Mapping(ups)) = root.get("upstreams") else {
        return false;
    };
    ups.values().any(|u| match u.get("backends") {
        Some(serde_yaml::Value::Sequence(bs)) => bs.iter().any(address_needs_dns),
        _ => false,
    })
}

const TOP_KEYS: &[&str] = &[
    "server",
    "log",
    "admin",
    "trusted_proxies",
    "listeners",
    "routes",
    "upstreams",
];

const KEYS: &[&str] = &[
    "listeners",
    "routes",
    "upstreams",
    "server",
    "log",
    "admin",
    "trusted_proxies",
    "match",
    "path_prefix",
    "host",
    "methods",
    "headers",
    "backends",
    "rate_limit",
    "auth",
    "name",
    "address",
    "protocol",
    "upstream",
    "respond",
    "redirect",
    "status",
    "body",
    "to",
    "from",
    "rewrite",
    "strip_prefix",
    "threads",
    "daemon",
    "user",
    "group",
    "listen",
    "token",
    "state_file",
    "access_log",
    "path",
    "format",
    "level",
    "algorithm",
    "hash_key",
    "health_check",
    "type",
    "interval",
    "timeout",
    "port",
    "expect_status",
    "weight",
    "enabled",
    "discovery",
    "dns",
    "refresh",
    "resolver",
    "circuit_breaker",
    "consecutive_failures",
    "open_for",
    "sticky",
    "cookie",
    "timeouts",
    "connect",
    "read",
    "write",
    "idle",
    "retries",
    "retry_on",
    "requests_per_second",
    "key",
    "shared",
    "redis",
    "on_error",
    "api_keys",
    "header",
    "basic",
    "users",
    "realm",
    "hide_credentials",
    "allow_ips",
    "deny_ips",
    "max_body_size",
    "request_headers",
    "response_headers",
    "set",
    "add",
    "remove",
    "host_header",
    "content_type",
    "api-pool",
    "web",
    "x",
    "",
    "0",
    "${X}",
    "a b",
    "é",
];

const SCALARS: &[&str] = &[
    "127.0.0.1:8080",
    "0.0.0.0:80",
    "[::1]:80",
    "127.0.0.1:0",
    "10.0.0.0/8",
    "::/0",
    "a",
    "",
    " ",
    "5s",
    "0s",
    "250ms",
    "1m",
    "-1s",
    "10MiB",
    "0",
    "1",
    "-1",
    "65535",
    "65536",
    "1000",
    "1001",
    "99999999999999999999",
    "1.5",
    "true",
    "false",
    "null",
    "~",
    "GET",
    "get",
    "PURGE",
    "*.example.com",
    "*.",
    "*",
    "/v1",
    "//v1",
    "/%2e%2e",
    "v1",
    "${X}",
    "${X:-1}",
    "${X:-127.0.0.1:1}",
    "$$",
    "${",
    "$1",
    "http",
    "https",
    "tcp",
    "round_robin",
    "weighted",
    "consistent_hash",
    "ip_hash",
    "header:x-a",
    "header:",
    "cookie:",
    "client_ip",
    "redis://127.0.0.1:6379",
    "redis://",
    "unix:",
    "unix:/tmp/a.sock",
    "allow",
    "deny",
    "connect_failure",
    "5xx",
    "timeout",
    "off",
    "stdout",
    "json",
    "combined",
    "info",
    "$2b$04$AAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "web",
    "api-pool",
    "é",
    "a: b",
    "- x",
    "[",
    "]",
    "{",
    "}",
    "&a",
    "*a",
    "!!binary",
    "|",
    ">",
    "#",
    "'",
    "\"",
    "\t",
    "%",
    "@",
    "`",
    "? x",
    ": x",
];

#[derive(Debug, Clone)]
enum Yaml {
    Scalar(&'static str, bool),
    List(Vec<Yaml>, bool),
    Map(Vec<(&'static str, Yaml)>, bool),
}

fn yaml_tree() -> impl Strategy<Value = Yaml> {
    let leaf = (select(SCALARS), any::<bool>()).prop_map(|(s, q)| Yaml::Scalar(s, q));
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..5), any::<bool>())
                .prop_map(|(v, flow)| Yaml::List(v, flow)),
            (
                prop::collection::vec((select(KEYS), inner), 0..5),
                any::<bool>()
            )
                .prop_map(|(v, flow)| Yaml::Map(v, flow)),
        ]
    })
}

fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-".contains(&c))
    {
        k.to_string()
    } else {
        quoted(k)
    }
}

fn flow(y: &Yaml) -> String {
    match y {
        Yaml::Scalar(s, true) => quoted(s),
        Yaml::Scalar(s, false) => s.to_string(),
        Yaml::List(v, _) => format!("[{}]", v.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Yaml::Map(v, _) => format!(
            "{{{}}}",
            v.iter()
                .map(|(k, v)| format!("{}: {}", key(k), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn is_block(y: &Yaml) -> bool {
    match y {
        Yaml::List(v, false) => !v.is_empty(),
        Yaml::Map(v, false) => !v.is_empty(),
        _ => false,
    }
}

fn block(y: &Yaml, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match y {
        Yaml::List(v, false) if !v.is_empty() => {
            for item in v {
                if is_block(item) {
                    out.push_str(&format!("{pad}-\n"));
                    block(item, indent + 2, out);
                } else {
                    out.push_str(&format!("{pad}- {}\n", flow(item)));
                }
            }
        }
        Yaml::Map(v, false) if !v.is_empty() => {
            for (k, item) in v {
                if is_block(item) {
                    out.push_str(&format!("{pad}{}:\n", key(k)));
                    block(item, indent + 2, out);
                } else {
                    out.push_str(&format!("{pad}{}: {}\n", key(k), flow(item)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", flow(other))),
    }
}

fn yaml_document() -> impl Strategy<Value = String> {
    prop_oneof![
        // A mapping of (mostly real) sections.
        4 => prop::collection::vec(
            (prop_oneof![3 => select(TOP_KEYS), 1 => select(KEYS)], yaml_tree()),
            0..5
        )
        .prop_map(|sections| {
            let mut out = String::new();
            block(&Yaml::Map(sections, false), 0, &mut out);
            out
        }),
        // Anything at the top.
        1 => yaml_tree().prop_map(|y| {
            let mut out = String::new();
            block(&y, 0, &mut out);
            out
        }),
    ]
}

/// A config using every section and most keys; it must load.
fn base_config() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let hash = bcrypt::hash("pw", 4).unwrap();
        format!(
            r#"server:
  threads: 2
  grace_period_seconds: 5
  upstream_keepalive_pool_size: 16
log:
  level: info
  format: text
  access_log: {{ path: stdout, format: json }}
admin:
  listen: 127.0.0.1:9901
  token: secret
trusted_proxies: [10.0.0.0/8, "::1"]
listeners:
  - name: web
    address: 127.0.0.1:8080
  - name: alt
    address: "[::1]:8081"
    protocol: http
routes:
  - name: api
    listeners: [web, alt]
    match:
      host: "*.example.com"
      path_prefix: /v1
      methods: [GET, POST]
      headers: {{ x-canary: "true" }}
    upstream: api-pool
    strip_prefix: true
    request_headers: {{ set: {{ x-env: prod }}, add: {{}}, remove: [x-debug] }}
    response_headers: {{ set: {{ strict-transport-security: "max-age=63072000" }} }}
    timeouts: {{ read: 30s }}
    retries: 2
    retry_on: [connect_failure, 5xx]
    rate_limit:
      requests_per_second: 100
      key: client_ip
      shared:
        redis: redis://127.0.0.1:6379
        on_error: allow
        timeout: 50ms
    max_body_size: 10MiB
    auth: {{ api_keys: ["k1"], header: x-api-key, hide_credentials: true }}
    allow_ips: [10.0.0.0/8]
    deny_ips: [10.9.0.0/16]
  - name: private
    match: {{ path_prefix: /private }}
    auth:
      basic:
        users: {{ alice: "{hash}" }}
        realm: weir
    upstream: api-pool
  - name: old
    match: {{ host: old.example.com }}
    redirect: {{ to: "https://www.example.com$path", status: 301 }}
  - name: rw
    match: {{ path_prefix: /r }}
    rewrite: {{ from: "^/r/(.*)", to: "/$1" }}
    upstream: hashed
  - name: status
    match: {{ path_prefix: /status.txt }}
    respond: {{ status: 200, body: "ok\n", content_type: text/plain }}
upstreams:
  api-pool:
    algorithm: round_robin
    backends:
      - address: 10.0.0.1:8080
        weight: 3
        name: api-1
      - address: 10.0.0.3:8080
        enabled: false
      - 10.0.0.2:8080
    discovery:
      dns: {{ name: api.service.internal, port: 8080, refresh: 10s, resolver: "127.0.0.1:53" }}
    health_check:
      type: http
      interval: 5s
      timeout: 1s
      path: /healthz
      host: api.internal
      port: 8081
      expect_status: [200, 204]
      healthy_threshold: 2
      unhealthy_threshold: 3
    circuit_breaker: {{ consecutive_failures: 5, open_for: 10s }}
    sticky: {{ cookie: weir_affinity }}
    timeouts: {{ connect: 5s, read: 60s, write: 60s, idle: 60s }}
    host_header: api.internal
  hashed:
    algorithm: consistent_hash
    hash_key: header:x-user
    backends: [127.0.0.1:9000, 127.0.0.1:9001]
"#
        )
    })
}

/// Characters that change YAML structure (no letters or digits, so a
/// mutated backend address never becomes a host name to resolve).
const NOISE: &[char] = &[
    ' ', ' ', ':', '-', '{', '}', '[', ']', '#', '"', '\'', '\n', '&', '*', '!', '|', '>', '%',
    '@', '`', ',', '?', '\t', '$', '\\', '\u{feff}', '\0',
];

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    ReplaceValue(Index, String),
    Indent(Index, bool),
    InsertChar(Index, char),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::DeleteLine),
        1 => any::<Index>().prop_map(Mutation::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        2 => (any::<Index>(), select(SCALARS), any::<bool>())
            .prop_map(|(i, s, q)| Mutation::ReplaceValue(i, if q { quoted(s) } else { s.to_string() })),
        1 => (any::<Index>(), yaml_tree()).prop_map(|(i, y)| Mutation::ReplaceValue(i, flow(&y))),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(i, more)| Mutation::Indent(i, more)),
        2 => (any::<Index>(), select(NOISE)).prop_map(|(i, c)| Mutation::InsertChar(i, c)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::DeleteLine(i) => {
                lines.remove(i.index(n));
            }
            Mutation::DuplicateLine(i) => {
                let i = i.index(n);
                lines.insert(i, lines[i].clone());
            }
            Mutation::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
            Mutation::ReplaceValue(i, v) => {
                let line = &mut lines[i.index(n)];
                *line = match line.find(": ") {
                    Some(at) => format!("{}: {v}", &line[..at]),
                    None => match line.find("- ") {
                        Some(at) => format!("{}- {v}", &line[..at]),
                        None => format!("{line} {v}"),
                    },
                };
            }
            Mutation::Indent(i, more) => {
                let line = &mut lines[i.index(n)];
                if *more {
                    line.insert(0, ' ');
                } else if line.starts_with(' ') {
                    line.remove(0);
                }
            }
            Mutation::InsertChar(i, c) => {
                let line = &mut lines[i.index(n)];
                let at = line
                    .char_indices()
                    .map(|(j, _)| j)
                    .chain([line.len()])
                    .nth(i.index(line.chars().count() + 1))
                    .unwrap_or(line.len());
                line.insert(at, *c);
            }
            Mutation::Truncate(i) => lines.truncate(i.index(n) + 1),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[test]
fn base_config_loads() {
    if let Err(e) = weir::compile::load_str(base_config(), "t.yaml", &|_| None) {
        panic!("the base config must load:\n{e}");
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn loader_survives_arbitrary_text(text in any::<String>()) {
        prop_assume!(!needs_dns(&text));
        check_load(&text)?;
    }

    #[test]
    fn loader_survives_yaml_like_text(text in "([a-z_]{1,8}|[-:{}\\[\\],#&*!|>'\" \n$%@]|  ){0,60}") {
        prop_assume!(!needs_dns(&text));
        check_load(&text)?;
    }

    #[test]
    fn loader_survives_generated_documents(text in yaml_document()) {
        prop_assume!(!needs_dns(&text));
        check_load(&text)?;
    }

    #[test]
    fn loader_survives_mutated_configs(muts in prop::collection::vec(mutation(), 1..5)) {
        let text = mutate(base_config(), &muts);
        prop_assume!(!needs_dns(&text));
        check_load(&text)?;
    }
}

// ---------------------------------------------------------------------------
// 5. Parsers of untrusted bytes
// ---------------------------------------------------------------------------

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn cidr_parse_never_panics(
        text in prop_oneof![any::<String>(), "[0-9a-fA-F:./ \\[\\]%-]{0,48}"],
        ip in any_ip(),
    ) {
        if let Some(c) = Cidr::parse(&text) {
            let _ = c.contains(ip);
        }
    }

    #[test]
    fn cidr_contains_its_own_address(ip in any_ip(), len in 0u8..=128) {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let c = Cidr::parse(&format!("{ip}/{len}"));
        if len > max {
            prop_assert!(c.is_none());
        } else {
            let c = c.unwrap();
            prop_assert!(c.contains(ip));
            if let IpAddr::V4(v4) = ip {
                prop_assert!(c.contains(IpAddr::V6(v4.to_ipv6_mapped())));
            }
        }
    }

    #[test]
    fn parse_size_never_panics(
        text in prop_oneof![any::<String>(), "[0-9]{0,25} ?(B|KiB|MiB|GiB|KB|kB|MB|GB|x|)"],
    ) {
        let _ = parse_size(&text);
    }

    #[test]
    fn parse_size_reads_numbers_and_units(
        n in any::<u64>(),
        unit in select(&[
            ("", 1u64), ("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
            ("KB", 1000), ("kB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000),
        ][..]),
    ) {
        prop_assert_eq!(parse_size(&format!("{n}{}", unit.0)), n.checked_mul(unit.1));
    }

    #[test]
    fn normalize_host_never_panics(raw in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut buf = [0u8; 256];
        let host = normalize_host(&raw, &mut buf);
        prop_assert!(host.len() <= 256);
        prop_assert!(!host.bytes().any(|c| c.is_ascii_uppercase()));
    }

    #[test]
    fn normalize_never_panics(text in any::<String>()) {
        if let Ok(out) = normalize(&text) {
            check_normal_form(&out)?;
        }
        let _ = match_form(&text);
    }
}

// ---------------------------------------------------------------------------
// 6. The PROXY protocol header parser (bytes from anyone who connects to a
//    `proxy_protocol: true` listener)
// ---------------------------------------------------------------------------

use weir::config::model::ProxyProtocolVersion;
use weir::proxy_protocol::{self as pp, Parsed};

/// Bytes that reach deep into the parser: arbitrary, or after the v2
/// signature (with plausible version and family bytes), or after `PROXY `.
fn pp_bytes() -> impl Strategy<Value = Vec<u8>> {
    let tail = prop::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (
            select(&[0x20u8, 0x21, 0x22, 0x11][..]),
            select(&[0x00u8, 0x11, 0x12, 0x21, 0x31, 0x41][..]),
            any::<u16>(),
            tail.clone(),
        )
            .prop_map(|(vc, fam, len, t)| {
                let mut v = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
                v.extend_from_slice(&[vc, fam]);
                v.extend_from_slice(&(len % 300).to_be_bytes());
                v.extend(t);
                v
            }),
        (
            "(TCP4|TCP6|UNKNOWN|TCP) [0-9a-f.:]{0,20} [0-9a-f.:]{0,20} [0-9]{0,6} [0-9]{0,6}(\r\n|\n|\r|)",
            tail,
        )
            .prop_map(|(s, t)| [b"PROXY ".as_slice(), s.as_bytes(), &t].concat()),
    ]
}

fn any_socket() -> impl Strategy<Value = std::net::SocketAddr> {
    (any_ip(), any::<u16>()).prop_map(|(ip, port)| std::net::SocketAddr::new(ip, port))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn proxy_header_parse_never_panics(
        bytes in pp_bytes(),
        more in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let first = pp::parse(&bytes);
        if let Parsed::Complete(h) = first {
            prop_assert!(h.len <= bytes.len() && h.len <= pp::MAX_LEN);
        }
        // A verdict never changes with more bytes: complete stays the same
        // header, invalid stays invalid (so a reader may stop at either).
        let longer = pp::parse(&[bytes.as_slice(), &more].concat());
        match first {
            Parsed::Complete(h) => prop_assert_eq!(longer, Parsed::Complete(h)),
            Parsed::Invalid(_) => prop_assert!(matches!(longer, Parsed::Invalid(_))),
            Parsed::Incomplete => {}
        }
    }

    #[test]
    fn proxy_headers_weir_writes_read_back(
        src in any_socket(),
        dst in any_socket(),
        v2 in any::<bool>(),
        data in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let version = if v2 { ProxyProtocolVersion::V2 } else { ProxyProtocolVersion::V1 };
        let h = pp::encode(version, src, dst);
        for n in 0..h.len() {
            prop_assert_eq!(pp::parse(&h[..n]), Parsed::Incomplete);
        }
        let Parsed::Complete(got) = pp::parse(&[h.as_slice(), &data].concat()) else {
            return Err(TestCaseError::fail(format!("{h:?} did not parse")));
        };
        prop_assert_eq!(got.len, h.len());
        let canon = |a: std::net::SocketAddr| (a.ip().to_canonical(), a.port());
        prop_assert_eq!(got.source.map(canon), Some(canon(src)));
        prop_assert_eq!(got.destination.map(canon), Some(canon(dst)));
    }
}
