//! The access log: one line per request, `json` or nginx's `combined`,
//! to stdout or a file. Workers only format the line and hand it to a
//! queue bounded in bytes; a background service does the writing, so slow
//! disks never block a worker (lines are dropped and counted in
//! `weir_access_log_dropped_total` when it falls behind). Every field is cut
//! at 2 KiB (marked with `…`), so a client cannot make one line huge.

use crate::config::model::{AccessLogConfig, AccessLogFormat};
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Lines buffered before new ones are dropped.
const QUEUE: usize = 65536;
/// Most bytes of formatted lines waiting for the writer.
const QUEUE_BYTES: usize = 16 << 20;
/// Longest a field may be before it is cut.
const FIELD_MAX: usize = 2048;

/// `s` cut to at most [`FIELD_MAX`] bytes at a character boundary, with
/// whether it was cut.
fn cut(s: &str) -> (&str, bool) {
    if s.len() <= FIELD_MAX {
        return (s, false);
    }
    let mut end = FIELD_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// Bumped to make the writer reopen its file (SIGUSR1, live reload): after
/// logrotate moved the file away, new lines go to a new file.
static REOPEN: AtomicU64 = AtomicU64::new(0);

/// Asks the writer to reopen the access log file before its next write.
pub fn reopen() {
    REOPEN.fetch_add(1, Relaxed);
}

/// Everything one line says about a request.
#[derive(Debug, Default)]
pub struct Entry<'a> {
    /// Derived client address.
    pub client: Option<std::net::IpAddr>,
    /// Socket peer.
    pub peer: Option<std::net::IpAddr>,
    /// Method.
    pub method: &'a str,
    /// Host header.
    pub host: &'a str,
    /// Path (without query unless `log_query`).
    pub path: &'a str,
    /// Query string, if any.
    pub query: Option<&'a str>,
    /// Status sent (499 when the client left first).
    pub status: u16,
    /// Status the backend answered with (0: none).
    pub upstream_status: u16,
    /// Response body bytes sent.
    pub bytes: usize,
    /// Request body bytes read.
    pub bytes_in: usize,
    /// Milliseconds from request to end of answer.
    pub duration_ms: f64,
    /// Route name ("-" if none).
    pub route: &'a str,
    /// Upstream name ("-").
    pub upstream: &'a str,
    /// Backend address ("-").
    pub backend: &'a str,
    /// Tries made.
    pub attempts: usize,
    /// Request id.
    pub request_id: &'a str,
    /// User-Agent.
    pub user_agent: &'a str,
    /// Referer (combined format).
    pub referer: &'a str,
    /// HTTP version text for combined (`HTTP/1.1`).
    pub version: &'a str,
    /// Trace id (32 hex digits) when tracing is on (`json` key `trace_id`;
    /// left out when empty).
    pub trace_id: &'a str,
    /// The tcp listener that accepted the connection (`json` key `listener`,
    /// only on tcp lines; http lines leave it out).
    pub listener: Option<&'a str>,
}

fn json_str(out: &mut String, s: &str) {
    let (s, was_cut) = cut(s);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    if was_cut {
        out.push('…');
    }
    out.push('"');
}

/// nginx's escaping for `combined`: `"`, `\` and bytes outside printable
/// ASCII as `\xHH`; `-` for an empty value; cut at 2 KiB.
fn combined_str(out: &mut String, s: &str) {
    if s.is_empty() {
        out.push('-');
        return;
    }
    let (s, was_cut) = cut(s);
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
    if was_cut {
        out.push_str("...");
    }
}

fn ip_text(ip: Option<std::net::IpAddr>) -> String {
    ip.map_or_else(|| "-".to_string(), |i| i.to_string())
}

