//! Write coalescing for client connections accepted by weir's own accept
//! loop ([`super::listen`]). Pingora writes a response head and a small
//! body as separate writes and flushes at the end; its own accept path puts
//! a 1,460-byte write buffer under every connection for that, held for the
//! connection's whole life. [`Coalesce`] does the same job with a buffer
//! that exists only while a write is pending: an idle connection holds
//! none.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;

/// Writes shorter than this are gathered until a flush (or until they
/// would not fit): one TCP segment, Pingora's downstream default.
pub const COALESCE: usize = 1460;

/// Small writes gathered into one, for one stream (passed to each call).
#[derive(Debug, Default)]
pub struct Coalesce {
    buf: Vec<u8>,
    /// `buf[..written]` is already on the wire.
    written: usize,
}

impl Coalesce {
    /// Writes out what is gathered; the buffer is freed once it is all out.
    pub fn poll_drain<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut *inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// `data` gathered, or written through when it is large.
    pub fn poll_write<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() + data.len() > COALESCE {
            ready!(self.poll_drain(inner, cx))?;
        }
        if data.len() >= COALESCE {
            return Pin::new(inner).poll_write(cx, data);
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(COALESCE);
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    /// Like [`Coalesce::poll_write`] for several slices.
    pub fn poll_write_vectored<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.buf.len() + total > COALESCE {
            ready!(self.poll_drain(inner, cx))?;
        }
        if total >= COALESCE {
            return Pin::new(inner).poll_write_vectored(cx, bufs);
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(COALESCE);
        }
        for b in bufs {
            self.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    /// Writes out what is gathered, then flushes `inner`.
    pub fn poll_flush<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(inner, cx))?;
        Pin::new(inner).poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stream that counts the writes that reach it.
    struct Counting {
        writes: usize,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes += 1;
            self.bytes.extend_from_slice(b);
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn small_writes_leave_as_one_and_large_ones_pass_in_order() {
        let mut inner = Counting {
            writes: 0,
            bytes: Vec::new(),
        };
        let mut c = Coalesce::default();
        let big = vec![b'b'; 5000];
        std::future::poll_fn(|cx| c.poll_write(&mut inner, cx, b"head\r\n\r\n"))
            .await
            .unwrap();
        std::future::poll_fn(|cx| c.poll_write(&mut inner, cx, b"ok"))
            .await
            .unwrap();
        assert_eq!(inner.writes, 0, "nothing leaves before a flush");
        std::future::poll_fn(|cx| c.poll_flush(&mut inner, cx))
            .await
            .unwrap();
        assert_eq!(
            (inner.writes, &inner.bytes[..]),
            (1, &b"head\r\n\r\nok"[..])
        );
        assert_eq!(c.buf.capacity(), 0, "no buffer kept after a flush");

        std::future::poll_fn(|cx| c.poll_write(&mut inner, cx, b"x"))
            .await
            .unwrap();
        let n = std::future::poll_fn(|cx| c.poll_write(&mut inner, cx, &big))
            .await
            .unwrap();
        assert_eq!(n, big.len());
        assert_eq!(inner.writes, 3, "the gathered byte, then the large write");
        assert_eq!(inner.bytes[10], b'x');
        assert_eq!(inner.bytes.len(), 10 + 1 + 5000);
    }

    #[tokio::test]
    async fn a_real_socket_gets_everything() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = l.accept().await.unwrap();
        let mut c = Coalesce::default();
        for part in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"content-length: 2\r\n\r\n",
            b"ok",
        ] {
            std::future::poll_fn(|cx| c.poll_write(&mut server, cx, part))
                .await
                .unwrap();
        }
        std::future::poll_fn(|cx| c.poll_flush(&mut server, cx))
            .await
            .unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    }
}
