//! weir with one caching route in front of a scripted backend that counts
//! what reaches it, for the cache and compression suites.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::common::{free_addr, request, RawBackend, RawRequest, Reply, Response, WeirProcess};
use std::net::SocketAddr;

/// The admin token of every setup.
pub const TOKEN: &str = "t0k";

/// weir, its admin address and the backend behind its one route `c`.
pub struct Setup {
    /// The scripted backend.
    pub backend: RawBackend,
    /// weir's listener.
    pub listen: SocketAddr,
    /// weir's admin API.
    pub admin: SocketAddr,
    /// The process.
    pub weir: WeirProcess,
}

/// An answer with these headers and body (`Content-Length` added).
pub fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = format!("HTTP/1.1 {status} X\r\n");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    if status != 304 {
        s.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    s.push_str("\r\n");
    if status != 304 {
        s.push_str(body);
    }
    Reply::raw(s)
}

/// The config text of a setup; `route` is extra keys of route `c`
/// (indented four spaces), `top` extra top-level sections.
pub fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    backend: SocketAddr,
    route: &str,
    top: &str,
) -> String {
    format!(
        r#"
server: {{ threads: 2, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
admin: {{ listen: "{admin}", token: "{TOKEN}" }}
{top}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - name: c
    upstream: pool
{route}
upstreams:
  pool: {{ backends: ["{backend}"], timeouts: {{ read: 3s }} }}
"#
    )
}

/// Starts weir with route `c` (extra keys `route`) in front of `script`.
pub fn start(
    route: &str,
    top: &str,
    script: impl Fn(&RawRequest) -> Reply + Send + Sync + 'static,
) -> Setup {
    let backend = RawBackend::start(script);
    let (listen, admin) = (free_addr(), free_addr());
    let weir = WeirProcess::start(&config(listen, admin, backend.addr(), route, top), listen);
    Setup {
        backend,
        listen,
        admin,
        weir,
    }
}

impl Setup {
    /// `method path` with `headers`.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.listen, method, path, headers)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.weir.logs()))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        self.send("GET", path, &[])
    }

    /// Requests that reached the backend.
    pub fn hits(&self) -> usize {
        self.backend.heads()
    }

    /// The admin API's `/metrics` text.
    pub fn metrics(&self) -> String {
        let host = self.admin.to_string();
        let auth = format!("Bearer {TOKEN}");
        request(
            self.admin,
            "GET",
            "/metrics",
            &[("host", host.as_str()), ("authorization", auth.as_str())],
        )
        .unwrap()
        .body
    }
}

/// The value of the series starting with `name_and_labels` (0 when absent).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The status header of `r`.
pub fn xcache(r: &Response) -> &str {
    r.header("x-cache").unwrap_or("-")
}
