//! weir's own accept loop for http and https listeners.
//!
//! Pingora 0.9 spawns each accepted connection as one task that holds
//! `timeout(60 s, io.handshake())` inline (pingora-core
//! `services/listening.rs`, `Service::run_endpoint`); the TLS-capable
//! handshake state sizes that task for the connection's whole life, about
//! 8.8 KiB per idle keep-alive client (heaptrack, benches/README.md), and it
//! accepts every connection it can (no `max_connections` per listener). Its
//! accept path is crate-private, so weir accepts itself: a Pingora
//! [`Service`] that binds (or, on a graceful upgrade, takes over) the
//! listening sockets, registers them for the next upgrade under the address
//! as written in the file (the key Pingora's own listeners use, so upgrades
//! between versions keep the sockets), takes a `max_connections` slot before
//! each accept, and spawns per connection a task holding just the stream and
//! the connection front. On https listeners that task first reads the PROXY
//! header if the listener wants one and does the TLS handshake with
//! Pingora's rustls acceptor, both boxed (they do not size the connection's
//! task) and both within the listener's `timeouts.header`.

use super::{proxy_in, Front, ListenerFront, Slots};
use async_trait::async_trait;
use pingora_core::apps::HttpServerApp;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::Service;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

/// The kernel's accept queue per listener (Pingora's value).
const BACKLOG: u32 = 65535;
/// A port still held (a previous process exiting) is tried this many times,
/// [`BIND_RETRY`] apart, before start-up fails.
const BIND_TRIES: usize = 10;
const BIND_RETRY: Duration = Duration::from_millis(500);

/// One http or https listener of the file.
pub struct HttpListener {
    /// Index into the front's listeners (config order).
    pub index: usize,
    /// The address as written in the file: the key of its socket in
    /// Pingora's table of sockets handed over on upgrade.
    pub key: String,
    /// The parsed address.
    pub addr: SocketAddr,
    /// The TLS acceptor of an https listener.
    pub tls: Option<Arc<Acceptor>>,
}

/// The service accepting on every http and https listener.
pub struct HttpService<A> {
    front: Front<A>,
    listeners: Vec<HttpListener>,
    upgrading: bool,
    ready: Option<Arc<crate::readiness::Readiness>>,
}

impl<A> HttpService<A> {
    /// Serves `listeners` through `front`; `upgrading`: this process takes
    /// over from another (`-u`).
    pub fn new(front: Front<A>, listeners: Vec<HttpListener>, upgrading: bool) -> HttpService<A> {
        HttpService {
            front,
            listeners,
            upgrading,
            ready: None,
        }
    }

    /// Tells `ready` when every listener of this service is bound.
    pub fn on_bound(mut self, ready: Arc<crate::readiness::Readiness>) -> Self {
        self.ready = Some(ready);
        self
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> Service for HttpService<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let front = Arc::new(self.front.clone());
        let mut tasks = Vec::new();
        for l in &self.listeners {
            let Some(listener) = bind(&l.key, l.addr, fds.as_ref(), self.upgrading).await else {
                continue;
            };
            let Some(lf) = front.listeners.get(l.index) else {
                continue;
            };
            for _ in 0..listeners_per_fd.max(1) {
                let (front, tls, index) = (front.clone(), l.tls.clone(), l.index);
                let down = shutdown.clone();
                let serve = move |l4: L4Stream, permit: Option<OwnedSemaphorePermit>| {
                    let (front, tls, shutdown) = (front.clone(), tls.clone(), down.clone());
                    async move {
                        let Some(l) = front.listeners.get(index) else {
                            return;
                        };
                        let stream: Stream = match tls {
                            None => Box::new(l4),
                            Some(acceptor) => match Box::pin(secure(l4, &acceptor, l)).await {
                                Some(s) => s,
                                None => return,
                            },
                        };
                        front.serve_on(stream, l, &shutdown, permit).await;
                    }
                };
                tasks.push(tokio::spawn(accept_loop(
                    listener.clone(),
                    lf.slots.clone(),
                    l.addr,
                    shutdown.clone(),
                    serve,
                )));
            }
        }
        if let Some(ready) = &self.ready {
            ready.bound(self.listeners.len());
        }
        for t in tasks {
            let _ = t.await;
        }
        // Pingora's app `cleanup()` is not called: it wakes every HTTP/1
        // connection parked in Pingora's head read and drops it, and with
        // weir's front a connection is only there once its head has started
        // to arrive (idle keep-alive connections wait in the front, which
        // closes them at the stop itself). Dropping those would fail a slow
        // client's request in the middle of its head at every stop and
        // upgrade (found by the soak); left alone, the head completes within
        // `timeouts.header` and is answered with `Connection: close`.
    }

    fn name(&self) -> &str {
        "weir http"
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.listeners.iter().map(|l| l.key.clone()).collect())
    }
}

