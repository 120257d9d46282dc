//! Micro-benchmarks of weir's per-request hot paths, through the library's
//! public API: route matching, backend selection, path normalization and the
//! forwarding headers. `cargo bench --bench hot_paths` (see benches/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use pingora_http::RequestHeader;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;
use weir::router::{normalize_host, Match};
use weir::snapshot::Snapshot;

fn snapshot(yaml: &str) -> Snapshot {
    let parsed = match weir::config::parse_str(yaml, "bench.yaml", &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("bench config does not load: {e:?}"),
    };
    match weir::compile::compile(&parsed.config, None) {
        Ok(s) => s,
        Err(e) => panic!("bench config does not compile: {e:?}"),
    }
}

const EXACT_HOSTS: [&str; 8] = [
    "api.example.com",
    "www.example.com",
    "shop.example.com",
    "admin.example.com",
    "m.example.com",
    "auth.example.net",
    "static.example.org",
    "cdn.example.org",
];

/// 50 routes over 10 hosts (8 exact, 2 wildcard) plus host-less routes, with
/// prefixes, methods and one header match, in a plausible file order.
fn routing_yaml() -> String {
    let mut y = String::from("listeners:\n  - { name: web, address: 127.0.0.1:8080 }\nroutes:\n");
    // One header match first, as a canary route usually is.
    y.push_str(
        "  - { name: canary, match: { host: api.example.com, path_prefix: /api, \
         headers: { x-canary: \"true\" } }, upstream: u0 }\n",
    );
    // 8 exact hosts x 4 routes = 32.
    for (i, h) in EXACT_HOSTS.iter().enumerate() {
        let u = |k: usize| format!("u{}", (i + k) % 6);
        writeln!(y, "  - {{ name: h{i}-v1, match: {{ host: {h}, path_prefix: /api/v1, methods: [GET, POST] }}, upstream: {} }}", u(0)).unwrap();
        writeln!(
            y,
            "  - {{ name: h{i}-v2, match: {{ host: {h}, path_prefix: /api/v2 }}, upstream: {} }}",
            u(1)
        )
        .unwrap();
        writeln!(y, "  - {{ name: h{i}-static, match: {{ host: {h}, path_prefix: /static, methods: [GET, HEAD] }}, upstream: {}, strip_prefix: true }}", u(2)).unwrap();
        writeln!(
            y,
            "  - {{ name: h{i}-users, match: {{ host: {h}, path_prefix: /users }}, upstream: {} }}",
            u(3)
        )
        .unwrap();
    }
    // 2 wildcard hosts x 4 routes = 8.
    for (i, h) in ["\"*.example.com\"", "\"*.example.org\""]
        .iter()
        .enumerate()
    {
        writeln!(
            y,
            "  - {{ name: w{i}-api, match: {{ host: {h}, path_prefix: /api }}, upstream: u4 }}"
        )
        .unwrap();
        writeln!(y, "  - {{ name: w{i}-assets, match: {{ host: {h}, path_prefix: /assets, methods: [GET, HEAD] }}, upstream: u5 }}").unwrap();
        writeln!(y, "  - {{ name: w{i}-login, match: {{ host: {h}, path_prefix: /login, methods: [GET, POST] }}, upstream: u1 }}").unwrap();
        writeln!(y, "  - {{ name: w{i}-upload, match: {{ host: {h}, path_prefix: /upload, methods: [POST, PUT] }}, upstream: u2 }}").unwrap();
    }
    // 9 host-less routes; the last one is the "late fallback".
    y.push_str("  - { name: healthz, match: { path_prefix: /healthz }, respond: { status: 200, body: \"ok\" } }\n");
    for (i, p) in [
        "/v1", "/v2", "/docs", "/img", "/graphql", "/ws", "/feeds", "/search",
    ]
    .iter()
    .enumerate()
    {
        let methods = if *p == "/graphql" {
            ", methods: [POST]"
        } else {
            ""
        };
        writeln!(
            y,
            "  - {{ name: any{i}, match: {{ path_prefix: {p}{methods} }}, upstream: u{} }}",
            i % 6
        )
        .unwrap();
    }
    y.push_str("upstreams:\n");
    for u in 0..6 {
        writeln!(
            y,
            "  u{u}: {{ backends: [127.0.0.1:{}, 127.0.0.1:{}] }}",
            9000 + 2 * u,
            9001 + 2 * u
        )
        .unwrap();
    }
    y
}

