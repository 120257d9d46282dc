//! The connection front of the http and https listeners: what happens to a
//! connection between weir's accept (and TLS handshake, [`listen`]) and the
//! HTTP sessions the proxy serves on it.
//!
//! All http/https listeners share one accepting service ([`listen`]);
//! [`Front`] wraps Pingora's `HttpProxy`. Per connection it:
//!
//! - holds the listener's `max_connections` slot ([`Slots`]), taken before
//!   the accept, so past the limit new connections wait in the kernel backlog;
//! - counts it in `weir_connections_active{listener}`;
//! - `proxy_protocol` on plain listeners: reads the PROXY header
//!   ([`proxy_in`]; https listeners read it before the TLS handshake);
//! - HTTP/1: runs Pingora's keep-alive loop itself (as Pingora's own
//!   `ServerApp` for HTTP apps does) with the listener's `keepalive`, and
//!   with the stream inside a [`clock::HeadClock`] for `timeouts.header`;
//!   between requests a connection waits in a small future of its own, not
//!   inside Pingora's per-request one (what an idle client costs);
//!   HTTP/2 goes to Pingora unchanged (its idle limit is the service's
//!   `h2_idle_timeout`): by ALPN on https listeners, and on http listeners
//!   with `http2: true` when the connection's first bytes are the HTTP/2
//!   preface (h2c with prior knowledge, as gRPC clients without TLS send);
//! - answers heads Pingora's parser refuses itself ([`refusal`]).

pub mod clock;
mod coalesce;
pub mod listen;
pub mod proxy_in;
mod refusal;

pub use clock::head_done;

use crate::access_log::AccessLog;
use crate::config::model::ListenerProtocol;
use crate::snapshot::{find_listener, Snapshot};
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::ShutdownWatch;
use pingora_proxy::{HttpProxy, ProxyHttp};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
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
    /// An http listener with `http2: true`: h2c with prior knowledge too.
    pub h2c: bool,
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
                    h2c: c.http2 && c.protocol == ListenerProtocol::Http,
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

/// A listener's `max_connections`: permits for connections being served.
/// weir's accept loop takes one before each accept ([`Slots::free`]), so
/// past the limit new connections wait in the kernel backlog.
pub struct Slots {
    permits: Arc<Semaphore>,
}

