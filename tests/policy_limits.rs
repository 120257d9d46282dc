//! Limits a client runs into: per-route rate limits (429 + Retry-After,
//! per-key budgets, bounded memory), limits shared through Redis across
//! weir instances (and what happens when Redis is gone), and
//! `max_body_size` (413 before the backend sees anything).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::redis::RedisServer;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------- helpers

fn server_section() -> &'static str {
    r#"server: { threads: 2, pid_file: "{{DIR}}/weir.pid", upgrade_sock: "{{DIR}}/up.sock" }"#
}

/// A config with one listener, a read-only admin listener (for /metrics),
/// `extra_top` (e.g. `trusted_proxies`), the given routes block and one
/// upstream `pool` with `backend`.
fn cfg(
    listen: SocketAddr,
    adm: SocketAddr,
    extra_top: &str,
    routes: &str,
    backend: SocketAddr,
) -> String {
    format!(
        "{server}\nadmin: {{ listen: \"{adm}\" }}\n{extra_top}\nlisteners: [{{ name: web, address: \"{listen}\" }}]\nroutes:\n{routes}\nupstreams:\n  pool: {{ backends: [\"{backend}\"] }}\n",
        server = server_section()
    )
}

fn now_since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Returns once the wall clock is in the first 100 ms of a second (sleeps
/// until the next second starts if it is not).
fn early_in_second() {
    let now = now_since_epoch();
    if now.subsec_millis() < 100 {
        return;
    }
    let to_next = Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos()));
    std::thread::sleep(to_next + Duration::from_millis(5));
}

/// Runs `burst` (given the attempt number) early in a wall-clock second, at
/// least 1.1 s after the previous attempt ended (so each attempt has fresh
/// 1-second windows whatever their alignment), until it returns `Ok`; at
/// most `tries` times. Panics with every attempt's failure. The retries
/// only absorb a burst that happened to straddle a window boundary: a
/// limiter that is wrong is wrong in every attempt.
fn in_fresh_windows(tries: usize, mut burst: impl FnMut(usize) -> Result<(), String>) {
    let mut failures = Vec::new();
    let mut last_end: Option<Instant> = None;
    for attempt in 0..tries {
        if let Some(end) = last_end {
            let ready = end + Duration::from_millis(1100);
            let now = Instant::now();
            if ready > now {
                std::thread::sleep(ready - now);
            }
        }
        early_in_second();
        let second = now_since_epoch().as_secs();
        let result = burst(attempt);
        let same_second = now_since_epoch().as_secs() == second;
        last_end = Some(Instant::now());
        match result {
            Ok(()) => return,
            Err(e) => failures.push(format!(
                "attempt {attempt} (burst within one wall-clock second: {same_second}): {e}"
            )),
        }
    }
    panic!("no attempt succeeded:\n{}", failures.join("\n"));
}

fn get_with(listen: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(listen, "GET", path, headers)
        .unwrap_or_else(|e| panic!("GET {path} {headers:?} via {listen}: {e}"))
}

/// Status codes of `n` GETs of `path` with `headers`, each on a new connection.
fn statuses(listen: SocketAddr, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| get_with(listen, path, headers).status)
        .collect()
}

/// `Retry-After` must be a whole number of seconds, at least 1.
fn check_retry_after(r: &Response) -> Result<(), String> {
    let value = r
        .header("retry-after")
        .ok_or_else(|| format!("429 without Retry-After: {:?}", r.headers))?;
    match value.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(()),
        _ => Err(format!("Retry-After {value:?} is not a whole number >= 1")),
    }
}

fn metrics(adm: SocketAddr) -> String {
    let host = adm.to_string();
    let r = request(adm, "GET", "/metrics", &[("host", host.as_str())]).unwrap();
    assert_eq!(r.status, 200, "GET /metrics: {}", r.body);
    r.body
}

