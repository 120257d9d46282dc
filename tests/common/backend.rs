use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// Largest request head the backend accepts before answering 400.
const MAX_HEAD: usize = 64 * 1024;

/// Options for [`TestBackend::start_with`] / [`TestBackend::start_on_with`].
#[derive(Debug, Clone)]
pub struct BackendOpts {
    /// How long to wait (after reading the request) before answering.
    pub delay: Duration,
    /// HTTP status code of every answer (default 200).
    pub status: u16,
}

impl Default for BackendOpts {
    fn default() -> Self {
        BackendOpts {
            delay: Duration::ZERO,
            status: 200,
        }
    }
}

/// State shared between the test thread and the backend's runtime.
struct Shared {
    name: String,
    delay_nanos: AtomicU64,
    status: AtomicU16,
    requests: AtomicUsize,
    received: AtomicUsize,
    in_flight: AtomicUsize,
    cancelled: AtomicUsize,
}

/// A tiny HTTP/1.1 origin server on 127.0.0.1 that echoes each request as JSON.
///
/// Runs on its own thread with its own multi-thread tokio runtime, so tests
/// can stay synchronous. Stopped (listener and all connections closed) on
/// [`TestBackend::stop`] or drop.
pub struct TestBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop_tx: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestBackend {
    /// Starts a backend named `name` on 127.0.0.1 with an ephemeral port.
    pub fn start(name: &str) -> TestBackend {
        Self::spawn(name, 0, BackendOpts::default())
    }

    /// Starts a backend on an ephemeral port with the given options.
    pub fn start_with(name: &str, opts: BackendOpts) -> TestBackend {
        Self::spawn(name, 0, opts)
    }

    /// Starts a backend on a specific port (e.g. to bring a stopped backend
    /// back). Uses SO_REUSEADDR and retries `AddrInUse` for up to 5 s.
    pub fn start_on(name: &str, port: u16) -> TestBackend {
        Self::spawn(name, port, BackendOpts::default())
    }

    /// Like [`TestBackend::start_on`] with options.
    pub fn start_on_with(name: &str, port: u16, opts: BackendOpts) -> TestBackend {
        Self::spawn(name, port, opts)
    }

    fn spawn(name: &str, port: u16, opts: BackendOpts) -> TestBackend {
        let shared = Arc::new(Shared {
            name: name.to_string(),
            delay_nanos: AtomicU64::new(duration_nanos(opts.delay)),
            status: AtomicU16::new(opts.status),
            requests: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
        });
        let (addr_tx, addr_rx) = mpsc::channel::<io::Result<SocketAddr>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("backend-{name}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("backend-worker")
                    .enable_all()
                    .build()
                    .expect("build backend runtime");
                rt.block_on(serve(port, thread_shared, addr_tx, stop_rx));
                // Dropping the runtime drops every connection task, closing its socket.
                rt.shutdown_timeout(Duration::from_secs(5));
            })
            .expect("spawn backend thread");
        let addr = match addr_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                let _ = thread.join();
                panic!("backend {name}: cannot listen on 127.0.0.1:{port}: {e}");
            }
            Err(e) => panic!("backend {name}: did not report its address: {e}"),
        };
        TestBackend {
            addr,
            shared,
            stop_tx: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The address the backend listens (or listened) on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the backend listens (or listened) on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The backend's name (sent as `x-backend` and in the JSON body).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Total requests answered (counted just before the answer is written).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Request heads received (counted as soon as a head is parsed, before
    /// its body is read and whether or not an answer follows).
    pub fn received(&self) -> usize {
        self.shared.received.load(Ordering::SeqCst)
    }

    /// Requests currently being handled (head read, answer not yet written).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Requests whose client disconnected while the backend was delaying.
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Resets the `requests`, `received` and `cancelled` counters to zero.
    pub fn reset_counts(&self) {
        self.shared.requests.store(0, Ordering::SeqCst);
        self.shared.received.store(0, Ordering::SeqCst);
        self.shared.cancelled.store(0, Ordering::SeqCst);
    }

    /// Changes the delay before answering (applies to requests read afterwards).
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_nanos
            .store(duration_nanos(delay), Ordering::SeqCst);
    }

    /// Changes the status code of subsequent answers.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// True until [`TestBackend::stop`] has been called.
    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// Closes the listener and every open connection; returns once the port
    /// refuses connections. Idempotent; also done on drop.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Binds 127.0.0.1:`port` with SO_REUSEADDR, retrying `AddrInUse` on a fixed port.
async fn bind(port: u16) -> io::Result<TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = (|| {
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(1024)
        })();
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(e)
                if port != 0
                    && e.kind() == io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Accept loop; returns when `stop_rx` fires (or its sender is dropped).
async fn serve(
    port: u16,
    shared: Arc<Shared>,
    addr_tx: mpsc::Sender<io::Result<SocketAddr>>,
    stop_rx: oneshot::Receiver<()>,
) {
    let listener = match bind(port).await {
        Ok(listener) => listener,
        Err(e) => {
            let _ = addr_tx.send(Err(e));
            return;
        }
    };
    let _ = addr_tx.send(listener.local_addr());
    let accept_loop = async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(handle_conn(stream, Arc::clone(&shared)));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    tokio::select! {
        _ = stop_rx => {}
        _ = accept_loop => {}
    }
}

