//! weir's own accept loop for plain-HTTP listeners (https listeners stay on
//! Pingora's).
//!
//! Pingora 0.9 spawns each accepted connection as one task that holds
//! `timeout(60 s, io.handshake())` inline (pingora-core
//! `services/listening.rs`, `Service::run_endpoint`); the TLS-capable
//! handshake state sizes that task for the connection's whole life, about
//! 8.8 KiB per idle keep-alive client (heaptrack, benches/README.md). Its
//! accept path is crate-private, so weir accepts plain connections itself:
//! a Pingora [`Service`] that binds (or, on a graceful upgrade, takes over)
//! the listening sockets, registers them for the next upgrade under the
//! address as written in the file (the key Pingora's own listeners use, so
//! upgrades between versions keep the sockets), and spawns per connection a
//! task holding just the stream and the connection front.

use super::{Front, ListenerFront};
use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::Service;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The kernel's accept queue per listener (Pingora's value).
const BACKLOG: u32 = 65535;
/// A port still held (a previous process exiting) is tried this many times,
/// [`BIND_RETRY`] apart, before start-up fails.
const BIND_TRIES: usize = 10;
const BIND_RETRY: Duration = Duration::from_millis(500);

/// One plain-HTTP listener of the file.
pub struct PlainListener {
    /// Index into the front's listeners (config order).
    pub index: usize,
    /// The address as written in the file: the key of its socket in
    /// Pingora's table of sockets handed over on upgrade.
    pub key: String,
    /// The parsed address.
    pub addr: SocketAddr,
}

/// The service accepting on every plain-HTTP listener.
pub struct PlainService<A> {
    front: Front<A>,
    listeners: Vec<PlainListener>,
    upgrading: bool,
}

impl<A> PlainService<A> {
    /// Serves `listeners` through `front`; `upgrading`: this process takes
    /// over from another (`-u`).
    pub fn new(front: Front<A>, listeners: Vec<PlainListener>, upgrading: bool) -> PlainService<A> {
        PlainService {
            front,
            listeners,
            upgrading,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> Service for PlainService<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let front = Arc::new(self.front.clone());
        let mut tasks = Vec::new();
        for l in &self.listeners {
            let listener = match listen(l, fds.as_ref()).await {
                Ok(listener) => Arc::new(listener),
                Err(e) if self.upgrading => {
                    // The old process is already handing over: stopping
                    // here would leave no one serving the other listeners.
                    log::error!("cannot listen on {}: {e}; serving without it", l.key);
                    continue;
                }
                Err(e) => {
                    // As nginx: a listener that cannot listen stops start-up.
                    log::error!("cannot listen on {}: {e}", l.key);
                    std::process::exit(1);
                }
            };
            // The local address is known unless the socket is a wildcard
            // one: no getsockname per connection.
            let local = (!l.addr.ip().is_unspecified()).then_some(l.addr);
            for _ in 0..listeners_per_fd.max(1) {
                tasks.push(tokio::spawn(accept_loop(
                    listener.clone(),
                    front.clone(),
                    l.index,
                    local,
                    shutdown.clone(),
                )));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        front.app.cleanup().await;
    }

    fn name(&self) -> &str {
        "weir http"
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.listeners.iter().map(|l| l.key.clone()).collect())
    }
}

/// The listening socket of `l`: the one handed over by the previous process
/// if there is one, else a new one, registered for the next upgrade.
async fn listen(l: &PlainListener, fds: Option<&ListenFds>) -> std::io::Result<TcpListener> {
    if let Some(fd) = fds.and_then(|f| f.lock().get(&l.key).copied()) {
        // SAFETY: the descriptor came from the previous process for this
        // address and nothing else in this process uses it.
        let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        std.set_nonblocking(true)?;
        return TcpListener::from_std(std);
    }
    let mut tries = 0;
    let listener = loop {
        let socket = match l.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(l.addr) {
            Ok(()) => break socket.listen(BACKLOG)?,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries + 1 < BIND_TRIES => {
                tries += 1;
                log::warn!("{} is in use, trying again", l.key);
                tokio::time::sleep(BIND_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    };
    if let Some(f) = fds {
        f.lock().add(l.key.clone(), listener.as_raw_fd());
    }
    Ok(listener)
}

/// Accepts until weir stops, each connection in its own task.
async fn accept_loop<A: HttpServerApp + Send + Sync + 'static>(
    listener: Arc<TcpListener>,
    front: Arc<Front<A>>,
    index: usize,
    local: Option<SocketAddr>,
    shutdown: ShutdownWatch,
) {
    let mut stop = shutdown.clone();
    let stopping = stop.wait_for(|stopping| *stopping);
    tokio::pin!(stopping);
    let slots = front.listeners.get(index).and_then(|l| l.slots.clone());
    loop {
        // Past `max_connections` nothing is accepted: new connections wait
        // in the kernel backlog until a served one closes.
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
                let (front, shutdown) = (front.clone(), shutdown.clone());
                tokio::spawn(async move {
                    let stream = stream(tcp, peer, local);
                    if let Some(l) = front.listeners.get(index) {
                        front.serve_on(stream, l, &shutdown, true, permit).await;
                    }
                });
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

/// A Pingora stream for an accepted connection, with the socket digest
/// Pingora's own accept gives it (peer address; local address when known).
fn stream(tcp: TcpStream, peer: SocketAddr, local: Option<SocketAddr>) -> Stream {
    // Small writes are gathered by the front (`HeadClock::coalesce_writes`),
    // so Nagle's delay would only add latency.
    let _ = tcp.set_nodelay(true);
    let mut s = L4Stream::from(tcp);
    let digest = SocketDigest::from_raw_fd(s.as_raw_fd());
    let _ = digest.peer_addr.set(Some(peer.into()));
    if let Some(local) = local {
        let _ = digest.local_addr.set(Some(local.into()));
    }
    s.set_socket_digest(digest);
    Box::new(s)
}

impl PlainListener {
    /// `l` at `index` among the front's listeners.
    pub fn of(index: usize, l: &ListenerFront, key: &str) -> PlainListener {
        PlainListener {
            index,
            key: key.to_string(),
            addr: l.addr,
        }
    }
}