/// Value of the sample `name{labels}` (label order does not matter); None if absent.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_part, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (l, v) = r.split_once('}')?;
                (l, v)
            }
            None => ("", rest),
        };
        if !value.starts_with(' ') {
            return None;
        }
        let have: Vec<&str> = label_part.split(',').filter(|s| !s.is_empty()).collect();
        let all = labels
            .iter()
            .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()));
        (all && have.len() == labels.len())
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Resident set size of `pid` in KiB (from /proc/<pid>/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

// ------------------------------------------------------------ rate limits

#[test]
fn rate_limit_answers_429_with_retry_after_past_the_budget() {
    let b = TestBackend::start("b");
    let (listen, adm) = (free_addr(), free_addr());
    let routes = r#"
  - name: limited
    match: { path_prefix: /limited }
    upstream: pool
    rate_limit: { requests_per_second: 5, key: client_ip }
  - name: free
    match: { path_prefix: /free }
    upstream: pool"#;
    let _w = WeirProcess::start(&cfg(listen, adm, "", routes, b.addr()), listen);

    let mut limited_seen = 0usize;
    in_fresh_windows(3, |_| {
        b.reset_counts();
        let mut got = Vec::new();
        for _ in 0..8 {
            let r = get_with(listen, "/limited/x", &[]);
            if r.status == 429 {
                limited_seen += 1;
                check_retry_after(&r)?;
            } else if r.status == 200 && r.backend() != "b" {
                return Err(format!("200 not from the backend: {r:?}"));
            }
            got.push(r.status);
        }
        // another route without a limit is not affected by this one's budget
        let free = statuses(listen, "/free/x", &[], 3);
        let want = [200, 200, 200, 200, 200, 429, 429, 429];
        if got != want {
            return Err(format!("/limited answered {got:?}, want {want:?}"));
        }
        if free != [200, 200, 200] {
            return Err(format!("/free (no limit) answered {free:?}"));
        }
        if b.received() != 5 + 3 {
            return Err(format!(
                "limited requests reached the backend: it received {} requests, want 8",
                b.received()
            ));
        }
        Ok(())
    });

    let mut text = String::new();
    let counted = poll_until(Duration::from_secs(3), || {
        text = metrics(adm);
        metric(&text, "weir_rate_limited_total", &[("route", "limited")])
            == Some(limited_seen as f64)
    });
    assert!(
        counted,
        "weir_rate_limited_total{{route=\"limited\"}} should be {limited_seen}:\n{}",
        text.lines()
            .filter(|l| l.contains("rate_limited"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn rate_limit_budgets_are_per_key_and_a_missing_header_falls_back_to_the_client_address() {
    let b = TestBackend::start("b");
    let (listen, adm) = (free_addr(), free_addr());
    let routes = r#"
  - name: keyed
    upstream: pool
    rate_limit: { requests_per_second: 3, key: "header:x-api-key" }"#;
    let _w = WeirProcess::start(
        &cfg(
            listen,
            adm,
            "trusted_proxies: [127.0.0.1]",
            routes,
            b.addr(),
        ),
        listen,
    );
    in_fresh_windows(3, |attempt| {
        let key_a = format!("key-a-{attempt}");
        let key_b = format!("key-b-{attempt}");
        let ip1 = format!("10.{attempt}.0.1");
        let ip2 = format!("10.{attempt}.0.2");
        let a = statuses(listen, "/", &[("x-api-key", &key_a)], 4);
        let bb = statuses(listen, "/", &[("x-api-key", &key_b)], 1);
        // no key: the (trusted-proxy derived) client address is the key
        let n1 = statuses(listen, "/", &[("x-forwarded-for", &ip1)], 4);
        let n2 = statuses(listen, "/", &[("x-forwarded-for", &ip2)], 1);
        // a key is its own budget whatever address it comes from
        let a_again = statuses(
            listen,
            "/",
            &[("x-api-key", &key_a), ("x-forwarded-for", &ip2)],
            1,
        );
        let got = (
            a.clone(),
            bb.clone(),
            n1.clone(),
            n2.clone(),
            a_again.clone(),
        );
        let want = (
            vec![200, 200, 200, 429],
            vec![200],
            vec![200, 200, 200, 429],
            vec![200],
            vec![429],
        );
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "key A {a:?} (want 3×200 then 429), key B {bb:?} (want 200), no key from {ip1} {n1:?} (want 3×200 then 429), no key from {ip2} {n2:?} (want 200), key A again from {ip2} {a_again:?} (want 429)"
            ))
        }
    });
}

#[test]
fn rate_limit_memory_stays_bounded_with_many_distinct_keys() {
    let b = TestBackend::start("b");
    let (listen, adm) = (free_addr(), free_addr());
    let routes = r#"
  - name: keyed
    upstream: pool
    rate_limit: { requests_per_second: 5, key: "header:x-api-key" }"#;
    let w = WeirProcess::start(&cfg(listen, adm, "", routes, b.addr()), listen);
    // 2 KB keys: a limiter that keeps every key it has seen grows by
    // 10,000 × 2 KB ≈ 20 MB, past the 16 MiB allowance below (count-min
    // sketches and similar fixed-size stores do not grow at all).
    let pad = "k".repeat(2000);
    let bad = AtomicUsize::new(0);
    let sent = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = |phase: &str, per_thread: usize| {
        std::thread::scope(|s| {
            for t in 0..4 {
                let (pad, bad, sent) = (&pad, &bad, &sent);
                s.spawn(move || {
                    let mut c = KeepAliveClient::connect(listen).unwrap();
                    for i in 0..per_thread {
                        if Instant::now() >= deadline {
                            return;
                        }
                        let key = format!("{phase}-{t}-{i}-{pad}");
                        match c.send("GET", "/", &[("x-api-key", &key)]) {
                            Ok(r) => {
                                sent.fetch_add(1, Ordering::Relaxed);
                                if r.status != 200 && r.status != 429 {
                                    bad.fetch_add(1, Ordering::Relaxed);
                                }
                                if c.is_closed_by_server(&r) {
                                    c = KeepAliveClient::connect(listen).unwrap();
                                }
                            }
                            Err(_) => {
                                bad.fetch_add(1, Ordering::Relaxed);
                                c = KeepAliveClient::connect(listen).unwrap();
                            }
                        }
                    }
                });
            }
        });
    };
    run("warm", 250);
    let before = rss_kib(w.pid());
    sent.store(0, Ordering::Relaxed);
    run("many", 2500);
    let after = rss_kib(w.pid());
    let sent = sent.load(Ordering::Relaxed);
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "answers other than 200/429, or I/O errors"
    );
    assert_eq!(sent, 10_000, "all requests sent within the time bound");
    let grew = after.saturating_sub(before);
    assert!(
        grew < 16 * 1024,
        "RSS grew by {grew} KiB ({before} → {after} KiB) over {sent} distinct keys"
    );

    // and it still limits a hot key
    in_fresh_windows(3, |attempt| {
        let key = format!("hot-{attempt}");
        let got = statuses(listen, "/", &[("x-api-key", &key)], 7);
        if got == [200, 200, 200, 200, 200, 429, 429] {
            Ok(())
        } else {
            Err(format!("hot key answered {got:?}, want 5×200 then 429s"))
        }
    });
}

// -------------------------------------------------- shared (Redis) limits

fn shared_route(name: &str, prefix: &str, redis: &str, on_error: &str) -> String {
    format!(
        r#"
  - name: {name}
    match: {{ path_prefix: {prefix} }}
    upstream: pool
    rate_limit:
      requests_per_second: 5
      shared: {{ redis: "{redis}", on_error: {on_error}, timeout: 50ms }}"#
    )
}

#[test]
fn shared_limit_is_one_budget_across_weir_instances() {
    let redis = RedisServer::start();
    let b = TestBackend::start("b");
    let routes = shared_route("api", "/api", &redis.url(), "allow");
    let (l1, a1, l2, a2) = (free_addr(), free_addr(), free_addr(), free_addr());
    let _w1 = WeirProcess::start(&cfg(l1, a1, "", &routes, b.addr()), l1);
    let _w2 = WeirProcess::start(&cfg(l2, a2, "", &routes, b.addr()), l2);
    in_fresh_windows(3, |_| {
        let mut got = Vec::new();
        for i in 0..10 {
            let via = if i % 2 == 0 { l1 } else { l2 };
            let r = get_with(via, "/api/x", &[]);
            if r.status == 429 {
                check_retry_after(&r)?;
            }
            got.push(r.status);
        }
        let want = [200, 200, 200, 200, 200, 429, 429, 429, 429, 429];
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "alternating between two instances answered {got:?}, want 5×200 then 5×429"
            ))
        }
    });
}

