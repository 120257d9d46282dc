//! `GET /ready` (SPEC §5): 200 once the listeners are bound, no token needed;
//! on SIGTERM it answers 503 while the listeners still accept (the stop
//! notice), then the listeners close, the request in flight finishes within
//! the grace period and the process exits: the order a Kubernetes readiness
//! probe and a balancer in front rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn config(listen: SocketAddr, admin: SocketAddr, backend: SocketAddr) -> String {
    format!(
        r#"
server:
  threads: 1
  pid_file: "{{{{DIR}}}}/weir.pid"
  upgrade_sock: "{{{{DIR}}}}/up.sock"
  grace_period_seconds: 3
  graceful_shutdown_timeout_seconds: 1
admin: {{ listen: "{admin}", token: secret-token-0123456789 }}
listeners: [{{ name: web, address: "{listen}" }}]
routes: [{{ upstream: app }}]
upstreams:
  app: {{ backends: ["{backend}"] }}
"#
    )
}

fn ready(admin: SocketAddr) -> Option<u16> {
    raw(
        admin,
        format!("GET /ready HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()
    .map(|r| r.status)
}

#[test]
fn ready_needs_no_token_while_the_rest_of_the_api_does() {
    let backend = TestBackend::start("app");
    let (listen, admin) = (free_addr(), free_addr());
    let _weir = WeirProcess::start(&config(listen, admin, backend.addr()), listen);
    assert!(poll_until(Duration::from_secs(5), || ready(admin) == Some(200)));
    let r = get_host(admin, &admin.to_string(), "/ready");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"ready\":true"), "{}", r.body);
    assert_eq!(get_host(admin, &admin.to_string(), "/status").status, 401);
}

#[test]
fn sigterm_turns_ready_to_503_before_the_listeners_close() {
    let backend = TestBackend::start("app");
    let (listen, admin) = (free_addr(), free_addr());
    let weir = WeirProcess::start(&config(listen, admin, backend.addr()), listen);
    assert!(poll_until(Duration::from_secs(5), || ready(admin) == Some(200)));

    // A slow request in flight when the stop begins.
    backend.set_delay(Duration::from_millis(2500));
    let slow = std::thread::spawn(move || get(listen, "/slow"));
    assert!(poll_until(Duration::from_secs(5), || backend.in_flight() == 1));
    backend.set_delay(Duration::ZERO);

    let stop = Instant::now();
    weir.signal("TERM");
    assert!(
        poll_until(Duration::from_secs(2), || ready(admin) == Some(503)),
        "/ready never answered 503 after SIGTERM\n{}",
        weir.logs()
    );
    let seen_503 = stop.elapsed();
    // While /ready says 503 the proxy still serves new connections.
    let during = get(listen, "/during");
    assert_eq!(during.status, 200, "{}", weir.logs());
    assert!(
        stop.elapsed() < ::weir::shutdown::STOP_NOTICE,
        "503 at {seen_503:?}, new request served at {:?}: the notice is over",
        stop.elapsed()
    );
    // Then the listener stops accepting; the slow request still finishes.
    assert!(
        poll_until(Duration::from_secs(5), || {
            raw(listen, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err()
        }),
        "the listener kept accepting after the notice"
    );
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "the request in flight was cut");
    // grace (3 s) + shutdown timeout (1 s) + notice (1 s), with a margin.
    assert!(
        weir.wait_exit(Duration::from_secs(10)).is_some(),
        "weir did not exit\n{}",
        weir.logs()
    );
}
