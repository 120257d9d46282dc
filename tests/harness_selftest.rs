//! Self-test of the integration-test harness in `tests/common`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Shared integration-test harness.
mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

#[test]
fn backends_answer_directly() {
    let a = TestBackend::start("alpha");
    let b = TestBackend::start("beta");
    assert_ne!(a.port(), b.port());
    assert_eq!(a.name(), "alpha");

    let r = get(a.addr(), "/hello?x=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "alpha");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.echoed_header("host").as_deref(), Some("localhost"));
    assert_eq!(r.echoed_path().as_deref(), Some("/hello?x=1"));
    assert_eq!(r.echoed_method().as_deref(), Some("GET"));

    let r = get_host(b.addr(), "example.test", "//v1");
    assert_eq!(r.backend(), "beta");
    assert_eq!(r.echoed_header("Host").as_deref(), Some("example.test"));
    assert_eq!(r.echoed_path().as_deref(), Some("//v1"));

    // Duplicate headers are joined; quotes and backslashes survive the JSON round trip.
    let r = request(
        a.addr(),
        "GET",
        "/%2e%2e/x",
        &[
            ("X-Dup", "one"),
            ("x-dup", "two"),
            ("X-Odd", r#"a "quoted" \ value"#),
        ],
    )
    .unwrap();
    assert_eq!(r.echoed_header("x-dup").as_deref(), Some("one, two"));
    assert_eq!(
        r.echoed_header("x-odd").as_deref(),
        Some(r#"a "quoted" \ value"#)
    );
    assert_eq!(r.echoed_path().as_deref(), Some("/%2e%2e/x"));
    assert_eq!(r.echoed_header("connection").as_deref(), Some("close"));

    // Bodies: Content-Length and chunked.
    let r = request_with_body(a.addr(), "POST", "/post", &[], b"hello").unwrap();
    assert_eq!(r.echoed_header("content-length").as_deref(), Some("5"));
    assert_eq!(r.echoed_method().as_deref(), Some("POST"));
    let r = raw(
        a.addr(),
        b"PUT /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed_path().as_deref(), Some("/chunked"));

    a.set_status(503);
    assert_eq!(get(a.addr(), "/").status, 503);
    a.set_status(204);
    let r = get(a.addr(), "/");
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(a.requests(), 6);
    assert_eq!(b.requests(), 1);
}

#[test]
fn stop_and_restart_on_same_port() {
    let mut a = TestBackend::start("alpha");
    let addr = a.addr();
    // Leave an idle keep-alive connection open: stop() must close it too.
    let mut idle = KeepAliveClient::connect(addr).unwrap();
    assert_eq!(idle.send("GET", "/", &[]).unwrap().status, 200);

    a.stop();
    assert!(!a.is_running());
    assert!(
        TcpStream::connect(addr).is_err(),
        "port still open after stop"
    );
    assert!(request(addr, "GET", "/", &[]).is_err());
    assert!(
        idle.send("GET", "/", &[]).is_err(),
        "idle conn survived stop"
    );

    let back = TestBackend::start_on("alpha-again", addr.port());
    assert_eq!(back.addr(), addr);
    assert_eq!(get(addr, "/").backend(), "alpha-again");
}

#[test]
fn keep_alive_client_reuses_connection() {
    let a = TestBackend::start("ka");
    let mut c = KeepAliveClient::connect(a.addr()).unwrap();
    let local = c.local_addr();
    for i in 0..3 {
        let r = c.send("GET", &format!("/{i}"), &[("x-i", "v")]).unwrap();
        assert_eq!(r.status, 200);
        assert!(!c.is_closed_by_server(&r));
        assert_eq!(r.echoed_path(), Some(format!("/{i}")));
    }
    let r = c.send("HEAD", "/head", &[]).unwrap();
    assert_eq!(r.body, "");
    assert!(r.header("content-length").is_some());
    let r = c
        .send_with_body("POST", "/body", &[], b"{\"k\":1}")
        .unwrap();
    assert_eq!(r.echoed_header("content-length").as_deref(), Some("7"));
    assert_eq!(c.local_addr(), local);
    assert_eq!(a.requests(), 5);

    let r = c.send("GET", "/last", &[("Connection", "close")]).unwrap();
    assert!(c.is_closed_by_server(&r));
    assert!(c.send("GET", "/after", &[]).is_err());
}

#[test]
fn delay_in_flight_and_cancellation() {
    let a = TestBackend::start_with(
        "slow",
        BackendOpts {
            delay: Duration::from_millis(300),
            ..Default::default()
        },
    );
    let addr = a.addr();
    let threads: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || get(addr, "/slow").status))
        .collect();
    assert!(poll_until(Duration::from_secs(5), || a.in_flight() == 3));
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert!(poll_until(Duration::from_secs(5), || a.in_flight() == 0));
    assert_eq!(a.requests(), 3);

    // A client that hangs up mid-delay is noticed.
    a.set_delay(Duration::from_secs(30));
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(poll_until(Duration::from_secs(5), || a.in_flight() == 1));
    drop(s);
    assert!(poll_until(Duration::from_secs(5), || a.cancelled() == 1
        && a.in_flight() == 0));
    assert_eq!(a.requests(), 3);
}

#[test]
fn helpers() {
    let port = free_port();
    assert_ne!(port, 0);
    assert!(!wait_port(free_addr(), Duration::from_millis(100)));
    let a = TestBackend::start("w");
    assert!(wait_port(a.addr(), Duration::from_secs(1)));
    let mut n = 0;
    assert!(poll_until(Duration::from_secs(1), || {
        n += 1;
        n == 3
    }));
    assert!(!poll_until(Duration::from_millis(50), || false));
}

#[test]
fn weir_process_writes_config_and_cleans_up() {
    // Independent of what the binary does with the config: we only check the
    // harness side (placeholder expansion, files, cleanup).
    let dir;
    {
        let p = WeirProcess::spawn("pid_file: {{DIR}}/weir.pid\n", &[], &[]);
        dir = p.dir().to_path_buf();
        assert!(p.pid() > 0);
        let written = std::fs::read_to_string(p.config_path()).unwrap();
        assert_eq!(written, format!("pid_file: {}/weir.pid\n", dir.display()));
        p.write_config("x: {{DIR}}\n");
        let written = std::fs::read_to_string(p.config_path()).unwrap();
        assert_eq!(written, format!("x: {}\n", dir.display()));
        assert!(dir.join("stderr.log").exists());
        assert!(dir.join("stdout.log").exists());
    }
    if std::env::var_os("WEIR_KEEP_TEST_DIRS").is_none() {
        assert!(!dir.exists(), "temp dir not removed");
    }
    assert!(run_weir(&["--help"]).status.success());
}
