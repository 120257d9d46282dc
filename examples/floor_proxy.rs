//! The "floor" reference for `benches/load.sh`: the smallest Pingora 0.9
//! proxy there is. Every request goes to one fixed backend; no routing, no
//! header work, no other filters. Whatever weir spends above this is weir's.
//!
//! ```sh
//! cargo build --release --example floor_proxy
//! target/release/examples/floor_proxy LISTEN BACKEND THREADS [PINGORA FLAGS]
//! target/release/examples/floor_proxy 127.0.0.1:8081 127.0.0.1:9000 1      # foreground
//! ```
//!
//! Anything after THREADS is Pingora's usual command line (`-d`, `-t`, ...);
//! without flags it runs in the foreground like any Pingora server.
//!
//! It makes every build-level and runtime choice weir makes, so that
//! "weir / floor" measures weir's own logic only: the same allocator
//! (mimalloc, with the `mimalloc` feature as weir), the same profile (the
//! package's), no L4 read buffer on client connections, and work stealing
//! off with one thread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use async_trait::async_trait;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::Result;
use pingora_proxy::{ProxyHttp, Session};
use std::net::SocketAddr;

struct Floor(SocketAddr);

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args();
    let prog = args.next().unwrap_or_else(|| "floor_proxy".into());
    let usage = "usage: floor_proxy LISTEN BACKEND THREADS [pingora flags: -d -t -u]";
    let (Some(listen), Some(backend), Some(threads)) = (args.next(), args.next(), args.next())
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let backend: SocketAddr = backend.parse().expect("BACKEND must be ip:port");
    let threads: usize = threads.parse().expect("THREADS must be a number");
    let opt = Opt::parse_from_args(std::iter::once(prog).chain(args));
    let conf = ServerConf {
        threads,
        pid_file: std::env::temp_dir()
            .join(format!("floor_proxy.{}.pid", std::process::id()))
            .display()
            .to_string(),
        upgrade_sock: std::env::temp_dir()
            .join(format!("floor_proxy.{}.sock", std::process::id()))
            .display()
            .to_string(),
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        work_stealing: threads > 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let mut svc = pingora_proxy::http_proxy_service(&server.configuration, Floor(backend));
    svc.add_listener(
        ListenerConfig::tcp(listen.as_str()).l4_buffer(L4BufferSettings {
            read: Some(0),
            write: None,
        }),
    );
    server.add_service(svc);
    server.run_forever();
}
