//! Choosing a backend for a tcp connection and connecting to it: the
//! group's algorithm over the backends that are healthy, untried and
//! admitted by their circuit (and out of probation), as HTTP chooses; the
//! group's `timeouts.connect` (which covers the PROXY header the upstream's
//! `send_proxy_protocol` asks for); a failed or timed-out connect counts
//! against the backend's circuit and is retried once on another backend.

use super::record::{Line, Outcome};
use crate::upstream::{client_key, BackendInfo, Group};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Tries per connection: the first and one retry on another backend.
const TRIES: usize = 2;

/// Decrements a backend's in-flight counter when dropped (the tunnel's
/// lifetime, which `least_connections` counts).
pub(super) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(info: &BackendInfo) -> InFlight {
        info.shared.in_flight.fetch_add(1, Relaxed);
        InFlight(info.shared.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A half-open circuit's trial: released for the next connection when
/// dropped before its outcome is known.
struct Trial(Option<Arc<BackendInfo>>);

impl Drop for Trial {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.shared.breaker.release_trial();
        }
    }
}

/// The two ends of the client's connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ends {
    /// The client (the PROXY header's source when there is one).
    pub client: Option<SocketAddr>,
    /// The address the client connected to.
    pub local: Option<SocketAddr>,
}

/// A connected backend.
pub(super) struct Connected {
    /// The backend socket.
    pub stream: TcpStream,
    /// Held while the tunnel is open.
    pub in_flight: InFlight,
}

/// A backend the algorithm offers, with whether it is a half-open trial.
/// Hashing algorithms hash the client address (a tcp connection has no
/// header, cookie or path).
fn pick(
    group: &Group,
    client: Option<IpAddr>,
    tried: &[SocketAddr],
) -> Option<(Arc<BackendInfo>, bool)> {
    let mut buf = [0u8; 16];
    let key = match group.uses_key() {
        true => client_key(client, &mut buf),
        false => b"",
    };
    group.pick(key, |a| tried.contains(&a), true)
}

/// Opens a connection to `addr` and, when the upstream wants one, writes
/// the PROXY header naming the client, all within `timeouts.connect`.
async fn open(group: &Group, addr: SocketAddr, ends: Ends) -> Result<TcpStream, String> {
    let limit = group.timeouts.connect;
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        if let Some(v) = group.config.send_proxy_protocol {
            let header = crate::proxy_protocol::header_for(v, ends.client, ends.local);
            stream.write_all(&header).await?;
        }
        Ok::<_, std::io::Error>(stream)
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {limit:?}")),
    }
}

/// Connects to a backend of `group` for a client of `listener`, retrying
/// once on another backend; records the backend and attempts in `line`.
/// On failure, the outcome to log: no backend available, or connect failed.
pub(super) async fn connect(
    group: &Group,
    ends: Ends,
    listener: &str,
    line: &mut Line,
) -> Result<Connected, Outcome> {
    let client = ends.client.map(|a| a.ip());
    let mut tried: Vec<SocketAddr> = Vec::with_capacity(TRIES);
    while tried.len() < TRIES {
        let Some((info, is_trial)) = pick(group, client, &tried) else {
            break;
        };
        if !tried.is_empty() {
            if let Some(c) = &group.retries {
                c.inc();
            }
        }
        tried.push(info.addr);
        line.attempts = tried.len();
        line.backend = Some(info.addr);
        let mut trial = Trial(is_trial.then(|| info.clone()));
        let in_flight = InFlight::new(&info);
        info.requests.fetch_add(1, Relaxed);
        let result = open(group, info.addr, ends).await;
        // The outcome is known: the trial (if any) is decided below.
        trial.0 = None;
        match result {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                group.outcome(&info, true, is_trial);
                return Ok(Connected { stream, in_flight });
            }
            Err(e) => {
                info.failures.fetch_add(1, Relaxed);
                group.outcome(&info, false, is_trial);
                log::warn!(
                    "tcp listener {listener}: connect to backend {} in {} failed: {e}",
                    info.addr,
                    group.name
                );
            }
        }
    }
    Err(if tried.is_empty() {
        log::warn!(
            "tcp listener {listener}: no backend of {} is available",
            group.name
        );
        Outcome::NoBackend
    } else {
        Outcome::ConnectFailed
    })
}
