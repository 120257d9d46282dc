//! The running configuration and everything that may change it: the file
//! (live reload), the admin overlay (backend changes through the API) and
//! DNS discovery. Every change goes through one lock and ends with a whole
//! new snapshot swapped in; upstream groups whose definition did not change
//! are reused, so their health and counters survive.

mod backend_ops;
mod file_diff;
mod inputs;

use crate::compile::{self, compile};
use crate::config::model::FileConfig;
use crate::config::Issue;
use crate::overlay::{Op, Overlay};
use crate::snapshot::{SharedSnapshot, Snapshot};
use arc_swap::ArcSwap;
use file_diff::needs_upgrade;
pub use file_diff::summarize;
use inputs::Inputs;
use log::{error, info, warn};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a backend deleted while busy is looked at.
const LEAVING_POLL: Duration = Duration::from_millis(50);

/// What `DELETE` of a backend did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Gone from the snapshot: nothing was in flight on it.
    Done,
    /// `draining` until its requests in flight finish; hand this to
    /// [`Live::finish_when_idle`].
    Draining {
        /// The upstream's name.
        upstream: String,
        /// The backend's address.
        address: SocketAddr,
    },
}

/// The live state of a running weir.
pub struct Live {
    /// The config file the process was started with.
    pub file: PathBuf,
    /// The snapshot the proxy reads.
    pub snapshot: SharedSnapshot,
    inputs: Mutex<Inputs>,
    state_file: Option<PathBuf>,
    status_file: PathBuf,
    generation: AtomicU64,
    rust_log_set: bool,
    /// When the process started.
    pub started: Instant,
    /// The certificate resolver of each https listener (by listener index).
    pub tls: Vec<Option<Arc<crate::tls::SniResolver>>>,
}

/// An admin API failure: HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError(pub u16, pub String);

/// The status file for a pid file: `<pid_file>.reload`.
pub fn status_path(pid_file: &str) -> PathBuf {
    PathBuf::from(format!("{pid_file}.reload"))
}

/// Resolves `admin.state_file` against the config folder.
pub fn state_file_path(cfg: &FileConfig, config_dir: &Path) -> Option<PathBuf> {
    cfg.admin
        .as_ref()?
        .state_file
        .as_ref()
        .map(|p| config_dir.join(p))
}

