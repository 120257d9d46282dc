//! Shared rate limits in Redis: one budget across every weir instance that
//! names the same server. Each request runs one Lua script (`INCR` the key
//! of the current one-second window, set its expiry on the first count),
//! so counting is atomic in Redis. Every call is bounded by
//! `shared.timeout`; while Redis is unreachable no request waits for it:
//! `on_error` decides at once, a background task reconnects (at most once
//! a second), the loss and the recovery are logged once each, and every
//! request decided without Redis is counted in
//! `weir_shared_limit_errors_total{route}`.
//!
//! Connections are kept per Redis URL for the life of the process, so a
//! reload does not reconnect.

use crate::config::model::{OnError, SharedLimitConfig};
use crate::config::Issue;
use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::AcqRel, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// Default `shared.timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest a background (re)connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Least time between two connect attempts.
const BACKOFF: Duration = Duration::from_secs(1);

const SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";

/// What a shared count came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Requests counted in this window so far, this one included.
    Counted(i64),
    /// Redis could not answer; let the request through.
    Allow,
    /// Redis could not answer; refuse the request.
    Deny,
}

/// One Redis server, shared by every limit that names it.
struct Conn {
    url: String,
    client: redis::Client,
    conn: ArcSwapOption<MultiplexedConnection>,
    connecting: AtomicBool,
    ever_connected: AtomicBool,
    down: AtomicBool,
    last_attempt_ms: AtomicU64,
    ready: Notify,
    script: redis::Script,
}

static CONNS: LazyLock<Mutex<HashMap<String, Arc<Conn>>>> = LazyLock::new(Default::default);

fn now_ms() -> u64 {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    EPOCH.elapsed().as_millis() as u64
}

impl Conn {
    fn get(url: &str, client: redis::Client) -> Arc<Conn> {
        let mut map = CONNS.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(url.to_string())
            .or_insert_with(|| {
                Arc::new(Conn {
                    url: url.to_string(),
                    client,
                    conn: ArcSwapOption::empty(),
                    connecting: AtomicBool::new(false),
                    ever_connected: AtomicBool::new(false),
                    down: AtomicBool::new(false),
                    last_attempt_ms: AtomicU64::new(0),
                    ready: Notify::new(),
                    script: redis::Script::new(SCRIPT),
                })
            })
            .clone()
    }

    /// Starts a background connect unless one runs or the last was < 1 s ago.
    fn connect_in_background(self: &Arc<Self>) {
        let now = now_ms();
        let last = self.last_attempt_ms.load(Relaxed);
        if (last != 0 && now < last + BACKOFF.as_millis() as u64)
            || self.connecting.swap(true, AcqRel)
        {
            return;
        }
        self.last_attempt_ms.store(now.max(1), Relaxed);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.connecting.store(false, Relaxed);
            return;
        };
        let me = self.clone();
        rt.spawn(async move {
            let cfg = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_response_timeout(CONNECT_TIMEOUT);
            match me
                .client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await
            {
                Ok(c) => {
                    me.conn.store(Some(Arc::new(c)));
                    me.ever_connected.store(true, Relaxed);
                    if me.down.swap(false, AcqRel) {
                        log::info!("shared rate limit: Redis {} is reachable again", me.url);
                    }
                }
                Err(e) => me.mark_down(&e.to_string()),
            }
            me.connecting.store(false, Relaxed);
            me.ready.notify_waiters();
        });
    }

    fn mark_down(&self, why: &str) {
        self.conn.store(None);
        if !self.down.swap(true, AcqRel) {
            log::warn!(
                "shared rate limit: Redis {} is unreachable ({why}); on_error decides until it is back",
                self.url
            );
        }
    }

    /// A connection now, or `None` at once (the very first use waits up to
    /// `wait` for the first connect).
    async fn connection(self: &Arc<Self>, wait: Duration) -> Option<MultiplexedConnection> {
        if let Some(c) = self.conn.load_full() {
            return Some((*c).clone());
        }
        let notified = self.ready.notified();
        self.connect_in_background();
        if self.ever_connected.load(Relaxed) || self.down.load(Relaxed) {
            return None;
        }
        let _ = tokio::time::timeout(wait, notified).await;
        self.conn.load_full().map(|c| (*c).clone())
    }
}

/// A route's shared limit.
pub struct SharedLimit {
    conn: Arc<Conn>,
    prefix: String,
    timeout: Duration,
    on_error: OnError,
    errors: Option<prometheus::IntCounter>,
}

impl SharedLimit {
    /// Compiles `rate_limit.shared` at `base` for `route`.
    pub fn compile(
        cfg: &SharedLimitConfig,
        route: &str,
        base: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<SharedLimit> {
        let timeout = cfg.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
        if timeout.is_zero() {
            issues.push(Issue::new(
                format!("{base}.timeout"),
                "must be greater than 0",
            ));
        }
        let client = match redis::Client::open(cfg.redis.as_str()) {
            Ok(c) => c,
            Err(e) => {
                issues.push(Issue::new(
                    format!("{base}.redis"),
                    format!("invalid Redis URL ({e}); write redis://host:port"),
                ));
                return None;
            }
        };
        Some(SharedLimit {
            conn: Conn::get(&cfg.redis, client),
            prefix: format!("weir:rl:{route}:"),
            timeout,
            on_error: cfg.on_error,
            errors: crate::metrics::shared_limit_errors(route),
        })
    }

    fn failed(&self) -> Outcome {
        if let Some(c) = &self.errors {
            c.inc();
        }
        match self.on_error {
            OnError::Allow => Outcome::Allow,
            OnError::Deny => Outcome::Deny,
        }
    }

    /// Counts one request for `key` in the current second.
    pub async fn count(&self, key: u64) -> Outcome {
        let started = Instant::now();
        let Some(mut conn) = self.conn.connection(self.timeout).await else {
            return self.failed();
        };
        let window = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let redis_key = format!("{}{key:016x}:{window}", self.prefix);
        let left = self.timeout.saturating_sub(started.elapsed());
        let mut call = self.conn.script.key(redis_key);
        call.arg(2000);
        match tokio::time::timeout(left, call.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(n)) => Outcome::Counted(n),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                    self.conn.mark_down(&e.to_string());
                    self.conn.connect_in_background();
                }
                self.failed()
            }
            Err(_) => self.failed(),
        }
    }
}
