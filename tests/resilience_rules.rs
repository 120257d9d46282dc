//! Group-level resilience rules with real backends the test controls:
//! panic mode (`panic_threshold`), slow start, and the retry budget; each
//! visible where the SPEC says (`/status`, `/events`, metrics, the log).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

const HC: &str = "\n    health_check: { type: http, path: /, interval: 100ms, timeout: 80ms, unhealthy_threshold: 1, healthy_threshold: 1 }";

fn start(
    backends: &[SocketAddr],
    upstream: &str,
    route: &str,
) -> (WeirProcess, SocketAddr, SocketAddr) {
    let (listen, adm) = (free_addr(), free_addr());
    let mut cfg = pool_config(listen, backends, upstream, route);
    cfg.push_str(&format!("admin: {{ listen: \"{adm}\" }}\n"));
    let w = WeirProcess::start(&cfg, listen);
    assert!(wait_port(adm, START_TIMEOUT), "admin never listened");
    (w, listen, adm)
}

fn admin_get(adm: SocketAddr, path: &str) -> String {
    get_host(adm, &adm.to_string(), path).body
}

fn failing(name: &str) -> TestBackend {
    let opts = BackendOpts {
        status: 503,
        ..Default::default()
    };
    TestBackend::start_with(name, opts)
}

fn metric(adm: SocketAddr, line_start: &str) -> Option<f64> {
    admin_get(adm, "/metrics")
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn below_panic_threshold_every_enabled_backend_takes_traffic() {
    let ok = TestBackend::start("ok");
    let bad: Vec<TestBackend> = (0..3).map(|i| failing(&format!("bad{i}"))).collect();
    let mut addrs = vec![ok.addr()];
    addrs.extend(bad.iter().map(|b| b.addr()));
    for threshold in ["0%", "50%"] {
        let extra = format!("{HC}\n    panic_threshold: {threshold}");
        let (w, listen, adm) = start(&addrs, &extra, "\n    retries: 0");
        assert!(
            poll_until(Duration::from_secs(5), || w.log_count("is DOWN") == 3),
            "{}",
            w.stderr()
        );
        std::thread::sleep(Duration::from_millis(150)); // past the 100 ms re-judgement
                                                        // Who answered, as the client sees it (health checks reach the
                                                        // backends too, so their own counts would not tell).
        let mut answered = std::collections::HashSet::new();
        for _ in 0..40 {
            answered.insert(get(listen, "/").backend());
        }
        let reached = bad.iter().filter(|b| answered.contains(b.name())).count();
        let status = admin_get(adm, "/status");
        let panic_gauge = metric(adm, "weir_upstream_panic{upstream=\"pool\"}");
        if threshold == "0%" {
            assert_eq!(reached, 0, "DOWN backends took traffic without panic");
            assert!(status.contains("\"panic\":false"), "{status}");
            continue;
        }
        // 1 of 4 in service (25%) is below 50%: panic, all four serve.
        assert_eq!(
            reached,
            3,
            "in panic every enabled backend takes traffic: {answered:?} {status} {}",
            w.stderr()
        );
        assert!(status.contains("\"panic\":true"), "{status}");
        assert_eq!(panic_gauge, Some(1.0));
        let events = admin_get(adm, "/events");
        assert!(events.contains("panic mode ON: 1 of 4"), "{events}");
        assert_eq!(w.log_count("panic mode ON"), 1, "logged once");
        // Two come back: 3 of 4 in service, panic ends (logged, an event).
        bad[0].set_status(200);
        bad[1].set_status(200);
        assert!(poll_until(Duration::from_secs(5), || {
            get(listen, "/");
            w.log_count("panic mode OFF") == 1
        }));
        assert!(admin_get(adm, "/events").contains("panic mode OFF: 3 of 4"));
        assert!(admin_get(adm, "/events").contains("\"message\":\"UP\""));
    }
}

/// The share of `n` requests that reached `b`.
fn share(listen: SocketAddr, b: &[&TestBackend; 2], n: usize) -> f64 {
    b.iter().for_each(|b| b.reset_counts());
    let r = run_load(listen, "/", n, 4, Duration::from_secs(20));
    assert_eq!(r.count(200), n);
    b[1].requests() as f64 / (b[0].requests() + b[1].requests()) as f64
}

#[test]
fn slow_start_ramps_a_backend_up_again_from_a_tenth_of_its_share() {
    for ramp in ["0s", "3s"] {
        let a = TestBackend::start("a");
        let b = TestBackend::start("b");
        let extra = format!("{HC}\n    slow_start: {ramp}");
        let (w, listen, adm) = start(&[a.addr(), b.addr()], &extra, "");
        b.set_status(503);
        assert!(poll_until(Duration::from_secs(5), || w
            .log_count("is DOWN")
            == 1));
        b.set_status(200);
        assert!(poll_until(Duration::from_secs(5), || w.log_count("is UP") == 1));
        let early = share(listen, &[&a, &b], 200);
        let weight = metric(
            adm,
            &format!("weir_backend_effective_weight{{backend=\"{}\"", b.addr()),
        );
        println!(
            "slow_start {ramp}: share just after UP {:.1}%, effective weight {weight:?}",
            early * 100.0
        );
        if ramp == "0s" {
            assert!(
                early > 0.4,
                "without slow start it gets half at once: {early}"
            );
            continue;
        }
        assert!(early < 0.3, "ramping backend took {early}");
        assert!(weight.is_some_and(|w| w < 0.8), "{weight:?}");
        std::thread::sleep(Duration::from_secs(3));
        let late = share(listen, &[&a, &b], 200);
        println!(
            "slow_start {ramp}: share after the ramp {:.1}%",
            late * 100.0
        );
        assert!(late > 0.4, "after the ramp: {late}");
        assert_eq!(
            metric(
                adm,
                &format!("weir_backend_effective_weight{{backend=\"{}\"", b.addr())
            ),
            Some(1.0)
        );
    }
}

#[test]
fn retry_budget_bounds_retries_when_every_backend_fails() {
    let slow_503 = |name: &str| {
        TestBackend::start_with(
            name,
            BackendOpts {
                status: 503,
                delay: Duration::from_millis(20),
            },
        )
    };
    let b: Vec<TestBackend> = (0..3).map(|i| slow_503(&format!("b{i}"))).collect();
    let addrs: Vec<_> = b.iter().map(|b| b.addr()).collect();
    let route = "\n    retries: 2\n    retry_on: [5xx]";
    const N: usize = 300;
    for budget in ["", "\n    retry_budget: { ratio: 20%, min_retries: 0 }"] {
        let (_w, listen, adm) = start(&addrs, budget, route);
        b.iter().for_each(|b| b.reset_counts());
        let r = run_load(listen, "/", N, 8, Duration::from_secs(60));
        let tries: usize = b.iter().map(|b| b.requests()).sum();
        let retries = tries - N;
        let exhausted = metric(adm, "weir_retry_budget_exhausted_total{upstream=\"pool\"}");
        println!("budget {budget:?}: {retries} retries for {N} requests, exhausted {exhausted:?}");
        // Every client gets a backend's own 503 (the first answer when the
        // retry was cut), never one of weir's.
        assert_eq!(r.count(503), N);
        if budget.is_empty() {
            assert_eq!(retries, 2 * N);
            continue;
        }
        assert!(retries < N / 3, "{retries} retries got through the budget");
        assert!(exhausted.is_some_and(|n| n > 0.0), "{exhausted:?}");
    }
}
