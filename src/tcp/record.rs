//! The access-log line of a tcp connection: one per connection, written when
//! it ends, with how it ended as a status code in HTTP's terms (200 closed,
//! 400 bad PROXY header, 499 client error, 502 connect failed or backend
//! error, 503 no backend or closed by a stop after the grace period, 504
//! idle timeout).

use super::relay::End;
use crate::access_log::{AccessLog, Entry};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// How a tcp connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `proxy_protocol` is on and the connection did not start with a
    /// valid PROXY header in time.
    BadProxyHeader,
    /// No backend of the group was healthy, enabled and admitted.
    NoBackend,
    /// Every connect tried (at most two backends) failed or timed out.
    ConnectFailed,
    /// The tunnel was open and ended this way.
    Ended(End),
}

impl Outcome {
    /// The `status` logged for it.
    pub fn status(self) -> u16 {
        match self {
            Outcome::Ended(End::Closed) => 200,
            Outcome::BadProxyHeader => 400,
            Outcome::Ended(End::ClientError) => 499,
            Outcome::ConnectFailed | Outcome::Ended(End::BackendError) => 502,
            Outcome::NoBackend | Outcome::Ended(End::Stopping) => 503,
            Outcome::Ended(End::Idle) => 504,
        }
    }
}

/// What is known about a connection so far.
pub struct Line {
    listener: Arc<str>,
    start: Instant,
    /// The client (the PROXY header's source when there is one).
    pub client: Option<IpAddr>,
    /// The group ("-" until known).
    pub upstream: Arc<str>,
    /// The last backend tried.
    pub backend: Option<SocketAddr>,
    /// Connect attempts.
    pub attempts: usize,
    /// Bytes from the client to the backend.
    pub bytes_in: u64,
    /// Bytes from the backend to the client.
    pub bytes_out: u64,
}

impl Line {
    /// A connection accepted by `listener` at `start`.
    pub fn new(listener: &Arc<str>, start: Instant) -> Line {
        Line {
            listener: listener.clone(),
            client: None,
            start,
            upstream: "-".into(),
            backend: None,
            attempts: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Writes the line (when the access log is on).
    pub fn finish(&self, outcome: Outcome, log: Option<&AccessLog>) {
        let Some(log) = log else { return };
        let backend = self.backend.map(|b| b.to_string());
        log.log(&Entry {
            client: self.client,
            peer: self.client,
            method: "-",
            host: "-",
            path: "-",
            status: outcome.status(),
            bytes: usize::try_from(self.bytes_out).unwrap_or(usize::MAX),
            bytes_in: usize::try_from(self.bytes_in).unwrap_or(usize::MAX),
            duration_ms: self.start.elapsed().as_secs_f64() * 1000.0,
            route: "-",
            upstream: &self.upstream,
            backend: backend.as_deref().unwrap_or("-"),
            attempts: self.attempts,
            version: "TCP",
            listener: Some(&self.listener),
            ..Entry::default()
        });
    }
}
