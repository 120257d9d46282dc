//! The rules a parsed config must follow beyond its types: unique names,
//! references that resolve, sane numbers. Also the warnings `weir check`
//! prints (shadowed routes, unused upstreams).

use super::load::Issue;
use super::model::*;
use super::suggest::did_you_mean;
use std::collections::HashSet;
use std::net::SocketAddr;

/// Most extra tries a route may ask for.
pub const MAX_RETRIES: u32 = 7;

/// Methods a route may list.
pub const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// Collects every rule violation in `cfg`.
pub fn validate(cfg: &FileConfig, issues: &mut Vec<Issue>) {
    validate_server(&cfg.server, issues);
    for (i, p) in cfg.trusted_proxies.iter().enumerate() {
        if parse_cidr(p).is_none() {
            issues.push(Issue::new(
                format!("trusted_proxies[{i}]"),
                format!("invalid address or CIDR {p:?}"),
            ));
        }
    }
    validate_listeners(cfg, issues);
    if let Some(a) = &cfg.admin {
        validate_admin(a, cfg, issues);
    }
    if let Some(al) = cfg.log.access_log.as_ref() {
        if al.path.trim().is_empty() {
            issues.push(Issue::new(
                "log.access_log.path",
                "write stdout, off or a file path",
            ));
        }
    }
    let mut names = HashSet::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let base = format!("routes[{i}]");
        if let Some(n) = &r.name {
            if !names.insert(n.as_str()) {
                issues.push(Issue::new(
                    format!("{base}.name"),
                    format!("duplicate route name {n:?}"),
                ));
            }
        }
        validate_route(cfg, r, &base, issues);
    }
    for (name, u) in &cfg.upstreams {
        validate_upstream(u, &format!("upstreams.{name}"), issues);
    }
}

/// Parses `10.0.0.0/8` or a plain address into (network, prefix length).
pub fn parse_cidr(text: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (
            ip.parse::<std::net::IpAddr>().ok()?,
            len.parse::<u8>().ok()?,
        ),
        None => {
            let ip: std::net::IpAddr = text.parse().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// Where the admin API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminListen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket path (mode 0600).
    Unix(String),
}

/// Parses `admin.listen`.
pub fn parse_admin_listen(text: &str) -> Option<AdminListen> {
    match text.strip_prefix("unix:") {
        Some(p) if !p.is_empty() => Some(AdminListen::Unix(p.to_string())),
        Some(_) => None,
        None => text.parse().ok().map(AdminListen::Tcp),
    }
}

fn validate_admin(a: &AdminSection, cfg: &FileConfig, issues: &mut Vec<Issue>) {
    match parse_admin_listen(&a.listen) {
        None => issues.push(Issue::new(
            "admin.listen",
            format!(
                "invalid address {:?}; write ip:port (127.0.0.1:9901) or unix:/path",
                a.listen
            ),
        )),
        Some(AdminListen::Tcp(addr)) => {
            if !addr.ip().is_loopback() && a.token.is_none() {
                issues.push(Issue::new(
                    "admin.listen",
                    format!(
                        "{addr} is not a loopback address: set admin.token, or listen on 127.0.0.1"
                    ),
                ));
            }
            if cfg
                .listeners
                .iter()
                .any(|l| l.address.parse::<SocketAddr>().ok() == Some(addr))
            {
                issues.push(Issue::new(
                    "admin.listen",
                    format!("{addr} is also a listener's address"),
                ));
            }
        }
        Some(AdminListen::Unix(_)) => {}
    }
    if a.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        issues.push(Issue::new(
            "admin.token",
            "must not be empty (leave it out for a read-only API)",
        ));
    }
    if a.state_file.as_deref().is_some_and(|t| t.trim().is_empty()) {
        issues.push(Issue::new("admin.state_file", "must be a file path"));
    }
}

fn validate_server(s: &ServerSection, issues: &mut Vec<Issue>) {
    if s.threads == Some(0) {
        issues.push(Issue::new("server.threads", "must be at least 1"));
    }
    if (s.user.is_some() || s.group.is_some()) && s.daemon != Some(true) {
        issues.push(Issue::new(
            "server.user",
            "user/group are applied when daemonizing; set server.daemon: true or remove them",
        ));
    }
}

fn validate_listeners(cfg: &FileConfig, issues: &mut Vec<Issue>) {
    if cfg.listeners.is_empty() {
        issues.push(Issue::new("listeners", "at least one listener is needed"));
    }
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let base = format!("listeners[{i}]");
        if !names.insert(l.name.as_str()) {
            issues.push(Issue::new(
                format!("{base}.name"),
                format!("duplicate listener name {:?}", l.name),
            ));
        }
        match l.address.parse::<SocketAddr>() {
            Ok(a) => {
                if !addrs.insert(a) {
                    issues.push(Issue::new(
                        format!("{base}.address"),
                        format!("{a} is used by another listener"),
                    ));
                }
            }
            Err(_) => issues.push(Issue::new(
                format!("{base}.address"),
                format!(
                    "invalid address {:?}; write ip:port, e.g. 127.0.0.1:8080 or [::1]:8080",
                    l.address
                ),
            )),
        }
        if l.protocol != ListenerProtocol::Http {
            issues.push(Issue::new(
                format!("{base}.protocol"),
                "only protocol: http is available in this version (https and tcp are planned)",
            ));
        }
    }
}

