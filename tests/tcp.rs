//! `tcp` listeners: bytes relayed both ways to a backend of the listener's
//! upstream, chosen like HTTP chooses (round robin, dead and DOWN backends
//! skipped), `tunnel_idle`, one access-log line and the tcp metrics per
//! connection, live reload of the listener's upstream, graceful upgrade,
//! and `weir check` errors for tcp listeners.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest any socket operation of these tests may block.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// An echo server on 127.0.0.1. On a connection's first bytes it answers
/// `<name>\n` and then echoes everything until the client half-closes (then
/// it half-closes too). A connection whose first bytes are `GET /healthz` is
/// an HTTP health check: answered 200 (or 503 when set unhealthy) and closed.
struct EchoBackend {
    addr: SocketAddr,
    /// Connections that carried data (health checks not counted).
    connections: Arc<AtomicUsize>,
    /// Health checks answered.
    checks: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl EchoBackend {
    fn start(name: &str) -> EchoBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let checks = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, k, h, s) = (
            connections.clone(),
            checks.clone(),
            healthy.clone(),
            stop.clone(),
        );
        let name = name.to_string();
        std::thread::spawn(move || {
            while !s.load(Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (name, c, k, h) = (name.clone(), c.clone(), k.clone(), h.clone());
                        std::thread::spawn(move || serve(conn, &name, &c, &k, &h));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => return,
                }
            }
        });
        EchoBackend {
            addr,
            connections,
            checks,
            healthy,
            stop,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

fn serve(
    mut conn: TcpStream,
    name: &str,
    connections: &AtomicUsize,
    checks: &AtomicUsize,
    healthy: &AtomicBool,
) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let Ok(n) = conn.read(&mut buf) else { return };
    if n == 0 {
        return;
    }
    if buf[..n].starts_with(b"GET /healthz") {
        checks.fetch_add(1, Relaxed);
        let status = if healthy.load(Relaxed) {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        let _ = conn.write_all(
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        );
        return;
    }
    connections.fetch_add(1, Relaxed);
    if conn.write_all(format!("{name}\n").as_bytes()).is_err() || conn.write_all(&buf[..n]).is_err()
    {
        return;
    }
    loop {
        match conn.read(&mut buf) {
            Ok(0) => {
                let _ = conn.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// `n` bytes of a deterministic pseudo-random sequence.
fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Connects to `addr`, sends `data` (from another thread) and half-closes,
/// reads until the far end closes; returns (backend name, echoed bytes).
fn talk(addr: SocketAddr, data: &[u8]) -> (String, Vec<u8>) {
    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let data = data.to_vec();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut all = Vec::new();
    (&conn).read_to_end(&mut all).unwrap();
    sender.join().unwrap();
    let nl = all
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or_else(|| panic!("no name line in {} bytes", all.len()));
    let name = String::from_utf8_lossy(&all[..nl]).into_owned();
    (name, all[nl + 1..].to_vec())
}

/// Which backend a short exchange through `addr` reached.
fn who(addr: SocketAddr) -> String {
    let (name, echoed) = talk(addr, b"ping");
    assert_eq!(echoed, b"ping");
    name
}

/// A config with one tcp listener `db` on `listen` relaying to `upstream`.
fn config(listen: SocketAddr, upstream: &str, extra: &str, upstreams: &str) -> String {
    format!(
        r#"
server: {{ threads: 2, pid_file: weir.pid, upgrade_sock: up.sock, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1 }}
log: {{ access_log: {{ path: access.log, format: json }} }}
{extra}
listeners:
  - {{ name: db, address: "{listen}", protocol: tcp, upstream: {upstream} }}
upstreams:
{upstreams}"#
    )
}

/// The access log's lines, parsed.
fn log_lines(weir: &WeirProcess) -> Vec<serde_json::Value> {
    std::fs::read_to_string(weir.dir().join("access.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Starts weir on `text` and waits until `listen` accepts. That readiness
/// probe is a connection too: this also waits for its access-log line, so
/// that [`wait_lines`] can leave it out.
fn start(text: &str, listen: SocketAddr) -> WeirProcess {
    let weir = WeirProcess::start(text, listen);
    assert!(
        poll_until(Duration::from_secs(5), || !log_lines(&weir).is_empty()),
        "no access log line for the readiness probe\n{}",
        weir.logs()
    );
    weir
}

/// Waits until the access log has `n` lines after the readiness probe's;
/// returns those.
fn wait_lines(weir: &WeirProcess, n: usize) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    let ok = poll_until(Duration::from_secs(5), || {
        lines = log_lines(weir).split_off(1);
        lines.len() >= n
    });
    assert!(ok, "expected {n} access log lines, got {lines:?}");
    lines
}

#[test]
fn eight_mib_each_way_round_trip() {
    let a = EchoBackend::start("a");
    let listen = free_addr();
    let weir = start(
        &config(
            listen,
            "pool",
            "",
            &format!("  pool: {{ backends: [\"{}\"] }}", a.addr),
        ),
        listen,
    );
    let data = payload(8 << 20, 7);
    let started = Instant::now();
    let (name, echoed) = talk(listen, &data);
    assert_eq!(name, "a");
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "the echoed bytes differ from those sent");
    assert!(started.elapsed() < Duration::from_secs(10));
    let lines = wait_lines(&weir, 1);
    let l = &lines[0];
    assert_eq!(l["status"], 200, "{l}");
    assert_eq!(l["bytes_in"], 8 << 20, "{l}");
    assert_eq!(l["bytes"], (8 << 20) + 2, "{l}");
    assert_eq!(l["upstream"], "pool");
    assert_eq!(l["backend"], a.addr.to_string());
    assert_eq!(l["listener"], "db");
    assert_eq!(l["route"], "-");
    assert_eq!(l["client"], "127.0.0.1");
    assert_eq!(l["attempts"], 1);
}

#[test]
fn round_robin_sends_each_connection_to_the_next_backend() {
    let (a, b) = (EchoBackend::start("a"), EchoBackend::start("b"));
    let listen = free_addr();
    let _weir = start(
        &config(
            listen,
            "pool",
            "",
            &format!(
                "  pool: {{ algorithm: round_robin, backends: [\"{}\", \"{}\"] }}",
                a.addr, b.addr
            ),
        ),
        listen,
    );
    let names: Vec<String> = (0..6).map(|_| who(listen)).collect();
    for pair in names.windows(2) {
        assert_ne!(pair[0], pair[1], "consecutive connections: {names:?}");
    }
    assert_eq!((a.connections(), b.connections()), (3, 3), "{names:?}");
}

#[test]
fn a_dead_backend_is_skipped_and_a_down_backend_gets_nothing() {
    // No health check: the dead backend is tried, fails, and the connect is
    // retried on the live one, so every connection succeeds.
    let a = EchoBackend::start("a");
    let dead = free_addr();
    let listen = free_addr();
    let weir = start(
        &config(
            listen,
            "pool",
            "",
            &format!("  pool: {{ backends: [\"{dead}\", \"{}\"] }}", a.addr),
        ),
        listen,
    );
    for _ in 0..4 {
        assert_eq!(who(listen), "a");
    }
    let lines = wait_lines(&weir, 4);
    assert!(
        lines.iter().all(|l| l["status"] == 200),
        "every connection reached a: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["attempts"] == 2),
        "the dead backend was tried first at least once: {lines:?}"
    );
    drop(weir);

    // With a health check, a backend that fails it is DOWN and never chosen.
    let b = EchoBackend::start("b");
    b.healthy.store(false, Relaxed);
    let listen = free_addr();
    let weir = start(
        &config(
            listen,
            "pool",
            "",
            &format!(
                r#"  pool:
    backends: ["{}", "{}"]
    health_check: {{ type: http, path: /healthz, interval: 200ms, timeout: 150ms, unhealthy_threshold: 1, healthy_threshold: 1 }}"#,
                a.addr, b.addr
            ),
        ),
        listen,
    );
    assert!(
        weir.wait_for_log(&format!("backend {} in pool is DOWN", b.addr), IO_TIMEOUT),
        "{}",
        weir.logs()
    );
    assert!(b.checks.load(Relaxed) >= 1);
    let before = b.connections();
    for _ in 0..6 {
        assert_eq!(who(listen), "a");
    }
    assert_eq!(b.connections(), before, "the DOWN backend got a connection");
}

#[test]
fn an_idle_tunnel_is_closed_after_tunnel_idle() {
    let a = EchoBackend::start("a");
    let listen = free_addr();
    let weir = start(
        &config(
            listen,
            "pool",
            "",
            &format!(
                "  pool: {{ backends: [\"{}\"], timeouts: {{ tunnel_idle: 500ms }} }}",
                a.addr
            ),
        ),
        listen,
    );
    let mut conn = TcpStream::connect(listen).unwrap();
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.write_all(b"x").unwrap();
    let mut got = [0u8; 3];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"a\nx");
    // Traffic keeps it open past tunnel_idle...
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(250));
        conn.write_all(b"y").unwrap();
        let mut one = [0u8; 1];
        conn.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"y");
    }
    // ...silence closes it.
    let idle_from = Instant::now();
    let mut rest = Vec::new();
    let n = conn.read_to_end(&mut rest).unwrap();
    let waited = idle_from.elapsed();
    assert_eq!(n, 0);
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    let lines = wait_lines(&weir, 1);
    assert_eq!(lines[0]["status"], 504, "{}", lines[0]);
    assert_eq!(lines[0]["bytes_in"], 5);
    assert_eq!(lines[0]["bytes"], 7);
}

/// `GET /metrics` from the admin API.
fn metrics(admin: SocketAddr) -> String {
    let host = admin.to_string();
    let r = request(admin, "GET", "/metrics", &[("host", host.as_str())]).unwrap();
    assert_eq!(r.status, 200);
    r.body
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_count_tcp_connections_and_each_gets_a_log_line() {
    let a = EchoBackend::start("a");
    let (listen, admin) = (free_addr(), free_addr());
    let weir = start(
        &config(
            listen,
            "pool",
            &format!("admin: {{ listen: \"{admin}\" }}"),
            &format!("  pool: {{ backends: [\"{}\"] }}", a.addr),
        ),
        listen,
    );
    wait_port(admin, START_TIMEOUT);
    let total = r#"weir_tcp_connections_total{listener="db"}"#;
    let active = r#"weir_tcp_connections_active{listener="db"}"#;
    // the readiness probe was the first connection
    let m = metrics(admin);
    assert_eq!(metric(&m, total), Some(1.0), "{m}");
    assert_eq!(metric(&m, active), Some(0.0), "{m}");

    let sizes = [1usize, 1000, 100_000];
    for (i, n) in sizes.iter().enumerate() {
        let data = payload(*n, i as u64);
        assert_eq!(talk(listen, &data), ("a".to_string(), data));
    }
    // one tunnel held open
    let mut open = TcpStream::connect(listen).unwrap();
    open.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    open.write_all(b"z").unwrap();
    let mut got = [0u8; 3];
    open.read_exact(&mut got).unwrap();
    let m = metrics(admin);
    assert_eq!(metric(&m, total), Some(5.0), "{m}");
    assert_eq!(metric(&m, active), Some(1.0), "{m}");
    drop(open);
    assert!(
        poll_until(Duration::from_secs(5), || metric(&metrics(admin), active)
            == Some(0.0)),
        "the closed tunnel is still counted active"
    );

    let lines = wait_lines(&weir, 4);
    for (l, n) in lines.iter().zip(sizes) {
        assert_eq!(l["bytes_in"], n, "{l}");
        assert_eq!(l["bytes"], n + 2, "{l}");
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(l["listener"], "db", "{l}");
        assert!(l["duration_ms"].as_f64().is_some(), "{l}");
    }
    // the tunnel the client closed without half-closing first
    assert_eq!(lines[3]["bytes_in"], 1, "{}", lines[3]);
}

#[test]
fn a_live_reload_switches_the_upstream_of_a_tcp_listener() {
    let (a, b) = (EchoBackend::start("a"), EchoBackend::start("b"));
    let listen = free_addr();
    let ups = format!(
        "  one: {{ backends: [\"{}\"] }}\n  two: {{ backends: [\"{}\"] }}",
        a.addr, b.addr
    );
    let weir = start(&config(listen, "one", "", &ups), listen);
    assert_eq!(who(listen), "a");
    // a tunnel opened before the reload stays on its backend
    let mut open = TcpStream::connect(listen).unwrap();
    open.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    open.write_all(b"1").unwrap();
    let mut got = [0u8; 3];
    open.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"a\n1");

    weir.write_config(&config(listen, "two", "", &ups));
    weir.signal("HUP");
    let status = weir.dir().join("weir.pid.reload");
    assert!(
        poll_until(IO_TIMEOUT, || std::fs::read_to_string(&status)
            .is_ok_and(|s| s.contains(" ok "))),
        "reload did not succeed: {:?}\n{}",
        std::fs::read_to_string(&status),
        weir.logs()
    );
    assert!(
        std::fs::read_to_string(&status)
            .unwrap()
            .contains("listener db upstream one → two"),
        "{:?}",
        std::fs::read_to_string(&status)
    );
    for _ in 0..3 {
        assert_eq!(who(listen), "b");
    }
    open.write_all(b"2").unwrap();
    let mut one = [0u8; 1];
    open.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"2");

    // changing anything else about the listener still needs an upgrade
    let other = free_addr();
    weir.write_config(&config(other, "two", "", &ups));
    weir.signal("HUP");
    assert!(
        poll_until(IO_TIMEOUT, || std::fs::read_to_string(&status)
            .is_ok_and(|s| s.contains(" error "))),
        "{:?}",
        std::fs::read_to_string(&status)
    );
    assert!(std::fs::read_to_string(&status)
        .unwrap()
        .contains("weir upgrade"));
    assert_eq!(who(listen), "b");
}

#[test]
fn a_graceful_upgrade_hands_the_tcp_listener_over() {
    let a = EchoBackend::start("a");
    let listen = free_addr();
    let old = start(
        &config(
            listen,
            "pool",
            "",
            &format!("  pool: {{ backends: [\"{}\"] }}", a.addr),
        ),
        listen,
    );
    assert_eq!(who(listen), "a");
    let mut open = TcpStream::connect(listen).unwrap();
    open.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    open.write_all(b"1").unwrap();
    let mut got = [0u8; 3];
    open.read_exact(&mut got).unwrap();

    let new = old.spawn_sibling(&["-u"], &[]);
    // the new process waits for the sockets on the upgrade socket
    assert!(poll_until(IO_TIMEOUT, || old
        .dir()
        .join("up.sock")
        .exists()));
    std::thread::sleep(Duration::from_millis(300));
    old.signal("QUIT");
    // connections are accepted throughout
    let deadline = Instant::now() + Duration::from_secs(20);
    while old.is_running() {
        assert!(Instant::now() < deadline, "the old process did not exit");
        assert_eq!(who(listen), "a");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(new.is_running(), "{}", new.logs());
    assert_eq!(who(listen), "a");
    // the old process closed its open tunnel once its grace period was over
    let mut rest = Vec::new();
    assert_eq!(open.read_to_end(&mut rest).unwrap_or(0), 0);
    let lines = log_lines(&old);
    assert!(
        lines
            .iter()
            .any(|l| l["status"] == 503 && l["bytes_in"] == 1),
        "no line for the tunnel closed by the stop: {lines:?}"
    );
}

#[test]
fn proxy_protocol_in_and_out() {
    let a = EchoBackend::start("a");
    let listen = free_addr();
    let weir = start(
        &config(
            listen,
            "pool",
            "",
            &format!(
                "  pool: {{ backends: [\"{}\"], send_proxy_protocol: v1 }}",
                a.addr
            ),
        )
        .replace("protocol: tcp,", "protocol: tcp, proxy_protocol: true,"),
        listen,
    );
    // the header's source is the client; the backend gets a header naming it
    let mut data = format!("PROXY TCP4 10.1.2.3 127.0.0.1 5555 {}\r\n", listen.port()).into_bytes();
    data.extend_from_slice(b"hi");
    let (name, echoed) = talk(listen, &data);
    assert_eq!(name, "a");
    assert_eq!(
        String::from_utf8_lossy(&echoed),
        format!("PROXY TCP4 10.1.2.3 127.0.0.1 5555 {}\r\nhi", listen.port())
    );
    // a connection without the header is closed unanswered
    let mut bare = TcpStream::connect(listen).unwrap();
    bare.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    bare.write_all(b"hello\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = bare.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    let lines = wait_lines(&weir, 2);
    assert_eq!(lines[0]["client"], "10.1.2.3", "{}", lines[0]);
    assert_eq!(lines[0]["peer"], "10.1.2.3", "{}", lines[0]);
    assert_eq!(
        lines[0]["bytes_in"], 2,
        "the PROXY header is not counted: {}",
        lines[0]
    );
    assert_eq!(lines[1]["status"], 400, "{}", lines[1]);
    assert_eq!(lines[1]["backend"], "-", "{}", lines[1]);
}

/// weir with one tcp listener of `max_connections: 1` in front of `a`.
fn start_with_one_slot(listen: SocketAddr, a: &EchoBackend) -> WeirProcess {
    start(
        &config(
            listen,
            "pool",
            "",
            &format!("  pool: {{ backends: [\"{}\"] }}", a.addr),
        )
        .replace("protocol: tcp,", "protocol: tcp, max_connections: 1,"),
        listen,
    )
}

#[test]
fn max_connections_makes_the_next_connection_wait() {
    let a = EchoBackend::start("a");
    let listen = free_addr();
    let _weir = start_with_one_slot(listen, &a);
    let mut first = TcpStream::connect(listen).unwrap();
    first.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    first.write_all(b"1").unwrap();
    let mut got = [0u8; 3];
    first.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"a\n1");
    let mut second = TcpStream::connect(listen).unwrap();
    second.write_all(b"2").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut one = [0u8; 1];
    let err = second.read(&mut one).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    drop(first);
    second.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    second.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"a\n2");
}

#[test]
fn past_max_connections_waiting_connections_stay_in_the_backlog() {
    let a = EchoBackend::start("a");
    let listen = free_addr();
    let _weir = start_with_one_slot(listen, &a);
    let mut served = TcpStream::connect(listen).unwrap();
    served.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    served.write_all(b"0").unwrap();
    let mut got = [0u8; 3];
    served.read_exact(&mut got).unwrap();
    // Three more than the limit: none is served, none is closed.
    let mut waiting: Vec<TcpStream> = (1..=3)
        .map(|i| {
            let mut c = TcpStream::connect(listen).unwrap();
            c.write_all(i.to_string().as_bytes()).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            c
        })
        .collect();
    for c in &mut waiting {
        let mut one = [0u8; 1];
        match c.read(&mut one) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("served or closed past max_connections: {other:?}"),
        }
    }
    drop(served);
    // One at a time, each served when the one before it leaves.
    for (i, mut c) in waiting.into_iter().enumerate() {
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, *format!("a\n{}", i + 1).as_bytes());
        drop(c);
    }
}

