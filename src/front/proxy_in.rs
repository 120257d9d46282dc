//! PROXY protocol on accepted connections (`listeners[].proxy_protocol`):
//! the header is read from Pingora's raw L4 stream, bytes read past it are
//! put back (`rewind`), and its source address replaces the socket peer in
//! the stream's digest, where every later reader (client address, trusted
//! proxies, X-Forwarded-For, logs) finds it. The local address stays the
//! socket's, so the accepting listener is still told by its address.
//!
//! https listeners read it before the TLS handshake, in the accept task
//! ([`read_l4`], from `super::listen`); plain http listeners read it in the
//! connection front ([`read_on_stream`]).

use crate::proxy_protocol;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream, IO};
use pingora_error::{Error, ErrorType, Result};
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::time::Duration;

/// The socket's peer address as the digest has it.
fn peer_addr<S: GetSocketDigest + ?Sized>(stream: &S) -> Option<SocketAddr> {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied())
}

/// Reads the PROXY header at the start of `l4` within `limit`, puts back
/// what was read past it and, when the header names a client, makes that
/// the stream's peer address. Returns the client address it set.
pub async fn read_l4(l4: &mut L4Stream, limit: Duration) -> Result<Option<SocketAddr>> {
    let read = tokio::time::timeout(limit, proxy_protocol::read(l4)).await;
    let (header, rest) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, format!("PROXY header: {e}"))
        }
        Err(_) => {
            return Error::e_explain(
                ErrorType::ReadTimedout,
                format!("no complete PROXY header within {limit:?}"),
            )
        }
    };
    l4.rewind(&rest);
    let Some(source) = header.source else {
        return Ok(None);
    };
    let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
    // A new cell is empty, so `set` cannot fail; the local address is
    // still read from the socket.
    let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(source)));
    l4.set_socket_digest(digest);
    Ok(Some(source))
}

/// The PROXY header of a plain (non-TLS) connection, read in the front:
/// the stream with its peer replaced, or `None` (logged) to close it.
pub async fn read_on_stream(stream: Stream, limit: Duration, listener: &str) -> Option<Stream> {
    let peer = peer_addr(&*stream);
    let any = <dyn IO>::into_any(stream);
    let Ok(mut l4) = any.downcast::<L4Stream>() else {
        log::warn!("listener {listener}: cannot read a PROXY header on this stream; closing it");
        return None;
    };
    match read_l4(&mut l4, limit).await {
        Ok(_) => Some(l4),
        Err(e) => {
            log::info!("listener {listener}: closing a connection from {peer:?}: {e}");
            None
        }
    }
}
