//! The running configuration and everything that may change it: the file
//! (live reload), the admin overlay (backend changes through the API) and
//! DNS discovery. Every change goes through one lock and ends with a whole
//! new snapshot swapped in; upstream groups whose definition did not change
//! are reused, so their health and counters survive.

use crate::compile::{self, compile};
use crate::config::model::{BackendEntry, FileConfig, ListenerConfig};
use crate::config::Issue;
use crate::overlay::{BackendState, Op, Overlay};
use crate::snapshot::{SharedSnapshot, Snapshot};
use arc_swap::ArcSwap;
use log::{error, info, warn};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a backend deleted while busy is looked at.
const LEAVING_POLL: Duration = Duration::from_millis(50);

/// What a snapshot is built from.
struct Inputs {
    /// Shared: the DNS service reads it five times a second, admin
    /// changes copy it into the next inputs.
    file_config: Arc<FileConfig>,
    overlay: Overlay,
    dns: BTreeMap<String, Vec<(SocketAddr, u32)>>,
    /// Backends deleted through the admin API while requests were in flight
    /// on them (upstream → address → their change before the delete): the
    /// overlay has them removed (so a restart forgets them), the snapshot
    /// keeps them `draining` until their last request finishes.
    leaving: BTreeMap<String, BTreeMap<String, Op>>,
}

impl Inputs {
    /// The file with the admin changes, discovered backends and leaving
    /// backends applied: what is compiled.
    fn effective(&self) -> FileConfig {
        if self.leaving.is_empty() {
            return self.overlay.apply(&self.file_config, &self.dns);
        }
        let mut overlay = self.overlay.clone();
        for (upstream, addrs) in &self.leaving {
            for (addr, before) in addrs {
                if still_leaving(&self.overlay, upstream, addr) {
                    overlay
                        .upstreams
                        .entry(upstream.clone())
                        .or_default()
                        .insert(addr.clone(), before.clone());
                }
            }
        }
        overlay.apply(&self.file_config, &self.dns)
    }

    /// The same inputs with `overlay` (an admin change or a reload):
    /// leaving backends the change brought back are no longer leaving.
    fn with_overlay(&self, overlay: Overlay) -> Inputs {
        let mut leaving = self.leaving.clone();
        for (upstream, addrs) in leaving.iter_mut() {
            addrs.retain(|addr, _| still_leaving(&overlay, upstream, addr));
        }
        leaving.retain(|_, addrs| !addrs.is_empty());
        Inputs {
            file_config: self.file_config.clone(),
            overlay,
            dns: self.dns.clone(),
            leaving,
        }
    }
}

/// Whether the overlay still has `addr` of `upstream` deleted (no later
/// change added it back or altered it).
fn still_leaving(overlay: &Overlay, upstream: &str, addr: &str) -> bool {
    overlay
        .upstreams
        .get(upstream)
        .and_then(|ops| ops.get(addr))
        .is_none_or(|op| op.removed)
}

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

