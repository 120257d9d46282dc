use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Read (and write/connect) timeout used by every client helper.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code from the status line.
    pub status: u16,
    /// Headers in order received; names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked, lossily decoded as UTF-8).
    pub body: String,
}

impl Response {
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

    /// The `x-backend` header (which test backend answered), or `""`.
    pub fn backend(&self) -> String {
        self.header("x-backend").unwrap_or("").to_string()
    }

    /// The echo body of a [`TestBackend`](super::TestBackend), if the body is one.
    pub fn echo(&self) -> Option<Echo> {
        Echo::parse(&self.body)
    }

    /// Value of request header `name` as the backend received it (from the echo body).
    pub fn echoed_header(&self, name: &str) -> Option<String> {
        let echo = self.echo()?;
        echo.headers
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Raw request target as the backend received it (from the echo body).
    pub fn echoed_path(&self) -> Option<String> {
        self.echo().map(|e| e.path)
    }

    /// Request method as the backend received it (from the echo body).
    pub fn echoed_method(&self) -> Option<String> {
        self.echo().map(|e| e.method)
    }
}

/// The JSON body a [`TestBackend`](super::TestBackend) answers with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Echo {
    /// Backend name.
    pub backend: String,
    /// Request method received.
    pub method: String,
    /// Raw request target received.
    pub path: String,
    /// Request headers received (lowercased names, duplicates joined with ", ").
    pub headers: Vec<(String, String)>,
}

impl Echo {
    /// Parses the backend's echo JSON; `None` if `body` is not one.
    pub fn parse(body: &str) -> Option<Echo> {
        let mut p = JsonScan {
            s: body.as_bytes(),
            i: 0,
        };
        let mut echo = Echo::default();
        let mut seen_headers = false;
        p.expect(b'{')?;
        if p.eat(b'}') {
            return None;
        }
        loop {
            let key = p.string()?;
            p.expect(b':')?;
            if key == "headers" {
                seen_headers = true;
                p.expect(b'{')?;
                if !p.eat(b'}') {
                    loop {
                        let name = p.string()?;
                        p.expect(b':')?;
                        let value = p.string()?;
                        echo.headers.push((name, value));
                        if p.eat(b'}') {
                            break;
                        }
                        p.expect(b',')?;
                    }
                }
            } else {
                let value = p.string()?;
                match key.as_str() {
                    "backend" => echo.backend = value,
                    "method" => echo.method = value,
                    "path" => echo.path = value,
                    _ => {}
                }
            }
            if p.eat(b'}') {
                break;
            }
            p.expect(b',')?;
        }
        seen_headers.then_some(echo)
    }
}

/// Minimal scanner for the flat JSON shape the test backend produces.
struct JsonScan<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonScan<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                            self.i += 4;
                            let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)
                                .unwrap_or(char::REPLACEMENT_CHARACTER);
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return None,
                    }
                }
                c => out.push(c),
            }
        }
    }
}

/// Sends `METHOD path HTTP/1.1` on a fresh connection and reads the response.
///
/// Adds `Host: localhost` unless `headers` has a host, `Connection: close`
/// unless given, and `Content-Length: 0` for POST/PUT/PATCH unless a length
/// or transfer-encoding is given. 10 s read timeout.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    request_with_body(addr, method, path, headers, b"")
}

/// Like [`request`] with a body; `Content-Length` is added unless a length
/// or transfer-encoding header is given (then `body` is sent verbatim).
pub fn request_with_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let bytes = build_request(method, path, headers, body, true);
    let mut stream = connect(addr)?;
    stream.write_all(&bytes)?;
    let mut buf = Vec::new();
    read_response(&mut stream, &mut buf, method.eq_ignore_ascii_case("HEAD")).map(|(r, _)| r)
}

/// `GET path` with default headers; panics on I/O error.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[]).unwrap_or_else(|e| panic!("GET {path} via {addr} failed: {e}"))
}

/// `GET path` with `Host: host`; panics on I/O error.
pub fn get_host(addr: SocketAddr, host: &str, path: &str) -> Response {
    request(addr, "GET", path, &[("Host", host)])
        .unwrap_or_else(|e| panic!("GET {path} (Host: {host}) via {addr} failed: {e}"))
}

/// Sends `bytes` verbatim on a fresh connection and parses one response.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> io::Result<Response> {
    let mut stream = connect(addr)?;
    stream.write_all(bytes)?;
    let mut buf = Vec::new();
    read_response(&mut stream, &mut buf, bytes.starts_with(b"HEAD ")).map(|(r, _)| r)
}

/// Sends `bytes` verbatim and returns everything received until the server
/// closes the connection (errors if that takes longer than the read timeout).
pub fn raw_bytes(addr: SocketAddr, bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = connect(addr)?;
    stream.write_all(bytes)?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(out)
}

