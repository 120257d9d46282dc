//! `watch: true`: the config file and every certificate, key and CA file it
//! names are watched (inotify, through the `notify` crate). The watches are
//! on their parent folders, so an editor's write-and-rename and a Kubernetes
//! volume update (the `..data` symlink swapped by a rename) are seen as well
//! as a write in place; events about other files there (a log written on
//! every request) are ignored. After 1 s without events the files are read again,
//! and only when their contents changed is the file reloaded, exactly as
//! SIGHUP or `weir reload` do ([`Live::reload_off_runtime`]): a bad file
//! changes nothing, is logged and counted in the reload metrics.
//!
//! A Pingora background service, so it runs in the daemonized process and
//! reads `watch` from the running config (a reload may turn it on or off).
//! The contents compared against are those read when the config was loaded
//! and right before each reload, so a change made while the watches are
//! being (re)installed is applied too.

use crate::config::model::FileConfig;
use crate::live::Live;
use async_trait::async_trait;
use log::{info, warn};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Quiet time after the last event before the files are read again.
pub const QUIET: Duration = Duration::from_secs(1);
/// How often a process with `watch: false` looks whether a reload set it.
const IDLE: Duration = Duration::from_secs(1);

/// The contents of each watched file (`None`: unreadable or absent).
type Contents = BTreeMap<PathBuf, Option<Vec<u8>>>;

/// The background service that reloads when a watched file changes.
pub struct WatchService {
    live: Arc<Live>,
    /// The contents the running config was built from (read at start-up and
    /// before each reload), so a change made while the watches are being set
    /// up is not missed.
    baseline: Mutex<Option<Contents>>,
}

impl WatchService {
    /// A watcher for the running config of `live`, created right after it
    /// was loaded (before the server starts).
    pub fn new(live: Arc<Live>) -> WatchService {
        let files = watched_files(&live.file, &live.file_config());
        WatchService {
            baseline: Mutex::new(Some(read_all(&files))),
            live,
        }
    }

    /// The baseline for `files`, if it was read for the same set of files.
    fn take_baseline(&self, files: &BTreeSet<PathBuf>) -> Option<Contents> {
        let mut guard = self.baseline.lock().unwrap_or_else(|p| p.into_inner());
        guard.take().filter(|b| b.keys().eq(files.iter()))
    }

    fn set_baseline(&self, contents: Contents) {
        *self.baseline.lock().unwrap_or_else(|p| p.into_inner()) = Some(contents);
    }
}

/// The files a config names that a reload reads: itself, listener
/// certificates, keys and client CAs, upstream CAs.
pub fn watched_files(file: &Path, cfg: &FileConfig) -> BTreeSet<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new("/"));
    let mut names: Vec<&str> = Vec::new();
    for tls in cfg.listeners.iter().filter_map(|l| l.tls.as_ref()) {
        for c in &tls.certificates {
            names.push(&c.cert);
            names.push(&c.key);
        }
        names.extend(tls.client_ca.as_deref());
    }
    for u in cfg.upstreams.values() {
        names.extend(u.tls.as_ref().and_then(|t| t.ca.as_deref()));
    }
    let mut files: BTreeSet<PathBuf> = names.into_iter().map(|n| dir.join(n)).collect();
    files.insert(file.to_path_buf());
    files
}

fn read_all(files: &BTreeSet<PathBuf>) -> Contents {
    files
        .iter()
        .map(|f| (f.clone(), std::fs::read(f).ok()))
        .collect()
}

/// The paths whose events matter: each file, where its symlinks lead, and
/// the `..`-named entries of a Kubernetes volume (`..data`, `..2026_…`).
/// Anything else in those folders (a log file written on every request, a
/// pid file) would only hold the quiet time off.
fn relevant(files: &BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
    let mut out = files.clone();
    out.extend(files.iter().filter_map(|f| std::fs::canonicalize(f).ok()));
    out
}

fn matters(path: &Path, relevant: &BTreeSet<PathBuf>) -> bool {
    relevant.contains(path)
        || path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".."))
}

/// Watches the parent folders of the files (and of where their symlinks
/// lead); each event that [`matters`] sends a unit on the returned channel.
/// `None` (logged) when inotify cannot be set up.
fn start(files: &BTreeSet<PathBuf>) -> Option<(RecommendedWatcher, UnboundedReceiver<()>)> {
    let (tx, rx) = unbounded_channel();
    let paths = relevant(files);
    let dirs: BTreeSet<PathBuf> = paths
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| e.paths.iter().any(|p| matters(p, &paths))) {
            let _ = tx.send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            warn!("watch: cannot watch files ({e}); changes need `weir reload`");
            return None;
        }
    };
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            warn!("watch: cannot watch {} ({e})", dir.display());
        }
    }
    Some((watcher, rx))
}

