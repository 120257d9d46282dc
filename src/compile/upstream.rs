//! `upstreams.<name>`: backends, hash keys, discovery, health checks,
//! circuit breaker and stickiness, checked and turned into a
//! [`GroupSpec`] that [`Group::build`] cannot fail on.

use crate::config::model::*;
use crate::config::Issue;
use crate::upstream::breaker::RateSpec;
use crate::upstream::retry_budget::BudgetSpec;
use crate::upstream::{BackendSpec, BreakerSpec, Group, GroupSpec, TlsSpec};
use crate::values::{resolve, HashKey, Timeouts, HEALTH_INTERVAL, HEALTH_TIMEOUT};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Default `circuit_breaker.consecutive_failures`.
const BREAKER_FAILURES: u32 = 5;
/// Default `circuit_breaker.open_for`.
const BREAKER_OPEN_FOR: Duration = Duration::from_secs(10);
/// Default `circuit_breaker.max_open_for` (Envoy's `max_ejection_time`).
const BREAKER_MAX_OPEN_FOR: Duration = Duration::from_secs(300);
/// Default `circuit_breaker.max_open_percent` (Envoy's `max_ejection_percent`
/// is 10%; weir keeps half the group in service).
const MAX_OPEN_PERCENT: f64 = 50.0;
/// Default `circuit_breaker.failure_rate.min_requests`.
const RATE_MIN_REQUESTS: u32 = 20;
/// Default `retry_budget.min_retries` (Envoy's).
const BUDGET_MIN_RETRIES: u32 = 3;
/// Default `circuit_breaker.failure_rate.window`.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Compiles one upstream; `None` (with issues) when it is invalid.
pub(super) fn group(
    name: &str,
    u: &UpstreamConfig,
    previous: Option<&Group>,
    later: bool,
    dir: &std::path::Path,
    issues: &mut Vec<Issue>,
) -> Option<Group> {
    let before = issues.len();
    let base = crate::config::spans::join_key("upstreams", name);
    if u.backends.is_empty() && u.discovery.is_none() {
        issues.push(Issue::new(
            format!("{base}.backends"),
            "needs at least one backend (or discovery)",
        ));
    }
    if let Some(d) = &u.discovery {
        check_dns(&d.dns, &format!("{base}.discovery.dns"), issues);
    }
    let backends = backends(u, &base, issues);
    let hash_key = hash_key(u, &base, issues);
    let timeouts = timeouts(
        Timeouts::default(),
        u.timeouts.as_ref(),
        &format!("{base}.timeouts"),
        issues,
    );
    if let Some(h) = &u.health_check {
        check_health(h, &format!("{base}.health_check"), issues);
    }
    let host_header = match &u.host_header {
        Some(h) => match http::HeaderValue::from_str(h) {
            Ok(v) => Some(v),
            Err(_) => {
                issues.push(Issue::new(
                    format!("{base}.host_header"),
                    "invalid header value",
                ));
                None
            }
        },
        None => None,
    };
    let breaker = u
        .circuit_breaker
        .as_ref()
        .map(|c| breaker(c, &format!("{base}.circuit_breaker"), issues));
    let sticky = u.sticky.as_ref().and_then(|s| {
        let ok = !s.cookie.is_empty()
            && s.cookie
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
        if s.secret.as_deref() == Some("") {
            issues.push(Issue::new(
                format!("{base}.sticky.secret"),
                "empty: leave it out for the default key, or set one (e.g. ${STICKY_SECRET})",
            ));
            None
        } else if ok {
            Some(crate::upstream::sticky::StickySpec::new(
                &s.cookie,
                s.secret.as_deref(),
            ))
        } else {
            issues.push(Issue::new(
                format!("{base}.sticky.cookie"),
                format!("invalid cookie name {:?}", s.cookie),
            ));
            None
        }
    });
    let tls = u
        .tls
        .as_ref()
        .and_then(|t| upstream_tls(t, u, &base, dir, issues));
    if u.protocol == UpstreamProtocol::H2 && u.tls.is_none() {
        issues.push(Issue::new(
            format!("{base}.protocol"),
            "h2 runs over TLS: add tls, or use h2c for cleartext HTTP/2",
        ));
    }
    if u.protocol == UpstreamProtocol::H2c && u.tls.is_some() {
        issues.push(Issue::new(
            format!("{base}.protocol"),
            "h2c is cleartext: remove tls, or use h2",
        ));
    }
    let retry_budget = u
        .retry_budget
        .as_ref()
        .map(|b| retry_budget(b, &format!("{base}.retry_budget"), issues));
    let hashing = matches!(u.algorithm, Algorithm::ConsistentHash | Algorithm::IpHash);
    if u.slow_start.is_some_and(|d| !d.0.is_zero()) && hashing {
        issues.push(Issue::new(
            format!("{base}.slow_start"),
            "does not apply to consistent_hash or ip_hash (a ramp would move clients off their backend)",
        ));
    }
    if issues.len() != before {
        return None;
    }
    let spec = GroupSpec {
        name: name.into(),
        config: u.clone(),
        hash_key,
        backends,
        timeouts,
        host_header,
        breaker,
        sticky,
        probation: later && u.health_check.is_some(),
        tls,
        protocol: u.protocol,
        panic_threshold: u.panic_threshold.map_or(0.0, |p| p.0 / 100.0),
        slow_start: u.slow_start.map(|d| d.0),
        retry_budget,
        later,
    };
    Some(Group::build(spec, previous))
}