impl Slots {
    /// `max` connections at once.
    pub fn new(max: usize) -> Slots {
        Slots {
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// A permit for a connection not accepted yet (weir's own accept
    /// loop takes one before each accept, so that past the limit new
    /// connections wait in the kernel backlog); `None` if the semaphore
    /// is closed, which weir never does.
    pub async fn free(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
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

/// The per-connection front of the http/https listeners, then Pingora's
/// HTTP app `A`.
pub struct Front<A> {
    app: Arc<A>,
    listeners: Arc<[ListenerFront]>,
    /// The access log, for heads Pingora refuses ([`refusal`]).
    log: Option<Arc<AccessLog>>,
}

impl<A> Clone for Front<A> {
    fn clone(&self) -> Self {
        Front {
            app: self.app.clone(),
            listeners: self.listeners.clone(),
            log: self.log.clone(),
        }
    }
}

impl<A> Front<A> {
    /// Listener `i` (config order).
    pub fn listener(&self, i: usize) -> Option<&ListenerFront> {
        self.listeners.get(i)
    }

    /// The front over `app` for `listeners` (see [`ListenerFront::all`]);
    /// heads Pingora refuses are logged to `log`.
    pub fn new(app: A, listeners: Arc<[ListenerFront]>, log: Option<Arc<AccessLog>>) -> Front<A> {
        Front {
            app: Arc::new(app),
            listeners,
            log,
        }
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Front<A> {
    /// Pingora's HTTP/1 keep-alive loop with the listener's keep-alive and
    /// a head clock re-armed before each request.
    ///
    /// Between requests the connection waits here, in this small future,
    /// for the next request's first bytes ([`Idle::wait_for_request`]); only then
    /// does it enter Pingora's per-request future, which is allocated per
    /// request and sized by the proxy's largest state (tens of KiB). An idle
    /// keep-alive client so holds its socket, the clock and this loop, not
    /// a request's worth of state.
    async fn serve_h1(&self, stream: Stream, l: &ListenerFront, shutdown: &ShutdownWatch) {
        let mut clock = Box::new(clock::HeadClock::new(
            stream,
            l.header,
            l.keepalive,
            self.log.clone(),
        ));
        // The first request may be slow to come only for as long as a
        // keep-alive client may idle (the header timeout without keep-alive).
        let mut idle = Idle::new(
            l.keepalive.map_or(l.header, Duration::from_secs),
            l.header,
            shutdown,
        );
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        // Bytes of the next request are already read (pipelined).
        let mut buffered = false;
        loop {
            if !buffered && !idle.wait_for_request(&mut clock, first).await {
                return;
            }
            if first && l.h2c && clock.starts_with_h2_preface() {
                // The preface is kept in the clock and read again by
                // Pingora's h2 server; HTTP/2 has no head deadline here.
                clock.disarm();
                drop(idle);
                return Box::pin(self.serve_h2(clock, shutdown)).await;
            }
            let mut session = ServerSession::new_http1(clock);
            if let Some(settings) = settings.take() {
                settings.apply_to_session(&mut session);
            } else if first {
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
            }
            first = false;
            let Some(reused) = self.app.process_new_http(session, shutdown).await else {
                return;
            };
            let (stream, next) = reused.consume();
            let Ok(c) = stream.into_any().downcast::<clock::HeadClock>() else {
                // Pingora hands back the stream it was given; anything else
                // is not a connection this loop can time.
                return;
            };
            clock = c;
            buffered = next
                .as_ref()
                .is_some_and(|s| !clock.read_only_the_head() && carries_pipelined_bytes(s));
            clock.arm();
            settings = next;
        }
    }
}

/// How a connection waits for its next request: made once per connection,
/// so that a wait costs no timer registration and no shutdown-watch
/// registration (the timer is pushed back, which tokio does without
/// touching its wheel while the new deadline is later; the shutdown waiter
/// stays registered).
struct Idle {
    limit: Duration,
    /// How long a connection that has sent nothing yet may still take once
    /// weir is stopping (the listener's header timeout).
    first_grace: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    stopping: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// `stopping` has resolved (it must not be polled again).
    stopped: bool,
}

impl Idle {
    /// Waits of at most `limit`, cut short when weir starts stopping
    /// (a connection's first wait only down to `first_grace`).
    fn new(limit: Duration, first_grace: Duration, shutdown: &ShutdownWatch) -> Idle {
        let mut stop = shutdown.clone();
        Idle {
            limit,
            first_grace,
            timer: Box::pin(tokio::time::sleep(limit)),
            stopping: Box::pin(async move {
                // An error means the watch is gone: stopping too.
                let _ = stop.wait_for(|stopping| *stopping).await;
            }),
            stopped: false,
        }
    }

    /// Waits for the start of the client's next request; `false` when the
    /// connection should close instead (the client closed or failed, it
    /// idled too long, or weir is stopping). After `false` it is not used
    /// again.
    ///
    /// At a stop, a keep-alive connection idle between requests is closed at
    /// once, as nginx and Pingora do. A connection still waiting for its
    /// `first` request is not: weir accepted it, so its client has likely
    /// sent the request already (during an upgrade the old process accepts
    /// until the new one has taken over), and closing it would fail that
    /// request. It gets the header timeout to arrive and is answered with
    /// `Connection: close`.
    async fn wait_for_request(&mut self, clock: &mut clock::HeadClock, first: bool) -> bool {
        if self.stopped && !first {
            return false;
        }
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + self.limit);
        std::future::poll_fn(|cx| {
            match clock.poll_first_bytes(cx) {
                Poll::Ready(read) => return Poll::Ready(matches!(read, Ok(n) if n > 0)),
                Poll::Pending => {}
            }
            if !self.stopped && self.stopping.as_mut().poll(cx).is_ready() {
                self.stopped = true;
                if !first {
                    return Poll::Ready(false);
                }
                let grace = tokio::time::Instant::now() + self.first_grace;
                if grace < self.timer.deadline() {
                    self.timer.as_mut().reset(grace);
                }
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            Poll::Pending
        })
        .await
    }
}

/// Whether Pingora carried bytes of the client's next (pipelined) request
/// over to the next session in `settings`. Those bytes are already read, so
/// the client may be waiting for answers with nothing more to send: the
/// next session must start at once, without waiting for the socket.
///
/// Pingora 0.9 keeps them in a private field of [`HttpPersistentSettings`]
/// and has no accessor, so this reads its `Debug` form, which derive(Debug)
/// writes as `pipelined_prefix: None` or `pipelined_prefix: Some(..)`,
/// stopping as soon as the field is seen. Were the field ever not found
/// (another Pingora), the answer is "carried", which only costs the idle
/// saving, never a request. A unit test pins the behaviour.
fn carries_pipelined_bytes(settings: &HttpPersistentSettings) -> bool {
    use std::fmt::Write;
    const FIELD: &[u8] = b"pipelined_prefix: ";
    /// Matches `FIELD` in the formatted text and records what follows.
    struct Probe {
        matched: usize,
        answer: Option<bool>,
    }
    impl Write for Probe {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for &b in s.as_bytes() {
                if self.matched == FIELD.len() {
                    self.answer = Some(b == b'S');
                    return Err(std::fmt::Error);
                }
                self.matched = if b == FIELD[self.matched] {
                    self.matched + 1
                } else {
                    usize::from(b == FIELD[0])
                };
            }
            Ok(())
        }
    }
    let mut probe = Probe {
        matched: 0,
        answer: None,
    };
    let _ = write!(probe, "{settings:?}");
    probe.answer.unwrap_or(true)
}

impl<A: HttpServerApp + Send + Sync + 'static> Front<A> {
    /// Serves a connection accepted (and, on https, TLS-terminated) by
    /// listener `l` until it closes; `_permit`: its `max_connections` slot,
    /// taken before the accept.
    async fn serve_on(
        &self,
        mut stream: Stream,
        l: &ListenerFront,
        shutdown: &ShutdownWatch,
        _permit: Option<OwnedSemaphorePermit>,
    ) {
        let _active = l.active.as_ref().map(Active::new);
        // The rarer steps are boxed so that their state is not part of every
        // connection's future for its whole life (what an idle client costs).
        if l.proxy_protocol && !l.tls {
            match Box::pin(proxy_in::read_on_stream(stream, l.header, &l.name)).await {
                Some(s) => stream = s,
                None => return,
            }
        }
        if matches!(
            stream.selected_alpn_proto(),
            Some(ALPN::H2 | ALPN::Custom(_))
        ) {
            return self.serve_h2(stream, shutdown).await;
        }
        self.serve_h1(stream, l, shutdown).await;
    }

    /// Pingora's h2 server, as its own `ServerApp` runs it.
    async fn serve_h2(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let mut next = self.app.process_new(stream, shutdown).await;
        while let Some(s) = next {
            next = self.app.process_new(s, shutdown).await;
        }
    }
}

/// The front of every http/https listener: Pingora's proxy app for `inner`,
/// with an HTTP/2 idle limit of the longest `keepalive` among h2 listeners
/// (Pingora has one per app), h2c allowed when an http listener has
/// `http2: true` (the front only hands Pingora a plain connection that
/// starts with the HTTP/2 preface), and `log` for refused heads.
pub fn front<SV>(
    conf: &Arc<ServerConf>,
    inner: SV,
    snap: &Snapshot,
    log: Option<Arc<AccessLog>>,
) -> Front<HttpProxy<SV>>
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
        .filter(|(c, l)| l.h2c || c.tls.as_ref().is_some_and(|t| t.http2))
        .filter_map(|(_, l)| l.keepalive)
        .max();
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = h2_idle.map(Duration::from_secs);
    options.h2c = listeners.iter().any(|l| l.h2c);
    app.server_options = Some(options);
    Front::new(app, listeners, log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    /// Settings as Pingora builds them at the end of a session.
    async fn settings() -> (HttpPersistentSettings, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(server));
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(Some(60));
        (HttpPersistentSettings::for_session(&session), client)
    }

    #[tokio::test]
    async fn pipelined_bytes_carried_by_pingora_are_seen() {
        let (plain, _c1) = settings().await;
        assert!(!carries_pipelined_bytes(&plain));
        let (mut carrying, _c2) = settings().await;
        carrying.set_pipelined_prefix(BytesMut::from(&b"GET /next HTTP/1.1\r\n"[..]));
        assert!(carries_pipelined_bytes(&carrying));
        // An empty carried prefix is never fed to a session by Pingora, but
        // "carried" is the safe answer either way.
        let (mut empty, _c3) = settings().await;
        empty.set_pipelined_prefix(BytesMut::new());
        assert!(carries_pipelined_bytes(&empty));
    }
}
