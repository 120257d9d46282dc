//! Process-level sections: `server`, `admin`, `log`, `listeners` and
//! `trusted_proxies`.

use super::Listeners;
use crate::config::model::*;
use crate::config::suggest::did_you_mean;
use crate::config::Issue;
use crate::snapshot::ListenerLimits;
use crate::values::{parse_admin_listen, AdminListen};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Most listeners a config may have (a route's listener set is a `u64` mask).
const MAX_LISTENERS: usize = 64;

/// Checks `server`, `admin` and `log`.
pub(super) fn check_process(cfg: &FileConfig, issues: &mut Vec<Issue>) {
    let s = &cfg.server;
    if s.threads == Some(0) {
        issues.push(Issue::new("server.threads", "must be at least 1"));
    }
    if (s.user.is_some() || s.group.is_some()) && s.daemon != Some(true) {
        issues.push(Issue::new(
            "server.user",
            "user/group are applied when daemonizing; set server.daemon: true or remove them",
        ));
    }
    if let Some(a) = &cfg.admin {
        check_admin(a, cfg, issues);
    }
    if let Some(t) = &cfg.tracing {
        check_tracing(t, issues);
    }
    if let Some(al) = cfg.log.access_log.as_ref() {
        if al.path.trim().is_empty() {
            issues.push(Issue::new(
                "log.access_log.path",
                "write stdout, off or a file path",
            ));
        }
    }
}

/// `tracing`: an `http://host:port` collector and a ratio in 0..=1.
fn check_tracing(t: &TracingSection, issues: &mut Vec<Issue>) {
    if crate::trace::export::traces_endpoint(&t.otlp).is_none() {
        issues.push(Issue::new(
            "tracing.otlp",
            format!(
                "{:?} is not an OTLP/HTTP collector URL; write http://host:port (spans go to /v1/traces)",
                t.otlp
            ),
        ));
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        issues.push(Issue::new(
            "tracing.sample_ratio",
            format!("{} is not between 0 and 1", t.sample_ratio),
        ));
    }
    if t.service_name.trim().is_empty() {
        issues.push(Issue::new("tracing.service_name", "must not be empty"));
    }
}

fn check_admin(a: &AdminSection, cfg: &FileConfig, issues: &mut Vec<Issue>) {
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

/// Compiles `listeners`: names and addresses, in file order.
pub(super) fn listeners(cfg: &FileConfig, issues: &mut Vec<Issue>) -> Listeners {
    if cfg.listeners.is_empty() {
        issues.push(Issue::new("listeners", "at least one listener is needed"));
    }
    if cfg.listeners.len() > MAX_LISTENERS {
        issues.push(Issue::new(
            "listeners",
            format!("at most {MAX_LISTENERS} listeners are supported"),
        ));
    }
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    let mut out = Vec::new();
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
                out.push((Arc::from(l.name.as_str()), a));
            }
            Err(_) => issues.push(Issue::new(
                format!("{base}.address"),
                format!(
                    "invalid address {:?}; write ip:port, e.g. 127.0.0.1:8080 or [::1]:8080",
                    l.address
                ),
            )),
        }
        check_protocol_keys(l, &base, issues);
    }
    out
}

/// The keys that belong to one listener protocol only (`upstream` to tcp,
/// `tls` to https, `http2` to http), and what each protocol needs.
fn check_protocol_keys(l: &ListenerConfig, base: &str, issues: &mut Vec<Issue>) {
    if l.protocol == ListenerProtocol::Tcp {
        check_tcp(l, base, issues);
    } else if l.upstream.is_some() {
        issues.push(Issue::at_key(
            format!("{base}.upstream"),
            "upstream is for protocol: tcp listeners; http and https listeners reach upstreams through routes",
        ));
    }
    match (l.protocol, &l.tls) {
        (ListenerProtocol::Tcp, _) => {}
        (ListenerProtocol::Https, None) => issues.push(Issue::new(
            base.to_string(),
            "an https listener needs tls: { certificates: [{ cert, key }] }",
        )),
        (ListenerProtocol::Http, Some(_)) => issues.push(Issue::at_key(
            format!("{base}.tls"),
            "tls is for protocol: https listeners",
        )),
        _ => {}
    }
    if l.http2 && l.protocol != ListenerProtocol::Http {
        issues.push(Issue::at_key(
            format!("{base}.http2"),
            "http2 is for protocol: http listeners (h2c); https listeners offer HTTP/2 with tls.http2",
        ));
    }
}

/// What a `tcp` listener may not have, and the `upstream` it must have
/// (whether that upstream exists is checked by [`tcp_upstreams`]).
fn check_tcp(l: &ListenerConfig, base: &str, issues: &mut Vec<Issue>) {
    if l.upstream.is_none() {
        issues.push(Issue::new(
            base,
            "a tcp listener needs upstream: NAME (the group it relays connections to)",
        ));
    }
    if l.tls.is_some() {
        issues.push(Issue::at_key(
            format!("{base}.tls"),
            "tls is for protocol: https listeners (a tcp listener relays bytes as they are)",
        ));
    }
    if l.max_header_size.is_some() {
        issues.push(Issue::at_key(
            format!("{base}.max_header_size"),
            "max_header_size is for http and https listeners",
        ));
    }
}

