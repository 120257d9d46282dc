//! The last [`CAPACITY`] events of the process, newest first: reloads (what
//! changed), upgrades (their account), backends going UP or DOWN, circuits
//! opening and closing, panic mode. Bounded: the oldest event is dropped
//! when a new one arrives at capacity, and each message is cut at
//! [`MAX_MESSAGE`] bytes. Events are rare (never one per request), so one
//! mutex guards the ring. Every event is also logged by whoever records it.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

/// Events kept.
pub const CAPACITY: usize = 200;
/// Longest message kept, in bytes.
pub const MAX_MESSAGE: usize = 2048;

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When (RFC 3339, UTC, milliseconds).
    pub ts: String,
    /// `reload`, `upgrade`, `backend`, `circuit` or `panic`.
    pub kind: &'static str,
    /// The upstream it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The backend it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// What happened.
    pub message: String,
}

static RING: Mutex<VecDeque<Event>> = Mutex::new(VecDeque::new());

fn cut(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Records an event.
pub fn record(kind: &'static str, upstream: Option<&str>, backend: Option<&str>, message: String) {
    let event = Event {
        ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        kind,
        upstream: upstream.map(str::to_string),
        backend: backend.map(str::to_string),
        message: cut(message),
    };
    let mut ring = RING.lock().unwrap_or_else(|p| p.into_inner());
    if ring.len() >= CAPACITY {
        ring.pop_back();
    }
    ring.push_front(event);
}

/// A circuit of backend `who.0` in upstream `who.1` changed.
pub fn circuit(who: (std::net::SocketAddr, &str), message: &str) {
    record(
        "circuit",
        Some(who.1),
        Some(&who.0.to_string()),
        format!("circuit {message}"),
    );
}

/// The events, newest first.
pub fn recent() -> Vec<Event> {
    let ring = RING.lock().unwrap_or_else(|p| p.into_inner());
    ring.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_capacity_events_newest_first() {
        for i in 0..CAPACITY + 5 {
            record("reload", None, None, format!("event {i}"));
        }
        let all = recent();
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].message, format!("event {}", CAPACITY + 4));
        assert_eq!(all[CAPACITY - 1].message, "event 5");
        record("reload", None, None, "x".repeat(5000));
        assert!(recent()[0].message.len() <= MAX_MESSAGE + 3);
    }
}
