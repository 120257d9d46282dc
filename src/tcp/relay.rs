//! Relaying bytes both ways between a client and a backend: one pump per
//! direction, running together so neither side's full buffer can stall the
//! other. An end of stream is passed on as a half-close (the other
//! direction keeps flowing); the tunnel ends when both directions are done,
//! when either side fails, when no byte moves either way for `idle`, or
//! when weir is stopping and the grace period has passed.

use pingora_core::server::ShutdownWatch;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read per read call, per direction.
const CHUNK: usize = 16 << 10;

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed their end.
    Closed,
    /// Reading from or writing to the client failed (reset).
    ClientError,
    /// Reading from or writing to the backend failed (reset).
    BackendError,
    /// No bytes moved either way for `tunnel_idle`.
    Idle,
    /// weir stopped (or handed over to a new process) and the grace period passed.
    Stopping,
}

/// Bytes moved, by direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// From the client to the backend.
    pub from_client: u64,
    /// From the backend to the client.
    pub to_client: u64,
}

/// Which side of a pump failed.
#[derive(Debug, Clone, Copy)]
enum Failed {
    Read,
    Write,
}

/// The last time a byte moved, as milliseconds since the tunnel opened.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Relaxed);
    }

    /// Returns once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.opened + Duration::from_millis(self.last_ms.load(Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// Copies `from` to `to` until `from` ends (then half-closes `to`).
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    count: &AtomicU64,
    activity: &Activity,
) -> Result<(), Failed>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await.map_err(|_| Failed::Read)?;
        if n == 0 {
            // The other side may still send: only our direction is done.
            let _ = to.shutdown().await;
            return Ok(());
        }
        activity.touch();
        to.write_all(&buf[..n]).await.map_err(|_| Failed::Write)?;
        to.flush().await.map_err(|_| Failed::Write)?;
        count.fetch_add(n as u64, Relaxed);
        activity.touch();
    }
}

/// Resolves `grace` after weir starts stopping (a stop or an upgrade);
/// never, if it does not.
pub async fn stopping(mut shutdown: ShutdownWatch, grace: Duration) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    tokio::time::sleep(grace).await;
}

/// Relays between `client` and `backend` until the tunnel ends; returns why
/// and how many bytes moved each way.
pub async fn relay<C, B>(
    client: C,
    backend: B,
    idle: Duration,
    stop: impl Future<Output = ()>,
) -> (End, Totals)
where
    C: AsyncRead + AsyncWrite + Send,
    B: AsyncRead + AsyncWrite + Send,
{
    let activity = Activity {
        opened: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let (client_read, client_write) = tokio::io::split(client);
    let (backend_read, backend_write) = tokio::io::split(backend);
    let upstream = async {
        pump(client_read, backend_write, &up, &activity)
            .await
            .map_err(|f| match f {
                Failed::Read => End::ClientError,
                Failed::Write => End::BackendError,
            })
    };
    let downstream = async {
        pump(backend_read, client_write, &down, &activity)
            .await
            .map_err(|f| match f {
                Failed::Read => End::BackendError,
                Failed::Write => End::ClientError,
            })
    };
    let end = tokio::select! {
        r = async { tokio::try_join!(upstream, downstream) } => match r {
            Ok(_) => End::Closed,
            Err(e) => e,
        },
        _ = activity.idle_for(idle) => End::Idle,
        _ = stop => End::Stopping,
    };
    let totals = Totals {
        from_client: up.load(Relaxed),
        to_client: down.load(Relaxed),
    };
    (end, totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn relays_both_ways_and_half_closes() {
        let (client, mut client_peer) = duplex(1024);
        let (backend, mut backend_peer) = duplex(1024);
        let task = tokio::spawn(relay(
            client,
            backend,
            Duration::from_secs(5),
            std::future::pending(),
        ));
        client_peer.write_all(b"hello").await.unwrap();
        client_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        backend_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        backend_peer.write_all(b"world!").await.unwrap();
        backend_peer.shutdown().await.unwrap();
        let mut back = Vec::new();
        client_peer.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"world!");
        let (end, totals) = task.await.unwrap();
        assert_eq!(end, End::Closed);
        assert_eq!(
            totals,
            Totals {
                from_client: 5,
                to_client: 6
            }
        );
    }

    #[tokio::test]
    async fn idle_tunnels_end() {
        let (client, _client_peer) = duplex(64);
        let (backend, _backend_peer) = duplex(64);
        let started = Instant::now();
        let (end, _) = relay(
            client,
            backend,
            Duration::from_millis(100),
            std::future::pending(),
        )
        .await;
        assert_eq!(end, End::Idle);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
