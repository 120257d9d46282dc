//! A bounded closed-loop load: `threads` clients, each on its own keep-alive
//! connection (reopened when the server closes it), sending `GET path` until
//! `total` requests are done or `limit` has passed, recording each status and
//! latency.

use super::client::KeepAliveClient;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a load loop saw.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Latency of every answered request.
    pub latencies: Vec<Duration>,
    /// Status of every answered request.
    pub statuses: Vec<u16>,
    /// Requests that got no answer (I/O error).
    pub errors: usize,
}

impl LoadResult {
    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    }

    /// How many answers had `status`.
    pub fn count(&self, status: u16) -> usize {
        self.statuses.iter().filter(|&&s| s == status).count()
    }
}

/// Runs the loop; see the module doc.
pub fn run_load(
    addr: SocketAddr,
    path: &str,
    total: usize,
    threads: usize,
    limit: Duration,
) -> LoadResult {
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(LoadResult::default()));
    let deadline = Instant::now() + limit;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (next, out, path) = (next.clone(), out.clone(), path.to_string());
            std::thread::spawn(move || {
                let mut client: Option<KeepAliveClient> = None;
                while next.fetch_add(1, Ordering::SeqCst) < total && Instant::now() < deadline {
                    let c = match client.as_mut() {
                        Some(c) => c,
                        None => match KeepAliveClient::connect(addr) {
                            Ok(c) => client.insert(c),
                            Err(_) => {
                                out.lock().unwrap().errors += 1;
                                continue;
                            }
                        },
                    };
                    let start = Instant::now();
                    let r = c.send("GET", &path, &[]);
                    let took = start.elapsed();
                    let mut o = out.lock().unwrap();
                    match r {
                        Ok(resp) => {
                            if c.is_closed_by_server(&resp) {
                                client = None;
                            }
                            o.latencies.push(took);
                            o.statuses.push(resp.status);
                        }
                        Err(_) => {
                            o.errors += 1;
                            client = None;
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    Arc::try_unwrap(out)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default()
}
