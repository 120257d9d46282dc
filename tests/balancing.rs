//! Each selection algorithm's distribution, measured through the real proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

fn start(
    algorithm: &str,
    extra: &str,
    backends: &[(&TestBackend, u32)],
) -> (WeirProcess, SocketAddr) {
    start_with_top(algorithm, extra, "", backends)
}

/// Like [`start`] with `top` (e.g. `trusted_proxies: [...]`) added as a
/// top-level section.
fn start_with_top(
    algorithm: &str,
    extra: &str,
    top: &str,
    backends: &[(&TestBackend, u32)],
) -> (WeirProcess, SocketAddr) {
    let listen = free_addr();
    let list: String = backends
        .iter()
        .map(|(b, w)| format!("\n      - {{ address: \"{}\", weight: {w} }}", b.addr()))
        .collect();
    let cfg = format!(
        r#"
server: {{ threads: 2, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
{top}
listeners: [{{ name: web, address: "{listen}" }}]
routes: [{{ upstream: pool }}]
upstreams:
  pool:
    algorithm: {algorithm}{extra}
    backends:{list}
"#
    );
    (WeirProcess::start(&cfg, listen), listen)
}

fn tally(listen: SocketAddr, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = request(listen, "GET", "/", headers).unwrap();
        assert_eq!(r.status, 200);
        *counts.entry(r.backend()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn round_robin_is_even() {
    let bs: Vec<TestBackend> = ["a", "b", "c"]
        .iter()
        .map(|n| TestBackend::start(n))
        .collect();
    let (_w, listen) = start("round_robin", "", &[(&bs[0], 1), (&bs[1], 1), (&bs[2], 1)]);
    let counts = tally(listen, 30, &[]);
    for n in ["a", "b", "c"] {
        assert_eq!(counts.get(n), Some(&10), "{counts:?}");
    }
}

#[test]
fn weighted_is_smooth_and_proportional() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let (_w, listen) = start("weighted", "", &[(&a, 3), (&b, 1)]);
    let seq: Vec<String> = (0..40).map(|_| get(listen, "/").backend()).collect();
    let na = seq.iter().filter(|s| *s == "a").count();
    assert_eq!(na, 30, "3:1 over 40 requests: {seq:?}");
    // smooth: b never waits more than 3 turns (nginx: a a b a, not a a a b)
    let runs = seq.split(|s| s == "b").map(|r| r.len()).max().unwrap();
    assert!(runs <= 3, "longest run of a: {runs} in {seq:?}");
}

#[test]
fn random_reaches_every_backend_in_proportion() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let (_w, listen) = start("random", "", &[(&a, 3), (&b, 1)]);
    let counts = tally(listen, 400, &[]);
    let na = counts["a"] as f64 / 400.0;
    assert!((0.65..0.85).contains(&na), "expected ~75% on a: {counts:?}");
}

/// weir hashing on `hash_key` over three equal backends a, b and c.
fn consistent_hash_over_three(hash_key: &str) -> (Vec<TestBackend>, WeirProcess, SocketAddr) {
    let bs: Vec<TestBackend> = ["a", "b", "c"]
        .iter()
        .map(|n| TestBackend::start(n))
        .collect();
    let (w, listen) = start(
        "consistent_hash",
        &format!("\n    hash_key: {hash_key}"),
        &[(&bs[0], 1), (&bs[1], 1), (&bs[2], 1)],
    );
    (bs, w, listen)
}

#[test]
fn consistent_hash_is_stable_per_key_and_spreads_keys() {
    let (_bs, _w, listen) = consistent_hash_over_three("header:x-user");
    let mut seen = HashMap::new();
    for user in 0..30 {
        let id = format!("user-{user}");
        let first = request(listen, "GET", "/", &[("x-user", &id)])
            .unwrap()
            .backend();
        for _ in 0..3 {
            assert_eq!(
                request(listen, "GET", "/", &[("x-user", &id)])
                    .unwrap()
                    .backend(),
                first,
                "{id}"
            );
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        3,
        "30 keys should land on every backend: {seen:?}"
    );
}

#[test]
fn consistent_hash_by_path_hashes_the_path_the_backend_gets() {
    let (_bs, _w, listen) = consistent_hash_over_three("path");
    // Spellings of one path that weir normalizes to it (and forwards as it)
    // land where the path itself lands.
    let mut seen = HashMap::new();
    for n in 0..20 {
        let plain = format!("/items/{n}");
        let home = get(listen, &plain).backend();
        for odd in [
            format!("/items/./{n}"),
            format!("/x/../items/{n}"),
            format!("/%69tems/{n}"),
        ] {
            let r = get(listen, &odd);
            assert_eq!(r.echoed_path().as_deref(), Some(plain.as_str()), "{odd}");
            assert_eq!(r.backend(), home, "{odd} went elsewhere than {plain}");
        }
        *seen.entry(home).or_insert(0) += 1;
    }
    assert!(seen.len() > 1, "20 paths on one backend: {seen:?}");
}

#[test]
fn consistent_hash_by_cookie_and_ip_hash_by_client() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let (_w, listen) = start(
        "consistent_hash",
        "\n    hash_key: cookie:sid",
        &[(&a, 1), (&b, 1)],
    );
    let first = request(listen, "GET", "/", &[("cookie", "x=1; sid=abc")])
        .unwrap()
        .backend();
    for _ in 0..5 {
        assert_eq!(
            request(listen, "GET", "/", &[("cookie", "sid=abc")])
                .unwrap()
                .backend(),
            first
        );
    }
    drop(_w);

    // ip_hash hashes the client address. Behind a trusted proxy (127.0.0.1
    // here) X-Forwarded-For sets it, so each request below comes from the
    // address it names, on a new connection (a new source port) every time.
    let c = TestBackend::start("c");
    let (_w, listen) = start_with_top(
        "ip_hash",
        "",
        "trusted_proxies: [127.0.0.1]",
        &[(&a, 1), (&b, 1), (&c, 1)],
    );
    let mut per_backend: HashMap<String, usize> = HashMap::new();
    for i in 0..30u32 {
        let client = format!("10.{}.{}.{}", i % 7, i * 13 % 251, i + 1);
        let xff = [("x-forwarded-for", client.as_str())];
        let first = request(listen, "GET", "/", &xff).unwrap();
        assert_eq!(first.status, 200, "{client}: {first:?}");
        assert_eq!(
            first.echoed_header("x-forwarded-for").as_deref(),
            Some(format!("{client}, 127.0.0.1").as_str()),
            "{client} is the client address weir derived"
        );
        for n in 0..3 {
            let again = request(listen, "GET", "/", &xff).unwrap();
            assert_eq!(
                (again.status, again.backend()),
                (200, first.backend()),
                "client {client} moved to another backend on request {n}"
            );
        }
        *per_backend.entry(first.backend()).or_insert(0) += 1;
    }
    assert_eq!(
        per_backend.len(),
        3,
        "30 client addresses spread over all three backends: {per_backend:?}"
    );
    // without the header the address is the peer's: one backend for all
    let counts = tally(listen, 10, &[]);
    assert_eq!(
        counts.len(),
        1,
        "one client address sticks to one backend: {counts:?}"
    );
}

#[test]
fn least_connections_prefers_the_idle_backend() {
    let slow = TestBackend::start_with(
        "slow",
        BackendOpts {
            delay: Duration::from_secs(3),
            status: 200,
        },
    );
    let fast = TestBackend::start("fast");
    let (_w, listen) = start("least_connections", "", &[(&slow, 1), (&fast, 1)]);
    // Park two requests on whichever backend they land on; at least one lands on slow.
    let parked: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || request(listen, "GET", "/", &[]).map(|r| r.backend())))
        .collect();
    assert!(
        poll_until(Duration::from_secs(5), || slow.in_flight() >= 1),
        "a request is in flight on slow"
    );
    let counts = tally(listen, 20, &[]);
    assert_eq!(
        counts.get("fast"),
        Some(&20),
        "busy backend skipped while it has requests in flight: {counts:?}"
    );
    for p in parked {
        let answer = p.join().expect("parked request thread panicked");
        assert!(
            matches!(answer.as_deref(), Ok("slow" | "fast")),
            "a parked request is answered by a backend: {answer:?}"
        );
    }
}
