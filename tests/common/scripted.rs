//! Byte-level helpers for framing regression tests: a scripted origin server
//! ([`RawBackend`]) that records exactly what it received and answers with
//! whatever bytes a test gives it (including malformed answers), and a raw
//! client connection ([`RawConn`]) that sends arbitrary bytes and reads
//! responses, or everything until close, under explicit deadlines.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often blocked backend threads wake up to check for [`RawBackend::stop`].
const TICK: Duration = Duration::from_millis(20);

/// Largest request head a [`RawBackend`] reads before giving up on a connection.
const MAX_HEAD: usize = 1024 * 1024;

/// One request as a [`RawBackend`] received it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRequest {
    /// Method from the request line.
    pub method: String,
    /// Request-target exactly as received.
    pub target: String,
    /// Version from the request line (e.g. `HTTP/1.1`).
    pub version: String,
    /// Headers in order received; names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The head exactly as received, up to and including the blank line.
    pub head: Vec<u8>,
    /// The body (de-chunked when chunked); what arrived if incomplete.
    pub body: Vec<u8>,
    /// False when the connection ended (or the framing broke) before the
    /// body was complete: the request was cancelled, not answered.
    pub complete: bool,
}

impl RawRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What a [`RawBackend`] writes back for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Bytes written verbatim (status line, headers, body, or garbage).
    pub bytes: Vec<u8>,
    /// Close the connection after writing.
    pub close: bool,
}

impl Reply {
    /// `200 OK` with `Content-Length` and `body`, connection kept open.
    pub fn ok(body: &str) -> Reply {
        Reply::raw(format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-backend: raw\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    /// `bytes` verbatim, connection kept open.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            bytes: bytes.into(),
            close: false,
        }
    }

    /// The same reply, closing the connection after it.
    pub fn then_close(mut self) -> Reply {
        self.close = true;
        self
    }
}

/// The default script: `200 OK` with the body `"<METHOD> <target> <body length>\n"`.
pub fn echo_line(req: &RawRequest) -> Reply {
    Reply::ok(&format!(
        "{} {} {}\n",
        req.method,
        req.target,
        req.body.len()
    ))
}

type Script = dyn Fn(&RawRequest) -> Reply + Send + Sync;

struct RawShared {
    stop: AtomicBool,
    script: Box<Script>,
    send_continue: bool,
    heads: AtomicUsize,
    answered: AtomicUsize,
    connections: AtomicUsize,
    open: AtomicUsize,
    requests: Mutex<Vec<RawRequest>>,
    bytes: Mutex<Vec<u8>>,
}

/// A scripted HTTP/1.1 origin on 127.0.0.1 (ephemeral port), built on plain
/// threads. It parses requests leniently (Content-Length or chunked bodies),
/// records every request and every byte received, and answers each complete
/// request with `script(&request)`. Stopped (listener and connections
/// closed, threads joined) by [`RawBackend::stop`] or on drop.
pub struct RawBackend {
    addr: SocketAddr,
    shared: Arc<RawShared>,
    thread: Option<JoinHandle<()>>,
}

impl RawBackend {
    /// Starts a backend answering with `script`. A request carrying
    /// `Expect: 100-continue` gets `100 Continue` before its body is read.
    pub fn start(script: impl Fn(&RawRequest) -> Reply + Send + Sync + 'static) -> RawBackend {
        Self::spawn(Box::new(script), true)
    }

    /// Like [`RawBackend::start`], but ignores `Expect` (never sends `100 Continue`).
    pub fn start_ignoring_expect(
        script: impl Fn(&RawRequest) -> Reply + Send + Sync + 'static,
    ) -> RawBackend {
        Self::spawn(Box::new(script), false)
    }

