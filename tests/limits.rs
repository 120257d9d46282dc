//! Client-side limits of http listeners (SPEC §1 `listeners`):
//! `timeouts.header` (a deadline for the whole request head from its first
//! byte: slowloris), `timeouts.keepalive` (idle between requests),
//! `max_connections` (past it new connections wait) and the
//! `weir_connections_active{listener}` gauge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One http listener `web` with `extra` listener keys, an admin listener
/// (for /metrics) and a route that answers by itself.
fn config(listen: SocketAddr, adm: SocketAddr, extra: &str) -> String {
    format!(
        r#"
server: {{ threads: 2, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
admin: {{ listen: "{adm}" }}
listeners:
  - {{ name: web, address: "{listen}"{extra} }}
routes:
  - {{ name: ok, match: {{ path_prefix: / }}, respond: {{ status: 200, body: "ok\n" }} }}
"#
    )
}

fn start(extra: &str) -> (WeirProcess, SocketAddr, SocketAddr) {
    let (listen, adm) = (free_addr(), free_addr());
    let weir = WeirProcess::start(&config(listen, adm, extra), listen);
    assert!(wait_port(adm, START_TIMEOUT), "admin never listened");
    (weir, listen, adm)
}

const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// `weir_connections_active{listener="web"}`, if exported.
fn active(adm: SocketAddr) -> Option<f64> {
    let host = adm.to_string();
    let r = request(adm, "GET", "/metrics", &[("host", host.as_str())]).ok()?;
    r.body.lines().find_map(|l| {
        l.strip_prefix("weir_connections_active{listener=\"web\"} ")
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Sends `bytes` one at a time, `gap` apart, from a thread; stops at the
/// first write error. Returns when the write side gave up or finished.
fn trickle(
    mut c: std::net::TcpStream,
    bytes: &'static [u8],
    gap: Duration,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        use std::io::Write;
        let mut sent = 0;
        for b in bytes {
            if c.write_all(&[*b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(gap);
        }
        sent
    })
}

#[test]
fn a_trickled_head_is_cut_at_its_deadline_while_others_are_served() {
    let (_weir, listen, _adm) = start(", timeouts: { header: 1s }");
    let slow = std::net::TcpStream::connect(listen).unwrap();
    slow.set_nodelay(true).unwrap();
    let reader = slow.try_clone().unwrap();
    let started = Instant::now();
    // One byte every 200 ms: the 48-byte head would take ~10 s.
    let writer = trickle(
        slow,
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaa\r\n\r\n",
        Duration::from_millis(200),
    );
    // A normal client is served meanwhile, more than once.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        let r = get(listen, "/");
        assert_eq!(r.status, 200, "a normal client during the trickle");
    }
    // The slow connection is closed, unanswered, at about 1 s.
    let mut reader = reader;
    reader
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut reader, &mut got);
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_millis(2500),
        "closed after {closed_after:?} (header: 1s)"
    );
    assert!(
        !String::from_utf8_lossy(&got).contains("200"),
        "the slow head was answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    let sent = writer.join().unwrap();
    assert!(sent < 20, "the trickle went on for {sent} bytes");
}

#[test]
fn a_head_split_within_the_deadline_and_a_later_request_are_served() {
    let (_weir, listen, _adm) = start(", timeouts: { header: 1s }");
    let mut c = RawConn::connect(listen).unwrap();
    // Four pieces over ~600 ms: within the 1 s deadline.
    for part in REQ.chunks(7) {
        c.send(part).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    let r = c.read_response(false, Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200);
    // Idle longer than `header` but within keepalive: the next head's
    // clock starts at its first byte, so it is served.
    std::thread::sleep(Duration::from_millis(1500));
    c.send(REQ).unwrap();
    let r = c.read_response(false, Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200, "second request on the connection");
}

#[test]
fn an_idle_keepalive_connection_is_closed_after_keepalive() {
    let (_weir, listen, _adm) = start(", timeouts: { keepalive: 1s }");
    // Within keepalive, the connection is reused.
    let mut c = RawConn::connect(listen).unwrap();
    c.send(REQ).unwrap();
    assert_eq!(
        c.read_response(false, Duration::from_secs(5))
            .unwrap()
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(400));
    c.send(REQ).unwrap();
    assert_eq!(
        c.read_response(false, Duration::from_secs(5))
            .unwrap()
            .status,
        200
    );
    // Then idle: closed at about 1 s.
    let idle_from = Instant::now();
    let (rest, closed) = c.read_to_close(Duration::from_secs(5));
    let after = idle_from.elapsed();
    assert!(closed, "still open after 5 s idle");
    assert!(rest.is_empty(), "unexpected bytes {rest:?}");
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_millis(2500),
        "closed after {after:?} idle (keepalive: 1s)"
    );
    // A fresh connection that never sends is closed the same way.
    let mut quiet = RawConn::connect(listen).unwrap();
    let t = Instant::now();
    let (_, closed) = quiet.read_to_close(Duration::from_secs(5));
    assert!(closed && t.elapsed() < Duration::from_millis(2500));
}

/// A stop (SIGTERM, and the old process's end after an upgrade) closes a
/// keep-alive connection idle between requests, as nginx does, but answers
/// a connection it accepted whose request has not been read yet: during an
/// upgrade the old process accepts until the moment it stops, and cutting
/// such a connection failed a request under load.
#[test]
fn a_stop_answers_a_connection_accepted_before_it_and_closes_idle_keepalive() {
    let (listen, adm) = (free_addr(), free_addr());
    let yaml = config(listen, adm, "").replace(
        "up.sock\" }",
        "up.sock\", grace_period_seconds: 5, graceful_shutdown_timeout_seconds: 2 }",
    );
    assert!(yaml.contains("grace_period_seconds"), "{yaml}");
    let weir = WeirProcess::start(&yaml, listen);
    assert!(wait_port(adm, START_TIMEOUT), "admin never listened");

    let mut idle = RawConn::connect(listen).unwrap();
    idle.send(REQ).unwrap();
    let r = idle.read_response(false, Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200);
    let mut fresh = RawConn::connect(listen).unwrap();
    // A slow client whose head is half sent when the stop begins (the soak
    // found these dropped: Pingora's cleanup ends heads being read).
    let mut partial = RawConn::connect(listen).unwrap();
    let (head, tail) = REQ.split_at(REQ.len() / 2);
    partial.send(head).unwrap();
    assert!(
        poll_until(Duration::from_secs(5), || active(adm) == Some(3.0)),
        "weir did not accept the three connections: {:?}",
        active(adm)
    );

    weir.signal("TERM");
    assert!(
        poll_until(Duration::from_secs(5), || !port_open(listen)),
        "the listener still accepts after SIGTERM"
    );
    let (rest, closed) = idle.read_to_close(Duration::from_secs(3));
    assert!(closed && rest.is_empty(), "idle keep-alive: {rest:?}");

    fresh.send(REQ).unwrap();
    let r = fresh
        .read_response(false, Duration::from_secs(3))
        .expect("the request on the accepted connection is answered");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    std::thread::sleep(Duration::from_millis(500));
    partial.send(tail).unwrap();
    let r = partial
        .read_response(false, Duration::from_secs(3))
        .expect("a head that was arriving when the stop began is answered");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        weir.wait_exit(Duration::from_secs(15)).is_some(),
        "weir exits"
    );
}

#[test]
fn keepalive_zero_closes_after_each_response() {
    let (_weir, listen, _adm) = start(", timeouts: { keepalive: 0s }");
    let mut c = RawConn::connect(listen).unwrap();
    c.send(REQ).unwrap();
    let r = c.read_response(false, Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.has_token("connection", "close"), "{:?}", r.text());
    let (_, closed) = c.read_to_close(Duration::from_secs(2));
    assert!(closed);
}

#[test]
fn past_max_connections_a_client_waits_for_a_free_one() {
    let (_weir, listen, adm) = start(", max_connections: 2");
    let mut a = RawConn::connect(listen).unwrap();
    let mut b = RawConn::connect(listen).unwrap();
    for c in [&mut a, &mut b] {
        c.send(REQ).unwrap();
        assert_eq!(
            c.read_response(false, Duration::from_secs(5))
                .unwrap()
                .status,
            200
        );
    }
    assert!(
        poll_until(Duration::from_secs(3), || active(adm) == Some(2.0)),
        "gauge: {:?}",
        active(adm)
    );
    // The third connects (the kernel completes the handshake) but is not
    // served while two are open.
    let mut c = RawConn::connect(listen).unwrap();
    c.send(REQ).unwrap();
    let waited = c.read_response(false, Duration::from_millis(1500));
    assert!(waited.is_err(), "served past max_connections: {waited:?}");
    assert_eq!(active(adm), Some(2.0), "a waiting connection is not active");
    // One leaves: the waiting one is served.
    drop(a);
    let r = c.read_response(false, Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(active(adm), Some(2.0));
    drop(b);
    drop(c);
    assert!(
        poll_until(Duration::from_secs(3), || active(adm) == Some(0.0)),
        "gauge after every client left: {:?}",
        active(adm)
    );
}

/// On an http listener weir does not accept past `max_connections` (SPEC:
/// new connections wait in the kernel backlog), so however many wait, none
/// is turned away, and each is served once a slot frees.
#[test]
fn past_max_connections_waiting_connections_stay_in_the_backlog() {
    let (_weir, listen, adm) = start(", max_connections: 1");
    let mut served = RawConn::connect(listen).unwrap();
    served.send(REQ).unwrap();
    assert_eq!(
        served
            .read_response(false, Duration::from_secs(5))
            .unwrap()
            .status,
        200
    );
    // Three more than the limit, more than weir would hold itself.
    let mut waiting: Vec<RawConn> = (0..3).map(|_| RawConn::connect(listen).unwrap()).collect();
    for c in &mut waiting {
        c.send(REQ).unwrap();
    }
    for c in &mut waiting {
        let r = c.read_response(false, Duration::from_millis(300));
        assert!(r.is_err(), "served or closed past max_connections: {r:?}");
    }
    assert_eq!(active(adm), Some(1.0));
    drop(served);
    // One at a time, each served when the one before it leaves.
    for mut c in waiting {
        let r = c.read_response(false, Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(active(adm), Some(1.0));
        drop(c);
    }
}

#[test]
fn the_active_connections_gauge_moves() {
    let (_weir, listen, adm) = start("");
    assert_eq!(active(adm), Some(0.0));
    let conns: Vec<RawConn> = (0..3)
        .map(|_| {
            let mut c = RawConn::connect(listen).unwrap();
            c.send(REQ).unwrap();
            assert_eq!(
                c.read_response(false, Duration::from_secs(5))
                    .unwrap()
                    .status,
                200
            );
            c
        })
        .collect();
    assert!(
        poll_until(Duration::from_secs(3), || active(adm) == Some(3.0)),
        "gauge with 3 open: {:?}",
        active(adm)
    );
    drop(conns);
    assert!(
        poll_until(Duration::from_secs(3), || active(adm) == Some(0.0)),
        "gauge after closing: {:?}",
        active(adm)
    );
}

#[test]
fn bad_values_are_config_errors_with_their_key_paths() {
    let (listen, adm) = (free_addr(), free_addr());
    for (extra, expect) in [
        (
            ", timeouts: { header: 0s }",
            "listeners[0].timeouts.header: must be greater than 0",
        ),
        (
            ", timeouts: { keepalive: 500ms }",
            "listeners[0].timeouts.keepalive",
        ),
        (
            ", max_connections: 0",
            "listeners[0].max_connections: must be at least 1",
        ),
        (", timeouts: { idle: 1s }", "listeners[0].timeouts"),
    ] {
        let dir = TestDir::create();
        let path = dir.write("weir.yaml", &config(listen, adm, extra));
        let out = run_weir(&["check", "-c", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {err}");
        assert!(err.contains(expect), "{extra}: wanted {expect:?} in\n{err}");
    }
}