/// Counts a request as in flight for as long as it lives.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection with a read buffer (bytes received but not yet consumed).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads more bytes into the buffer; `Ok(0)` means EOF.
    async fn fill(&mut self) -> io::Result<usize> {
        self.buf.reserve(8192);
        self.stream.read_buf(&mut self.buf).await
    }

    /// Reads a request head (up to and including the blank line); `None` on clean EOF.
    async fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            // Tolerate stray CRLFs between requests (RFC 9112 §2.2).
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                return Ok(Some(self.buf.drain(..pos + 4).collect()));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
            }
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Consumes exactly `n` bytes.
    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Consumes one CRLF-terminated line, returning it without the CRLF.
    async fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                line.truncate(pos);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Consumes a chunked body including trailers.
    async fn chunked_body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let line = String::from_utf8_lossy(&line);
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, terminated by an empty line.
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.take(size).await?);
            if !self.line().await?.is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk end"));
            }
        }
    }
}

/// A parsed request head.
struct Request {
    method: String,
    target: String,
    version: String,
    /// Lowercased names, trimmed values, in order received.
    headers: Vec<(String, String)>,
}

impl Request {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// True if a comma-separated header `name` contains `token` (case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

fn parse_head(head: &[u8]) -> Option<Request> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.splitn(3, ' ');
    let method = parts.next().filter(|m| !m.is_empty())?.to_string();
    let target = parts.next().filter(|t| !t.is_empty())?.to_string();
    let version = parts.next().unwrap_or("HTTP/1.0").trim().to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Some(Request {
        method,
        target,
        version,
        headers,
    })
}

async fn handle_conn(stream: TcpStream, shared: Arc<Shared>) {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        let head = match conn.read_head().await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(_) => {
                let _ = conn.stream.write_all(BAD_REQUEST).await;
                return;
            }
        };
        let Some(req) = parse_head(&head) else {
            let _ = conn.stream.write_all(BAD_REQUEST).await;
            return;
        };
        shared.received.fetch_add(1, Ordering::SeqCst);
        let in_flight = InFlight::new(&shared);

        // Request body: chunked or Content-Length (read and discarded).
        let chunked = req.has_token("transfer-encoding", "chunked");
        let content_length = req
            .values("content-length")
            .next()
            .map(|v| v.parse::<usize>());
        let content_length = match content_length {
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                let _ = conn.stream.write_all(BAD_REQUEST).await;
                return;
            }
            None => 0,
        };
        if (chunked || content_length > 0) && req.has_token("expect", "100-continue") {
            let _ = conn
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await;
        }
        let body = if chunked {
            conn.chunked_body().await
        } else {
            conn.take(content_length).await
        };
        if body.is_err() {
            let _ = conn.stream.write_all(BAD_REQUEST).await;
            return;
        }

        let close = req.has_token("connection", "close")
            || (req.version.eq_ignore_ascii_case("HTTP/1.0")
                && !req.has_token("connection", "keep-alive"));

        // Delay, noticing a client that goes away meanwhile.
        let delay = Duration::from_nanos(shared.delay_nanos.load(Ordering::SeqCst));
        if !delay.is_zero() {
            let deadline = tokio::time::Instant::now() + delay;
            loop {
                conn.buf.reserve(4096);
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    r = conn.stream.read_buf(&mut conn.buf) => match r {
                        Ok(0) | Err(_) => {
                            shared.cancelled.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Ok(_) => {} // pipelined bytes: keep them for the next request
                    }
                }
            }
        }

        let status = shared.status.load(Ordering::SeqCst);
        let json = echo_json(&shared.name, &req);
        // 1xx/204/304 answers carry no body (and 204 no content-length).
        let bodyless = status < 200 || status == 204 || status == 304;
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\nx-backend: {}\r\n",
            reason(status),
            shared.name,
        );
        if !bodyless {
            let _ = write!(out, "content-length: {}\r\n", json.len());
        }
        if close {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !bodyless && !req.method.eq_ignore_ascii_case("HEAD") {
            bytes.extend_from_slice(json.as_bytes());
        }
        shared.requests.fetch_add(1, Ordering::SeqCst);
        if conn.stream.write_all(&bytes).await.is_err() {
            return;
        }
        drop(in_flight);
        if close {
            let _ = conn.stream.shutdown().await;
            return;
        }
    }
}

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// `{"backend":..,"method":..,"path":..,"headers":{..}}` with duplicate headers joined by ", ".
fn echo_json(name: &str, req: &Request) -> String {
    let mut merged: Vec<(&str, String)> = Vec::new();
    for (n, v) in &req.headers {
        match merged.iter_mut().find(|(m, _)| m == n) {
            Some((_, joined)) => {
                joined.push_str(", ");
                joined.push_str(v);
            }
            None => merged.push((n, v.clone())),
        }
    }
    let mut out = String::from("{\"backend\":");
    push_json_str(&mut out, name);
    out.push_str(",\"method\":");
    push_json_str(&mut out, &req.method);
    out.push_str(",\"path\":");
    push_json_str(&mut out, &req.target);
    out.push_str(",\"headers\":{");
    for (i, (n, v)) in merged.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, n);
        out.push(':');
        push_json_str(&mut out, v);
    }
    out.push_str("}}");
    out
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