/// Formats a `json` line.
pub fn format_json(e: &Entry<'_>, log_query: bool, now: SystemTime) -> String {
    let mut out = String::with_capacity(384);
    out.push_str("{\"ts\":\"");
    let _ = write!(out, "{}", humantime::format_rfc3339_millis(now));
    out.push_str("\",\"client\":");
    json_str(&mut out, &ip_text(e.client));
    out.push_str(",\"peer\":");
    json_str(&mut out, &ip_text(e.peer));
    out.push_str(",\"method\":");
    json_str(&mut out, e.method);
    out.push_str(",\"host\":");
    json_str(&mut out, e.host);
    out.push_str(",\"path\":");
    match (log_query, e.query) {
        (true, Some(q)) => json_str(&mut out, &format!("{}?{q}", e.path)),
        _ => json_str(&mut out, e.path),
    }
    let _ =
        write!(
        out,
        ",\"status\":{},\"upstream_status\":{},\"bytes\":{},\"bytes_in\":{},\"duration_ms\":{:.3}",
        e.status,
        if e.upstream_status == 0 { "null".to_string() } else { e.upstream_status.to_string() },
        e.bytes,
        e.bytes_in,
        e.duration_ms
    );
    for (k, v) in [
        ("route", e.route),
        ("upstream", e.upstream),
        ("backend", e.backend),
    ] {
        let _ = write!(out, ",\"{k}\":");
        json_str(&mut out, v);
    }
    let _ = write!(out, ",\"attempts\":{},\"request_id\":", e.attempts);
    json_str(&mut out, e.request_id);
    out.push_str(",\"user_agent\":");
    json_str(&mut out, e.user_agent);
    if !e.trace_id.is_empty() {
        out.push_str(",\"trace_id\":");
        json_str(&mut out, e.trace_id);
    }
    if let Some(l) = e.listener {
        out.push_str(",\"listener\":");
        json_str(&mut out, l);
    }
    out.push_str("}\n");
    out
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `22/Nov/2026:05:04:15 +0000` (nginx's `$time_local`, in UTC).
fn time_local(now: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(now).to_string(); // 2026-11-22T05:04:15Z
    let b = s.as_bytes();
    if b.len() < 19 {
        return s;
    }
    let month = s[5..7]
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!("{}/{}/{}:{} +0000", &s[8..10], month, &s[0..4], &s[11..19])
}

/// Formats a `combined` line (nginx's format).
pub fn format_combined(e: &Entry<'_>, log_query: bool, now: SystemTime) -> String {
    let path = match (log_query, e.query) {
        (true, Some(q)) => format!("{}?{q}", e.path),
        _ => e.path.to_string(),
    };
    let mut out = String::with_capacity(256);
    let _ = write!(out, "{} - - [{}] \"", ip_text(e.client), time_local(now));
    combined_str(&mut out, e.method);
    out.push(' ');
    combined_str(&mut out, &path);
    out.push(' ');
    combined_str(&mut out, e.version);
    let _ = write!(out, "\" {} {} \"", e.status, e.bytes);
    combined_str(&mut out, e.referer);
    out.push_str("\" \"");
    combined_str(&mut out, e.user_agent);
    out.push_str("\"\n");
    out
}

pub struct AccessLog {
    format: AccessLogFormat,
    log_query: bool,
    tx: mpsc::Sender<String>,
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    dropped: AtomicU64,
}

impl AccessLog {
    /// Queues a line for `e` (never blocks).
    pub fn log(&self, e: &Entry<'_>) {
        let now = SystemTime::now();
        let line = match self.format {
            AccessLogFormat::Json => format_json(e, self.log_query, now),
            AccessLogFormat::Combined => format_combined(e, self.log_query, now),
        };
        let len = line.len();
        let fits = self.queued.fetch_add(len, Relaxed) + len <= QUEUE_BYTES;
        if !fits || self.tx.try_send(line).is_err() {
            self.queued.fetch_sub(len, Relaxed);
            crate::metrics::access_log_dropped();
            if self.dropped.fetch_add(1, Relaxed).is_multiple_of(10000) {
                log::warn!("access log is falling behind; lines are being dropped");
            }
        }
    }
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// A file (appended; reopened on reload for logrotate).
    File(PathBuf),
}

/// The background writer.
pub struct Writer {
    rx: Mutex<Option<mpsc::Receiver<String>>>,
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    target: Target,
}

/// Builds the logger and its writer from config; `None` when off.
pub fn build(cfg: Option<&AccessLogConfig>, config_dir: &Path) -> Option<(AccessLog, Writer)> {
    let cfg = cfg?;
    let target = match cfg.path.as_str() {
        "off" => return None,
        "stdout" | "-" => Target::Stdout,
        p => Target::File(config_dir.join(p)),
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let queued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Some((
        AccessLog {
            format: cfg.format,
            log_query: cfg.log_query,
            tx,
            queued: queued.clone(),
            dropped: AtomicU64::new(0),
        },
        Writer {
            rx: Mutex::new(Some(rx)),
            queued,
            target,
        },
    ))
}

fn open(target: &Target) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        Target::Stdout => Box::new(std::io::stdout()),
        Target::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
    })
}

