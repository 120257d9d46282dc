//! The connection front of the http and https listeners: what happens to a
//! connection between Pingora's accept (and TLS handshake) and the HTTP
//! sessions the proxy serves on it.
//!
//! All http/https listeners share one Pingora service; [`Front`] is its
//! app, wrapping Pingora's `HttpProxy`. Per connection it finds the
//! accepting listener by local address (the snapshot's rule,
//! [`crate::snapshot::find_listener`]), then:
//!
//! - `max_connections`: takes one of the listener's [`Slots`]; when none
//!   is free the connection waits, unread, until one is (see [`Slots`] for
//!   how this differs from leaving it in the kernel backlog);
//! - counts it in `weir_connections_active{listener}`;
//! - `proxy_protocol` on plain listeners: reads the PROXY header
//!   ([`proxy_in`]; https listeners read it before TLS, [`proxy_in::PreTls`]);
//! - HTTP/1: runs Pingora's keep-alive loop itself (as Pingora's own
//!   `ServerApp` for HTTP apps does) with the listener's `keepalive`, and
//!   with the stream inside a [`clock::HeadClock`] for `timeouts.header`;
//!   HTTP/2 goes to Pingora unchanged (its idle limit is the service's
//!   `h2_idle_timeout`).

pub mod clock;
pub mod proxy_in;

pub use clock::head_done;

use crate::config::model::ListenerProtocol;
use crate::snapshot::{find_listener, Snapshot};
use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::listening::Service;
use pingora_proxy::{HttpProxy, ProxyHttp};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One listener as the front sees it (all listeners, in config order, so
/// that indices and the address rule match the snapshot's).
#[derive(Clone)]
pub struct ListenerFront {
    /// Listener name (logs, metrics).
    pub name: Arc<str>,
    /// Bound address.
    pub addr: SocketAddr,
    /// `timeouts.header`.
    pub header: Duration,
    /// `timeouts.keepalive` in seconds (`None`: no keep-alive).
    pub keepalive: Option<u64>,
    /// `max_connections`.
    pub slots: Option<Arc<Slots>>,
    /// `proxy_protocol`.
    pub proxy_protocol: bool,
    /// An https listener (its PROXY header is read before TLS).
    pub tls: bool,
    /// `weir_connections_active{listener}`.
    pub active: Option<prometheus::IntGauge>,
}

impl ListenerFront {
    /// Every listener of `snap`, with its compiled limits (tcp listeners
    /// included for their indices; their connections never come here).
    pub fn all(snap: &Snapshot) -> Arc<[ListenerFront]> {
        snap.listeners
            .iter()
            .zip(&snap.limits)
            .zip(&snap.config.listeners)
            .map(|(((name, addr), l), c)| {
                let http = c.protocol != ListenerProtocol::Tcp;
                ListenerFront {
                    name: name.clone(),
                    addr: *addr,
                    header: l.header_timeout,
                    keepalive: l.keepalive,
                    slots: l.max_connections.map(|n| Arc::new(Slots::new(n))),
                    proxy_protocol: l.proxy_protocol,
                    tls: l.https,
                    active: http
                        .then(|| crate::metrics::connections_active(name))
                        .flatten(),
                }
            })
            .collect()
    }
}

/// The listener that accepted a connection on `local`.
pub fn find(listeners: &[ListenerFront], local: Option<SocketAddr>) -> Option<&ListenerFront> {
    listeners.get(find_listener(listeners.iter().map(|l| l.addr), local)?)
}

/// A listener's `max_connections`: permits for connections being served,
/// and a bounded line of connections waiting for one.
///
/// weir cannot stop accepting on one listener: Pingora's accept loop
/// (`Service::run_endpoint` in pingora-core `services/listening.rs`) accepts
/// and spawns every connection at once, and its per-connection filter
/// (`ConnectionFilter`, the `connection_filter` feature) is one per service
/// and is only told the peer address, not which endpoint accepted. So a
/// connection past the limit is accepted and then left unread until a
/// permit frees up: to the client this is what the kernel backlog does (the
/// TCP handshake is done, bytes sent wait in the socket buffer), but it
/// holds a file descriptor in weir, the TLS handshake of an https listener
/// has already happened, and the line is bounded: at most `max` connections
/// wait, past that they are closed at once. Waiting connections are closed
/// when weir stops.
pub struct Slots {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max: usize,
}

impl Slots {
    /// `max` connections at once, and as many waiting.
    pub fn new(max: usize) -> Slots {
        Slots {
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            waiting: AtomicUsize::new(0),
            max,
        }
    }

    /// A permit for one connection, waiting for one if needed; `None` when
    /// the line is full or weir is stopping (close the connection).
    pub async fn enter(&self, shutdown: &ShutdownWatch) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        if self.waiting.fetch_add(1, Relaxed) >= self.max {
            self.waiting.fetch_sub(1, Relaxed);
            return None;
        }
        let mut stop = shutdown.clone();
        let permit = tokio::select! {
            p = self.permits.clone().acquire_owned() => p.ok(),
            _ = stop.wait_for(|stopping| *stopping) => None,
        };
        self.waiting.fetch_sub(1, Relaxed);
        permit
    }
}