fn bench_routing(c: &mut Criterion) {
    let snap = snapshot(&routing_yaml());
    assert_eq!(snap.routes.len(), 50, "the table has 50 routes");
    let headers = HeaderMap::new();
    let get = Method::GET;
    let find = |raw_host: &[u8], raw_path: &str| {
        let mut buf = [0u8; 256];
        let host = normalize_host(raw_host, &mut buf);
        let path = weir::path::normalize(raw_path).expect("normal path");
        match snap.router.find(0, host, &path, &get, &headers) {
            Match::Found(i) => Some(i),
            _ => None,
        }
    };
    // Sanity: each case matches what its name says.
    let idx = |name: &str| snap.routes.iter().position(|r| &*r.name == name);
    assert_eq!(find(b"shop.example.com", "/users/42"), idx("h2-users"));
    assert_eq!(find(b"blog.example.com:8080", "/login"), idx("w0-login"));
    assert_eq!(find(b"unknown.test", "/search/q"), idx("any7"));
    assert_eq!(find(b"unknown.test", "/nothing/here"), None);

    let mut g = c.benchmark_group("route_find");
    for (label, host, path) in [
        ("exact_host_hit", &b"shop.example.com"[..], "/users/42"),
        ("wildcard_hit", &b"Blog.Example.com:8080"[..], "/login"),
        ("late_fallback_hit", &b"unknown.test"[..], "/search/q"),
        ("not_found_404", &b"unknown.test"[..], "/nothing/here"),
    ] {
        g.bench_function(label, |b| b.iter(|| find(black_box(host), black_box(path))));
    }
    g.finish();
}

const ALGORITHMS: [&str; 8] = [
    "round_robin",
    "weighted",
    "least_connections",
    "random",
    "consistent_hash",
    "ip_hash",
    "least_request",
    "peak_ewma",
];

fn selection_yaml() -> String {
    let mut y = String::from("listeners:\n  - { name: web, address: 127.0.0.1:8080 }\nroutes:\n");
    for a in ALGORITHMS {
        writeln!(y, "  - {{ match: {{ path_prefix: /{a} }}, upstream: {a} }}").unwrap();
    }
    y.push_str("upstreams:\n");
    for (i, a) in ALGORITHMS.iter().enumerate() {
        writeln!(y, "  {a}:\n    algorithm: {a}").unwrap();
        if *a == "consistent_hash" {
            y.push_str("    hash_key: header:x-user\n");
        }
        y.push_str("    backends:\n");
        for b in 0..8 {
            let weight = if *a == "weighted" { 1 + b % 3 } else { 1 };
            writeln!(
                y,
                "      - {{ address: 127.0.0.1:{}, weight: {weight} }}",
                10000 + 100 * i + b
            )
            .unwrap();
        }
    }
    y
}

fn bench_selection(c: &mut Criterion) {
    let snap = snapshot(&selection_yaml());
    // Keys as the proxy builds them: header value for consistent_hash, the
    // client address octets for ip_hash; rotated so hashing sees varied input.
    let users: Vec<Vec<u8>> = (0..64)
        .map(|i| format!("user-{}", 1000 + i * 37).into_bytes())
        .collect();
    let ips: Vec<Vec<u8>> = (0..64u8).map(|i| vec![10, 1, i, 200 - i]).collect();
    let mut g = c.benchmark_group("select");
    for group in &snap.groups {
        let name = group.name.to_string();
        let keys: &[Vec<u8>] = match &*name {
            "consistent_hash" => &users,
            "ip_hash" => &ips,
            _ => &[],
        };
        assert!(group
            .balancer
            .select_with(b"k", |_, healthy| healthy)
            .is_some());
        let mut n = 0usize;
        g.bench_function(&name, |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                let key: &[u8] = if keys.is_empty() {
                    b""
                } else {
                    &keys[n % keys.len()]
                };
                group
                    .balancer
                    .select_with(black_box(key), |_, healthy| healthy)
            })
        });
    }
    g.finish();
}