impl Live {
    /// Builds the first snapshot from a validated file config plus the
    /// persisted overlay (an unreadable state file is logged and ignored).
    pub fn start(
        file: &Path,
        file_config: FileConfig,
        pid_file: &str,
    ) -> Result<Arc<Live>, String> {
        let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        let state_file = state_file_path(&file_config, &dir);
        let mut overlay = Overlay::default();
        if let Some(p) = &state_file {
            match Overlay::read(p) {
                Ok(Some(o)) => overlay = o,
                Ok(None) => {}
                Err(e) => warn!("{e}"),
            }
        }
        for gone in overlay.prune(&file_config) {
            warn!("state file: upstream {gone} is no longer in the config; dropping its admin changes");
        }
        let effective = overlay.apply(&file_config, &BTreeMap::new());
        let snapshot = match compile(&effective, None) {
            Ok(s) => s,
            Err(e) if !overlay.is_empty() => {
                warn!(
                    "admin changes from the state file cannot be applied ({}); ignoring them",
                    describe(&e)
                );
                overlay = Overlay::default();
                compile(&file_config, None).map_err(|e| describe(&e))?
            }
            Err(e) => return Err(describe(&e)),
        };
        crate::metrics::config_loaded(true);
        let tls = snapshot
            .certs
            .iter()
            .map(|c| {
                c.clone()
                    .map(|set| Arc::new(crate::tls::SniResolver::new(set)))
            })
            .collect();
        crate::metrics::tls_expiry(snapshot.cert_expiries());
        Ok(Arc::new(Live {
            tls,
            file: file.to_path_buf(),
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            inputs: Mutex::new(Inputs {
                file_config: Arc::new(file_config),
                overlay,
                dns: BTreeMap::new(),
                leaving: BTreeMap::new(),
            }),
            state_file,
            status_file: status_path(pid_file),
            generation: AtomicU64::new(0),
            rust_log_set: std::env::var_os("RUST_LOG").is_some(),
            started: Instant::now(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inputs> {
        self.inputs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds and swaps a snapshot for `inputs`; the old one stays on error.
    fn rebuild(&self, inputs: &Inputs) -> Result<(), String> {
        self.rebuild_with(inputs, None)
    }

    /// Builds and swaps a snapshot; `certs` replaces the certificates the
    /// compile kept from the running snapshot (a file reload re-read them).
    fn rebuild_with(
        &self,
        inputs: &Inputs,
        certs: Option<Vec<Option<Arc<crate::tls::CertSet>>>>,
    ) -> Result<(), String> {
        let effective = inputs.effective();
        let current = self.snapshot.load_full();
        let mut next = compile(&effective, Some(&current)).map_err(|e| describe(&e))?;
        if let Some(certs) = certs {
            next.certs = certs;
        }
        self.swap(&current, next);
        Ok(())
    }

    fn swap(&self, current: &Snapshot, next: Snapshot) {
        crate::metrics::forget_removed(current.removed_in(&next).into_iter());
        // The health checks of reused registries report under the backends
        // of the snapshot that is live from now on.
        for g in &next.groups {
            g.publish_labels();
        }
        // Same listeners (a listener change needs an upgrade): the re-read
        // certificates serve new handshakes from now on.
        for (resolver, set) in self.tls.iter().zip(&next.certs) {
            if let (Some(r), Some(set)) = (resolver, set) {
                r.replace(set.clone());
            }
        }
        crate::metrics::tls_expiry(next.cert_expiries());
        self.snapshot.store(Arc::new(next));
    }

    /// The file config as last loaded (without admin changes).
    pub fn file_config(&self) -> Arc<FileConfig> {
        self.lock().file_config.clone()
    }

    /// Re-reads the file; returns what changed, or why nothing did.
    pub fn reload(&self) -> Result<String, String> {
        // Checked on its own first, with nothing shared with the running
        // snapshot: a bad file changes nothing, not even health-check labels.
        // This pass also re-reads the certificates.
        let loaded = compile::load_file(&self.file, None).map_err(|e| e.to_string())?;
        let mut inputs = self.lock();
        if let Some(why) = needs_upgrade(&inputs.file_config, &loaded.config) {
            return Err(format!("{}: {why}", self.file.display()));
        }
        let mut overlay = inputs.overlay.clone();
        for gone in overlay.prune(&loaded.config) {
            warn!("upstream {gone} is no longer in the config; dropping its admin changes");
        }
        let mut dns = inputs.dns.clone();
        // Discovered addresses stay only where discovery did not change.
        dns.retain(|name, _| {
            loaded.config.upstreams.get(name).map(|u| &u.discovery)
                == inputs.file_config.upstreams.get(name).map(|u| &u.discovery)
        });
        let mut next = inputs.with_overlay(overlay);
        next.file_config = Arc::new(loaded.config);
        next.dns = dns;
        self.rebuild_with(&next, Some(loaded.snapshot.certs))?;
        let summary = summarize(&inputs.file_config, &next.file_config);
        crate::access_log::reopen();
        if !self.rust_log_set {
            crate::logging::set_level(&next.file_config.log);
        }
        let overlay_changed = next.overlay != inputs.overlay;
        *inputs = next;
        if overlay_changed {
            self.persist(&inputs.overlay);
        }
        Ok(summary)
    }

    /// [`Live::reload_and_report`] on the blocking pool: reading the file,
    /// resolving names and compiling never hold up an async worker.
    pub async fn reload_off_runtime(self: &Arc<Self>) -> Result<String, String> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.reload_and_report())
            .await
            .unwrap_or_else(|e| Err(format!("reload did not finish: {e}")))
    }

    /// Reloads, logs and counts the outcome, and writes the status file
    /// that `weir reload` waits for.
    pub fn reload_and_report(&self) -> Result<String, String> {
        let result = self.reload();
        crate::metrics::config_loaded(result.is_ok());
        let generation = self.generation.fetch_add(1, Relaxed) + 1;
        let line = match &result {
            Ok(summary) => {
                info!("config reloaded from {}: {summary}", self.file.display());
                crate::observe::events::record(
                    "reload",
                    None,
                    None,
                    format!("reloaded: {summary}"),
                );
                format!("{generation} ok {summary}\n")
            }
            Err(e) => {
                error!("config reload failed, keeping the running config:\n{e}");
                let message = format!("reload failed, nothing changed: {e}");
                crate::observe::events::record("reload", None, None, message);
                format!("{generation} error {e}\n")
            }
        };
        if let Err(e) = crate::files::write_atomic(&self.status_file, line.as_bytes(), 0o644) {
            warn!("cannot write {}: {e}", self.status_file.display());
        }
        result
    }

    fn persist(&self, overlay: &Overlay) {
        if let Some(p) = &self.state_file {
            if let Err(e) = overlay.write(p) {
                error!("cannot write state file {}: {e}", p.display());
            }
        }
    }

    /// Applies an admin change to one backend, rebuilds, persists. `f` may
    /// name a backend (address, its change before) to keep as leaving.
    fn change(
        &self,
        upstream: &str,
        f: impl FnOnce(&mut Overlay, &FileConfig) -> Result<Option<(String, Op)>, ApiError>,
    ) -> Result<(), ApiError> {
        let mut inputs = self.lock();
        if !inputs.file_config.upstreams.contains_key(upstream) {
            return Err(ApiError(404, format!("no upstream {upstream:?}")));
        }
        let mut overlay = inputs.overlay.clone();
        // Checked without leaving backends: to the API they are deleted.
        let effective = inputs.overlay.apply(&inputs.file_config, &inputs.dns);
        let leave = f(&mut overlay, &effective)?;
        overlay.upstreams.retain(|_, v| !v.is_empty());
        let mut next = inputs.with_overlay(overlay);
        if let Some((addr, before)) = leave {
            next.leaving
                .entry(upstream.to_string())
                .or_default()
                .insert(addr, before);
        }
        self.rebuild(&next).map_err(|e| ApiError(400, e))?;
        *inputs = next;
        self.persist(&inputs.overlay);
        Ok(())
    }

    /// Sets the addresses (and weights) DNS returned for an upstream.
    pub fn set_dns(&self, upstream: &str, mut addrs: Vec<(SocketAddr, u32)>) -> bool {
        addrs.sort();
        addrs.dedup();
        let mut inputs = self.lock();
        if inputs.dns.get(upstream) == Some(&addrs) {
            return false;
        }
        let mut next = inputs.with_overlay(inputs.overlay.clone());
        next.dns.insert(upstream.to_string(), addrs);
        match self.rebuild(&next) {
            Ok(()) => {
                *inputs = next;
                true
            }
            Err(e) => {
                warn!("discovered backends for {upstream} cannot be used: {e}");
                false
            }
        }
    }
}

/// One line per problem: `key.path: message`.
fn describe(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| format!("{}: {}", i.path, i.message))
        .collect::<Vec<_>>()
        .join("; ")
}