fn validate_route(cfg: &FileConfig, r: &RouteConfig, base: &str, issues: &mut Vec<Issue>) {
    if let Some(ls) = &r.listeners {
        for (j, l) in ls.iter().enumerate() {
            if !cfg.listeners.iter().any(|x| &x.name == l) {
                issues.push(Issue::new(
                    format!("{base}.listeners[{j}]"),
                    format!(
                        "unknown listener {l:?}{}",
                        did_you_mean(l, cfg.listeners.iter().map(|x| x.name.as_str()))
                    ),
                ));
            }
        }
    }
    let m = &r.matcher;
    if let Some(h) = &m.host {
        let bare = h.strip_prefix("*.").unwrap_or(h);
        if bare.is_empty() || bare.contains(['*', '/', ' ', ':']) {
            issues.push(Issue::new(
                format!("{base}.match.host"),
                format!("invalid host {h:?}; write an exact name or \"*.example.com\""),
            ));
        }
    }
    if let Some(p) = &m.path_prefix {
        if !p.starts_with('/') {
            issues.push(Issue::new(
                format!("{base}.match.path_prefix"),
                "must start with \"/\"",
            ));
        } else if crate::path::normalize(p).map(|n| n != *p).unwrap_or(true) {
            issues.push(Issue::new(
                format!("{base}.match.path_prefix"),
                "must be a normalized path (no \"//\", \".\", \"..\" or %-escapes of unreserved characters)",
            ));
        }
    }
    if let Some(ms) = &m.methods {
        if ms.is_empty() {
            issues.push(Issue::new(
                format!("{base}.match.methods"),
                "must list at least one method",
            ));
        }
        for (j, meth) in ms.iter().enumerate() {
            if !METHODS.contains(&meth.as_str()) {
                issues.push(Issue::new(
                    format!("{base}.match.methods[{j}]"),
                    format!(
                        "unknown method {meth:?}{}",
                        did_you_mean(meth, METHODS.iter().copied())
                    ),
                ));
            }
        }
    }
    if let Some(hs) = &m.headers {
        for (k, v) in hs {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                issues.push(Issue::new(
                    format!("{base}.match.headers.{k}"),
                    "invalid header name or value",
                ));
            }
        }
    }
    match (&r.upstream, &r.respond) {
        (Some(u), None) => {
            if !cfg.upstreams.contains_key(u) {
                issues.push(Issue::new(
                    format!("{base}.upstream"),
                    format!(
                        "unknown upstream {u:?}{}",
                        did_you_mean(u, cfg.upstreams.keys().map(String::as_str))
                    ),
                ));
            }
        }
        (None, Some(resp)) => {
            if !(100..=599).contains(&resp.status) {
                issues.push(Issue::new(
                    format!("{base}.respond.status"),
                    "must be 100..=599",
                ));
            }
        }
        (Some(_), Some(_)) => issues.push(Issue::new(
            base,
            "a route has exactly one action: upstream or respond, not both",
        )),
        (None, None) => issues.push(Issue::new(
            base,
            "a route needs an action: upstream or respond",
        )),
    }
    if r.strip_prefix {
        if m.path_prefix.is_none() {
            issues.push(Issue::new(
                format!("{base}.strip_prefix"),
                "needs match.path_prefix",
            ));
        }
        if r.rewrite.is_some() {
            issues.push(Issue::new(
                format!("{base}.strip_prefix"),
                "cannot be combined with rewrite",
            ));
        }
    }
    if let Some(rw) = &r.rewrite {
        if let Err(e) = regex::Regex::new(&rw.from) {
            issues.push(Issue::new(
                format!("{base}.rewrite.from"),
                format!("invalid regex: {e}"),
            ));
        }
        if !rw.to.starts_with('/') {
            issues.push(Issue::new(
                format!("{base}.rewrite.to"),
                "must start with \"/\"",
            ));
        }
    }
    if let Some(n) = r.retries {
        if n > MAX_RETRIES {
            issues.push(Issue::new(
                format!("{base}.retries"),
                format!("at most {MAX_RETRIES}"),
            ));
        }
    }
    if let Some(t) = &r.timeouts {
        validate_timeouts(t, &format!("{base}.timeouts"), issues);
    }
    for (key, ops) in [
        ("request_headers", &r.request_headers),
        ("response_headers", &r.response_headers),
    ] {
        if let Some(ops) = ops {
            validate_header_ops(ops, &format!("{base}.{key}"), issues);
        }
    }
}

fn validate_header_ops(ops: &HeaderOpsConfig, base: &str, issues: &mut Vec<Issue>) {
    for (kind, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (k, v) in map {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                issues.push(Issue::new(
                    format!("{base}.{kind}.{k}"),
                    "invalid header name or value",
                ));
            }
        }
    }
    for (j, k) in ops.remove.iter().enumerate() {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            issues.push(Issue::new(
                format!("{base}.remove[{j}]"),
                "invalid header name",
            ));
        }
    }
}

pub(super) fn validate_timeouts(t: &TimeoutsConfig, base: &str, issues: &mut Vec<Issue>) {
    for (k, v) in [
        ("connect", t.connect),
        ("read", t.read),
        ("write", t.write),
        ("idle", t.idle),
    ] {
        if v.is_some_and(|d| d.0.is_zero()) {
            issues.push(Issue::new(format!("{base}.{k}"), "must be greater than 0"));
        }
    }
}

pub use super::validate_upstream::resolve;
use super::validate_upstream::validate_upstream;

pub use super::shadow::{route_label, warnings};