    fn spawn(script: Box<Script>, send_continue: bool) -> RawBackend {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind raw backend");
        listener
            .set_nonblocking(true)
            .expect("nonblocking raw backend listener");
        let addr = listener.local_addr().expect("raw backend local_addr");
        let shared = Arc::new(RawShared {
            stop: AtomicBool::new(false),
            script,
            send_continue,
            heads: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            bytes: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("raw-backend".into())
            .spawn(move || accept_loop(&listener, &accept_shared))
            .expect("spawn raw backend thread");
        RawBackend {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// The address the backend listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Request heads received so far (counted as soon as a head is parsed).
    pub fn heads(&self) -> usize {
        self.shared.heads.load(Ordering::SeqCst)
    }

    /// Requests answered (complete requests the script replied to).
    pub fn answered(&self) -> usize {
        self.shared.answered.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Every request recorded so far: complete ones once their body is read,
    /// incomplete ones once their connection ended.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every byte received on every connection, concatenated in arrival order.
    pub fn received_bytes(&self) -> Vec<u8> {
        self.shared
            .bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// True if `needle` occurs anywhere in the bytes received.
    pub fn received_contains(&self, needle: &[u8]) -> bool {
        find(&self.received_bytes(), needle).is_some()
    }

    /// Closes the listener and every connection and joins all threads. Idempotent.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<RawShared>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                shared.open.fetch_add(1, Ordering::SeqCst);
                let s = Arc::clone(shared);
                let spawned = std::thread::Builder::new()
                    .name("raw-backend-conn".into())
                    .spawn(move || {
                        handle(stream, &s);
                        s.open.fetch_sub(1, Ordering::SeqCst);
                    });
                match spawned {
                    Ok(h) => conns.push(h),
                    Err(_) => {
                        shared.open.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(TICK / 4),
            Err(_) => std::thread::sleep(TICK / 4),
        }
        conns.retain(|h| !h.is_finished());
    }
    for h in conns {
        let _ = h.join();
    }
}

/// A backend-side connection with its unread bytes.
struct BConn<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    shared: &'a RawShared,
}

enum Fill {
    Data,
    Eof,
}

impl BConn<'_> {
    /// Reads more bytes; `Eof` on close, error, or stop.
    fn fill(&mut self) -> Fill {
        let mut tmp = [0u8; 16384];
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return Fill::Eof;
            }
            match self.stream.read(&mut tmp) {
                Ok(0) => return Fill::Eof,
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    self.shared
                        .bytes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&tmp[..n]);
                    return Fill::Data;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Fill::Eof,
            }
        }
    }

    fn take(&mut self, n: usize, into: &mut Vec<u8>) -> bool {
        while self.buf.len() < n {
            if let Fill::Eof = self.fill() {
                into.append(&mut self.buf);
                return false;
            }
        }
        into.extend(self.buf.drain(..n));
        true
    }

    fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let mut l: Vec<u8> = self.buf.drain(..pos + 2).collect();
                l.truncate(pos);
                return Some(l);
            }
            if self.buf.len() > MAX_HEAD {
                return None;
            }
            if let Fill::Eof = self.fill() {
                return None;
            }
        }
    }

    /// Reads a chunked body into `body`; false if it ended early or is malformed.
    fn chunked(&mut self, body: &mut Vec<u8>) -> bool {
        loop {
            let Some(line) = self.line() else {
                return false;
            };
            let line = String::from_utf8_lossy(&line);
            let size = line.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size, 16) else {
                return false;
            };
            if size == 0 {
                loop {
                    match self.line() {
                        Some(l) if l.is_empty() => return true,
                        Some(_) => {}
                        None => return false,
                    }
                }
            }
            if !self.take(size, body) {
                return false;
            }
            if self.line().is_none_or(|l| !l.is_empty()) {
                return false;
            }
        }
    }
}

fn parse_head(head: &[u8]) -> RawRequest {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().unwrap_or("").splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let version = parts.next().unwrap_or("").trim().to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), v.trim().to_string()),
            None => (l.to_ascii_lowercase(), String::new()),
        })
        .collect();
    RawRequest {
        method,
        target,
        version,
        headers,
        head: head.to_vec(),
        body: Vec::new(),
        complete: false,
    }
}

