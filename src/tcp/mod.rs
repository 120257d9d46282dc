//! `tcp` listeners: each is its own Pingora service, accepting through
//! weir's accept loop ([`crate::front::listen`]: its socket is handed over
//! on a graceful upgrade like the others), that relays bytes both ways
//! between a client and one backend of the listener's upstream group.
//!
//! Per connection: a `max_connections` slot is taken before the accept (past
//! the limit new connections wait in the kernel backlog, as on http
//! listeners), the PROXY header is read when the listener has
//! `proxy_protocol`, the group is read from the live snapshot (a reload may
//! point the listener at another group), a backend is chosen and connected
//! to with one retry on another backend ([`connect`]), bytes are relayed
//! until both sides close, one fails, nothing flows for `tunnel_idle` or
//! weir stops ([`relay`]), and one access-log line is written ([`record`]).

mod connect;
mod record;
mod relay;

use crate::access_log::AccessLog;
use crate::front::listen::{accept_loop, bind};
use crate::front::Slots;
use crate::snapshot::SharedSnapshot;
use async_trait::async_trait;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::Service;
use record::{Line, Outcome};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// The app of one tcp listener.
pub struct TcpApp {
    /// Listener name (metrics, logs).
    name: Arc<str>,
    /// The listener's index in the snapshot's `listeners`.
    index: usize,
    snapshot: SharedSnapshot,
    access_log: Option<Arc<AccessLog>>,
    /// How long open tunnels may go on once weir starts stopping.
    grace: Duration,
    /// `max_connections`.
    slots: Option<Arc<Slots>>,
    /// `proxy_protocol`: the longest wait for the header.
    proxy_header: Option<Duration>,
    active: Option<prometheus::IntGauge>,
    total: Option<prometheus::IntCounter>,
}

impl TcpApp {
    /// The app of the tcp listener `name`, at `index` in the snapshot's
    /// listeners (whose limits it takes: listeners change only with an
    /// upgrade). `grace` is how long open tunnels may go on once a stop or
    /// upgrade begins (then they are closed and logged).
    pub fn new(
        name: &str,
        index: usize,
        snapshot: SharedSnapshot,
        access_log: Option<Arc<AccessLog>>,
        grace: Duration,
    ) -> TcpApp {
        let (active, total) = crate::metrics::tcp_connections(name).unzip();
        let limits = snapshot.load().limits.get(index).map(|l| {
            (
                l.max_connections,
                l.proxy_protocol.then_some(l.header_timeout),
            )
        });
        let (max, proxy_header) = limits.unwrap_or((None, None));
        TcpApp {
            name: name.into(),
            index,
            snapshot,
            access_log,
            grace,
            slots: max.map(|n| Arc::new(Slots::new(n))),
            proxy_header,
            active,
            total,
        }
    }

    /// Relays one connection (past its slot and PROXY header); how it ended.
    async fn serve(&self, client: Stream, shutdown: &ShutdownWatch, line: &mut Line) -> Outcome {
        let group = {
            let snap = self.snapshot.load();
            let same = snap
                .listeners
                .get(self.index)
                .is_some_and(|(n, _)| *n == self.name);
            same.then(|| snap.tcp_group(self.index).cloned()).flatten()
        };
        let Some(group) = group else {
            log::error!(
                "tcp listener {}: no upstream group in the running config",
                self.name
            );
            return Outcome::NoBackend;
        };
        line.upstream = group.name.clone();
        let ends = connect::Ends {
            client: peer_addr(&client),
            local: local_addr(&client),
        };
        let connect::Connected { stream, in_flight } =
            match connect::connect(&group, ends, &self.name, line).await {
                Ok(b) => b,
                Err(outcome) => return outcome,
            };
        let idle = group.timeouts.tunnel_idle;
        // The tunnel holds its backend, not the group or the snapshot.
        drop(group);
        let stop = relay::stopping(shutdown.clone(), self.grace);
        let (end, totals) = relay::relay(client, stream, idle, stop).await;
        drop(in_flight);
        line.bytes_in = totals.from_client;
        line.bytes_out = totals.to_client;
        Outcome::Ended(end)
    }
}

/// The service of one tcp listener.
pub struct TcpService {
    app: Arc<TcpApp>,
    /// The service's name (Pingora logs it).
    name: String,
    /// The address as written in the file: its socket's key on upgrade.
    key: String,
    addr: SocketAddr,
    /// This process takes over from another (`-u`).
    upgrading: bool,
    ready: Option<Arc<crate::readiness::Readiness>>,
}

impl TcpService {
    /// `app` accepting on `addr`, written `key` in the file.
    pub fn new(app: TcpApp, key: &str, addr: SocketAddr, upgrading: bool) -> TcpService {
        TcpService {
            name: format!("weir tcp {}", app.name),
            app: Arc::new(app),
            key: key.to_string(),
            addr,
            upgrading,
            ready: None,
        }
    }

    /// Tells `ready` when this listener is bound.
    pub fn on_bound(mut self, ready: Arc<crate::readiness::Readiness>) -> Self {
        self.ready = Some(ready);
        self
    }
}

#[async_trait]
impl Service for TcpService {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let bound = bind(&self.key, self.addr, fds.as_ref(), self.upgrading).await;
        if let Some(ready) = &self.ready {
            ready.bound(1);
        }
        let Some(listener) = bound else {
            return;
        };
        let mut tasks = Vec::new();
        for _ in 0..listeners_per_fd.max(1) {
            let (app, down) = (self.app.clone(), shutdown.clone());
            let serve = move |l4: L4Stream, permit: Option<OwnedSemaphorePermit>| {
                let (app, shutdown) = (app.clone(), down.clone());
                async move { app.process(Box::new(l4), &shutdown, permit).await }
            };
            tasks.push(tokio::spawn(accept_loop(
                listener.clone(),
                self.app.slots.clone(),
                self.addr,
                shutdown.clone(),
                serve,
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(vec![self.key.clone()])
    }
}

/// Decrements the active-connections gauge when dropped.
struct Active(Option<prometheus::IntGauge>);

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

/// The client's address: the socket peer (or, with a PROXY header, its
/// source, which the header reader puts in the socket digest).
fn peer_addr(stream: &Stream) -> Option<SocketAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr()?.as_inet().copied()
}

/// The address the client connected to.
fn local_addr(stream: &Stream) -> Option<SocketAddr> {
    let digest = stream.get_socket_digest()?;
    digest.local_addr()?.as_inet().copied()
}

impl TcpApp {
    /// One accepted connection, holding its `max_connections` permit, from
    /// the accept to its access-log line.
    async fn process(
        &self,
        client: Stream,
        shutdown: &ShutdownWatch,
        _permit: Option<OwnedSemaphorePermit>,
    ) {
        let start = Instant::now();
        if let Some(c) = &self.total {
            c.inc();
        }
        if let Some(g) = &self.active {
            g.inc();
        }
        let active = Active(self.active.clone());
        let mut line = Line::new(&self.name, start);
        let client = match self.proxy_header {
            None => Some(client),
            Some(limit) => {
                line.client = peer_addr(&client).map(|a| a.ip());
                crate::front::proxy_in::read_on_stream(client, limit, &self.name).await
            }
        };
        let outcome = match client {
            Some(client) => {
                line.client = peer_addr(&client).map(|a| a.ip());
                self.serve(client, shutdown, &mut line).await
            }
            None => Outcome::BadProxyHeader,
        };
        // Closed (and so no longer active) before its line is written.
        drop(active);
        line.finish(outcome, self.access_log.as_deref());
    }
}