#[async_trait]
impl BackgroundService for Writer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let rx = self.rx.lock().ok().and_then(|mut g| g.take());
        let Some(mut rx) = rx else { return };
        let mut out = match open(&self.target) {
            Ok(w) => std::io::BufWriter::with_capacity(64 * 1024, w),
            Err(e) => {
                log::error!("cannot open the access log {:?}: {e}", self.target);
                return;
            }
        };
        let mut seen = REOPEN.load(Relaxed);
        // A stop does not end the writer: requests and tcp tunnels that
        // finish during the grace period are logged too (Pingora drops this
        // task when it stops the runtime; every batch is flushed).
        let mut stopping = false;
        loop {
            let line = if stopping {
                rx.recv().await
            } else {
                tokio::select! {
                    l = rx.recv() => l,
                    _ = shutdown.changed() => {
                        stopping = true;
                        continue;
                    }
                }
            };
            let Some(line) = line else { break };
            let now = REOPEN.load(Relaxed);
            if now != seen {
                seen = now;
                let _ = out.flush();
                match open(&self.target) {
                    Ok(w) => out = std::io::BufWriter::with_capacity(64 * 1024, w),
                    Err(e) => log::error!("cannot reopen the access log {:?}: {e}", self.target),
                }
            }
            self.queued.fetch_sub(line.len(), Relaxed);
            let _ = out.write_all(line.as_bytes());
            while let Ok(more) = rx.try_recv() {
                self.queued.fetch_sub(more.len(), Relaxed);
                let _ = out.write_all(more.as_bytes());
            }
            let _ = out.flush();
        }
        while let Ok(more) = rx.try_recv() {
            let _ = out.write_all(more.as_bytes());
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_combined_lines() {
        let e = Entry {
            method: "GET",
            host: "h",
            path: "/a\"b",
            query: Some("k=v"),
            status: 200,
            route: "r",
            upstream: "u",
            backend: "127.0.0.1:1",
            attempts: 1,
            request_id: "id",
            user_agent: "curl",
            version: "HTTP/1.1",
            ..Default::default()
        };
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let j = format_json(&e, false, t);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["path"], "/a\"b");
        assert_eq!(v["ts"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["upstream_status"], serde_json::Value::Null);
        let c = format_combined(&e, true, t);
        assert_eq!(
            c,
            "- - - [14/Nov/2023:22:13:20 +0000] \"GET /a\\x22b?k=v HTTP/1.1\" 200 0 \"-\" \"curl\"\n"
        );
    }

    #[test]
    fn fields_are_cut_and_escaped() {
        let long = "x".repeat(5000);
        let e = Entry {
            method: "GET",
            path: &long,
            user_agent: "a\u{1}\\b\u{e9}",
            version: "HTTP/1.1",
            ..Default::default()
        };
        let t = SystemTime::UNIX_EPOCH;
        let v: serde_json::Value = serde_json::from_str(&format_json(&e, false, t)).unwrap();
        let path = v["path"].as_str().unwrap();
        assert_eq!(path.chars().count(), 2049);
        assert!(path.ends_with('…'));
        let c = format_combined(&e, false, t);
        assert!(c.contains("\"a\\x01\\x5Cb\\xC3\\xA9\""), "{c}");
        assert!(c.len() < 2300, "{}", c.len());
    }
}