/// For each listener, the index in `groups` (by `index`, name → position)
/// of the upstream a `tcp` listener relays to; `None` for the others. An
/// unknown name is an issue (with a suggestion); an upstream that exists
/// but failed to compile has its own issues.
pub(super) fn tcp_upstreams(
    cfg: &FileConfig,
    index: &std::collections::HashMap<&str, usize>,
    issues: &mut Vec<Issue>,
) -> Vec<Option<usize>> {
    cfg.listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if l.protocol != ListenerProtocol::Tcp {
                return None;
            }
            let u = l.upstream.as_deref()?;
            let found = index.get(u).copied();
            if found.is_none() && !cfg.upstreams.contains_key(u) {
                issues.push(Issue::new(
                    format!("listeners[{i}].upstream"),
                    format!(
                        "unknown upstream {u:?}{}",
                        did_you_mean(u, cfg.upstreams.keys().map(String::as_str))
                    ),
                ));
            }
            found
        })
        .collect()
}

/// Default `max_header_size`.
const MAX_HEADER_SIZE: u64 = 64 << 10;
/// Pingora reads at most this much head (and answers 400 past it).
const PINGORA_HEAD_LIMIT: u64 = (1 << 20) - 1;

/// Compiles each listener's limits, in listener order.
pub(super) fn limits(cfg: &FileConfig, issues: &mut Vec<Issue>) -> Vec<ListenerLimits> {
    cfg.listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let max = l.max_header_size.map_or(MAX_HEADER_SIZE, |s| s.0);
            if !(1024..=PINGORA_HEAD_LIMIT).contains(&max) {
                issues.push(Issue::new(
                    format!("listeners[{i}].max_header_size"),
                    "must be between 1KiB and 1MiB (Pingora reads at most 1 MiB of head)",
                ));
            }
            let tls = l.tls.as_ref();
            let min = tls.and_then(|t| t.min_version.as_deref());
            if !matches!(min, None | Some("1.2" | "1.3")) {
                issues.push(Issue::new(
                    format!("listeners[{i}].tls.min_version"),
                    "write \"1.2\" or \"1.3\"",
                ));
            }
            let (header_timeout, keepalive, max_connections) = connection_limits(l, i, issues);
            ListenerLimits {
                max_header_size: max as usize,
                https: l.protocol == ListenerProtocol::Https,
                header_timeout,
                keepalive,
                max_connections,
                proxy_protocol: l.proxy_protocol,
            }
        })
        .collect()
}

/// Default `timeouts.header`.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `timeouts.keepalive`.
const KEEPALIVE: Duration = Duration::from_secs(60);

/// `listeners[i].timeouts` and `max_connections`: the head deadline, the
/// keep-alive idle in whole seconds (Pingora's unit; `None` when `0s` turns
/// keep-alive off) and the connection limit.
fn connection_limits(
    l: &ListenerConfig,
    i: usize,
    issues: &mut Vec<Issue>,
) -> (Duration, Option<u64>, Option<usize>) {
    let base = format!("listeners[{i}]");
    let t = l.timeouts.unwrap_or_default();
    if l.protocol == ListenerProtocol::Tcp && l.timeouts.is_some() {
        issues.push(Issue::at_key(
            format!("{base}.timeouts"),
            "timeouts (header, keepalive) are for http and https listeners; a tcp \
             listener's idle limit is its upstream's timeouts.tunnel_idle",
        ));
    }
    let header = t.header.map_or(HEADER_TIMEOUT, |d| d.0);
    if header.is_zero() {
        issues.push(Issue::new(
            format!("{base}.timeouts.header"),
            "must be greater than 0",
        ));
    }
    let keepalive = t.keepalive.map_or(KEEPALIVE, |d| d.0);
    if !keepalive.is_zero() && keepalive < Duration::from_secs(1) {
        issues.push(Issue::new(
            format!("{base}.timeouts.keepalive"),
            "write 0s (no keep-alive) or at least 1s (counted in whole seconds)",
        ));
    }
    // Whole seconds, rounded up: Pingora counts keep-alive in seconds.
    let secs = keepalive.as_secs() + u64::from(keepalive.subsec_nanos() > 0);
    if l.max_connections == Some(0) {
        issues.push(Issue::new(
            format!("{base}.max_connections"),
            "must be at least 1 (leave it out for no limit)",
        ));
    }
    (
        header,
        (secs > 0).then_some(secs),
        l.max_connections.map(|n| n as usize),
    )
}

/// Loads the certificates of every https listener (paths relative to
/// `dir`), in listener order.
pub(super) fn certificates(
    cfg: &FileConfig,
    dir: &std::path::Path,
    issues: &mut Vec<Issue>,
) -> Vec<Option<Arc<crate::tls::CertSet>>> {
    let path = |p: &str| dir.join(p).display().to_string();
    cfg.listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let tls = l.tls.as_ref()?;
            let base = format!("listeners[{i}].tls");
            if tls.certificates.is_empty() && tls.acme.is_empty() {
                issues.push(Issue::new(
                    format!("{base}.certificates"),
                    "list at least one (or names under tls.acme)",
                ));
            }
            let mut set = crate::tls::CertSet {
                acme: crate::acme::plan::normalize(&tls.acme),
                ..Default::default()
            };
            for (j, c) in tls.certificates.iter().enumerate() {
                match crate::tls::load(&path(&c.cert), &path(&c.key)) {
                    Ok(cert) => set.certs.push(cert),
                    Err(e) => issues.push(Issue::new(format!("{base}.certificates[{j}]"), e)),
                }
            }
            if let Some(ca) = &tls.client_ca {
                let mut roots = pingora_rustls::RootCertStore::empty();
                if let Err(e) = pingora_rustls::load_ca_file_into_store(path(ca), &mut roots) {
                    issues.push(Issue::new(format!("{base}.client_ca"), e.to_string()));
                }
            }
            Some(Arc::new(set))
        })
        .collect()
}
