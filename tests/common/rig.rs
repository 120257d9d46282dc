//! weir in front of one scripted [`RawBackend`], for the raw-socket
//! regression suites: a fixed `respond` route on `/fixed`, everything else
//! proxied to the backend.

use super::scripted::{RawBackend, RawRequest, Reply};
use super::weir::WeirProcess;
use super::{free_addr, request};
use std::net::SocketAddr;

/// weir, its listener and the backend behind it.
pub struct Rig {
    /// The scripted backend.
    pub backend: RawBackend,
    /// weir's listener.
    pub listen: SocketAddr,
    /// The weir process.
    pub weir: WeirProcess,
}

/// weir in front of `backend`.
pub fn rig_with(backend: RawBackend) -> Rig {
    let listen = free_addr();
    let cfg = format!(
        r#"
server: {{ threads: 2, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - name: fixed
    match: {{ path_prefix: /fixed }}
    respond: {{ status: 200, body: "fixed\n" }}
  - name: main
    upstream: pool
upstreams:
  pool: {{ backends: ["{b}"] }}
"#,
        b = backend.addr()
    );
    let weir = WeirProcess::start(&cfg, listen);
    Rig {
        backend,
        listen,
        weir,
    }
}

/// weir in front of a backend answering with `script`.
pub fn rig(script: impl Fn(&RawRequest) -> Reply + Send + Sync + 'static) -> Rig {
    rig_with(RawBackend::start(script))
}

impl Rig {
    /// A normal GET on a fresh connection reaches the backend and is answered.
    pub fn still_serves(&self) {
        assert!(self.weir.is_running(), "weir exited\n{}", self.weir.logs());
        let before = self.backend.answered();
        let r = request(self.listen, "GET", "/alive", &[])
            .unwrap_or_else(|e| panic!("normal GET after the test failed: {e}"));
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "GET /alive 0\n"),
            "normal GET after the test"
        );
        assert_eq!(self.backend.answered(), before + 1, "one request upstream");
    }
}