/// The listening socket for `addr` (written `key` in the file), or `None`
/// when this process serves without it: a fresh start that cannot listen
/// exits (as nginx does), the new process of an upgrade logs it and serves
/// the other listeners (the old one is already handing over).
pub(crate) async fn bind(
    key: &str,
    addr: SocketAddr,
    fds: Option<&ListenFds>,
    upgrading: bool,
) -> Option<Arc<TcpListener>> {
    match listen(key, addr, fds).await {
        Ok(listener) => Some(Arc::new(listener)),
        Err(e) if upgrading => {
            log::error!("cannot listen on {key}: {e}; serving without it");
            None
        }
        Err(e) => {
            log::error!("cannot listen on {key}: {e}");
            std::process::exit(1);
        }
    }
}

/// The listening socket of `addr`: the one handed over by the previous
/// process under `key` if there is one, else a new one, registered for the
/// next upgrade.
async fn listen(
    key: &str,
    addr: SocketAddr,
    fds: Option<&ListenFds>,
) -> std::io::Result<TcpListener> {
    if let Some(fd) = fds.and_then(|f| f.lock().get(key).copied()) {
        // SAFETY: the descriptor came from the previous process for this
        // address and nothing else in this process uses it.
        let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        std.set_nonblocking(true)?;
        return TcpListener::from_std(std);
    }
    let mut tries = 0;
    let listener = loop {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => break socket.listen(BACKLOG)?,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries + 1 < BIND_TRIES => {
                tries += 1;
                log::warn!("{key} is in use, trying again");
                tokio::time::sleep(BIND_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    };
    if let Some(f) = fds {
        f.lock().add(key.to_string(), listener.as_raw_fd());
    }
    Ok(listener)
}

/// Accepts on `listener` until weir stops, handing each connection (with
/// the socket digest Pingora's accept gives it) and its `max_connections`
/// permit to `serve` in a task of its own. With `slots`, a permit is taken
/// before each accept: past the limit new connections wait in the kernel
/// backlog until a served one closes.
pub(crate) async fn accept_loop<F, Fut>(
    listener: Arc<TcpListener>,
    slots: Option<Arc<Slots>>,
    addr: SocketAddr,
    shutdown: ShutdownWatch,
    serve: F,
) where
    F: Fn(L4Stream, Option<OwnedSemaphorePermit>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    // The local address is known unless the socket is a wildcard one: no
    // getsockname per connection.
    let local = (!addr.ip().is_unspecified()).then_some(addr);
    let mut stop = shutdown.clone();
    let stopping = stop.wait_for(|stopping| *stopping);
    tokio::pin!(stopping);
    loop {
        let permit = match &slots {
            Some(slots) => tokio::select! {
                biased;
                _ = &mut stopping => break,
                p = slots.free() => p,
            },
            None => None,
        };
        let accepted = tokio::select! {
            biased;
            _ = &mut stopping => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                tokio::spawn(serve(l4_stream(tcp, peer, local), permit));
            }
            Err(e) => {
                log::error!("accept() failed: {e}");
                // Out of descriptors: accept would fail again at once.
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The PROXY header (when `l` wants one) and the TLS handshake of an https
/// connection, within the listener's header timeout each; `None` (logged)
/// closes the connection.
async fn secure(mut l4: L4Stream, acceptor: &Acceptor, l: &ListenerFront) -> Option<Stream> {
    let peer = l4
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
    if l.proxy_protocol {
        if let Err(e) = proxy_in::read_l4(&mut l4, l.header).await {
            log::info!(
                "listener {}: closing a connection from {peer:?}: {e}",
                l.name
            );
            return None;
        }
    }
    match tokio::time::timeout(l.header, acceptor.tls_handshake(l4)).await {
        Ok(Ok(tls)) => Some(Box::new(tls)),
        Ok(Err(e)) => {
            log::debug!(
                "listener {}: TLS handshake with {peer:?} failed: {e}",
                l.name
            );
            None
        }
        Err(_) => {
            log::debug!(
                "listener {}: no TLS handshake from {peer:?} within {:?}",
                l.name,
                l.header
            );
            None
        }
    }
}

/// A Pingora stream for an accepted connection, with the socket digest
/// Pingora's own accept gives it (peer address; local address when known).
fn l4_stream(tcp: TcpStream, peer: SocketAddr, local: Option<SocketAddr>) -> L4Stream {
    // Small writes are gathered by the front (`HeadClock`),
    // so Nagle's delay would only add latency.
    let _ = tcp.set_nodelay(true);
    let mut s = L4Stream::from(tcp);
    let digest = SocketDigest::from_raw_fd(s.as_raw_fd());
    let _ = digest.peer_addr.set(Some(peer.into()));
    if let Some(local) = local {
        let _ = digest.local_addr.set(Some(local.into()));
    }
    s.set_socket_digest(digest);
    s
}

impl HttpListener {
    /// `l` at `index` among the front's listeners; `tls` for an https one.
    pub fn of(
        index: usize,
        l: &ListenerFront,
        key: &str,
        tls: Option<Arc<Acceptor>>,
    ) -> HttpListener {
        HttpListener {
            index,
            key: key.to_string(),
            addr: l.addr,
            tls,
        }
    }
}