/// Holds a gauge up by one while alive.
struct Active(prometheus::IntGauge);

impl Active {
    fn new(g: &prometheus::IntGauge) -> Active {
        g.inc();
        Active(g.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The app of the http/https service: the per-connection front, then
/// Pingora's HTTP app `A`.
pub struct Front<A> {
    app: Arc<A>,
    listeners: Arc<[ListenerFront]>,
}

impl<A> Front<A> {
    /// The front over `app` for `listeners` (see [`ListenerFront::all`]).
    pub fn new(app: A, listeners: Arc<[ListenerFront]>) -> Front<A> {
        Front {
            app: Arc::new(app),
            listeners,
        }
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Front<A> {
    /// Pingora's HTTP/1 keep-alive loop with the listener's keep-alive and
    /// a head clock re-armed before each request.
    async fn serve_h1(&self, stream: Stream, l: &ListenerFront, shutdown: &ShutdownWatch) {
        let stream: Stream = Box::new(clock::HeadClock::new(stream, l.header, l.keepalive));
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(if *shutdown.borrow() {
            None
        } else {
            l.keepalive
        });
        session.set_keepalive_reuses_remaining(
            self.app
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
        let mut result = self.app.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = result.map(|r| r.consume()) {
            if let Some(c) = clock::clock_of(&stream) {
                c.arm();
            }
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            result = self.app.process_new_http(session, shutdown).await;
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Front<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let local = proxy_in::local_addr(&*stream);
        let Some(l) = find(&self.listeners, local) else {
            // Fail closed, as the request path does.
            log::warn!("connection on {local:?} matches no listener; closing it");
            return None;
        };
        let _permit = match &l.slots {
            Some(slots) => match slots.enter(shutdown).await {
                Some(p) => Some(p),
                None => {
                    log::debug!("listener {}: max_connections reached; closing", l.name);
                    return None;
                }
            },
            None => None,
        };
        let _active = l.active.as_ref().map(Active::new);
        if l.proxy_protocol && !l.tls {
            stream = proxy_in::read_on_stream(stream, l.header, &l.name).await?;
        }
        if matches!(
            stream.selected_alpn_proto(),
            Some(ALPN::H2 | ALPN::Custom(_))
        ) {
            return self.app.process_new(stream, shutdown).await;
        }
        self.serve_h1(stream, l, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

/// The http/https service: Pingora's proxy app for `inner` behind the
/// front, the pre-TLS PROXY hook when an https listener wants it, and an
/// HTTP/2 idle limit of the longest `keepalive` among h2 listeners (Pingora
/// has one per service). Endpoints are added by the caller.
pub fn service<SV>(
    conf: &Arc<ServerConf>,
    inner: SV,
    snap: &Snapshot,
) -> Service<Front<HttpProxy<SV>>>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    let listeners = ListenerFront::all(snap);
    let mut app = pingora_proxy::http_proxy(conf, inner);
    let h2_idle = snap
        .config
        .listeners
        .iter()
        .zip(listeners.iter())
        .filter(|(c, _)| c.tls.as_ref().is_some_and(|t| t.http2))
        .filter_map(|(_, l)| l.keepalive)
        .max();
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = h2_idle.map(Duration::from_secs);
    app.server_options = Some(options);
    let pre_tls = listeners.iter().any(|l| l.tls && l.proxy_protocol);
    let mut service = Service::new("weir proxy".to_string(), Front::new(app, listeners.clone()));
    if pre_tls {
        service
            .endpoints()
            .set_pre_tls_callback(Arc::new(proxy_in::PreTls::new(listeners)));
    }
    service
}
