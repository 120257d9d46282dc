//! The PROXY protocol (HAProxy's v1 text and v2 binary headers, see
//! <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>): reading
//! the header an L4 balancer in front of weir puts before a connection's
//! first byte, and writing one before weir's own bytes to a backend that
//! wants the client's address.
//!
//! Framing (where a header ends) is decided here, so a reader never
//! consumes more than it hands back; whether a complete header is valid,
//! and its addresses, is `ppp`'s reading. [`parse`] never panics on any
//! input (a property test feeds it arbitrary bytes). Used by the http and
//! https listeners (`crate::front`) and available to any other listener:
//! [`read`] works on any `AsyncRead` and returns the bytes read past the
//! header for the caller to replay.

use crate::config::model::ProxyProtocolVersion;
use async_trait::async_trait;
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, OrErr, Result};
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Longest header accepted: a v1 line is at most 107 bytes; a v2 header
/// is 16 bytes plus addresses and TLVs, which balancers keep short (AWS,
/// GCP and Azure send tens of bytes).
pub const MAX_LEN: usize = 4096;
/// Longest v1 line, CRLF included (the specification's limit).
const V1_MAX: usize = 107;
/// The v2 signature.
const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix.
const V1_PREFIX: &[u8] = b"PROXY ";

/// A complete, valid PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes: what follows is the connection's own data.
    pub len: usize,
    /// The client's address; `None` for v1 `UNKNOWN`, v2 `LOCAL` (the
    /// balancer's own health checks) and v2 unspecified or unix addresses,
    /// where the connection's real peer stands.
    pub source: Option<SocketAddr>,
    /// The address the client connected to, likewise.
    pub destination: Option<SocketAddr>,
}

/// What the start of a connection says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Could still become a valid header with more bytes.
    Incomplete,
    /// Never a valid header, whatever follows (the reason, for logs).
    Invalid(&'static str),
    /// A complete, valid header.
    Complete(Header),
}

/// Reads the PROXY header at the start of `buf` (the first bytes a
/// connection sent). Never panics.
pub fn parse(buf: &[u8]) -> Parsed {
    match buf.first() {
        None => Parsed::Incomplete,
        Some(b'\r') => parse_v2(buf),
        Some(_) => parse_v1(buf),
    }
}

