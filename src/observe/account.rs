//! The account of a graceful upgrade, kept by the old process: how many
//! requests it finished after handing its sockets over, how many it had to
//! cut when its shutdown timeout ran out (normally 0), and how long it
//! took from the hand-over to its exit. Written at exit to
//! `<pid_file>.upgrade` (atomically, never through a symlink) for
//! `weir upgrade` and the new process, which logs it and keeps it in its
//! events ring.
//!
//! Counting costs one atomic increment when a request starts and one when
//! it ends; a request the runtime dropped at the shutdown timeout never
//! ends, which is how the cut ones are counted.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
static FINISHED_AFTER: AtomicU64 = AtomicU64::new(0);
static HANDOVER: OnceLock<Instant> = OnceLock::new();

/// What the old process did after the hand-over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The old process.
    pub pid: u32,
    /// Requests it finished after the hand-over.
    pub finished_after_handover: u64,
    /// Requests still running when its shutdown timeout ran out.
    pub cut: u64,
    /// From the hand-over to its exit, in milliseconds.
    pub duration_ms: u64,
}

impl Account {
    /// One line for people.
    pub fn describe(&self) -> String {
        format!(
            "pid {} finished {} requests after the hand-over, cut {} at the end of its shutdown timeout, and exited {:.1} s after the hand-over",
            self.pid,
            self.finished_after_handover,
            self.cut,
            self.duration_ms as f64 / 1000.0
        )
    }
}

/// A request started.
pub fn request_started() {
    IN_FLIGHT.fetch_add(1, Relaxed);
}

/// A request ended (answered, failed or abandoned by its client).
pub fn request_finished() {
    IN_FLIGHT.fetch_sub(1, Relaxed);
    if HANDOVER.get().is_some() {
        FINISHED_AFTER.fetch_add(1, Relaxed);
    }
}

/// The listening sockets are being handed to a new process.
pub fn handover() {
    let _ = HANDOVER.set(Instant::now());
}

/// Where the account of the process with `pid_file` goes.
pub fn path(pid_file: &str) -> PathBuf {
    PathBuf::from(format!("{pid_file}.upgrade"))
}

/// At exit: when this process handed over, logs its account and writes it.
pub fn finish(pid_file: &str) {
    let Some(at) = HANDOVER.get() else { return };
    let account = Account {
        pid: std::process::id(),
        finished_after_handover: FINISHED_AFTER.load(Relaxed),
        cut: IN_FLIGHT.load(Relaxed),
        duration_ms: at.elapsed().as_millis() as u64,
    };
    log::info!("upgrade: {}", account.describe());
    let text = serde_json::to_string(&account).unwrap_or_default();
    if let Err(e) = crate::files::write_atomic(&path(pid_file), text.as_bytes(), 0o644) {
        log::warn!("cannot write the upgrade account next to {pid_file}: {e}");
    }
}

/// The account the process `pid` left next to `pid_file`, if any.
pub fn read(pid_file: &str, pid: u32) -> Option<Account> {
    let text = std::fs::read_to_string(path(pid_file)).ok()?;
    serde_json::from_str::<Account>(&text)
        .ok()
        .filter(|a| a.pid == pid)
}

/// The background service of a process started with `-u`: waits for the
/// account of the process it took over from, then logs it and records the
/// event (bounded: 15 minutes at most, polling every 200 ms).
pub struct Collector {
    /// The shared pid file.
    pub pid_file: String,
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for Collector {
    async fn start(&self, shutdown: pingora_core::server::ShutdownWatch) {
        collect(self.pid_file.clone(), shutdown).await;
    }
}

async fn collect(pid_file: String, mut shutdown: pingora_core::server::ShutdownWatch) {
    let me = std::process::id();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(900);
    let before = modified(&path(&pid_file));
    while tokio::time::Instant::now() < deadline {
        let now = modified(&path(&pid_file));
        if now.is_some() && now != before {
            if let Some(a) = std::fs::read_to_string(path(&pid_file))
                .ok()
                .and_then(|t| serde_json::from_str::<Account>(&t).ok())
                .filter(|a| a.pid != me)
            {
                log::info!("upgrade done: {}", a.describe());
                crate::observe::events::record("upgrade", None, None, a.describe());
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}
