//! Rules for `upstreams.<name>`: backends, hash keys, discovery and
//! health checks.

use super::load::Issue;
use super::model::*;
use super::validate::validate_timeouts;
use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};

/// Resolves `host:port` (or parses `ip:port`) to its first address.
pub fn resolve(address: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !address.contains(':') {
        return Err(format!(
            "invalid address {address:?}; write ip:port or host:port"
        ));
    }
    address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address:?} resolves to no address"))
}

pub(super) fn validate_upstream(u: &UpstreamConfig, base: &str, issues: &mut Vec<Issue>) {
    if u.backends.is_empty() && u.discovery.is_none() {
        issues.push(Issue::new(
            format!("{base}.backends"),
            "needs at least one backend (or discovery)",
        ));
    }
    if let Some(d) = &u.discovery {
        validate_dns(&d.dns, &format!("{base}.discovery.dns"), issues);
    }
    let mut seen = HashSet::new();
    for (i, b) in u.backends.iter().enumerate() {
        let b = b.long();
        let path = format!("{base}.backends[{i}]");
        if b.weight == 0 {
            issues.push(Issue::new(
                format!("{path}.weight"),
                "must be at least 1 (use enabled: false to drain a backend)",
            ));
        } else if b.weight > 1000 {
            issues.push(Issue::new(format!("{path}.weight"), "at most 1000"));
        }
        match resolve(&b.address) {
            Ok(a) => {
                if !seen.insert(a) {
                    issues.push(Issue::new(path, format!("backend {a} is listed twice")));
                }
            }
            Err(e) => issues.push(Issue::new(path, e)),
        }
    }
    match (&u.hash_key, u.algorithm) {
        (Some(k), Algorithm::ConsistentHash) if crate::upstream::HashKey::parse(k).is_none() => {
            issues.push(Issue::new(
                format!("{base}.hash_key"),
                format!(
                    "invalid hash_key {k:?}; write client_ip, header:NAME, cookie:NAME or path"
                ),
            ));
        }
        (Some(_), Algorithm::ConsistentHash) => {}
        (Some(_), other) => issues.push(Issue::new(
            format!("{base}.hash_key"),
            format!(
                "algorithm {} ignores hash_key; use algorithm: consistent_hash or remove it",
                other.as_str()
            ),
        )),
        _ => {}
    }
    if let Some(t) = &u.timeouts {
        validate_timeouts(t, &format!("{base}.timeouts"), issues);
    }
    if let Some(h) = &u.health_check {
        validate_health(h, &format!("{base}.health_check"), issues);
    }
}

fn validate_dns(dns: &DnsDiscovery, base: &str, issues: &mut Vec<Issue>) {
    if dns.name.trim().is_empty() {
        issues.push(Issue::new(format!("{base}.name"), "must not be empty"));
    }
    if dns.port == 0 {
        issues.push(Issue::new(format!("{base}.port"), "must be 1..=65535"));
    }
    if dns.refresh.is_some_and(|r| r.0.is_zero()) {
        issues.push(Issue::new(
            format!("{base}.refresh"),
            "must be greater than 0",
        ));
    }
    if let Some(r) = &dns.resolver {
        if r.parse::<SocketAddr>().is_err() {
            issues.push(Issue::new(
                format!("{base}.resolver"),
                format!("invalid resolver {r:?}; write ip:port, e.g. 127.0.0.1:53"),
            ));
        }
    }
}

fn validate_health(h: &HealthCheckConfig, base: &str, issues: &mut Vec<Issue>) {
    let interval = h
        .interval
        .map(|d| d.0)
        .unwrap_or(crate::upstream::health::DEFAULT_INTERVAL);
    let timeout = h
        .timeout
        .map(|d| d.0)
        .unwrap_or(crate::upstream::health::DEFAULT_TIMEOUT);
    if interval.is_zero() {
        issues.push(Issue::new(
            format!("{base}.interval"),
            "must be greater than 0",
        ));
    }
    if timeout.is_zero() || timeout >= interval {
        issues.push(Issue::new(
            format!("{base}.timeout"),
            "must be greater than 0 and below interval",
        ));
    }
    for (k, v) in [
        ("healthy_threshold", h.healthy_threshold),
        ("unhealthy_threshold", h.unhealthy_threshold),
    ] {
        if v == Some(0) {
            issues.push(Issue::new(format!("{base}.{k}"), "must be at least 1"));
        }
    }
    if h.kind == HealthCheckKind::Tcp {
        for (k, set) in [
            ("path", h.path.is_some()),
            ("host", h.host.is_some()),
            ("expect_status", h.expect_status.is_some()),
        ] {
            if set {
                issues.push(Issue {
                    path: format!("{base}.{k}"),
                    message: "only for type: http".into(),
                    at_key: true,
                });
            }
        }
    }
    if let Some(p) = &h.path {
        if !p.starts_with('/') {
            issues.push(Issue::new(format!("{base}.path"), "must start with \"/\""));
        }
    }
    if let Some(list) = &h.expect_status {
        for (i, s) in list.iter().enumerate() {
            if !(100..=599).contains(s) {
                issues.push(Issue::new(
                    format!("{base}.expect_status[{i}]"),
                    "must be 100..=599",
                ));
            }
        }
    }
}