fn parse_v2(buf: &[u8]) -> Parsed {
    let n = buf.len().min(V2_SIG.len());
    if buf.get(..n) != V2_SIG.get(..n) {
        return Parsed::Invalid("no PROXY header");
    }
    // Refuse a wrong version, command, family or protocol as soon as seen.
    if buf.get(12).is_some_and(|&b| !matches!(b, 0x20 | 0x21)) {
        return Parsed::Invalid("invalid PROXY v2 version or command");
    }
    if buf.get(13).is_some_and(|&b| b >> 4 > 3 || b & 0x0F > 2) {
        return Parsed::Invalid("invalid PROXY v2 address family");
    }
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Parsed::Incomplete;
    };
    let len = 16 + usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_LEN {
        return Parsed::Invalid("PROXY v2 header too long");
    }
    let Some(bytes) = buf.get(..len) else {
        return Parsed::Incomplete;
    };
    let Ok(h) = ppp::v2::Header::try_from(bytes) else {
        return Parsed::Invalid("invalid PROXY v2 header");
    };
    if h.len() != len {
        return Parsed::Invalid("invalid PROXY v2 header");
    }
    let (source, destination) = match (h.command, h.addresses) {
        (ppp::v2::Command::Local, _) => (None, None),
        (_, ppp::v2::Addresses::IPv4(a)) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        (_, ppp::v2::Addresses::IPv6(a)) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        (_, ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_)) => (None, None),
    };
    if source.is_some() && h.protocol != ppp::v2::Protocol::Stream {
        return Parsed::Invalid("PROXY v2 header for a datagram connection");
    }
    Parsed::Complete(Header {
        len,
        source,
        destination,
    })
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let n = buf.len().min(V1_PREFIX.len());
    if buf.get(..n) != V1_PREFIX.get(..n) {
        return Parsed::Invalid("no PROXY header");
    }
    let window = buf.get(..buf.len().min(V1_MAX)).unwrap_or(buf);
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Parsed::Invalid("PROXY v1 header too long")
        } else {
            Parsed::Incomplete
        };
    };
    let len = nl + 1;
    if nl == 0 || buf.get(nl - 1) != Some(&b'\r') {
        return Parsed::Invalid("PROXY v1 header not ended by CRLF");
    }
    let Some(line) = buf.get(..len) else {
        return Parsed::Incomplete;
    };
    let Ok(h) = ppp::v1::Header::try_from(line) else {
        return Parsed::Invalid("invalid PROXY v1 header");
    };
    if h.header.len() != len {
        return Parsed::Invalid("invalid PROXY v1 header");
    }
    let (source, destination) = match h.addresses {
        ppp::v1::Addresses::Tcp4(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        ppp::v1::Addresses::Tcp6(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        ppp::v1::Addresses::Unknown => (None, None),
    };
    Parsed::Complete(Header {
        len,
        source,
        destination,
    })
}

/// Reads a PROXY header from the start of `r`: the header and the bytes
/// read past it (the connection's own first bytes, for the caller to
/// replay). Errors: `InvalidData` for anything but a valid header,
/// `UnexpectedEof` when the peer closes first. The caller bounds the time.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(Header, Vec<u8>)> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        match parse(&buf) {
            Parsed::Complete(h) => {
                let rest = buf.split_off(h.len.min(buf.len()));
                return Ok((h, rest));
            }
            Parsed::Invalid(why) => return Err(io::Error::new(io::ErrorKind::InvalidData, why)),
            Parsed::Incomplete => {}
        }
        let room = MAX_LEN.saturating_sub(buf.len()).clamp(1, chunk.len());
        let n = r.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before its PROXY header ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Both addresses in one family, as a header needs: IPv4-mapped IPv6
/// addresses as IPv4, and an IPv4 address next to an IPv6 one mapped.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (s, d) = (canon(source), canon(destination));
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if s.is_ipv4() == d.is_ipv4() {
        (s, d)
    } else {
        (v6(s), v6(d))
    }
}

/// A PROXY header naming `source` (the client) and `destination` (the
/// address it connected to).
pub fn encode(
    version: ProxyProtocolVersion,
    source: SocketAddr,
    destination: SocketAddr,
) -> Vec<u8> {
    let (s, d) = same_family(source, destination);
    match version {
        ProxyProtocolVersion::V1 => {
            let family = if s.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            )
            .into_bytes()
        }
        ProxyProtocolVersion::V2 => {
            let mut out = Vec::with_capacity(52);
            out.extend_from_slice(&V2_SIG);
            out.push(0x21); // version 2, PROXY
            match (s.ip(), d.ip()) {
                (IpAddr::V4(si), IpAddr::V4(di)) => {
                    out.extend_from_slice(&[0x11, 0, 12]); // TCP over IPv4
                    out.extend_from_slice(&si.octets());
                    out.extend_from_slice(&di.octets());
                }
                (si, di) => {
                    let v6 = |ip: IpAddr| match ip {
                        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                        IpAddr::V6(v6) => v6,
                    };
                    out.extend_from_slice(&[0x21, 0, 36]); // TCP over IPv6
                    out.extend_from_slice(&v6(si).octets());
                    out.extend_from_slice(&v6(di).octets());
                }
            }
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
            out
        }
    }
}

/// A header that names no client: v1 `UNKNOWN`, v2 `LOCAL` (what a
/// balancer sends on its own connections, such as health checks).
pub fn encode_local(version: ProxyProtocolVersion) -> Vec<u8> {
    match version {
        ProxyProtocolVersion::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        ProxyProtocolVersion::V2 => {
            let mut out = V2_SIG.to_vec();
            out.extend_from_slice(&[0x20, 0x00, 0, 0]);
            out
        }
    }
}

