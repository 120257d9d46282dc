//! Live reload inside the running process (SIGHUP, `weir reload`): re-read
//! the file the process started with, validate it in full, build a new
//! snapshot reusing unchanged upstream groups, and swap it atomically. A
//! bad file changes nothing. The outcome is logged and written to a status
//! file next to the pid file, where `weir reload` reads it.

use crate::config::{self, FileConfig};
use crate::snapshot::{SharedSnapshot, Snapshot};
use async_trait::async_trait;
use log::{error, info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Reloads the config of a running process.
pub struct Reloader {
    file: PathBuf,
    snapshot: SharedSnapshot,
    status_file: PathBuf,
    generation: AtomicU64,
    rust_log_set: bool,
}

/// The status file for a pid file: `<pid_file>.reload`.
pub fn status_path(pid_file: &str) -> PathBuf {
    PathBuf::from(format!("{pid_file}.reload"))
}

/// What differs between two configs, for the reload message.
fn summarize(old: &FileConfig, new: &FileConfig) -> String {
    let mut parts = Vec::new();
    if old.routes != new.routes {
        parts.push(format!(
            "routes ({} → {})",
            old.routes.len(),
            new.routes.len()
        ));
    }
    let mut changed: Vec<&str> = Vec::new();
    for (name, u) in &new.upstreams {
        match old.upstreams.get(name) {
            Some(o) if o == u => {}
            Some(_) => changed.push(name),
            None => parts.push(format!("upstream {name} added")),
        }
    }
    for name in old.upstreams.keys() {
        if !new.upstreams.contains_key(name) {
            parts.push(format!("upstream {name} removed"));
        }
    }
    if !changed.is_empty() {
        parts.push(format!("upstreams changed: {}", changed.join(", ")));
    }
    if old.log != new.log {
        parts.push("log".into());
    }
    if old.trusted_proxies != new.trusted_proxies {
        parts.push("trusted_proxies".into());
    }
    if parts.is_empty() {
        "no changes".into()
    } else {
        parts.join("; ")
    }
}

/// Sections a live reload cannot change.
fn needs_upgrade(old: &FileConfig, new: &FileConfig) -> Option<&'static str> {
    if old.server != new.server {
        Some("the server section changed; this needs `weir upgrade` (a new process)")
    } else if old.listeners != new.listeners {
        Some("listeners changed; this needs `weir upgrade` (a new process)")
    } else {
        None
    }
}

impl Reloader {
    /// A reloader for the process started from `file`.
    pub fn new(file: &Path, snapshot: SharedSnapshot, pid_file: &str) -> Reloader {
        Reloader {
            file: file.to_path_buf(),
            snapshot,
            status_file: status_path(pid_file),
            generation: AtomicU64::new(0),
            rust_log_set: std::env::var_os("RUST_LOG").is_some(),
        }
    }

    /// Performs one reload; returns what changed, or why nothing did.
    pub fn reload(&self) -> Result<String, String> {
        let loaded = config::load_file(&self.file).map_err(|e| e.to_string())?;
        let current = self.snapshot.load_full();
        if let Some(why) = needs_upgrade(&current.config, &loaded.config) {
            return Err(format!("{}: {why}", self.file.display()));
        }
        let next = Snapshot::build(&loaded.config, Some(&current))?;
        let summary = summarize(&current.config, &loaded.config);
        if !self.rust_log_set {
            crate::logging::set_level(&loaded.config.log);
        }
        self.snapshot.store(Arc::new(next));
        Ok(summary)
    }

    /// Reloads, logs the outcome and writes the status file.
    pub fn reload_and_report(&self) -> Result<String, String> {
        let result = self.reload();
        let generation = self.generation.fetch_add(1, Relaxed) + 1;
        let line = match &result {
            Ok(summary) => {
                info!("config reloaded from {}: {summary}", self.file.display());
                format!("{generation} ok {summary}\n")
            }
            Err(e) => {
                error!("config reload failed, keeping the running config:\n{e}");
                format!("{generation} error {e}\n")
            }
        };
        let tmp = self.status_file.with_extension("reload.tmp");
        if let Err(e) =
            std::fs::write(&tmp, line).and_then(|_| std::fs::rename(&tmp, &self.status_file))
        {
            warn!("cannot write {}: {e}", self.status_file.display());
        }
        result
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                error!("cannot listen for SIGHUP, live reload is off: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    info!("SIGHUP received, reloading {}", self.file.display());
                    let _ = self.reload_and_report();
                }
            }
        }
    }
}