fn has_token(req: &RawRequest, name: &str, token: &str) -> bool {
    req.header_all(name)
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn handle(stream: TcpStream, shared: &RawShared) {
    let _ = stream.set_read_timeout(Some(TICK));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nodelay(true);
    let mut c = BConn {
        stream,
        buf: Vec::new(),
        shared,
    };
    loop {
        let head_end = loop {
            while c.buf.starts_with(b"\r\n") {
                c.buf.drain(..2);
            }
            if let Some(pos) = find(&c.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if c.buf.len() > MAX_HEAD {
                return;
            }
            if let Fill::Eof = c.fill() {
                return;
            }
        };
        let head: Vec<u8> = c.buf.drain(..head_end).collect();
        let mut req = parse_head(&head);
        shared.heads.fetch_add(1, Ordering::SeqCst);
        if shared.send_continue && has_token(&req, "expect", "100-continue") {
            let _ = c.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let mut body = Vec::new();
        let complete = if has_token(&req, "transfer-encoding", "chunked") {
            c.chunked(&mut body)
        } else {
            let len = req
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            c.take(len, &mut body)
        };
        req.body = body;
        req.complete = complete;
        let reply = complete.then(|| (shared.script)(&req));
        shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(req);
        let Some(reply) = reply else {
            return;
        };
        shared.answered.fetch_add(1, Ordering::SeqCst);
        if c.stream.write_all(&reply.bytes).is_err() || reply.close {
            let _ = c.stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// A response as read by [`RawConn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order; names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The head exactly as received (status line to blank line).
    pub head: Vec<u8>,
    /// The body (de-chunked); for a close-delimited body, what came before close.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True if header `name` has the comma-separated `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The body, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection: sends arbitrary bytes and reads under deadlines.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl RawConn {
    /// Connects (5 s connect timeout, `TCP_NODELAY`).
    pub fn connect(addr: SocketAddr) -> io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
            eof: false,
        })
    }

    /// Writes `bytes` in full.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Half-closes: no more bytes will be sent.
    pub fn close_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// True once the server closed the connection (seen while reading).
    pub fn saw_eof(&self) -> bool {
        self.eof
    }

    /// Bytes received but not yet consumed by a read call.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads more bytes until `deadline`; `Ok(0)` on EOF (or reset), a
    /// `TimedOut` error once the deadline passes.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let mut tmp = [0u8; 16384];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no more bytes before the deadline; have {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut tmp) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    self.eof = true;
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn take(&mut self, n: usize, deadline: Instant) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill(deadline)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed after {} of {n} body bytes: {:?}",
                        self.buf.len(),
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn line(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let mut l: Vec<u8> = self.buf.drain(..pos + 2).collect();
                l.truncate(pos);
                return Ok(l);
            }
            if self.fill(deadline)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed mid chunk",
                ));
            }
        }
    }

    /// Reads one response, interim (1xx) ones included, within `timeout`.
    /// The body is framed as a client must: none for HEAD (`is_head`), 1xx,
    /// 204 and 304; else chunked, Content-Length, or until close.
    pub fn read_response(&mut self, is_head: bool, timeout: Duration) -> io::Result<RawResponse> {
        let deadline = Instant::now() + timeout;
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if self.fill(deadline)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed before a complete response head; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        let head: Vec<u8> = self.buf.drain(..head_end).collect();
        let (status, headers) = parse_response_head(&head)?;
        let mut resp = RawResponse {
            status,
            headers,
            head,
            body: Vec::new(),
        };
        if is_head || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        if resp.has_token("transfer-encoding", "chunked") {
            loop {
                let l = self.line(deadline)?;
                let l = String::from_utf8_lossy(&l).into_owned();
                let size = usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("chunk size {l:?}"))
                    })?;
                if size == 0 {
                    while !self.line(deadline)?.is_empty() {}
                    break;
                }
                let data = self.take(size, deadline)?;
                resp.body.extend(data);
                if !self.line(deadline)?.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "chunk end"));
                }
            }
        } else if let Some(len) = resp.header("content-length") {
            let len = len.parse::<usize>().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("content-length {len:?}"),
                )
            })?;
            resp.body = self.take(len, deadline)?;
        } else {
            while self.fill(deadline)? != 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// Reads responses until a final (non-1xx) one; returns the interim
    /// statuses seen and the final response.
    pub fn read_final(
        &mut self,
        is_head: bool,
        timeout: Duration,
    ) -> io::Result<(Vec<u16>, RawResponse)> {
        let deadline = Instant::now() + timeout;
        let mut interim = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.read_response(is_head, left)?;
            if (100..200).contains(&r.status) && r.status != 101 {
                interim.push(r.status);
            } else {
                return Ok((interim, r));
            }
        }
    }

    /// Returns every byte not yet consumed plus whatever arrives until the
    /// server closes (`true`) or `timeout` passes (`false`).
    pub fn read_to_close(&mut self, timeout: Duration) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + timeout;
        let closed = loop {
            match self.fill(deadline) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        (std::mem::take(&mut self.buf), closed)
    }
}