#[test]
fn shared_limit_follows_on_error_when_redis_is_down_and_reconnects() {
    let mut redis = RedisServer::start();
    let b = TestBackend::start("b");
    let routes = format!(
        "{}{}",
        shared_route("open", "/open", &redis.url(), "allow"),
        shared_route("closed", "/closed", &redis.url(), "deny")
    );
    let (listen, adm) = (free_addr(), free_addr());
    let w = WeirProcess::start(&cfg(listen, adm, "", &routes, b.addr()), listen);
    assert_eq!(
        get(listen, "/closed/x").status,
        200,
        "Redis up: deny route serves"
    );
    assert_eq!(
        get(listen, "/open/x").status,
        200,
        "Redis up: allow route serves"
    );

    redis.stop();
    let timed = |path: &str| {
        let started = Instant::now();
        let r = get(listen, path);
        (r, started.elapsed())
    };
    for i in 0..3 {
        let (r, took) = timed("/open/x");
        assert_eq!(r.status, 200, "on_error: allow, request {i}: {r:?}");
        assert_eq!(r.backend(), "b");
        assert!(
            took < Duration::from_millis(750),
            "request {i} took {took:?}"
        );
    }
    for i in 0..3 {
        let (r, took) = timed("/closed/x");
        assert_eq!(r.status, 503, "on_error: deny, request {i}: {r:?}");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(
            took < Duration::from_millis(750),
            "request {i} took {took:?}"
        );
    }
    let mut text = String::new();
    let counted = poll_until(Duration::from_secs(3), || {
        text = metrics(adm);
        metric(
            &text,
            "weir_shared_limit_errors_total",
            &[("route", "open")],
        )
        .unwrap_or(0.0)
            > 0.0
            && metric(
                &text,
                "weir_shared_limit_errors_total",
                &[("route", "closed")],
            )
            .unwrap_or(0.0)
                > 0.0
    });
    assert!(
        counted,
        "weir_shared_limit_errors_total counts the failed Redis calls:\n{}",
        text.lines()
            .filter(|l| l.contains("shared_limit"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Redis comes back on the same address: weir reconnects by itself and
    // limits again (the 6th request in a second is refused).
    redis.restart();
    let mut last = Vec::new();
    let mut last_second = 0;
    let recovered = poll_until(Duration::from_secs(10), || {
        // each burst in a wall-clock second of its own
        loop {
            early_in_second();
            let second = now_since_epoch().as_secs();
            if second != last_second {
                last_second = second;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        last = statuses(listen, "/closed/x", &[], 6);
        last == [200, 200, 200, 200, 200, 429]
    });
    assert!(
        recovered,
        "limiting did not resume within 10 s after Redis came back; last burst {last:?}\n{}",
        w.stderr()
    );
}

#[test]
fn shared_limit_never_hangs_on_a_silent_redis() {
    // Accepts connections (kernel backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let b = TestBackend::start("b");
    let routes = format!(
        "{}{}",
        shared_route("open", "/open", &url, "allow"),
        shared_route("closed", "/closed", &url, "deny")
    );
    let (listen, adm) = (free_addr(), free_addr());
    let _w = WeirProcess::start(&cfg(listen, adm, "", &routes, b.addr()), listen);
    for i in 0..3 {
        let started = Instant::now();
        let r = get(listen, "/open/x");
        let took = started.elapsed();
        assert_eq!(
            (r.status, r.backend()),
            (200, "b".to_string()),
            "request {i}"
        );
        assert!(
            took < Duration::from_millis(750),
            "allow: request {i} took {took:?}"
        );
        let started = Instant::now();
        let r = get(listen, "/closed/x");
        let took = started.elapsed();
        assert_eq!(r.status, 503, "request {i}");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(
            took < Duration::from_millis(750),
            "deny: request {i} took {took:?}"
        );
    }
    assert!(
        metric(
            &metrics(adm),
            "weir_shared_limit_errors_total",
            &[("route", "open")]
        )
        .unwrap_or(0.0)
            > 0.0,
        "timeouts count as shared-limit errors"
    );
    drop(silent);
}

// -------------------------------------------------------------- body size

/// Sends `bytes` on a new connection and reads the answer up to its end
/// (Content-Length) or until the server closes the connection.
fn send_and_read(listen: SocketAddr, bytes: &[u8]) -> Response {
    raw(listen, bytes).unwrap_or_else(|e| {
        panic!(
            "{:?}: {e}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        )
    })
}

#[test]
fn max_body_size_refuses_large_bodies_with_413_before_the_backend() {
    let b = TestBackend::start("b");
    let (listen, adm) = (free_addr(), free_addr());
    let routes = r#"
  - name: small
    match: { path_prefix: /small }
    upstream: pool
    max_body_size: 1KiB
  - name: any
    upstream: pool"#;
    let _w = WeirProcess::start(&cfg(listen, adm, "", routes, b.addr()), listen);

    // Content-Length over the limit: refused from the head alone, before
    // any upstream connection; the unread body means Connection: close.
    let r = send_and_read(
        listen,
        b"POST /small/up HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n",
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert_eq!(b.received(), 0, "the backend saw nothing");

    // within the limit (and exactly at it) passes
    let r = request_with_body(listen, "POST", "/small/up", &[], &[b'a'; 500]).unwrap();
    assert_eq!((r.status, r.backend()), (200, "b".to_string()));
    assert_eq!(r.echoed_header("content-length").as_deref(), Some("500"));
    let r = request_with_body(listen, "POST", "/small/up", &[], &[b'a'; 1024]).unwrap();
    assert_eq!(r.status, 200, "1024 bytes is not over 1KiB");
    let answered = b.requests();
    assert_eq!(answered, 2);

    // chunked: no single chunk is over the limit, together they are
    let mut chunked =
        b"POST /small/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"258\r\n"); // 600 bytes
        chunked.extend_from_slice(&[b'c'; 600]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = send_and_read(listen, &chunked);
    assert_eq!(r.status, 413, "chunked body of 1800 bytes: {r:?}");
    assert_eq!(
        b.requests(),
        answered,
        "the backend answered no over-size request"
    );

    // a small chunked body passes
    let small_chunked =
        b"POST /small/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n12c\r\n"
            .iter()
            .copied()
            .chain([b'c'; 300])
            .chain(*b"\r\n0\r\n\r\n")
            .collect::<Vec<u8>>();
    let r = send_and_read(listen, &small_chunked);
    assert_eq!(
        (r.status, r.backend()),
        (200, "b".to_string()),
        "300-byte chunked body"
    );

    // a route without max_body_size has no limit
    let r = request_with_body(listen, "POST", "/other", &[], &[b'a'; 2000]).unwrap();
    assert_eq!((r.status, r.backend()), (200, "b".to_string()));
}

#[test]
fn max_body_size_413_reaches_a_client_still_sending() {
    // The client sends the head and part of an over-size chunked body, then
    // waits: weir must answer 413 as soon as the limit is crossed rather
    // than wait for the rest (or for the backend).
    let b = TestBackend::start("b");
    let (listen, adm) = (free_addr(), free_addr());
    let routes = r#"
  - name: small
    upstream: pool
    max_body_size: 1KiB"#;
    let _w = WeirProcess::start(&cfg(listen, adm, "", routes, b.addr()), listen);
    let mut s = TcpStream::connect(listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..2 {
        head.extend_from_slice(b"320\r\n"); // 800 bytes
        head.extend_from_slice(&[b'c'; 800]);
        head.extend_from_slice(b"\r\n");
    }
    s.write_all(&head).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "no answer after {:?} ({e}); got {:?}",
                started.elapsed(),
                String::from_utf8_lossy(&got)
            ),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
    assert_eq!(b.requests(), 0);
}