/// Runs `weir check` on `text`; returns (exit code, stderr, file path).
fn check(text: &str) -> (Option<i32>, String, String) {
    let dir = TestDir::create();
    let path = dir.write("weir.yaml", text);
    let p = path.to_str().unwrap().to_string();
    let out = run_weir(&["check", "-c", &p]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        p,
    )
}

/// Asserts that `weir check` fails with a line `file:line:col: key: …`
/// containing `message`.
fn assert_check_error(text: &str, line: usize, col: usize, key: &str, message: &str) {
    let (code, err, file) = check(text);
    assert_eq!(code, Some(1), "weir check must fail:\n{err}");
    let prefix = format!("{file}:{line}:{col}: {key}: ");
    let found = err
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{err}"));
    assert!(found.contains(message), "{found}");
}

#[test]
fn check_refuses_tcp_listeners_without_a_known_upstream() {
    let ups = "upstreams:\n  pg-pool: { backends: [\"127.0.0.1:5432\"] }\n";
    assert_check_error(
        &format!("listeners:\n  - name: db\n    address: 127.0.0.1:5433\n    protocol: tcp\n{ups}"),
        2,
        5,
        "listeners[0]",
        "a tcp listener needs upstream: NAME",
    );
    assert_check_error(
        &format!(
            "listeners:\n  - name: db\n    address: 127.0.0.1:5433\n    protocol: tcp\n    upstream: pg-pol\n{ups}"
        ),
        5,
        15,
        "listeners[0].upstream",
        "unknown upstream \"pg-pol\" (did you mean \"pg-pool\"?)",
    );
    // upstream is for tcp listeners; tls is for https ones
    assert_check_error(
        &format!(
            "listeners:\n  - name: web\n    address: 127.0.0.1:8080\n    upstream: pg-pool\n{ups}"
        ),
        4,
        5,
        "listeners[0].upstream",
        "upstream is for protocol: tcp listeners",
    );
    // routes do not apply to tcp listeners
    assert_check_error(
        &format!(
            "listeners:\n  - {{ name: web, address: 127.0.0.1:8080 }}\n  - {{ name: db, address: 127.0.0.1:5433, protocol: tcp, upstream: pg-pool }}\nroutes:\n  - {{ listeners: [web, db], upstream: pg-pool }}\n{ups}"
        ),
        5,
        24,
        "routes[0].listeners[1]",
        "\"db\" is a tcp listener",
    );
    // and a good file passes
    let (code, err, _) = check(&format!(
        "listeners:\n  - {{ name: db, address: 127.0.0.1:5433, protocol: tcp, upstream: pg-pool }}\n{ups}"
    ));
    assert_eq!(code, Some(0), "{err}");
}