/// Waits until events stop for [`QUIET`]; false when the channel closed.
async fn quiet(rx: &mut UnboundedReceiver<()>) -> bool {
    loop {
        match tokio::time::timeout(QUIET, rx.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

impl WatchService {
    /// Watches the current set of files until their contents change (then
    /// reloads and returns true) or weir stops (false).
    async fn watch_once(&self, shutdown: &mut ShutdownWatch) -> bool {
        let files = watched_files(&self.live.file, &self.live.file_config());
        let Some((_watcher, mut rx)) = start(&files) else {
            return idle(shutdown).await;
        };
        let known = self
            .take_baseline(&files)
            .unwrap_or_else(|| read_all(&files));
        // A change between the last read and the watches being in place
        // counts as an event.
        let mut pending = read_all(&files) != known;
        loop {
            if !pending && !next_event(&mut rx, shutdown).await {
                return false;
            }
            if !quiet(&mut rx).await {
                return false;
            }
            let now = read_all(&files);
            if now != known {
                self.set_baseline(now);
                break;
            }
            pending = false;
        }
        info!(
            "watch: {} or a file it names changed; reloading",
            self.live.file.display()
        );
        // Logged and counted inside, success or failure.
        let _ = self.live.reload_off_runtime().await;
        true
    }
}

/// Waits for an event; false when weir stops or the watch ends first.
async fn next_event(rx: &mut UnboundedReceiver<()>, shutdown: &mut ShutdownWatch) -> bool {
    tokio::select! {
        _ = shutdown.changed() => false,
        got = rx.recv() => got.is_some(),
    }
}

/// Sleeps [`IDLE`]; false when weir stops first.
async fn idle(shutdown: &mut ShutdownWatch) -> bool {
    tokio::select! {
        _ = shutdown.changed() => false,
        _ = tokio::time::sleep(IDLE) => true,
    }
}

#[async_trait]
impl BackgroundService for WatchService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let go_on = if self.live.file_config().watch {
                self.watch_once(&mut shutdown).await
            } else {
                // Turned on later by a reload: start from what is there then.
                self.baseline
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                idle(&mut shutdown).await
            };
            if !go_on || *shutdown.borrow() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_files_and_kubernetes_entries_matter() {
        let files: BTreeSet<PathBuf> = [PathBuf::from("/etc/weir/weir.yaml")].into();
        let r = relevant(&files);
        assert!(matters(Path::new("/etc/weir/weir.yaml"), &r));
        assert!(matters(Path::new("/etc/weir/..data"), &r));
        assert!(matters(Path::new("/etc/weir/..2026_12_07_18_00_00.1"), &r));
        assert!(!matters(Path::new("/etc/weir/access.log"), &r));
        assert!(!matters(Path::new("/etc/weir/.weir.yaml.swp"), &r));
    }

    #[test]
    fn watch_is_a_checked_top_level_key() {
        let env = |_: &str| None;
        let base = "listeners: [{ name: web, address: 127.0.0.1:8080 }]\nroutes: [{ respond: { status: 200 } }]\n";
        let on = crate::compile::load_str(&format!("watch: true\n{base}"), "t.yaml", &env).unwrap();
        assert!(on.watch);
        let off = crate::compile::load_str(base, "t.yaml", &env).unwrap();
        assert!(!off.watch);
        let bad = crate::compile::load_str(&format!("watch: often\n{base}"), "t.yaml", &env)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("t.yaml:1:") && bad.contains("watch"), "{bad}");
    }

    #[test]
    fn names_the_file_and_every_certificate_key_and_ca() {
        let yaml = "\
watch: true
listeners:
  - name: s
    address: 127.0.0.1:8443
    protocol: https
    tls: { certificates: [{ cert: tls/a.pem, key: /abs/a.key }], client_ca: ca.pem }
routes: [{ upstream: u }]
upstreams:
  u: { backends: [127.0.0.1:9000], tls: { ca: up-ca.pem } }
";
        let cfg: FileConfig = serde_yaml::from_str(yaml).unwrap();
        let files = watched_files(Path::new("/etc/weir/weir.yaml"), &cfg);
        let want: BTreeSet<PathBuf> = [
            "/etc/weir/weir.yaml",
            "/etc/weir/tls/a.pem",
            "/abs/a.key",
            "/etc/weir/ca.pem",
            "/etc/weir/up-ca.pem",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(files, want);
        assert!(cfg.watch);
    }
}
