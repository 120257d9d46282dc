//! Policies on the way to a backend: the passive circuit breaker (open,
//! one half-open trial, closed again), cookie session affinity, retrying
//! 5xx answers for idempotent requests, and backends added at run time
//! taking traffic only after a passing health check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const TOKEN: &str = "0123456789abcdef0123";

fn cfg(
    listen: SocketAddr,
    adm: SocketAddr,
    route_extra: &str,
    backends: &[SocketAddr],
    upstream_extra: &str,
) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        r#"server: {{ threads: 2, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
admin: {{ listen: "{adm}", token: "{TOKEN}" }}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - name: main
    upstream: pool{route_extra}
upstreams:
  pool:
    algorithm: round_robin
    backends: [{list}]{upstream_extra}
"#,
        list = list.join(", ")
    )
}

fn admin(adm: SocketAddr, method: &str, path: &str, body: &str) -> Response {
    // The admin API may start listening a moment after the proxy listener.
    assert!(wait_port(adm, START_TIMEOUT), "admin never listened");
    let host = adm.to_string();
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("host", host.as_str()),
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    request_with_body(adm, method, path, &headers, body.as_bytes())
        .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"))
}

/// The `/status` entry of backend `addr` in upstream `pool`.
fn backend_status(adm: SocketAddr, addr: SocketAddr) -> serde_json::Value {
    let r = admin(adm, "GET", "/status", "");
    assert_eq!(r.status, 200, "GET /status: {}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("/status is not JSON ({e}): {}", r.body));
    let pool = v["upstreams"]
        .as_array()
        .and_then(|ups| ups.iter().find(|u| u["name"] == "pool"))
        .unwrap_or_else(|| panic!("no upstream pool in /status: {}", r.body));
    pool["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["address"] == addr.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("no backend {addr} in /status: {}", r.body))
}

fn circuit(adm: SocketAddr, addr: SocketAddr) -> String {
    backend_status(adm, addr)["circuit"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Value of the sample `name{labels}` (label order does not matter); None if absent.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (label_part, value) = rest.split_once('}')?;
        let have: Vec<&str> = label_part.split(',').filter(|s| !s.is_empty()).collect();
        let all = labels
            .iter()
            .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()));
        (all && have.len() == labels.len())
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

// -------------------------------------------------------- circuit breaker

#[test]
fn circuit_breaker_opens_lets_one_trial_through_and_closes_again() {
    let bad = TestBackend::start_with(
        "bad",
        BackendOpts {
            status: 502,
            ..BackendOpts::default()
        },
    );
    let good = TestBackend::start("good");
    let (listen, adm) = (free_addr(), free_addr());
    let w = WeirProcess::start(
        &cfg(
            listen,
            adm,
            "\n    retries: 0",
            &[bad.addr(), good.addr()],
            "\n    circuit_breaker: { consecutive_failures: 3, open_for: 2s, max_open_for: 2s }",
        ),
        listen,
    );
    let open_metric = |text: &str| {
        metric(
            text,
            "weir_circuit_open",
            &[("upstream", "pool"), ("backend", &bad.addr().to_string())],
        )
    };

    // 1. three failures in a row through the bad backend open its circuit
    let mut sent = 0;
    while bad.requests() < 3 && sent < 20 {
        let r = get(listen, "/");
        sent += 1;
        match r.backend().as_str() {
            "bad" => assert_eq!(r.status, 502),
            "good" => assert_eq!(r.status, 200),
            other => panic!("unexpected answer from {other:?}: {r:?}"),
        }
    }
    assert_eq!(bad.requests(), 3, "round robin reaches the bad backend");
    assert!(
        poll_until(Duration::from_secs(2), || circuit(adm, bad.addr())
            == "open"),
        "/status shows the circuit open: {}",
        backend_status(adm, bad.addr())
    );
    let opened_seen = Instant::now();
    assert_eq!(circuit(adm, good.addr()), "closed");
    let m = admin(adm, "GET", "/metrics", "").body;
    assert_eq!(
        open_metric(&m),
        Some(1.0),
        "weir_circuit_open for {}:\n{m}",
        bad.addr()
    );

    // 2. while open, every request goes to the good backend
    for i in 0..10 {
        let r = get(listen, "/");
        assert_eq!(
            (r.status, r.backend()),
            (200, "good".to_string()),
            "request {i}"
        );
    }
    assert_eq!(bad.requests(), 3, "an open backend gets no traffic");
    assert!(
        opened_seen.elapsed() < Duration::from_secs(2),
        "checked within open_for"
    );

    // 3. after open_for: one trial request (slow, failing) while concurrent
    //    requests go to the good backend; the failed trial re-opens it
    bad.set_delay(Duration::from_millis(800));
    sleep_until(opened_seen + Duration::from_millis(2200));
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(move || {
                    let r = get(listen, "/");
                    (r.status, r.backend())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(bad.requests(), 4, "exactly one trial request: {answers:?}");
    let trial: Vec<_> = answers.iter().filter(|(_, b)| b == "bad").collect();
    assert_eq!(trial, [&(502, "bad".to_string())], "{answers:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|a| **a == (200, "good".to_string()))
            .count(),
        5,
        "{answers:?}"
    );
    assert!(
        poll_until(Duration::from_secs(2), || circuit(adm, bad.addr())
            == "open"),
        "a failed trial opens the circuit again: {}",
        backend_status(adm, bad.addr())
    );
    let reopened_seen = Instant::now();
    for i in 0..6 {
        let r = get(listen, "/");
        assert_eq!(
            (r.status, r.backend()),
            (200, "good".to_string()),
            "request {i}"
        );
    }
    assert_eq!(bad.requests(), 4);

    // 4. the backend is fixed: after open_for the trial succeeds and closes it
    bad.set_delay(Duration::ZERO);
    bad.set_status(200);
    sleep_until(reopened_seen + Duration::from_millis(2200));
    let mut seen = Vec::new();
    for _ in 0..10 {
        let r = get(listen, "/");
        assert_eq!(r.status, 200, "{r:?}");
        seen.push(r.backend());
        if r.backend() == "bad" {
            break;
        }
    }
    assert_eq!(
        seen.last().map(String::as_str),
        Some("bad"),
        "a trial was let through: {seen:?}"
    );
    assert!(
        poll_until(Duration::from_secs(2), || circuit(adm, bad.addr())
            == "closed"),
        "a successful trial closes the circuit: {}",
        backend_status(adm, bad.addr())
    );
    let before = bad.requests();
    let seen: Vec<String> = (0..6).map(|_| get(listen, "/").backend()).collect();
    assert!(
        bad.requests() - before >= 2,
        "the backend takes its share again: {seen:?}"
    );
    let m = admin(adm, "GET", "/metrics", "").body;
    assert_eq!(open_metric(&m), Some(0.0), "{m}");
    drop(w);
}

// --------------------------------------------------------- sticky sessions

/// The value of the `weir_affinity` cookie a response sets, if any.
fn affinity_cookie(r: &Response) -> Option<(String, String)> {
    r.header_all("set-cookie").into_iter().find_map(|c| {
        let value = c.strip_prefix("weir_affinity=")?;
        let value = value.split(';').next().unwrap_or("").trim().to_string();
        Some((value, c.to_string()))
    })
}

fn three_backends() -> Vec<TestBackend> {
    vec![
        TestBackend::start("one"),
        TestBackend::start("two"),
        TestBackend::start("three"),
    ]
}

fn with_cookie(listen: SocketAddr, value: &str) -> Response {
    let cookie = format!("theme=dark; weir_affinity={value}; lang=en");
    request(listen, "GET", "/", &[("cookie", cookie.as_str())]).unwrap()
}

/// First request: a cookie that names no address; then 10 requests with it
/// all reach the same backend. Returns (cookie value, backend index).
fn pin(listen: SocketAddr, backends: &[TestBackend]) -> (String, usize) {
    let r = get(listen, "/");
    assert_eq!(r.status, 200);
    let (value, line) = affinity_cookie(&r)
        .unwrap_or_else(|| panic!("no weir_affinity cookie set: {:?}", r.headers));
    assert!(!value.is_empty(), "{line}");
    assert!(
        line.to_ascii_lowercase().contains("httponly"),
        "cookie is HttpOnly: {line}"
    );
    for b in backends {
        assert!(
            !value.contains(&b.port().to_string()) && !value.contains("127.0.0.1"),
            "the cookie value {value:?} must not reveal {}",
            b.addr()
        );
    }
    assert!(
        !value.contains("MTI3LjAuMC4x"),
        "not base64 of the address: {value}"
    );
    let first = backends
        .iter()
        .position(|b| b.name() == r.backend())
        .unwrap_or_else(|| panic!("answered by {:?}", r.backend()));
    for i in 0..10 {
        let r = with_cookie(listen, &value);
        assert_eq!(
            (r.status, r.backend()),
            (200, backends[first].name().to_string()),
            "request {i} with the cookie"
        );
    }
    (value, first)
}

#[test]
fn sticky_cookie_pins_a_client_until_its_backend_is_drained() {
    let backends = three_backends();
    let addrs: Vec<SocketAddr> = backends.iter().map(TestBackend::addr).collect();
    let (listen, adm) = (free_addr(), free_addr());
    let _w = WeirProcess::start(
        &cfg(
            listen,
            adm,
            "",
            &addrs,
            "\n    sticky: { cookie: weir_affinity }",
        ),
        listen,
    );
    let (value, first) = pin(listen, &backends);

    // a cookie weir did not make is ignored and replaced
    let r = with_cookie(listen, "forged-value");
    assert_eq!(r.status, 200);
    assert!(
        affinity_cookie(&r).is_some(),
        "a new cookie for a forged one"
    );

    // draining the pinned backend: the old cookie goes elsewhere, with a new cookie
    let item = format!("/upstreams/pool/backends/{}", addrs[first]);
    let r = admin(adm, "PATCH", &item, r#"{"state":"draining"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let drained = backends[first].received();
    let r = with_cookie(listen, &value);
    assert_eq!(r.status, 200);
    assert_ne!(
        r.backend(),
        backends[first].name(),
        "a draining backend takes no sticky requests"
    );
    let (new_value, _) = affinity_cookie(&r)
        .unwrap_or_else(|| panic!("re-pinned with a new cookie: {:?}", r.headers));
    assert_ne!(new_value, value);
    let second = r.backend();
    for i in 0..5 {
        let r = with_cookie(listen, &new_value);
        assert_eq!(
            (r.status, r.backend()),
            (200, second.clone()),
            "request {i} with the new cookie"
        );
    }
    assert_eq!(
        backends[first].received(),
        drained,
        "nothing more reached the drained backend"
    );
}

#[test]
fn sticky_cookie_moves_when_its_backend_goes_down() {
    let mut backends = three_backends();
    let addrs: Vec<SocketAddr> = backends.iter().map(TestBackend::addr).collect();
    let (listen, adm) = (free_addr(), free_addr());
    let w = WeirProcess::start(
        &cfg(
            listen,
            adm,
            "",
            &addrs,
            "\n    sticky: { cookie: weir_affinity }\n    health_check: { type: tcp, interval: 100ms, timeout: 50ms, unhealthy_threshold: 1, healthy_threshold: 1 }",
        ),
        listen,
    );
    let (value, first) = pin(listen, &backends);
    backends[first].stop();
    assert!(
        w.wait_for_log(
            &format!("backend {} in pool is DOWN", addrs[first]),
            Duration::from_secs(5)
        ),
        "{}",
        w.stderr()
    );
    let r = with_cookie(listen, &value);
    assert_eq!(r.status, 200, "{r:?}");
    assert_ne!(r.backend(), backends[first].name());
    let (new_value, _) = affinity_cookie(&r)
        .unwrap_or_else(|| panic!("re-pinned with a new cookie: {:?}", r.headers));
    assert_ne!(new_value, value);
    let second = r.backend();
    for i in 0..5 {
        let r = with_cookie(listen, &new_value);
        assert_eq!(
            (r.status, r.backend()),
            (200, second.clone()),
            "request {i} with the new cookie"
        );
    }
}

// ------------------------------------------------------------ retry on 5xx

#[test]
fn retry_on_5xx_hides_a_failing_backend_from_idempotent_requests_only() {
    let bad = TestBackend::start_with(
        "bad",
        BackendOpts {
            status: 503,
            ..BackendOpts::default()
        },
    );
    let good = TestBackend::start("good");
    let (listen, adm) = (free_addr(), free_addr());
    let _w = WeirProcess::start(
        &cfg(
            listen,
            adm,
            "\n    retry_on: [connect_failure, 5xx]",
            &[bad.addr(), good.addr()],
            "",
        ),
        listen,
    );
    for i in 0..6 {
        let r = get(listen, "/");
        assert_eq!(
            (r.status, r.backend()),
            (200, "good".to_string()),
            "GET {i}"
        );
    }
    assert!(
        bad.requests() >= 1,
        "GETs did reach the failing backend and were retried"
    );
    for i in 0..4 {
        let r = request(listen, "PUT", "/", &[]).unwrap();
        assert_eq!(
            (r.status, r.backend()),
            (200, "good".to_string()),
            "PUT {i} is idempotent"
        );
    }
    let posts: Vec<(u16, String)> = (0..4)
        .map(|_| {
            let r = request(listen, "POST", "/", &[]).unwrap();
            (r.status, r.backend())
        })
        .collect();
    assert!(
        posts.contains(&(503, "bad".to_string())),
        "a POST is never retried on a 5xx: {posts:?}"
    );
}

#[test]
fn without_5xx_in_retry_on_the_503_reaches_the_client() {
    let bad = TestBackend::start_with(
        "bad",
        BackendOpts {
            status: 503,
            ..BackendOpts::default()
        },
    );
    let good = TestBackend::start("good");
    let (listen, adm) = (free_addr(), free_addr());
    let _w = WeirProcess::start(
        &cfg(listen, adm, "", &[bad.addr(), good.addr()], ""),
        listen,
    );
    let got: Vec<(u16, String)> = (0..4)
        .map(|_| {
            let r = get(listen, "/");
            (r.status, r.backend())
        })
        .collect();
    assert!(got.contains(&(503, "bad".to_string())), "{got:?}");
    assert!(got.contains(&(200, "good".to_string())), "{got:?}");
}

// ------------------------------------------------- backends added later

#[test]
fn an_added_backend_takes_traffic_only_after_a_passing_health_check() {
    let a = TestBackend::start("a");
    let (listen, adm) = (free_addr(), free_addr());
    let _w = WeirProcess::start(
        &cfg(
            listen,
            adm,
            "\n    retries: 0",
            &[a.addr()],
            "\n    health_check: { type: http, path: /, interval: 1s, timeout: 500ms }",
        ),
        listen,
    );
    assert_eq!(get(listen, "/").backend(), "a");

    // nothing listens on the new backend's port yet
    let port = free_port();
    let late_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let r = admin(
        adm,
        "POST",
        "/upstreams/pool/backends",
        &format!(r#"{{"address":"{late_addr}","weight":1}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let st = backend_status(adm, late_addr);
    assert_eq!(
        st["healthy"], false,
        "not healthy before a passing check: {st}"
    );

    // over more than two check intervals, every request goes to a (with
    // retries: 0 a request sent to the dead address would be a 502)
    let until = Instant::now() + Duration::from_millis(2500);
    let mut n = 0;
    while Instant::now() < until {
        let r = get(listen, "/");
        assert_eq!(
            (r.status, r.backend()),
            (200, "a".to_string()),
            "request {n}"
        );
        n += 1;
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(n >= 20, "only {n} requests in 2.5 s");

    // the server comes up: after a passing check it takes traffic
    let late = TestBackend::start_on("late", port);
    let mut errors = Vec::new();
    let joined = poll_until(Duration::from_secs(10), || {
        let r = get(listen, "/");
        if r.status != 200 {
            errors.push(r.status);
        }
        r.backend() == "late"
    });
    assert!(joined, "the added backend never took traffic");
    assert!(errors.is_empty(), "clients saw errors: {errors:?}");
    assert!(late.requests() >= 2, "health check and traffic");
    assert_eq!(backend_status(adm, late_addr)["healthy"], true);
}

/// The cookie value is a keyed MAC: two instances with the same `secret`
/// name a backend alike (a client keeps its backend across a fleet and a
/// rolling upgrade), another secret gives other values, and the cookie
/// carries `SameSite=Lax` (no `Secure` over plain HTTP).
#[test]
fn sticky_values_are_keyed_by_the_secret_and_agree_across_instances() {
    let backends = three_backends();
    let addrs: Vec<SocketAddr> = backends.iter().map(TestBackend::addr).collect();
    let start = |secret: &str| {
        let (listen, adm) = (free_addr(), free_addr());
        let extra = format!("\n    sticky: {{ cookie: weir_affinity, secret: {secret} }}");
        let w = WeirProcess::start(&cfg(listen, adm, "", &addrs, &extra), listen);
        (w, listen)
    };
    let (_a, listen_a) = start("fleet-secret-1");
    let (_b, listen_b) = start("fleet-secret-1");
    let (_c, listen_c) = start("other-secret-2");
    let (value, first) = pin(listen_a, &backends);
    let line = affinity_cookie(&get(listen_a, "/")).unwrap().1;
    assert!(line.contains("SameSite=Lax"), "{line}");
    assert!(
        !line.contains("Secure"),
        "no Secure over plain HTTP: {line}"
    );
    // Instance b honours a's cookie: same backend, no new cookie.
    for _ in 0..5 {
        let r = with_cookie(listen_b, &value);
        assert_eq!(r.backend(), backends[first].name());
        assert!(
            affinity_cookie(&r).is_none(),
            "b re-pinned: {:?}",
            r.headers
        );
    }
    // Instance c does not know the value: it pins anew, with another value.
    let r = with_cookie(listen_c, &value);
    let (other, _) = affinity_cookie(&r).expect("c sets its own cookie");
    assert_ne!(other, value);
}
