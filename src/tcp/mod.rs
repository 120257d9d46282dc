//! `tcp` listeners: each is its own Pingora listening service (so a
//! graceful upgrade hands its socket over like the others) whose app relays
//! bytes both ways between a client and one backend of the listener's
//! upstream group.
//!
//! Per connection: a `max_connections` slot is taken (waiting for one, as
//! the http front does), the PROXY header is read when the listener has
//! `proxy_protocol`, the group is read from the live snapshot (a reload may
//! point the listener at another group), a backend is chosen and connected
//! to with one retry on another backend ([`connect`]), bytes are relayed
//! until both sides close, one fails, nothing flows for `tunnel_idle` or
//! weir stops ([`relay`]), and one access-log line is written ([`record`]).

mod connect;
mod record;
mod relay;

use crate::access_log::AccessLog;
use crate::front::Slots;
use crate::snapshot::SharedSnapshot;
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::listening::Service;
use record::{Line, Outcome};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    slots: Option<Slots>,
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
            slots: max.map(Slots::new),
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

/// The listening service of one tcp listener, accepting on `endpoint`.
pub fn service(app: TcpApp, endpoint: ListenerConfig) -> Service<TcpApp> {
    let mut service = Service::new(format!("weir tcp {}", app.name), app);
    service.add_listener(endpoint);
    service
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

#[async_trait]
impl ServerApp for TcpApp {
    async fn process_new(
        self: &Arc<Self>,
        client: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let start = Instant::now();
        if let Some(c) = &self.total {
            c.inc();
        }
        if let Some(g) = &self.active {
            g.inc();
        }
        let active = Active(self.active.clone());
        let mut line = Line::new(&self.name, start);
        let _slot = match &self.slots {
            None => None,
            Some(slots) => match slots.enter(shutdown).await {
                Some(permit) => Some(permit),
                None => {
                    line.client = peer_addr(&client).map(|a| a.ip());
                    drop(active);
                    line.finish(Outcome::Overloaded, self.access_log.as_deref());
                    return None;
                }
            },
        };
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
        None
    }
}
