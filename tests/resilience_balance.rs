//! Latency-aware balancing under a bounded load: three real backends, one
//! 20× slower than the others; `least_request` and `peak_ewma` must send it
//! a small share where `round_robin` sends a third, with a lower tail
//! latency, and peak-EWMA must give it its share back once it is fast again.
//! The measured splits and quantiles are printed (README, "Resilience").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};

const FAST: Duration = Duration::from_millis(5);
const SLOW: Duration = Duration::from_millis(100);
const REQUESTS: usize = 600;
const CLIENTS: usize = 8;
const LIMIT: Duration = Duration::from_secs(60);

fn backends() -> [TestBackend; 3] {
    let opts = |d| BackendOpts {
        delay: d,
        ..Default::default()
    };
    [
        TestBackend::start_with("slow", opts(SLOW)),
        TestBackend::start_with("fast1", opts(FAST)),
        TestBackend::start_with("fast2", opts(FAST)),
    ]
}

/// The slow backend's share of `n` requests under `algorithm`, and the loop's result.
fn measure(algorithm: &str, b: &[TestBackend; 3], n: usize) -> (f64, LoadResult) {
    let listen = free_addr();
    let addrs: Vec<_> = b.iter().map(|b| b.addr()).collect();
    let cfg = pool_config(listen, &addrs, &format!("\n    algorithm: {algorithm}"), "");
    let w = WeirProcess::start(&cfg, listen);
    let share = run_share(&w, listen, b, n);
    drop(w);
    share
}

fn run_share(
    _w: &WeirProcess,
    listen: std::net::SocketAddr,
    b: &[TestBackend; 3],
    n: usize,
) -> (f64, LoadResult) {
    b.iter().for_each(|b| b.reset_counts());
    let r = run_load(listen, "/", n, CLIENTS, LIMIT);
    assert_eq!(
        r.count(200),
        n,
        "every request answered 200: {:?}",
        r.errors
    );
    let total: usize = b.iter().map(|b| b.requests()).sum();
    (b[0].requests() as f64 / total.max(1) as f64, r)
}

fn mean(r: &LoadResult) -> Duration {
    r.latencies.iter().sum::<Duration>() / r.latencies.len().max(1) as u32
}

fn report(name: &str, share: f64, r: &LoadResult) {
    println!(
        "{name:>13}: slow backend share {:5.1}%  mean {:>6.1?}  p50 {:>6.1?}  p95 {:>6.1?}  p99 {:>6.1?}",
        share * 100.0,
        mean(r),
        r.quantile(0.50),
        r.quantile(0.95),
        r.quantile(0.99)
    );
}

#[test]
fn least_request_sends_the_slow_backend_a_small_share() {
    let b = backends();
    let (rr_share, rr) = measure("round_robin", &b, REQUESTS);
    let (lr_share, lr) = measure("least_request", &b, REQUESTS);
    report("round_robin", rr_share, &rr);
    report("least_request", lr_share, &lr);
    assert!((0.28..0.39).contains(&rr_share), "round robin: {rr_share}");
    assert!(
        lr_share < 0.10,
        "least_request sent the slow one {lr_share}"
    );
    // Holding in-flight counts level leaves the slow backend a few percent
    // of the requests: above 1%, so the loop's p99 is still a slow answer
    // (printed, not asserted); the mean is a fraction of round robin's.
    assert!(
        mean(&lr) * 2 < mean(&rr),
        "{:?} vs {:?}",
        mean(&lr),
        mean(&rr)
    );
}

#[test]
fn peak_ewma_avoids_the_slow_backend_and_gives_it_back_its_share() {
    let b = backends();
    let (rr_share, rr) = measure("round_robin", &b, REQUESTS);
    let listen = free_addr();
    let addrs: Vec<_> = b.iter().map(|b| b.addr()).collect();
    let cfg = pool_config(listen, &addrs, "\n    algorithm: peak_ewma", "");
    let w = WeirProcess::start(&cfg, listen);
    let (pe_share, pe) = run_share(&w, listen, &b, REQUESTS);
    report("round_robin", rr_share, &rr);
    report("peak_ewma", pe_share, &pe);
    assert!((0.28..0.39).contains(&rr_share), "round robin: {rr_share}");
    assert!(pe_share < 0.05, "peak_ewma sent the slow one {pe_share}");
    // About 1.5% of the requests still probe the slow backend (the fast
    // ones' peaks on a busy machine make it win a draw now and then), so
    // the p99 is printed, and the mean and p95 are asserted.
    assert!(mean(&pe) * 2 < mean(&rr));
    assert!(pe.quantile(0.95) * 2 < rr.quantile(0.95));
    // The slow backend is fast again: its cost decays and fast answers
    // bring its share back to about a third.
    b[0].set_delay(FAST);
    let since = Instant::now();
    let recovered = poll_until(Duration::from_secs(30), || {
        run_share(&w, listen, &b, 120).0 > 0.2
    });
    println!(
        "peak_ewma: share back above 20% after {:?}",
        since.elapsed()
    );
    assert!(recovered, "the backend's EWMA did not recover");
}
