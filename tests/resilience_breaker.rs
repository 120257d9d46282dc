//! The circuit breaker's resilience knobs, against real backends whose
//! answers the test controls: `failure_rate` (with `min_requests`),
//! `open_for` doubling per opening in a row up to `max_open_for` and
//! starting over after a clean close, and the ejection cap
//! `max_open_percent`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// weir over `backends` with `breaker` as the circuit_breaker, no retries,
/// and a read-only admin API; returns (weir, listen, admin).
fn start(backends: &[SocketAddr], breaker: &str) -> (WeirProcess, SocketAddr, SocketAddr) {
    let (listen, adm) = (free_addr(), free_addr());
    let mut cfg = pool_config(
        listen,
        backends,
        &format!("\n    circuit_breaker: {breaker}"),
        "\n    retries: 0",
    );
    cfg.push_str(&format!("admin: {{ listen: \"{adm}\" }}\n"));
    let w = WeirProcess::start(&cfg, listen);
    assert!(wait_port(adm, START_TIMEOUT), "admin never listened");
    (w, listen, adm)
}

fn circuit(adm: SocketAddr, b: SocketAddr) -> String {
    let body = get_host(adm, &adm.to_string(), "/status").body;
    status_backend(&body, "pool", b).unwrap()["circuit"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sends 30 requests, the backend failing every other one (50%); returns
/// how many reached it.
fn alternate(listen: SocketAddr, b: &TestBackend) -> usize {
    for i in 0..30 {
        b.set_status(if i % 2 == 1 { 503 } else { 200 });
        get(listen, "/");
    }
    b.requests()
}

#[test]
fn failure_rate_opens_on_a_ratio_once_min_requests_are_in() {
    let b = TestBackend::start("b");
    let rate = "{ consecutive_failures: 100, open_for: 1m, failure_rate: { threshold: 40%, min_requests: 10, window: 1m } }";
    let (w, listen, adm) = start(&[b.addr()], rate);
    // 1 of 2 failed after the second request, but min_requests holds it
    // closed until the tenth (5 of 10 failed, over 40%): then it opens.
    assert_eq!(alternate(listen, &b), 10);
    assert_eq!(circuit(adm, b.addr()), "open");
    let r = get(listen, "/");
    assert_eq!((r.status, r.backend()), (503, String::new()));
    let events = get_host(adm, &adm.to_string(), "/events").body;
    assert!(
        events.contains("open for 60s after its failure rate"),
        "{events}"
    );
    drop(w);
    // Over the threshold only: 50% of failures never reach 60%.
    let b = TestBackend::start("b");
    let rate = "{ consecutive_failures: 100, open_for: 1m, failure_rate: { threshold: 60%, min_requests: 10, window: 1m } }";
    let (_w, listen, adm) = start(&[b.addr()], rate);
    assert_eq!(alternate(listen, &b), 30);
    assert_eq!(circuit(adm, b.addr()), "closed");
}

/// When requests reached the backend, polling every 20 ms for `limit`.
fn arrivals(listen: SocketAddr, limit: Duration, until: usize) -> Vec<Instant> {
    let mut seen = Vec::new();
    let end = Instant::now() + limit;
    while Instant::now() < end && seen.len() < until {
        let at = Instant::now();
        if !get(listen, "/").backend().is_empty() {
            seen.push(at);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    seen
}

fn gaps(at: &[Instant]) -> Vec<u128> {
    at.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect()
}

fn assert_near(gaps: &[u128], want: &[u128]) {
    assert_eq!(gaps.len(), want.len(), "{gaps:?}");
    for (g, w) in gaps.iter().zip(want) {
        assert!(*g >= *w && *g < *w + 250, "gaps {gaps:?}, want {want:?}");
    }
}

#[test]
fn open_for_doubles_in_a_row_up_to_max_open_for_and_starts_over_after_a_close() {
    let b = TestBackend::start_with(
        "b",
        BackendOpts {
            status: 503,
            ..Default::default()
        },
    );
    let spec = "{ consecutive_failures: 1, open_for: 300ms, max_open_for: 1200ms }";
    let (_w, listen, adm) = start(&[b.addr()], spec);
    // First request opens it (a one-backend group may open); each failed
    // trial re-opens it for twice as long, up to 1200 ms.
    let at = arrivals(listen, Duration::from_secs(8), 5);
    let g = gaps(&at);
    println!("gaps between trials: {g:?} ms");
    assert_near(&g, &[300, 600, 1200, 1200]);
    // A passing trial closes it; the next opening lasts open_for again.
    b.set_status(200);
    assert!(poll_until(Duration::from_secs(3), || get(listen, "/")
        .status
        == 200));
    assert_eq!(circuit(adm, b.addr()), "closed");
    b.set_status(503);
    let at = arrivals(listen, Duration::from_secs(3), 2);
    assert_near(&gaps(&at), &[300]);
}

#[test]
fn max_open_percent_keeps_half_the_group_in_service() {
    let ok = TestBackend::start("ok");
    let bad: Vec<TestBackend> = (0..3)
        .map(|i| {
            let opts = BackendOpts {
                status: 503,
                ..Default::default()
            };
            TestBackend::start_with(&format!("bad{i}"), opts)
        })
        .collect();
    let mut addrs = vec![ok.addr()];
    addrs.extend(bad.iter().map(|b| b.addr()));
    for (pct, want_open) in [("50%", 2), ("100%", 3)] {
        let spec = format!("{{ consecutive_failures: 1, open_for: 1m, max_open_percent: {pct} }}");
        let (w, listen, adm) = start(&addrs, &spec);
        for _ in 0..20 {
            get(listen, "/");
        }
        let open: Vec<_> = bad
            .iter()
            .filter(|b| circuit(adm, b.addr()) == "open")
            .collect();
        assert_eq!(open.len(), want_open, "max_open_percent {pct}");
        assert_eq!(circuit(adm, ok.addr()), "closed");
        if want_open == 2 {
            // The failing backend past the cap is still in service.
            let capped = bad.iter().find(|b| circuit(adm, b.addr()) == "closed");
            let capped = capped.unwrap();
            let before = capped.requests();
            for _ in 0..8 {
                get(listen, "/");
            }
            assert!(capped.requests() > before, "capped backend got no traffic");
        }
        drop(w);
    }
}
