//! Shared integration-test harness for `weir`: tiny origin servers
//! ([`TestBackend`]), raw blocking HTTP/1.1 clients ([`request`], [`get`],
//! [`raw`], [`KeepAliveClient`]) and a wrapper that runs the real binary
//! ([`WeirProcess`], [`run_weir`]).
//!
//! Each test file includes this with `mod common;`, so items unused by one
//! test crate are expected; hence the `dead_code` allowance below.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

/// Tiny HTTP/1.1 origin server run on a background tokio runtime.
pub mod backend;
/// Test certificates (rcgen).
pub mod certs;
/// Blocking raw HTTP/1.1 client helpers over `std::net::TcpStream`.
pub mod client;
/// Daemonized weir processes, killed by pid.
pub mod daemons;
/// A bounded closed-loop load of keep-alive clients.
pub mod load;
/// A real ACME CA (Debian's pebble) for the ACME tests.
pub mod pebble;
/// A throw-away `redis-server` child process (for shared rate limits).
pub mod redis;
/// weir in front of one scripted backend (raw-socket regression suites).
pub mod rig;
/// Byte-level helpers: a scripted backend and a raw client with deadlines.
pub mod scripted;
/// Running the real `weir` binary as a child process.
pub mod weir;

pub use backend::{BackendOpts, TestBackend};
pub use certs::{ca, leaf, write_ca, Ca};
pub use client::{
    get, get_host, raw, raw_bytes, request, request_with_body, Echo, KeepAliveClient, Response,
    READ_TIMEOUT,
};
pub use daemons::{alive, read_pid, Daemons};
pub use load::{run_load, LoadResult};
pub use rig::{rig, rig_with, Rig};
pub use scripted::{
    echo_line, exchange, parse_responses, RawBackend, RawConn, RawRequest, RawResponse, Reply,
};
pub use weir::{run_weir, TestDir, WeirProcess, START_TIMEOUT, WEIR_BIN};

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Interval used by every polling helper in this harness.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Ports handed out below the kernel's ephemeral range (32768+), so that no
/// client connection's source port can take one between this call and the
/// bind of the process under test. Each test binary starts at its own offset.
const PORT_LOW: u16 = 20000;
const PORT_SPAN: u16 = 12000;
static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// Returns a port on 127.0.0.1 that is free now and not handed out before by
/// this test binary.
pub fn free_port() -> u16 {
    let offset = (std::process::id() % u32::from(PORT_SPAN)) as u16;
    for _ in 0..PORT_SPAN {
        let n = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = PORT_LOW + (offset.wrapping_add(n.wrapping_mul(7))) % PORT_SPAN;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Returns `127.0.0.1:<free_port()>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// Calls `f` every 20 ms until it returns true (→ `true`) or `timeout` elapses (→ `false`).
pub fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Polls a TCP connect to `addr` every 20 ms; true once a connection succeeds within `timeout`.
pub fn wait_port(addr: SocketAddr, timeout: Duration) -> bool {
    poll_until(timeout, || port_open(addr))
}

/// True if a TCP connection to `addr` succeeds right now (200 ms connect timeout).
pub fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A config with one listener on `listen` and one route to upstream `pool`
/// over `backends`; `upstream_extra` and `route_extra` are appended to the
/// upstream's and the route's YAML (start them with a newline and indent).
pub fn pool_config(
    listen: SocketAddr,
    backends: &[SocketAddr],
    upstream_extra: &str,
    route_extra: &str,
) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        r#"
server: {{ threads: 2, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - name: main
    upstream: pool{route_extra}
upstreams:
  pool:
    backends: [{list}]{upstream_extra}
"#,
        list = list.join(", ")
    )
}

/// Backend `addr` of upstream `upstream` in the body of an admin
/// `GET /status`, or `None` when it is not listed.
pub fn status_backend(body: &str, upstream: &str, addr: SocketAddr) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let up = v["upstreams"]
        .as_array()?
        .iter()
        .find(|u| u["name"] == upstream)?;
    up["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == addr.to_string())
        .cloned()
}
