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
/// Blocking raw HTTP/1.1 client helpers over `std::net::TcpStream`.
pub mod client;
/// Running the real `weir` binary as a child process.
pub mod weir;

pub use backend::{BackendOpts, TestBackend};
pub use client::{
    get, get_host, raw, raw_bytes, request, request_with_body, Echo, KeepAliveClient, Response,
    READ_TIMEOUT,
};
pub use weir::{run_weir, TestDir, WeirProcess, START_TIMEOUT, WEIR_BIN};

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Interval used by every polling helper in this harness.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Returns a port on 127.0.0.1 that was free a moment ago (bind to port 0, then drop).
pub fn free_port() -> u16 {
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