/// Pingora's L4 connector for backends that want a PROXY header: connects
/// as Pingora does (same error kinds), within the peer's connect timeout,
/// and writes the header before anything else (before TLS too).
#[derive(Debug)]
pub struct SendHeader {
    header: Vec<u8>,
    connect_timeout: Option<Duration>,
}

impl SendHeader {
    /// A connector that sends `header` first.
    pub fn new(header: Vec<u8>, connect_timeout: Option<Duration>) -> SendHeader {
        SendHeader {
            header,
            connect_timeout,
        }
    }
}

#[async_trait]
impl L4Connect for SendHeader {
    async fn connect(&self, addr: &PingoraAddr) -> Result<L4Stream> {
        let Some(inet) = addr.as_inet() else {
            return Error::e_explain(
                ErrorType::ConnectError,
                "PROXY protocol needs a TCP backend",
            );
        };
        let attempt = async {
            let mut tcp = pingora_core::protocols::l4::ext::connect(inet, None).await?;
            tcp.write_all(&self.header)
                .await
                .or_err(ErrorType::ConnectError, "while sending the PROXY header")?;
            Ok::<_, Box<Error>>(tcp)
        };
        let tcp = match self.connect_timeout {
            Some(t) => match tokio::time::timeout(t, attempt).await {
                Ok(r) => r?,
                Err(_) => {
                    return Error::e_explain(
                        ErrorType::ConnectTimedout,
                        format!("timeout {t:?} connecting to server {inet}"),
                    )
                }
            },
            None => attempt.await?,
        };
        Ok(L4Stream::from(tcp))
    }
}

/// A connector that sends a `LOCAL` / `UNKNOWN` header (for health
/// checks of backends that want a PROXY header).
pub fn local_connector(
    version: ProxyProtocolVersion,
    connect_timeout: Duration,
) -> Arc<dyn L4Connect + Send + Sync> {
    Arc::new(SendHeader::new(
        encode_local(version),
        Some(connect_timeout),
    ))
}

/// Keys of per-client connection pools (random per process, so nobody can
/// aim two clients at one key).
static POOL_KEYS: LazyLock<std::collections::hash_map::RandomState> =
    LazyLock::new(std::collections::hash_map::RandomState::new);

/// The source address a header names for a request: the connection's
/// peer (with its port) when it is the client, else the client address
/// weir settled on (`trusted_proxies` and X-Forwarded-For, SPEC §4) with
/// port 0, which is all an X-Forwarded-For entry says.
pub fn client_source(peer: Option<SocketAddr>, client: Option<IpAddr>) -> Option<SocketAddr> {
    match (peer, client) {
        (Some(p), Some(c)) if p.ip().to_canonical() == c.to_canonical() => Some(p),
        (_, Some(c)) => Some(SocketAddr::new(c, 0)),
        (p, None) => p,
    }
}

/// The header for a request from `source` to `destination`; a `LOCAL` /
/// `UNKNOWN` one when either is unknown (never a made-up address).
pub fn header_for(
    version: ProxyProtocolVersion,
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
) -> Vec<u8> {
    match (source, destination) {
        (Some(s), Some(d)) => encode(version, s, d),
        _ => encode_local(version),
    }
}

/// Makes `peer` start each new connection with `header`, and keeps those
/// connections to requests with the same header: Pingora pools upstream
/// connections by the peer's hash, which includes `group_key`, so setting
/// it from the header's bytes means a pooled connection (HTTP/1 keep-alive
/// or a shared h2 connection) is only ever reused for a request that would
/// send the same header (the same client address and port), never for
/// another client's.
pub fn attach(peer: &mut HttpPeer, header: Vec<u8>) {
    // Never 0, the key of peers without a header.
    peer.group_key = POOL_KEYS.hash_one(&header) | 1;
    peer.options.custom_l4 = Some(Arc::new(SendHeader::new(
        header,
        peer.options.connection_timeout,
    )));
}

#[cfg(test)]
mod tests;
