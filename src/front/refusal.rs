//! weir's answer to a request head Pingora's HTTP/1 parser refuses.
//!
//! Pingora reads and parses a head before weir's proxy sees it; a head it
//! cannot parse (a repeated `Host`, obs-fold, NUL, `Content-Length: -1`,
//! `HTTP/1.2`, …) or will not take (`CONNECT`) it answers itself, with
//! `Server: Pingora`, no `x-request-id` and no access-log line, and closes.
//! SPEC §2/§4: every answer carries an `x-request-id` and is logged, so an
//! operator sees attacks in the log.
//!
//! There is no hook between Pingora's parse and its answer, so the front's
//! stream wrapper ([`super::clock::HeadClock`]) recognises that answer: it
//! is the only thing Pingora writes while a head is being read (the proxy
//! disarms the clock as soon as it has a parsed head). The wrapper drops
//! Pingora's bytes and writes the answer built here instead, and logs it.

use crate::access_log::{AccessLog, Entry};
use std::net::IpAddr;
use std::time::Duration;

/// The status in an answer Pingora started to write (`HTTP/1.1 400 …`);
/// 400 when it cannot be read.
pub fn status_of(written: &[u8]) -> u16 {
    let code = written.get(9..12).and_then(|c| std::str::from_utf8(c).ok());
    match code.and_then(|c| c.parse::<u16>().ok()) {
        Some(c) if written.starts_with(b"HTTP/1.") && (400..600).contains(&c) => c,
        _ => 400,
    }
}

fn reason(status: u16) -> (&'static str, &'static str) {
    match status {
        405 => ("Method Not Allowed", "method not allowed\n"),
        413 => ("Payload Too Large", "request body too large\n"),
        414 => ("URI Too Long", "request-target too long\n"),
        431 => (
            "Request Header Fields Too Large",
            "request header fields too large\n",
        ),
        500 => ("Internal Server Error", "internal error\n"),
        _ => ("Bad Request", "bad request\n"),
    }
}

/// What the refused head showed of itself, read from its first bytes.
struct Line<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    version: &'a str,
}

/// The request line's parts, as far as they are printable text.
fn request_line<'a>(first: &'a [u8]) -> Line<'a> {
    let end = first
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(first.len());
    let text = std::str::from_utf8(&first[..end]).unwrap_or("");
    let mut parts = text.split(' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let version = parts.next().unwrap_or("");
    let token = |s: &'a str, max: usize| -> &'a str {
        match s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic()) {
            true => s,
            false => "-",
        }
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    Line {
        method: token(method, 32),
        path,
        query,
        version: token(version, 16),
    }
}

/// A refused head, as the clock knows it.
pub struct Refused<'a> {
    /// The status Pingora chose.
    pub status: u16,
    /// The first bytes of the head, as read.
    pub first: &'a [u8],
    /// The socket peer.
    pub peer: Option<IpAddr>,
    /// Since the head's first byte.
    pub elapsed: Duration,
}

/// weir's answer to a refused head with status `status` and request id
/// `id` (the connection is closed after it).
pub fn answer(status: u16, id: &str) -> Vec<u8> {
    let (reason, body) = reason(status);
    let date = pingora_core::protocols::http::date::get_cached_date();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(date.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain\r\n");
    out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(b"Connection: close\r\nX-Request-Id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// Counts the answer to `r` (sent with request id `id`) in the metrics and
/// logs it to `log` when one is set.
pub fn record(r: &Refused<'_>, id: &str, log: Option<&AccessLog>) {
    let line = request_line(r.first);
    let method = http::Method::from_bytes(line.method.as_bytes()).unwrap_or(http::Method::GET);
    crate::metrics::unmatched().record(&method, r.status, r.elapsed.as_secs_f64());
    let Some(log) = log else { return };
    log.log(&Entry {
        client: r.peer,
        peer: r.peer,
        method: line.method,
        host: "",
        path: line.path,
        query: line.query,
        status: r.status,
        upstream_status: 0,
        bytes: reason(r.status).1.len(),
        bytes_in: 0,
        duration_ms: r.elapsed.as_secs_f64() * 1000.0,
        route: "-",
        upstream: "-",
        backend: "-",
        attempts: 0,
        request_id: id,
        user_agent: "",
        referer: "",
        version: line.version,
        trace_id: "",
        listener: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_pingora_chose_is_kept() {
        assert_eq!(status_of(b"HTTP/1.1 405 Method Not Allowed\r\n"), 405);
        assert_eq!(status_of(b"HTTP/1.1 400 Bad Request\r\n"), 400);
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), 400);
        assert_eq!(status_of(b"garbage"), 400);
    }

    #[test]
    fn the_request_line_is_read_as_far_as_it_is_text() {
        let l = request_line(b"GET /a?b=1 HTTP/1.2\r\nHost: x\r\n");
        assert_eq!(
            (l.method, l.path, l.query, l.version),
            ("GET", "/a", Some("b=1"), "HTTP/1.2")
        );
        let l = request_line(b"G\x00T / HTTP/1.1\r\n");
        assert_eq!(l.method, "-");
        let l = request_line(b"");
        assert_eq!((l.method, l.path, l.version), ("", "", ""));
    }

    #[test]
    fn the_answer_has_an_id_and_closes() {
        let a = String::from_utf8(answer(400, "abc")).unwrap();
        assert!(a.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{a}");
        assert!(a.contains("\r\nX-Request-Id: abc\r\n"), "{a}");
        assert!(a.contains("\r\nConnection: close\r\n"), "{a}");
        assert!(!a.contains("Pingora"), "{a}");
        assert!(a.ends_with("\r\n\r\nbad request\n"), "{a}");
    }
}