fn browser_request() -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/api/v1/users/42?fields=name", None).unwrap();
    for (k, v) in [
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("referer", "https://www.example.com/account"),
        ("cookie", "sid=8f2a1c3e9b; theme=dark; consent=1"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "b1946ac92492d2347c6235b4d2611184"),
    ] {
        req.append_header(k, v).unwrap();
    }
    req
}

fn bench_headers(c: &mut Criterion) {
    let mut g = c.benchmark_group("per_request");
    g.bench_function("path_normalize_plain", |b| {
        b.iter(|| weir::path::normalize(black_box("/api/v1/users/42/orders")).map(|p| p.len()))
    });
    g.bench_function("path_normalize_tricky", |b| {
        b.iter(|| {
            weir::path::normalize(black_box("//api/./v1/x/../users/%34%32//orders/%7Eme"))
                .map(|p| p.len())
        })
    });
    g.bench_function("normalize_host", |b| {
        b.iter(|| {
            let mut buf = [0u8; 256];
            normalize_host(black_box(b"API.Example.com:8080"), &mut buf).len()
        })
    });
    let req = browser_request();
    let peer: Option<IpAddr> = Some("198.51.100.23".parse().unwrap());
    let host = req.headers.get("host").cloned();
    // The harness cost of handing a fresh clone to each iteration (and
    // dropping it): subtract it from the two set_forwarded numbers.
    g.bench_function("set_forwarded_baseline", |b| {
        b.iter_batched(
            || (req.clone(), host.clone()),
            |(r, h)| (black_box(r), h),
            BatchSize::SmallInput,
        )
    });
    for (label, trusted) in [
        ("set_forwarded_untrusted", false),
        ("set_forwarded_trusted", true),
    ] {
        g.bench_function(label, |b| {
            b.iter_batched(
                || (req.clone(), host.clone()),
                |(mut r, h)| {
                    weir::forward::set_forwarded(&mut r, black_box(peer), trusted, h, false);
                    r
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("new_request_id", |b| b.iter(weir::forward::new_request_id));
    let good = HeaderValue::from_static("b1946ac92492d2347c6235b4d2611184");
    let bad = HeaderValue::from_static("b1946ac92492d234 7c6235b4d2611184");
    g.bench_function("valid_request_id_ok", |b| {
        b.iter(|| weir::forward::valid_request_id(black_box(&good)))
    });
    g.bench_function("valid_request_id_bad", |b| {
        b.iter(|| weir::forward::valid_request_id(black_box(&bad)))
    });
    g.finish();
}

/// Polls a future that completes without waiting (local policies do).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a local policy waited"),
    }
}

/// The policy chain of a route: none, and rate limit + API key + header set
/// (the request phase and the upstream-request phase, as the proxy runs them).
fn bench_policies(c: &mut Criterion) {
    let snap = snapshot(
        r#"
listeners: [{ name: web, address: "127.0.0.1:8080" }]
routes:
  - { name: bare, match: { path_prefix: /bare }, upstream: u }
  - name: guarded
    match: { path_prefix: /api }
    upstream: u
    rate_limit: { requests_per_second: 1000000000, key: "header:x-api-key" }
    auth: { api_keys: [k-0123456789abcdef, k-fedcba9876543210] }
    request_headers: { set: { x-env: prod } }
upstreams:
  u: { backends: ["127.0.0.1:9000"] }
"#,
    );
    let mut req = browser_request();
    req.append_header("x-api-key", "k-fedcba9876543210")
        .unwrap();
    let client: Option<IpAddr> = Some("198.51.100.23".parse().unwrap());
    let mut g = c.benchmark_group("policy_chain");
    for route in &snap.routes {
        let label = route.name.to_string();
        let view = weir::policy::RequestView {
            req: &req,
            path: "/api/v1/users/42",
            client,
        };
        let mut st = weir::policy::State::default();
        assert_eq!(
            ready(route.policies.request(&view, &mut st)),
            weir::policy::Decision::Continue
        );
        g.bench_function(format!("{label}_request"), |b| {
            b.iter(|| {
                let mut st = weir::policy::State::default();
                ready(route.policies.request(black_box(&view), &mut st))
            })
        });
        g.bench_function(format!("{label}_upstream_request"), |b| {
            b.iter_batched(
                || req.clone(),
                |mut r| {
                    route.policies.upstream_request(&mut r);
                    r
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_routing, bench_selection, bench_headers, bench_policies
}
criterion_main!(benches);
