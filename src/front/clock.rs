//! The request-head deadline (`listeners[].timeouts.header`). Pingora's
//! HTTP/1 server bounds each *read* of a head (its keep-alive or read
//! timeout), never the whole head, so a client sending one byte a minute
//! keeps a connection forever. [`HeadClock`] wraps the connection's
//! stream: while it is armed, the first byte read starts the clock, and a
//! read after the deadline fails with `TimedOut`, which makes Pingora close
//! the connection. The proxy disarms it as soon as Pingora hands over the
//! parsed head (`early_request_filter`, through [`head_done`]), so bodies,
//! responses and upgraded tunnels are never timed by it; the connection
//! front arms it again before each further request on the connection.

use async_trait::async_trait;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN, IO,
};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A client stream whose request heads must arrive within `limit` of
/// their first byte.
pub struct HeadClock {
    inner: Stream,
    limit: Duration,
    /// The listener's keep-alive idle, applied by [`head_done`].
    keepalive: Option<u64>,
    /// A head is being read (set by the front, cleared by the proxy).
    armed: AtomicBool,
    /// The next read starts a new head: forget the old deadline.
    fresh: AtomicBool,
    deadline: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for HeadClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadClock")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .finish()
    }
}

impl HeadClock {
    /// Wraps `inner`, armed for the connection's first head; `keepalive`
    /// is the listener's idle limit between requests (seconds; `None`: off).
    pub fn new(inner: Stream, limit: Duration, keepalive: Option<u64>) -> HeadClock {
        HeadClock {
            inner,
            limit,
            keepalive,
            armed: AtomicBool::new(true),
            fresh: AtomicBool::new(false),
            deadline: None,
            sleep: None,
        }
    }

    /// A new head starts with the next byte read.
    pub fn arm(&self) {
        self.fresh.store(true, Relaxed);
        self.armed.store(true, Relaxed);
    }

    /// The head is complete: reads are no longer timed.
    pub fn disarm(&self) {
        self.armed.store(false, Relaxed);
    }
}

/// The clock of a stream, if the front put one around it.
pub fn clock_of(stream: &Stream) -> Option<&HeadClock> {
    let io: &dyn IO = &**stream;
    io.as_any().downcast_ref::<HeadClock>()
}

/// Called once Pingora has parsed a request head: stops its deadline and
/// sets the listener's keep-alive idle for after the answer. Pingora sets
/// keep-alive from the request alone (`respect_keepalive`: infinite for
/// HTTP/1.1), so this runs for every request; a connection the client or
/// Pingora already chose to close stays closing.
pub fn head_done(session: &mut ServerSession) {
    let Some(keepalive) = session.stream().and_then(clock_of).map(|c| {
        c.disarm();
        c.keepalive
    }) else {
        return;
    };
    if session.get_keepalive().is_some() {
        session.set_keepalive(keepalive);
    }
}

fn too_slow(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("request head not complete within {limit:?} of its first byte"),
    )
}

impl AsyncRead for HeadClock {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.armed.load(Relaxed) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.fresh.swap(false, Relaxed) {
            this.deadline = None;
            this.sleep = None;
        }
        if this.deadline.is_some_and(|d| Instant::now() >= d) {
            log::debug!("closing a connection: {}", too_slow(this.limit));
            return Poll::Ready(Err(too_slow(this.limit)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.deadline.is_none() && buf.filled().len() > before {
                    this.deadline = Some(Instant::now() + this.limit);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let Some(deadline) = this.deadline else {
                    return Poll::Pending;
                };
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        log::debug!("closing a connection: {}", too_slow(this.limit));
                        Poll::Ready(Err(too_slow(this.limit)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for HeadClock {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeadClock {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadClock {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadClock {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadClock {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadClock {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadClock {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadClock {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(limit: Duration) -> (HeadClock, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(server));
        (HeadClock::new(stream, limit, Some(60)), client)
    }

    #[tokio::test]
    async fn a_trickled_head_times_out_and_a_disarmed_one_does_not() {
        let (mut clock, mut client) = pair(Duration::from_millis(300)).await;
        let mut buf = [0u8; 16];
        client.write_all(b"G").await.unwrap();
        assert_eq!(clock.read(&mut buf).await.unwrap(), 1);
        // Nothing more arrives: the read fails at the deadline.
        let e = clock.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // Disarmed, reads wait as long as it takes.
        clock.disarm();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            client.write_all(b"x").await.unwrap();
            client
        });
        assert_eq!(clock.read(&mut buf).await.unwrap(), 1);
        // Armed again, the clock starts at the next byte, not before.
        clock.arm();
        let mut client = writer.await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        client.write_all(b"y").await.unwrap();
        assert_eq!(clock.read(&mut buf).await.unwrap(), 1);
    }

    #[test]
    fn found_through_a_stream() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (clock, _client) = pair(Duration::from_secs(1)).await;
            let stream: Stream = Box::new(clock);
            assert!(clock_of(&stream).is_some());
        });
    }
}
