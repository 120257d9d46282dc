//! Failure handling a client can see: retries onto a healthy backend, 503
//! when every backend is down, 504 on a slow backend, health checks taking a
//! backend out and back, and cancellation when the client goes away.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn refused_connections_are_retried_on_another_backend() {
    let good = TestBackend::start("good");
    let dead = free_addr(); // nothing listens here
    let listen = free_addr();
    let _w = WeirProcess::start(&pool_config(listen, &[dead, good.addr()], "", ""), listen);
    for i in 0..10 {
        let r = get(listen, "/");
        assert_eq!(
            (r.status, r.backend()),
            (200, "good".to_string()),
            "request {i}"
        );
    }
    // non-idempotent requests are retried too when the connect itself failed
    for _ in 0..4 {
        let r = request(listen, "POST", "/", &[]).unwrap();
        assert_eq!(r.status, 200);
    }
}

#[test]
fn retries_zero_surfaces_502() {
    let dead = free_addr();
    let listen = free_addr();
    let _w = WeirProcess::start(
        &pool_config(listen, &[dead], "", "\n    retries: 0"),
        listen,
    );
    let r = get(listen, "/");
    assert_eq!(r.status, 502);
    assert_eq!(r.body, "bad gateway\n");
    assert!(r.header("x-request-id").is_some());
}

#[test]
fn all_backends_down_is_503_with_retry_after() {
    let mut a = TestBackend::start("a");
    let listen = free_addr();
    let hc = "\n    health_check: { type: tcp, interval: 100ms, timeout: 50ms, unhealthy_threshold: 1, healthy_threshold: 1 }";
    let w = WeirProcess::start(&pool_config(listen, &[a.addr()], hc, ""), listen);
    assert_eq!(get(listen, "/").status, 200);
    a.stop();
    assert!(
        w.wait_for_log("is DOWN (connect refused)", Duration::from_secs(5)),
        "{}",
        w.stderr()
    );
    let r = get(listen, "/");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.body, "no healthy backend\n");
}

#[test]
fn slow_backend_is_504() {
    let slow = TestBackend::start_with(
        "slow",
        BackendOpts {
            delay: Duration::from_secs(3),
            status: 200,
        },
    );
    let listen = free_addr();
    let _w = WeirProcess::start(
        &pool_config(
            listen,
            &[slow.addr()],
            "",
            "\n    timeouts: { read: 300ms }",
        ),
        listen,
    );
    let started = std::time::Instant::now();
    let r = get(listen, "/");
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timed out by weir, not the backend"
    );
}

#[test]
fn read_timeout_retry_is_opt_in_for_idempotent_requests() {
    let slow = TestBackend::start_with(
        "slow",
        BackendOpts {
            delay: Duration::from_secs(3),
            status: 200,
        },
    );
    let fast = TestBackend::start("fast");
    let listen = free_addr();
    let route = "\n    timeouts: { read: 300ms }\n    retry_on: [connect_failure, timeout]";
    let _w = WeirProcess::start(
        &pool_config(listen, &[slow.addr(), fast.addr()], "", route),
        listen,
    );
    for _ in 0..4 {
        let r = get(listen, "/");
        assert_eq!((r.status, r.backend()), (200, "fast".to_string()));
    }
    assert!(
        slow.received() >= 1,
        "round robin sent some of the GETs to slow first (then retried them on fast)"
    );
    // POST is never retried after the request was sent
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(request(listen, "POST", "/", &[]).unwrap().status);
    }
    assert!(codes.contains(&504), "{codes:?}");
}

#[test]
fn read_timeout_is_not_retried_without_opt_in() {
    let slow = TestBackend::start_with(
        "slow",
        BackendOpts {
            delay: Duration::from_secs(3),
            status: 200,
        },
    );
    let fast = TestBackend::start("fast");
    // retry_on left out (the default) and spelled out without `timeout`
    for retry_on in ["", "\n    retry_on: [connect_failure]"] {
        slow.reset_counts();
        fast.reset_counts();
        let listen = free_addr();
        let route = format!("\n    timeouts: {{ read: 300ms }}{retry_on}");
        let _w = WeirProcess::start(
            &pool_config(listen, &[slow.addr(), fast.addr()], "", &route),
            listen,
        );
        let mut answers = Vec::new();
        for _ in 0..4 {
            let started = std::time::Instant::now();
            let r = get(listen, "/");
            let took = started.elapsed();
            if r.status == 504 {
                assert!(
                    took < Duration::from_secs(2),
                    "504 from weir's read timeout, not the backend: {took:?}"
                );
            }
            answers.push((r.status, r.backend()));
        }
        // round robin over two backends: half the GETs land on slow, time
        // out and are answered 504 without a try on fast
        let timed_out = answers.iter().filter(|(s, _)| *s == 504).count();
        let from_fast = answers
            .iter()
            .filter(|a| **a == (200, "fast".to_string()))
            .count();
        assert_eq!(
            (timed_out, from_fast),
            (2, 2),
            "retry_on {retry_on:?}: {answers:?}"
        );
        assert_eq!(
            (slow.received(), fast.received()),
            (2, 2),
            "retry_on {retry_on:?}: each GET was sent exactly once"
        );
    }
}

#[test]
fn health_checks_take_a_backend_out_and_bring_it_back() {
    let mut a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let port = a.port();
    let listen = free_addr();
    let hc = "\n    health_check: { type: http, path: /healthz, interval: 100ms, timeout: 80ms, unhealthy_threshold: 2, healthy_threshold: 2 }";
    let w = WeirProcess::start(&pool_config(listen, &[a.addr(), b.addr()], hc, ""), listen);
    a.stop();
    assert!(
        w.wait_for_log(
            &format!("backend 127.0.0.1:{port} in pool is DOWN"),
            Duration::from_secs(5)
        ),
        "{}",
        w.stderr()
    );
    b.reset_counts();
    for _ in 0..6 {
        assert_eq!(get(listen, "/").backend(), "b");
    }
    let a2 = TestBackend::start_on("a", port);
    assert!(
        w.wait_for_log(
            &format!("backend 127.0.0.1:{port} in pool is UP"),
            Duration::from_secs(5)
        ),
        "{}",
        w.stderr()
    );
    let seen: Vec<String> = (0..6).map(|_| get(listen, "/").backend()).collect();
    assert!(
        seen.contains(&"a".to_string()),
        "a takes traffic again: {seen:?}"
    );
    assert!(a2.requests() > 0);

    // an unexpected status also fails an http check
    b.set_status(500);
    assert!(
        w.wait_for_log(
            &format!("backend {} in pool is DOWN (status 500)", b.addr()),
            Duration::from_secs(5)
        ),
        "{}",
        w.stderr()
    );
}

#[test]
fn client_going_away_cancels_the_upstream_request() {
    let slow = TestBackend::start_with(
        "slow",
        BackendOpts {
            delay: Duration::from_secs(5),
            status: 200,
        },
    );
    let listen = free_addr();
    let _w = WeirProcess::start(&pool_config(listen, &[slow.addr()], "", ""), listen);
    let mut s = TcpStream::connect(listen).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    assert!(poll_until(Duration::from_secs(3), || slow.in_flight() == 1));
    drop(s);
    assert!(
        poll_until(Duration::from_secs(3), || slow.cancelled() == 1),
        "backend connection closed when the client left (in flight: {})",
        slow.in_flight()
    );
}