/// Compiles `retry_budget`.
fn retry_budget(b: &RetryBudgetConfig, path: &str, issues: &mut Vec<Issue>) -> BudgetSpec {
    if b.ratio.0 <= 0.0 && b.min_retries == Some(0) {
        issues.push(Issue::new(
            format!("{path}.ratio"),
            "0% with min_retries 0 allows no retry at all: set retries: 0 on the routes instead",
        ));
    }
    BudgetSpec {
        ratio: b.ratio.0 / 100.0,
        min_retries: b.min_retries.unwrap_or(BUDGET_MIN_RETRIES) as usize,
    }
}

/// Compiles `circuit_breaker`, every key checked with its path.
fn breaker(c: &CircuitBreakerConfig, path: &str, issues: &mut Vec<Issue>) -> BreakerSpec {
    let threshold = c.consecutive_failures.unwrap_or(BREAKER_FAILURES);
    let open_for = c.open_for.map_or(BREAKER_OPEN_FOR, |d| d.0);
    let max_open_for = c
        .max_open_for
        .map_or(BREAKER_MAX_OPEN_FOR.max(open_for), |d| d.0);
    if threshold == 0 {
        issues.push(Issue::new(
            format!("{path}.consecutive_failures"),
            "must be at least 1",
        ));
    }
    if open_for.is_zero() {
        issues.push(Issue::new(
            format!("{path}.open_for"),
            "must be greater than 0",
        ));
    }
    if max_open_for < open_for {
        issues.push(Issue::new(
            format!("{path}.max_open_for"),
            format!("must be at least open_for ({open_for:?})"),
        ));
    }
    let rate = c.failure_rate.as_ref().map(|r| {
        let p = format!("{path}.failure_rate");
        if r.threshold.0 <= 0.0 {
            issues.push(Issue::new(format!("{p}.threshold"), "must be above 0%"));
        }
        if r.min_requests == Some(0) {
            issues.push(Issue::new(
                format!("{p}.min_requests"),
                "must be at least 1",
            ));
        }
        let window = r.window.map_or(RATE_WINDOW, |d| d.0);
        if window.is_zero() {
            issues.push(Issue::new(format!("{p}.window"), "must be greater than 0"));
        }
        RateSpec {
            threshold: r.threshold.0 / 100.0,
            min_requests: r.min_requests.unwrap_or(RATE_MIN_REQUESTS),
            window,
        }
    });
    BreakerSpec {
        threshold,
        open_for,
        max_open_for,
        rate,
        max_open_share: c.max_open_percent.map_or(MAX_OPEN_PERCENT, |p| p.0) / 100.0,
    }
}

/// Replaces `host:port` backends by their first address, keeping the name
/// as the label; returns the names that do not resolve.
pub(super) fn resolve_names(cfg: &mut FileConfig) -> Vec<Issue> {
    let mut issues = Vec::new();
    for (name, u) in cfg.upstreams.iter_mut() {
        for (i, entry) in u.backends.iter_mut().enumerate() {
            let mut b = entry.long();
            if b.address.parse::<SocketAddr>().is_ok() {
                continue;
            }
            let path = format!(
                "{}.backends[{i}]",
                crate::config::spans::join_key("upstreams", name)
            );
            match resolve(&b.address) {
                Ok(addr) => {
                    b.name = Some(b.name.take().unwrap_or_else(|| b.address.clone()));
                    b.address = addr.to_string();
                    *entry = BackendEntry::Long(b);
                }
                Err(e) => issues.push(Issue::new(path, e)),
            }
        }
    }
    issues
}

/// Compiles `upstreams.*.tls`: the server name and the CA bundle (read
/// relative to the config folder; every certificate must parse).
fn upstream_tls(
    t: &UpstreamTls,
    u: &UpstreamConfig,
    base: &str,
    dir: &std::path::Path,
    issues: &mut Vec<Issue>,
) -> Option<TlsSpec> {
    let sni = t
        .sni
        .clone()
        .or_else(|| u.host_header.clone())
        .unwrap_or_default();
    if t.sni
        .as_deref()
        .is_some_and(|s| s.is_empty() || s.contains([' ', '/', ':']))
    {
        issues.push(Issue::new(format!("{base}.tls.sni"), "must be a host name"));
    }
    let ca = match &t.ca {
        None => None,
        Some(path) => match read_pem_certs(&dir.join(path).display().to_string()) {
            Ok(ders) if !ders.is_empty() => Some(ders),
            Ok(_) => {
                issues.push(Issue::new(
                    format!("{base}.tls.ca"),
                    format!("{path}: no certificate in it"),
                ));
                return None;
            }
            Err(e) => {
                issues.push(Issue::new(format!("{base}.tls.ca"), e));
                return None;
            }
        },
    };
    Some(TlsSpec {
        sni,
        verify: t.verify.unwrap_or(true),
        ca,
    })
}

