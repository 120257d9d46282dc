//! The cache under concurrency and over time (SPEC §1.1): the cache lock,
//! its timeout, stale-while-revalidate, stale-if-error, the memory tier's
//! bound and frequency-based eviction, entries kept across a reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache_common;
mod common;

use cache_common::{answer, metric, start, xcache};
use common::{poll_until, run_weir, RawRequest};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Runs `n` GETs of `path` at once; their statuses and bodies.
fn burst(listen: std::net::SocketAddr, path: &'static str, n: usize) -> Vec<(u16, String)> {
    let gate = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.wait();
                common::request(listen, "GET", path, &[])
                    .map(|r| (r.status, r.body))
                    .unwrap_or((0, String::new()))
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn concurrent_misses_for_one_key_make_one_backend_request() {
    let s = start("    cache: {}\n", "", |_: &RawRequest| {
        std::thread::sleep(Duration::from_millis(300));
        answer(200, &[("cache-control", "max-age=60")], "filled")
    });
    let answers = burst(s.listen, "/k", 100);
    assert!(
        answers.iter().all(|(st, b)| *st == 200 && b == "filled"),
        "{answers:?}"
    );
    assert_eq!(s.hits(), 1, "the cache lock lets one request fill");
}

#[test]
fn waiters_go_to_the_backend_after_lock_timeout() {
    let s = start("    cache: { lock_timeout: 1s }\n", "", |_: &RawRequest| {
        std::thread::sleep(Duration::from_millis(2500));
        answer(200, &[("cache-control", "max-age=60")], "slow")
    });
    let listen = s.listen;
    let t = std::thread::spawn(move || burst(listen, "/slow", 5));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        s.hits(),
        1,
        "within lock_timeout only the filler reaches the backend"
    );
    assert!(
        poll_until(Duration::from_secs(2), || s.hits() == 5),
        "the waiters were not released after lock_timeout: {} requests",
        s.hits()
    );
    assert!(t.join().unwrap().iter().all(|(st, _)| *st == 200));
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_once() {
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    let s = start("    cache: {}\n", "", move |_: &RawRequest| {
        let i = seen.fetch_add(1, Ordering::SeqCst);
        if i > 0 {
            std::thread::sleep(Duration::from_millis(800));
        }
        answer(
            200,
            &[("cache-control", "max-age=1, stale-while-revalidate=60")],
            &format!("v{i}"),
        )
    });
    assert_eq!(s.get("/swr").body, "v0");
    // Freshness is counted in whole seconds.
    std::thread::sleep(Duration::from_millis(2100));
    for _ in 0..3 {
        let t0 = Instant::now();
        let r = s.get("/swr");
        assert_eq!(r.body, "v0");
        assert!(matches!(xcache(&r), "UPDATING" | "STALE"), "{r:?}");
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "the stale answer waited for the refresh"
        );
    }
    assert!(poll_until(Duration::from_secs(3), || s.get("/swr").body == "v1"));
    assert_eq!(s.hits(), 2, "one background refresh");
}

#[test]
fn stale_if_error_serves_the_entry_when_the_backend_fails() {
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    let mut s = start("    cache: {}\n", "", move |_: &RawRequest| {
        match seen.fetch_add(1, Ordering::SeqCst) {
            0 => answer(
                200,
                &[("cache-control", "max-age=1, stale-if-error=60")],
                "good",
            ),
            _ => answer(500, &[], "broken"),
        }
    });
    assert_eq!(s.get("/e").body, "good");
    std::thread::sleep(Duration::from_millis(2100));
    let r = s.get("/e");
    assert_eq!(
        (r.status, r.body.as_str(), xcache(&r)),
        (200, "good", "STALE"),
        "on a 500"
    );
    s.backend.stop();
    let r = s.get("/e");
    assert_eq!(
        (r.status, r.body.as_str(), xcache(&r)),
        (200, "good", "STALE"),
        "on a refused connection"
    );
}

#[test]
fn the_memory_tier_stays_within_its_size_and_keeps_what_is_used() {
    let big = "x".repeat(100 * 1024);
    let s = start(
        "    cache: {}\n",
        "cache: { memory: 1MiB }\n",
        move |_: &RawRequest| answer(200, &[("cache-control", "max-age=600")], &big),
    );
    for _ in 0..20 {
        s.get("/hot");
    }
    for i in 0..40 {
        s.get(&format!("/cold/{i}"));
        s.get("/hot");
    }
    let m = s.metrics();
    let size = metric(&m, r#"weir_cache_size_bytes{tier="memory"}"#);
    let objects = metric(&m, r#"weir_cache_objects{tier="memory"}"#);
    let evicted = metric(&m, r#"weir_cache_evictions_total{tier="memory"}"#);
    assert!(size > 0.0 && size <= 1048576.0, "size {size}\n{m}");
    assert!((1.0..=10.0).contains(&objects), "objects {objects}");
    assert!(evicted > 0.0, "nothing evicted after 4 MB of fills\n{m}");
    assert_eq!(
        xcache(&s.get("/hot")),
        "HIT",
        "the frequently used entry was evicted"
    );
    let hits = metric(&m, r#"weir_cache_requests_total{result="hit",route="c"}"#);
    assert!(hits >= 40.0, "hits counted: {hits}\n{m}");
}

#[test]
fn a_reload_keeps_the_entries_of_unchanged_routes() {
    let s = start("    cache: {}\n", "", |_: &RawRequest| {
        answer(200, &[("cache-control", "max-age=600")], "kept")
    });
    s.get("/r");
    let cfg = s.weir.config_path().to_str().unwrap().to_string();
    let text = std::fs::read_to_string(&cfg).unwrap();
    s.weir.write_config(&text.replace("read: 3s", "read: 4s"));
    let out = run_weir(&["reload", "-c", &cfg]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        xcache(&s.get("/r")),
        "HIT",
        "entry lost on an unrelated change"
    );
    s.weir
        .write_config(&text.replace("cache: {}", "cache: { default_ttl: 5s }"));
    let out = run_weir(&["reload", "-c", &cfg]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        xcache(&s.get("/r")),
        "MISS",
        "an entry of the old cache block was served"
    );
    assert_eq!(s.hits(), 2);
}
