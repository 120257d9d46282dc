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
//!
//! It also lets the front wait for a request's first bytes *outside*
//! Pingora's per-request future ([`HeadClock::poll_first_bytes`]): those
//! bytes are read here (through a per-thread scratch buffer, so a waiting
//! connection holds no buffer) and handed to Pingora's parser by the next
//! reads, so waiting costs no extra read.
//!
//! Streams from weir's accept loop have no write buffer of their own, so it
//! gathers small writes until a flush ([`super::coalesce`]).

use super::coalesce::Coalesce;
use super::refusal;
use crate::access_log::AccessLog;
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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How many bytes of a request's start [`HeadClock::poll_first_bytes`]
/// reads at most: Pingora's own first read of a head (its
/// `INIT_HEADER_BUF_SIZE`), so a head costs no more reads than without the
/// front. They are read into one scratch buffer per thread and kept in an
/// allocation of their exact size until Pingora has parsed them.
pub const FIRST_BYTES: usize = 4096;

thread_local! {
    static SCRATCH: std::cell::RefCell<Box<[u8; FIRST_BYTES]>> =
        std::cell::RefCell::new(Box::new([0; FIRST_BYTES]));
}

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
    /// Bytes read by [`HeadClock::poll_first_bytes`] for this request;
    /// Pingora has read `first[..first_at]` of them.
    first: Option<Box<[u8]>>,
    first_at: usize,
    /// Bytes handed to Pingora since the clock was last armed.
    delivered: usize,
    /// Set by [`head_done`]: the head is exactly the first bytes read for
    /// this request (so its parsed length is its length on the wire), and
    /// that length.
    exact_head: AtomicBool,
    head_len: AtomicUsize,
    /// Small writes gathered until a flush (see [`super::coalesce`]; on a
    /// TLS stream each write would otherwise be a record and a send).
    out: Coalesce,
    /// Where an answer to a refused head is logged ([`super::refusal`]).
    log: Option<Arc<AccessLog>>,
    /// weir's answer to a refused head is out; Pingora's is dropped.
    refused: bool,
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
    /// is the listener's idle limit between requests (seconds; `None`: off);
    /// `log` is the access log, for heads Pingora refuses.
    pub fn new(
        inner: Stream,
        limit: Duration,
        keepalive: Option<u64>,
        log: Option<Arc<AccessLog>>,
    ) -> HeadClock {
        HeadClock {
            inner,
            limit,
            keepalive,
            armed: AtomicBool::new(true),
            fresh: AtomicBool::new(false),
            deadline: None,
            sleep: None,
            first: None,
            first_at: 0,
            delivered: 0,
            exact_head: AtomicBool::new(false),
            head_len: AtomicUsize::new(0),
            out: Coalesce::default(),
            log,
            refused: false,
        }
    }

    /// Whether Pingora certainly read nothing of this connection past the
    /// last request's head: the head arrived alone in the first read, and
    /// nothing was read after it (no body, no next request). Then Pingora
    /// cannot be holding bytes of a pipelined next request. `false` means
    /// "don't know", not "it is".
    pub fn read_only_the_head(&self) -> bool {
        self.exact_head.load(Relaxed) && self.delivered == self.head_len.load(Relaxed)
    }

    /// Records the parsed head (`raw`, as Pingora kept it) for
    /// [`HeadClock::read_only_the_head`].
    fn note_head(&self, raw: &[u8]) {
        let first = self.first.as_deref().unwrap_or_default();
        let exact = self.first_at == first.len() && self.delivered == raw.len() && raw == first;
        self.exact_head.store(exact, Relaxed);
        self.head_len.store(raw.len(), Relaxed);
    }

    /// Waits until the client sends something (the start of its next
    /// request) and keeps up to [`FIRST_BYTES`] of it for the next reads.
    /// `Ok(0)`: the client closed the connection. The head deadline starts
    /// with these bytes, as with any read of an armed clock.
    pub fn poll_first_bytes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if let Some(kept) = self.first.as_deref().filter(|f| self.first_at < f.len()) {
            return Poll::Ready(Ok(kept.len() - self.first_at));
        }
        let read = SCRATCH.with(|scratch| {
            // Only this synchronous poll borrows it; `try_borrow_mut` keeps a
            // (never expected) reentrant use from panicking.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return Poll::Ready(Err(io::Error::other("first-bytes scratch in use")));
            };
            let mut buf = ReadBuf::new(&mut scratch[..]);
            match self.poll_timed(cx, &mut buf) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(Box::<[u8]>::from(buf.filled()))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        });
        match read {
            Poll::Ready(Ok(bytes)) => {
                let n = bytes.len();
                self.first = Some(bytes);
                self.first_at = 0;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the bytes read so far ([`HeadClock::poll_first_bytes`]) are
    /// the start of the HTTP/2 connection preface (or all of it, and more).
    /// No HTTP/1 request starts with `PRI` (the method is reserved for the
    /// preface, RFC 9113 §3.4); fewer than three bytes (`P`, `PR`: a `PUT`
    /// or a `PROPFIND` cut short) are left to the HTTP/1 parser, which reads
    /// on (an h2 client writes its preface in one piece).
    pub fn starts_with_h2_preface(&self) -> bool {
        const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let kept = self.first.as_deref().unwrap_or_default();
        let kept = &kept[self.first_at.min(kept.len())..];
        kept.len() >= 3 && (kept.starts_with(PREFACE) || PREFACE.starts_with(kept))
    }

    /// A new head starts with the next byte read.
    pub fn arm(&mut self) {
        self.fresh.store(true, Relaxed);
        self.armed.store(true, Relaxed);
        self.delivered = 0;
        self.exact_head.store(false, Relaxed);
        if self
            .first
            .as_ref()
            .is_some_and(|f| self.first_at == f.len())
        {
            // Read bytes of an earlier head no longer count as this one's,
            // and an idle connection keeps no buffer.
            self.first = None;
            self.first_at = 0;
        }
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
    let Some(h1) = session.as_http1() else {
        return;
    };
    let Some(keepalive) = clock_of(h1.stream()).map(|c| {
        c.disarm();
        c.note_head(&h1.get_headers_raw_bytes());
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

impl HeadClock {
    /// A read of the inner stream, timed while the clock is armed.
    fn poll_timed(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.armed.load(Relaxed) {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        if self.fresh.swap(false, Relaxed) {
            self.deadline = None;
            self.sleep = None;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            log::debug!("closing a connection: {}", too_slow(self.limit));
            return Poll::Ready(Err(too_slow(self.limit)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if self.deadline.is_none() && buf.filled().len() > before {
                    self.deadline = Some(Instant::now() + self.limit);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let Some(deadline) = self.deadline else {
                    return Poll::Pending;
                };
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        log::debug!("closing a connection: {}", too_slow(self.limit));
                        Poll::Ready(Err(too_slow(self.limit)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
    }
}

impl AsyncRead for HeadClock {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(kept) = this.first.as_deref().filter(|f| this.first_at < f.len()) {
            let kept = &kept[this.first_at..];
            let n = kept.len().min(buf.remaining());
            buf.put_slice(&kept[..n]);
            this.first_at += n;
            this.delivered += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = this.poll_timed(cx, buf);
        this.delivered += buf.filled().len() - before;
        read
    }
}

impl HeadClock {
    /// A write while a head is being read: Pingora answering a head it
    /// refused. Its bytes are dropped; weir's answer goes out once instead
    /// (see [`refusal`]).
    fn poll_refuse(&mut self, cx: &mut Context<'_>, written: &[u8]) -> Poll<io::Result<usize>> {
        if self.refused {
            return Poll::Ready(Ok(written.len()));
        }
        let peer = self
            .inner
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let elapsed = self.deadline.map_or(Duration::ZERO, |d| {
            (Instant::now() + self.limit).saturating_duration_since(d)
        });
        let refused = refusal::Refused {
            status: refusal::status_of(written),
            first: self.first.as_deref().unwrap_or_default(),
            peer,
            elapsed,
        };
        let id = crate::forward::new_request_id();
        let id = id.to_str().unwrap_or("-");
        let answer = refusal::answer(refused.status, id);
        ready!(self.out.poll_write(&mut self.inner, cx, &answer))?;
        self.refused = true;
        // Recorded once the answer is accepted (a pending write is retried).
        refusal::record(&refused, id, self.log.as_deref());
        Poll::Ready(Ok(written.len()))
    }
}

impl AsyncWrite for HeadClock {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.armed.load(Relaxed) {
            return this.poll_refuse(cx, buf);
        }
        this.out.poll_write(&mut this.inner, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.out.poll_flush(&mut this.inner, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.out.poll_drain(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.armed.load(Relaxed) {
            let total = bufs.iter().map(|b| b.len()).sum();
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return match this.poll_refuse(cx, first) {
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(total)),
                other => other,
            };
        }
        this.out.poll_write_vectored(&mut this.inner, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Drop for HeadClock {
    fn drop(&mut self) {
        // Pingora drops a failed session without a flush (a response cut
        // short by its backend): what was gathered still goes out, as far
        // as the socket takes it now, so the client sees the answer end
        // early rather than no answer at all.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = self.out.poll_drain(&mut self.inner, &mut cx);
    }
}

#[async_trait]
impl Shutdown for HeadClock {
    async fn shutdown(&mut self) {
        // What is gathered goes out first; a failure here only means the
        // client is gone, as the shutdown below would find too.
        let (out, inner) = (&mut self.out, &mut self.inner);
        let _ = std::future::poll_fn(|cx| out.poll_drain(inner, cx)).await;
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
    /// Pingora peeks for the h2c preface on a stream the front hands it
    /// ([`HeadClock::starts_with_h2_preface`]): the bytes the clock already
    /// read are what a peek of the socket would have shown. With fewer kept
    /// than asked for, "could not peek" (Pingora then keeps its h2c
    /// setting, which the front only uses for preface connections).
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let kept = self.first.as_deref().unwrap_or_default();
        let kept = &kept[self.first_at.min(kept.len())..];
        if kept.is_empty() {
            return self.inner.try_peek(buf).await;
        }
        if kept.len() < buf.len() {
            return Ok(false);
        }
        buf.copy_from_slice(&kept[..buf.len()]);
        Ok(true)
    }
}

#[cfg(test)]
#[path = "clock_tests.rs"]
mod tests;