/// The DER certificates of a PEM file, each checked to parse as X.509.
fn read_pem_certs(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(&text) {
        let pem = pem.map_err(|e| format!("{path}: invalid PEM ({e})"))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|e| format!("{path}: invalid certificate ({e})"))?;
        out.push(pem.contents);
    }
    Ok(out)
}

fn backends(u: &UpstreamConfig, base: &str, issues: &mut Vec<Issue>) -> Vec<BackendSpec> {
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    let mut out = Vec::new();
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
            Ok(addr) if !seen.insert(addr) => {
                issues.push(Issue::new(path, format!("backend {addr} is listed twice")))
            }
            Ok(addr) => out.push(BackendSpec {
                addr,
                label: b.name.clone().unwrap_or_else(|| addr.to_string()).into(),
                weight: b.weight,
                enabled: b.enabled,
                draining: b.draining,
                source: b.source,
            }),
            Err(e) => issues.push(Issue::new(path, e)),
        }
    }
    out
}

fn hash_key(u: &UpstreamConfig, base: &str, issues: &mut Vec<Issue>) -> HashKey {
    match (&u.hash_key, u.algorithm) {
        (Some(k), Algorithm::ConsistentHash) => HashKey::parse(k).unwrap_or_else(|| {
            issues.push(Issue::new(
                format!("{base}.hash_key"),
                format!(
                    "invalid hash_key {k:?}; write client_ip, header:NAME, cookie:NAME or path"
                ),
            ));
            HashKey::ClientIp
        }),
        (Some(_), other) => {
            issues.push(Issue::new(
                format!("{base}.hash_key"),
                format!(
                    "algorithm {} ignores hash_key; use algorithm: consistent_hash or remove it",
                    other.as_str()
                ),
            ));
            HashKey::ClientIp
        }
        (None, _) => HashKey::ClientIp,
    }
}

/// Merges `over` onto `base`, reporting zero durations.
pub(super) fn timeouts(
    base: Timeouts,
    over: Option<&TimeoutsConfig>,
    path: &str,
    issues: &mut Vec<Issue>,
) -> Timeouts {
    let Some(o) = over else { return base };
    for (k, v) in [
        ("connect", o.connect),
        ("read", o.read),
        ("write", o.write),
        ("idle", o.idle),
        ("tunnel_idle", o.tunnel_idle),
    ] {
        if v.is_some_and(|d| d.0.is_zero()) {
            issues.push(Issue::new(format!("{path}.{k}"), "must be greater than 0"));
        }
    }
    Timeouts {
        connect: o.connect.map_or(base.connect, |d| d.0),
        read: o.read.map_or(base.read, |d| d.0),
        write: o.write.map_or(base.write, |d| d.0),
        idle: o.idle.map_or(base.idle, |d| d.0),
        tunnel_idle: o.tunnel_idle.map_or(base.tunnel_idle, |d| d.0),
    }
}

fn check_dns(dns: &DnsDiscovery, base: &str, issues: &mut Vec<Issue>) {
    if dns.name.trim().is_empty() {
        issues.push(Issue::new(format!("{base}.name"), "must not be empty"));
    }
    match (dns.kind, dns.port) {
        (_, Some(0)) => issues.push(Issue::new(format!("{base}.port"), "must be 1..=65535")),
        (DnsKind::A, None) => issues.push(Issue::new(
            base,
            "needs port (type: a); SRV records carry their own (type: srv)",
        )),
        (DnsKind::Srv, Some(_)) => issues.push(Issue::at_key(
            format!("{base}.port"),
            "SRV records carry their own port; remove it",
        )),
        _ => {}
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

fn check_health(h: &HealthCheckConfig, base: &str, issues: &mut Vec<Issue>) {
    let interval = h.interval.map_or(HEALTH_INTERVAL, |d| d.0);
    let timeout = h.timeout.map_or(HEALTH_TIMEOUT, |d| d.0);
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
                issues.push(Issue::at_key(format!("{base}.{k}"), "only for type: http"));
            }
        }
    }
    if let Some(p) = &h.path {
        if !p.starts_with('/') || http::uri::PathAndQuery::try_from(p.as_str()).is_err() {
            issues.push(Issue::new(
                format!("{base}.path"),
                "must be a path starting with \"/\"",
            ));
        }
    }
    if let Some(host) = &h.host {
        if http::HeaderValue::from_str(host).is_err() {
            issues.push(Issue::new(format!("{base}.host"), "invalid header value"));
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