/// Connects to `addr`, sends `bytes` (a write error is ignored: the server
/// may answer and close before reading everything) and returns everything
/// received until the server closes (`true`) or `timeout` passes (`false`).
pub fn exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> io::Result<(Vec<u8>, bool)> {
    let mut c = RawConn::connect(addr)?;
    let _ = c.send(bytes);
    Ok(c.read_to_close(timeout))
}

/// Parses every complete response in `bytes` (none of them to HEAD), in
/// order, and returns them with the unparsed rest.
pub fn parse_responses(bytes: &[u8]) -> (Vec<RawResponse>, Vec<u8>) {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(end) = find(rest, b"\r\n\r\n").map(|p| p + 4) {
        let Ok((status, headers)) = parse_response_head(&rest[..end]) else {
            break;
        };
        let mut resp = RawResponse {
            status,
            headers,
            head: rest[..end].to_vec(),
            body: Vec::new(),
        };
        let after = &rest[end..];
        let bodyless = (100..200).contains(&status) || status == 204 || status == 304;
        let used = if bodyless {
            0
        } else if resp.has_token("transfer-encoding", "chunked") {
            match dechunk(after) {
                Some((body, used)) => {
                    resp.body = body;
                    used
                }
                None => break,
            }
        } else if let Some(len) = resp.header("content-length") {
            match len.parse::<usize>() {
                Ok(len) if len <= after.len() => {
                    resp.body = after[..len].to_vec();
                    len
                }
                _ => break,
            }
        } else {
            resp.body = after.to_vec();
            after.len()
        };
        out.push(resp);
        rest = &after[used..];
    }
    (out, rest.to_vec())
}

/// Decodes a complete chunked body at the start of `b`: (body, bytes used).
fn dechunk(b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut i = 0;
    loop {
        let eol = i + find(&b[i..], b"\r\n")?;
        let line = std::str::from_utf8(&b[i..eol]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        i = eol + 2;
        if size == 0 {
            loop {
                let eol = i + find(&b[i..], b"\r\n")?;
                let empty = eol == i;
                i = eol + 2;
                if empty {
                    return Some((body, i));
                }
            }
        }
        body.extend_from_slice(b.get(i..i + size)?);
        i += size;
        if b.get(i..i + 2)? != b"\r\n" {
            return None;
        }
        i += 2;
    }
}

fn parse_response_head(head: &[u8]) -> io::Result<(u16, Vec<(String, String)>)> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not an HTTP response head: {:?}",
                String::from_utf8_lossy(head)
            ),
        )
    };
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    if !parts.next().unwrap_or("").starts_with("HTTP/1.") {
        return Err(bad());
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(bad)?;
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (n, v) = l.split_once(':').ok_or_else(bad)?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok((status, headers))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
