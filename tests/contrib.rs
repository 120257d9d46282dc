//! The shipped Grafana dashboard and Prometheus rules name only series weir
//! really exports: a real weir takes traffic that moves every series they
//! use (https listener, tcp listener, a retry, a failing health check, a
//! rate-limited request), then every `weir_*` name in every dashboard query
//! and every rule must appear in its `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `weir_*` identifier in `text`.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("weir_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(format!("{ROOT}/contrib/grafana/weir.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    collect(&json, &mut out);
    assert!(out.len() >= 15, "too few queries found: {out:?}");
    out
}

/// Every `expr` and templating `query` string in the dashboard.
fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        _ => {}
    }
}

fn rule_exprs() -> Vec<String> {
    let text =
        std::fs::read_to_string(format!("{ROOT}/contrib/prometheus/weir-rules.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            out.push(r["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(out.len() >= 6, "{out:?}");
    out
}

struct Ports {
    web: SocketAddr,
    tls: SocketAddr,
    tcp: SocketAddr,
    admin: SocketAddr,
}

fn config(p: &Ports, good: SocketAddr, dead: SocketAddr, cert: &str, key: &str) -> String {
    format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
admin: {{ listen: "{admin}" }}
listeners:
  - {{ name: web, address: "{web}" }}
  - name: websecure
    address: "{tls}"
    protocol: https
    tls: {{ certificates: [{{ cert: "{cert}", key: "{key}" }}] }}
  - {{ name: db, address: "{tcp}", protocol: tcp, upstream: good }}
routes:
  - name: limited
    match: {{ path_prefix: /limited }}
    upstream: good
    rate_limit: {{ requests_per_second: 1 }}
  - name: flaky
    match: {{ path_prefix: /flaky }}
    upstream: flaky
    retries: 1
  - {{ name: checked, match: {{ path_prefix: /checked }}, upstream: checked }}
upstreams:
  good: {{ backends: ["{good}"] }}
  flaky:
    algorithm: round_robin
    backends: ["{dead}", "{good}"]
    circuit_breaker: {{ consecutive_failures: 1, open_for: 1m }}
  checked:
    backends: ["{dead}", "{good}"]
    health_check: {{ type: tcp, interval: 200ms, timeout: 100ms, unhealthy_threshold: 1 }}
"#,
        admin = p.admin,
        web = p.web,
        tls = p.tls,
        tcp = p.tcp,
    )
}

/// Traffic that moves every series: requests, a retry past the dead
/// backend, a rate-limited request, a tcp connection.
fn traffic(p: &Ports) {
    for path in [
        "/flaky/1", "/flaky/2", "/flaky/3", "/checked", "/limited", "/limited", "/limited",
    ] {
        let _ = get(p.web, path);
    }
    let mut conn = TcpStream::connect(p.tcp).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET /tcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf);
}

fn missing(metrics: &str, wanted: &BTreeSet<String>) -> Vec<String> {
    wanted
        .iter()
        .filter(|name| {
            !metrics.lines().any(|l| {
                l.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
        })
        .cloned()
        .collect()
}

#[test]
fn every_series_in_the_dashboard_and_the_rules_is_exported() {
    let mut wanted = BTreeSet::new();
    for q in dashboard_queries().iter().chain(rule_exprs().iter()) {
        wanted.extend(series_names(q));
    }
    assert!(wanted.len() >= 15, "{wanted:?}");

    let good = TestBackend::start("good");
    let dead = free_addr();
    let dir = TestDir::create();
    let (cert, key) = leaf(dir.path(), "site", &ca(), &["localhost"], None);
    let p = Ports {
        web: free_addr(),
        tls: free_addr(),
        tcp: free_addr(),
        admin: free_addr(),
    };
    let cfg = config(
        &p,
        good.addr(),
        dead,
        &cert.display().to_string(),
        &key.display().to_string(),
    );
    let weir = WeirProcess::start(&cfg, p.web);
    traffic(&p);
    let mut last = Vec::new();
    let ok = poll_until(Duration::from_secs(10), || {
        let metrics = get_host(p.admin, &p.admin.to_string(), "/metrics").body;
        last = missing(&metrics, &wanted);
        last.is_empty()
    });
    assert!(
        ok,
        "series used by the dashboard or rules but not exported: {last:?}\n{}",
        weir.logs()
    );
}

#[test]
fn a_name_weir_does_not_export_is_caught() {
    // The check itself: a made-up name is reported missing.
    let wanted: BTreeSet<String> = ["weir_requests_total", "weir_upstream_panic"]
        .into_iter()
        .map(String::from)
        .collect();
    let metrics = "weir_requests_total{route=\"a\"} 1\nweir_upstream_panicked 1\n";
    assert_eq!(
        missing(metrics, &wanted),
        vec!["weir_upstream_panic".to_string()]
    );
    assert_eq!(
        series_names("rate(weir_requests_total{code=~\"5..\"}[5m]) / weir_x_bucket"),
        ["weir_requests_total", "weir_x_bucket"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