/// A client that sends several requests over one persistent connection.
pub struct KeepAliveClient {
    addr: SocketAddr,
    stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl KeepAliveClient {
    /// Opens the connection (10 s connect/read/write timeouts).
    pub fn connect(addr: SocketAddr) -> io::Result<KeepAliveClient> {
        Ok(KeepAliveClient {
            addr,
            stream: connect(addr)?,
            buf: Vec::new(),
            closed: false,
        })
    }

    /// Sends a request on the shared connection (like [`request`] but without
    /// adding `Connection: close`); errors if the server closed the connection.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Response> {
        self.send_with_body(method, path, headers, b"")
    }

    /// Like [`KeepAliveClient::send`] with a body.
    pub fn send_with_body(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let bytes = build_request(method, path, headers, body, false);
        self.send_raw(&bytes, method.eq_ignore_ascii_case("HEAD"))
    }

    /// Sends `bytes` verbatim on the shared connection and reads one response.
    pub fn send_raw(&mut self, bytes: &[u8], is_head: bool) -> io::Result<Response> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "connection was already closed by the server",
            ));
        }
        let result = self
            .stream
            .write_all(bytes)
            .and_then(|()| read_response(&mut self.stream, &mut self.buf, is_head));
        match result {
            Ok((resp, eof)) => {
                self.closed = eof;
                Ok(resp)
            }
            Err(e) => {
                self.closed = true;
                Err(e)
            }
        }
    }

    /// True if `resp` announced `Connection: close`.
    pub fn is_closed_by_server(&self, resp: &Response) -> bool {
        resp.header("connection") == Some("close")
    }

    /// The server address this client talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The local (client-side) address of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn has_header(headers: &[(&str, &str)], name: &str) -> bool {
    headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

fn build_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has_header(headers, "host") {
        head.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if close && !has_header(headers, "connection") {
        head.push_str("Connection: close\r\n");
    }
    let wants_length = !body.is_empty()
        || ["POST", "PUT", "PATCH"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method));
    if wants_length
        && !has_header(headers, "content-length")
        && !has_header(headers, "transfer-encoding")
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads more bytes into `buf`; `Ok(0)` means EOF.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut tmp = [0u8; 8192];
    loop {
        match stream.read(&mut tmp) {
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn eof_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string())
}

/// Consumes exactly `n` bytes from `buf`, reading more as needed.
fn take(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> io::Result<Vec<u8>> {
    while buf.len() < n {
        if fill(stream, buf)? == 0 {
            return Err(eof_error("connection closed mid-body"));
        }
    }
    Ok(buf.drain(..n).collect())
}

/// Consumes one CRLF-terminated line (returned without the CRLF).
fn line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    loop {
        if let Some(pos) = find(buf, b"\r\n") {
            let mut l: Vec<u8> = buf.drain(..pos + 2).collect();
            l.truncate(pos);
            return Ok(l);
        }
        if fill(stream, buf)? == 0 {
            return Err(eof_error("connection closed mid-chunk"));
        }
    }
}

/// Reads one final response (skipping 1xx interim ones). Returns the
/// response and whether the server closed the connection while reading it.
fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    is_head: bool,
) -> io::Result<(Response, bool)> {
    loop {
        let head_end = loop {
            if let Some(pos) = find(buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if fill(stream, buf)? == 0 {
                return Err(if buf.is_empty() {
                    eof_error("connection closed by server before a response")
                } else {
                    eof_error(&format!(
                        "connection closed mid response head: {:?}",
                        String::from_utf8_lossy(buf)
                    ))
                });
            }
        };
        let head: Vec<u8> = buf.drain(..head_end).collect();
        let (status, headers) = parse_response_head(&head)?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let resp_header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let mut eof = false;
        let body = if is_head || status < 200 || status == 204 || status == 304 {
            Vec::new()
        } else if resp_header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            read_chunked(stream, buf)?
        } else if let Some(len) = resp_header("content-length") {
            let len = len.parse::<usize>().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad content-length {len:?}"),
                )
            })?;
            take(stream, buf, len)?
        } else {
            while fill(stream, buf)? != 0 {}
            eof = true;
            std::mem::take(buf)
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        return Ok((
            Response {
                status,
                headers,
                body,
            },
            eof,
        ));
    }
}

fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = line(stream, buf)?;
        let size_line = String::from_utf8_lossy(&size_line);
        let size = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {size:?}"),
            )
        })?;
        if size == 0 {
            while !line(stream, buf)?.is_empty() {}
            return Ok(body);
        }
        body.extend(take(stream, buf, size)?);
        if !line(stream, buf)?.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk end"));
        }
    }
}

type Head = (u16, Vec<(String, String)>);

fn parse_response_head(head: &[u8]) -> io::Result<Head> {
    let bad = |msg: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{msg}: {:?}", String::from_utf8_lossy(head)),
        )
    };
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    if !parts.next().unwrap_or("").starts_with("HTTP/") {
        return Err(bad("not an HTTP response"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (name, value) = l.split_once(':').ok_or_else(|| bad("bad header line"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok((status, headers))
}