/// What differs between two configs, for the reload message.
pub fn summarize(old: &FileConfig, new: &FileConfig) -> String {
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
    for (o, n) in old.listeners.iter().zip(&new.listeners) {
        if o.upstream != n.upstream {
            parts.push(format!(
                "listener {} upstream {} → {}",
                n.name,
                o.upstream.as_deref().unwrap_or("-"),
                n.upstream.as_deref().unwrap_or("-")
            ));
        }
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

/// The listeners with each tcp listener's `upstream` left out: the one
/// listener key a live reload may change (the snapshot says which group a
/// tcp listener relays to, and each connection reads it).
fn bound_listeners(cfg: &FileConfig) -> Vec<ListenerConfig> {
    cfg.listeners
        .iter()
        .map(|l| ListenerConfig {
            upstream: None,
            ..l.clone()
        })
        .collect()
}

fn needs_upgrade(old: &FileConfig, new: &FileConfig) -> Option<&'static str> {
    if old.server != new.server {
        Some("the server section changed; this needs `weir upgrade` (a new process)")
    } else if bound_listeners(old) != bound_listeners(new) {
        Some("listeners changed; this needs `weir upgrade` (a new process)")
    } else if old.admin != new.admin {
        Some("the admin section changed; this needs `weir upgrade` (a new process)")
    } else {
        None
    }
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
                format!("{generation} ok {summary}\n")
            }
            Err(e) => {
                error!("config reload failed, keeping the running config:\n{e}");
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

    /// `POST /upstreams/{name}/backends`.
    pub fn add_backend(&self, upstream: &str, address: &str, weight: u32) -> Result<(), ApiError> {
        let addr: SocketAddr = address
            .parse()
            .map_err(|_| ApiError(400, format!("invalid address {address:?}; write ip:port")))?;
        if weight == 0 || weight > 1000 {
            return Err(ApiError(400, "weight must be 1..=1000".into()));
        }
        let key = addr.to_string();
        self.change(upstream, |overlay, effective| {
            if has_backend(effective, upstream, &key) {
                return Err(ApiError(
                    409,
                    format!("{key} is already a backend of {upstream}"),
                ));
            }
            let ops = overlay.upstreams.entry(upstream.to_string()).or_default();
            let op = ops.entry(key).or_default();
            let was_removed = op.removed;
            *op = Op {
                added: !was_removed,
                removed: false,
                weight: Some(weight),
                state: None,
            };
            Ok(None)
        })
    }

    /// `DELETE /upstreams/{name}/backends/{address}`. A backend with
    /// requests in flight drains first: it stays in the snapshot as
    /// `draining` (no new requests, sticky ones included) until
    /// [`Live::finish_when_idle`] sees its last one finish. The state file
    /// has it removed at once.
    pub fn remove_backend(&self, upstream: &str, address: &str) -> Result<Removal, ApiError> {
        let key = normalize_addr(address);
        let busy = key
            .parse::<SocketAddr>()
            .ok()
            .filter(|a| self.in_flight(upstream, *a).0 > 0);
        self.change(upstream, |overlay, effective| {
            require_backend(effective, upstream, &key)?;
            let ops = overlay.upstreams.entry(upstream.to_string()).or_default();
            let before = ops.get(&key).cloned();
            match &before {
                Some(op) if op.added => {
                    ops.remove(&key);
                }
                _ => {
                    ops.insert(
                        key.clone(),
                        Op {
                            removed: true,
                            ..Op::default()
                        },
                    );
                }
            }
            Ok(busy.map(|_| {
                let mut op = before.unwrap_or_default();
                op.state = Some(BackendState::Draining);
                (key.clone(), op)
            }))
        })?;
        Ok(match busy {
            Some(address) => Removal::Draining {
                upstream: upstream.to_string(),
                address,
            },
            None => Removal::Done,
        })
    }

    /// Requests in flight on `address` of `upstream` in the running
    /// snapshot, and whether it is draining there.
    fn in_flight(&self, upstream: &str, address: SocketAddr) -> (usize, bool) {
        let snapshot = self.snapshot.load();
        snapshot
            .groups
            .iter()
            .find(|g| &*g.name == upstream)
            .and_then(|g| g.backends.get(&address))
            .map_or((0, false), |b| {
                (b.shared.in_flight.load(Relaxed), b.draining)
            })
    }

    /// Waits until a backend deleted while busy has no request in flight
    /// (or is no longer draining: added back), then takes it out of the
    /// snapshot. Reads only the snapshot while it waits.
    pub async fn finish_when_idle(self: Arc<Self>, upstream: String, address: SocketAddr) {
        let key = address.to_string();
        while let (1.., true) = self.in_flight(&upstream, address) {
            tokio::time::sleep(LEAVING_POLL).await;
        }
        let me = self.clone();
        let done = tokio::task::spawn_blocking(move || me.forget_leaving(&upstream, &key)).await;
        if let Err(e) = done {
            warn!("a deleted backend could not be taken out: {e}");
        }
    }

    /// Takes a leaving backend out of the snapshot.
    fn forget_leaving(&self, upstream: &str, key: &str) {
        let mut inputs = self.lock();
        let mut next = inputs.with_overlay(inputs.overlay.clone());
        let Some(addrs) = next.leaving.get_mut(upstream) else {
            return;
        };
        if addrs.remove(key).is_none() {
            return;
        }
        if addrs.is_empty() {
            next.leaving.remove(upstream);
        }
        match self.rebuild(&next) {
            Ok(()) => {
                info!("backend {key} of {upstream} drained; removed");
                *inputs = next;
            }
            Err(e) => warn!("backend {key} of {upstream} drained but cannot be removed: {e}"),
        }
    }

    /// `PATCH /upstreams/{name}/backends/{address}`.
    pub fn patch_backend(
        &self,
        upstream: &str,
        address: &str,
        state: Option<BackendState>,
        weight: Option<u32>,
    ) -> Result<(), ApiError> {
        if weight.is_some_and(|w| w == 0 || w > 1000) {
            return Err(ApiError(400, "weight must be 1..=1000".into()));
        }
        let key = normalize_addr(address);
        self.change(upstream, |overlay, effective| {
            require_backend(effective, upstream, &key)?;
            let op = overlay
                .upstreams
                .entry(upstream.to_string())
                .or_default()
                .entry(key)
                .or_default();
            if state.is_some() {
                op.state = state;
            }
            if weight.is_some() {
                op.weight = weight;
            }
            Ok(None)
        })
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

fn normalize_addr(address: &str) -> String {
    address
        .parse::<SocketAddr>()
        .map_or_else(|_| address.to_string(), |a| a.to_string())
}

fn require_backend(cfg: &FileConfig, upstream: &str, key: &str) -> Result<(), ApiError> {
    if has_backend(cfg, upstream, key) {
        Ok(())
    } else {
        Err(ApiError(
            404,
            format!("{key} is not a backend of {upstream}"),
        ))
    }
}

fn has_backend(cfg: &FileConfig, upstream: &str, key: &str) -> bool {
    cfg.upstreams.get(upstream).is_some_and(|u| {
        u.backends.iter().any(|b| {
            let a = BackendEntry::long(b).address;
            a == key || a.parse::<SocketAddr>().map(|x| x.to_string()).as_deref() == Ok(key)
        })
    })
}
