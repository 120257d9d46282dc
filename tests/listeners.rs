//! Listener identity (SPEC §4 "Routing"): a route limited by `listeners`
//! never answers a connection another listener accepted, whatever the
//! addresses — wildcard and specific, IPv4 and IPv6, one port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;

/// Two listeners on one port, each with a catch-all route that names itself.
fn config(a: (&str, &str), b: (&str, &str)) -> String {
    format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
listeners:
  - {{ name: {an}, address: "{aa}" }}
  - {{ name: {bn}, address: "{ba}" }}
routes:
  - {{ name: {an}-only, listeners: [{an}], match: {{ path_prefix: / }}, respond: {{ status: 200, body: "{an}\n" }} }}
  - {{ name: {bn}-only, listeners: [{bn}], match: {{ path_prefix: / }}, respond: {{ status: 200, body: "{bn}\n" }} }}
"#,
        an = a.0,
        aa = a.1,
        bn = b.0,
        ba = b.1
    )
}

fn body_via(addr: SocketAddr) -> String {
    get(addr, "/").body
}

#[test]
fn wildcard_listener_is_not_answered_by_a_specific_one_listed_first() {
    let port = free_port();
    let cfg = config(
        ("internal", &format!("[::1]:{port}")),
        ("public", &format!("0.0.0.0:{port}")),
    );
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let _weir = WeirProcess::start(&cfg, v4);
    assert!(wait_port(v6, START_TIMEOUT));
    // Accepted by the public wildcard listener: never the internal route.
    assert_eq!(body_via(v4), "public\n");
    assert_eq!(body_via(v6), "internal\n");
}

#[test]
fn ipv4_and_ipv6_listeners_on_one_port() {
    let port = free_port();
    let cfg = config(
        ("six", &format!("[::1]:{port}")),
        ("four", &format!("127.0.0.1:{port}")),
    );
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let _weir = WeirProcess::start(&cfg, v4);
    assert!(wait_port(v6, START_TIMEOUT));
    assert_eq!(body_via(v4), "four\n");
    assert_eq!(body_via(v6), "six\n");
}

#[test]
fn two_specific_addresses_on_one_port() {
    let port = free_port();
    let cfg = config(
        ("two", &format!("127.0.0.2:{port}")),
        ("one", &format!("127.0.0.1:{port}")),
    );
    let one: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let two: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let _weir = WeirProcess::start(&cfg, one);
    assert!(wait_port(two, START_TIMEOUT));
    assert_eq!(body_via(one), "one\n");
    assert_eq!(body_via(two), "two\n");
}

#[test]
fn dual_stack_listener_reached_over_ipv4() {
    let port = free_port();
    let other = free_port();
    // The first listener is on another port: the connection must not fall
    // back to listener 0.
    let cfg = config(
        ("elsewhere", &format!("127.0.0.1:{other}")),
        ("dual", &format!("[::]:{port}")),
    );
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let _weir = WeirProcess::start(&cfg, v4);
    assert_eq!(body_via(v4), "dual\n");
    assert_eq!(body_via(v6), "dual\n");
    let o: SocketAddr = format!("127.0.0.1:{other}").parse().unwrap();
    assert_eq!(body_via(o), "elsewhere\n");
}

/// A fresh start whose http listener's address is taken fails, as nginx
/// does, naming the address, instead of running without that listener.
#[test]
fn a_taken_address_stops_start_up_with_its_name() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let cfg = config(("a", &addr.to_string()), ("b", &free_addr().to_string()));
    let weir = WeirProcess::spawn(&cfg, &[], &[]);
    let status = weir.wait_exit(std::time::Duration::from_secs(20));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "weir kept running with {addr} taken\n{}",
        weir.logs()
    );
    assert!(
        weir.logs().contains(&format!("cannot listen on {addr}")),
        "{}",
        weir.logs()
    );
    drop(held);
}
