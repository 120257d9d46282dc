//! The ACME background service: every pass it reads the live config's
//! plan, picks up certificates that storage holds (its own, or another
//! instance's), and orders the missing or due ones under the storage lock.
//! A failed order is retried after 1, 2, 4 … minutes (at most an hour);
//! the certificate in service stays until a new one is stored.

use super::keys::{self, Issued};
use super::order;
use super::plan::{self, Plan, Wanted};
use super::state;
use super::status::{self, now_unix, rfc3339, Row};
use super::storage::Storage;
use crate::config::model::FileConfig;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the service looks at the config and storage.
const TICK: Duration = Duration::from_millis(500);
/// The first wait after a failed order (then doubled): never more than one
/// attempt per certificate per minute.
const MIN_GAP: Duration = Duration::from_secs(60);
/// The longest wait after failures.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Where the service reads the running config from.
pub type ConfigSource = Box<dyn Fn() -> Arc<FileConfig> + Send + Sync>;

/// The Pingora background service that keeps the certificates.
pub struct AcmeService {
    config: ConfigSource,
}

impl AcmeService {
    /// A service following the config `config` returns.
    pub fn new(config: ConfigSource) -> AcmeService {
        AcmeService { config }
    }
}

#[async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        super::count_order(None);
        let mut worker = Worker::default();
        loop {
            let cfg = (self.config)();
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = worker.pass(&cfg) => {}
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }
}

/// One certificate the service keeps.
struct Entry {
    wanted: Wanted,
    issued: Option<Issued>,
    seen: Option<SystemTime>,
    next_try: SystemTime,
    failures: u32,
    last_error: Option<String>,
    ari: super::ari::Window,
}

#[derive(Default)]
struct Worker {
    entries: Vec<Entry>,
    /// (listener, name) of the expiry gauges set last pass.
    gauges: Vec<(String, String)>,
    account: Option<(order::Ca, instant_acme::Account)>,
    /// The CA directory and storage of the last pass.
    source: Option<(String, std::path::PathBuf)>,
}

impl Worker {
    async fn pass(&mut self, cfg: &FileConfig) {
        let Some(plan) = plan::plan(cfg) else {
            self.sync(&[]);
            status::publish(Vec::new());
            self.set_gauges();
            return;
        };
        self.sync(&plan.wanted);
        self.follow_source(&plan);
        match Storage::open(&plan.storage, &plan.ca.directory) {
            Ok(storage) => {
                super::refresh_tokens(&storage);
                for i in 0..self.entries.len() {
                    self.tend(i, &plan, &storage).await;
                }
            }
            Err(e) => {
                let e = format!("storage {}: {e}", plan.storage.display());
                for entry in &mut self.entries {
                    entry.last_error = Some(e.clone());
                }
            }
        }
        status::publish(self.rows(&plan));
        self.set_gauges();
    }

    /// `weir_tls_certificate_expiry_timestamp_seconds` for the ACME
    /// certificates (set every pass: a reload resets the gauge).
    fn set_gauges(&mut self) {
        let mut now = Vec::new();
        for e in &self.entries {
            let Some(c) = &e.issued else { continue };
            for l in &e.wanted.listeners {
                let key = (l.clone(), e.wanted.names[0].clone());
                crate::metrics::tls_expiry_one(&key.0, &key.1, Some(c.not_after));
                now.push(key);
            }
        }
        for (l, n) in self.gauges.iter().filter(|k| !now.contains(k)) {
            crate::metrics::tls_expiry_one(l, n, None);
        }
        self.gauges = now;
    }

    /// A reload that names another CA (staging → production) or storage:
    /// every certificate is obtained anew there; the ones in service stay
    /// until their successors are in place.
    fn follow_source(&mut self, plan: &Plan) {
        let source = (plan.ca.directory.clone(), plan.storage.clone());
        if self.source.as_ref().is_some_and(|s| *s != source) {
            log::info!("acme: now using {}", plan.ca.directory);
            for e in &mut self.entries {
                e.issued = None;
                e.seen = None;
                e.next_try = SystemTime::UNIX_EPOCH;
                e.failures = 0;
                e.last_error = None;
                e.ari = Default::default();
            }
        }
        self.source = Some(source);
    }

    /// Keeps one entry per wanted certificate; names no longer wanted
    /// anywhere stop being served and renewed.
    fn sync(&mut self, wanted: &[Wanted]) {
        let still: Vec<&String> = wanted.iter().flat_map(|w| &w.names).collect();
        let gone: Vec<String> = self
            .entries
            .iter()
            .filter(|e| !wanted.iter().any(|w| w.names == e.wanted.names))
            .flat_map(|e| e.wanted.names.clone())
            .filter(|n| !still.contains(&n))
            .collect();
        if !gone.is_empty() {
            log::info!("acme: no longer renewing {}", gone.join(", "));
            state::withdraw(&gone);
        }
        self.entries
            .retain(|e| wanted.iter().any(|w| w.names == e.wanted.names));
        for w in wanted {
            match self.entries.iter_mut().find(|e| e.wanted.names == w.names) {
                Some(e) => e.wanted.listeners = w.listeners.clone(),
                None => self.entries.push(Entry {
                    wanted: w.clone(),
                    issued: None,
                    seen: None,
                    next_try: SystemTime::UNIX_EPOCH,
                    failures: 0,
                    last_error: None,
                    ari: Default::default(),
                }),
            }
        }
    }

    async fn tend(&mut self, i: usize, plan: &Plan, storage: &Storage) {
        pick_up(&mut self.entries[i], storage);
        self.ask_ari(i, plan, storage).await;
        if !self.due(i, plan) {
            return;
        }
        let lock = match storage.try_lock() {
            Ok(Some(lock)) => lock,
            // Another instance is ordering: its result is picked up later.
            Ok(None) => return,
            Err(e) => {
                self.failed(i, format!("cannot take the storage lock: {e}"));
                return;
            }
        };
        pick_up(&mut self.entries[i], storage);
        if !self.due(i, plan) {
            return;
        }
        let names = self.entries[i].wanted.names.clone();
        log::info!("acme: ordering a certificate for {}", names.join(", "));
        match self.attempt(plan, storage, &names).await {
            Ok(issued) => self.succeeded(i, issued, storage),
            Err(e) => {
                if e.contains("accountDoesNotExist") {
                    // The CA forgot the account (a test CA restarted):
                    // make a new one next time.
                    let _ = std::fs::remove_file(storage.account_path());
                    self.account = None;
                }
                self.failed(i, e);
            }
        }
        drop(lock);
    }

    /// Whether entry `i` needs an order now.
    fn due(&self, i: usize, plan: &Plan) -> bool {
        let e = &self.entries[i];
        let renew = e
            .issued
            .as_ref()
            .is_none_or(|c| now_unix() >= renew_time(e, c, plan));
        renew && SystemTime::now() >= e.next_try
    }

    /// Asks the CA's renewal information for entry `i`'s certificate when
    /// it is time to (only with a stored account: it never creates one).
    async fn ask_ari(&mut self, i: usize, plan: &Plan, storage: &Storage) {
        let e = &self.entries[i];
        let Some(cert) = e.issued.clone() else { return };
        if !e.ari.wants_query() {
            return;
        }
        let account = match &self.account {
            Some((ca, a)) if *ca == plan.ca => a.clone(),
            _ if storage.account_path().exists() => match tokio::time::timeout(
                Duration::from_secs(30),
                order::account(&plan.ca, storage),
            )
            .await
            {
                Ok(Ok(a)) => {
                    self.account = Some((plan.ca.clone(), a.clone()));
                    a
                }
                _ => {
                    let later = SystemTime::now() + Duration::from_secs(3600);
                    self.entries[i].ari.next_query = Some(later);
                    return;
                }
            },
            _ => return,
        };
        let e = &mut self.entries[i];
        let work = e.ari.query(&account, &cert);
        if tokio::time::timeout(Duration::from_secs(30), work)
            .await
            .is_err()
        {
            e.ari.next_query = Some(SystemTime::now() + Duration::from_secs(3600));
        }
    }

    async fn attempt(
        &mut self,
        plan: &Plan,
        storage: &Storage,
        names: &[String],
    ) -> Result<(String, Issued), String> {
        let work = async {
            let account = match &self.account {
                Some((ca, a)) if *ca == plan.ca => a.clone(),
                _ => {
                    let a = order::account(&plan.ca, storage).await?;
                    self.account = Some((plan.ca.clone(), a.clone()));
                    a
                }
            };
            let bundle = order::order(&account, &plan.ca, storage, names).await?;
            let issued = keys::parse_bundle(bundle.as_bytes())
                .map_err(|e| format!("the CA's certificate is unusable: {e}"))?;
            Ok((bundle, issued))
        };
        tokio::time::timeout(order::ORDER_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err("the order did not finish in time".to_string()))
    }

    fn succeeded(&mut self, i: usize, (bundle, issued): (String, Issued), storage: &Storage) {
        let e = &mut self.entries[i];
        let path = storage.cert_path(&e.wanted.names[0]);
        if let Err(err) = storage.write(&path, bundle.as_bytes()) {
            log::warn!("acme: cannot store {}: {err}", path.display());
        }
        e.seen = modified(&path);
        state::publish(&e.wanted.names, issued.key.clone());
        let message = format!(
            "certificate for {} obtained, valid until {}",
            e.wanted.names.join(", "),
            rfc3339(issued.not_after)
        );
        log::info!("acme: {message}");
        crate::observe::events::record("acme", None, None, message);
        super::count_order(Some(true));
        e.issued = Some(issued);
        e.ari = Default::default();
        e.failures = 0;
        e.last_error = None;
        e.next_try = SystemTime::now();
    }

    fn failed(&mut self, i: usize, error: String) {
        let e = &mut self.entries[i];
        e.failures = e.failures.saturating_add(1);
        let wait = MIN_GAP
            .saturating_mul(1u32 << (e.failures - 1).min(10))
            .min(MAX_WAIT);
        e.next_try = SystemTime::now() + wait;
        let message = format!(
            "order for {} failed (retrying in {}): {error}",
            e.wanted.names.join(", "),
            humantime::format_duration(wait)
        );
        log::warn!("acme: {message}");
        crate::observe::events::record("acme", None, None, message);
        super::count_order(Some(false));
        e.last_error = Some(error);
    }

    fn rows(&self, plan: &Plan) -> Vec<Row> {
        let mut rows = Vec::new();
        for e in &self.entries {
            let next = match &e.issued {
                Some(c) if e.last_error.is_none() => renew_time(e, c, plan),
                _ => unix(e.next_try).max(now_unix()),
            };
            for l in &e.wanted.listeners {
                rows.push(Row {
                    listener: l.clone(),
                    names: e.wanted.names.clone(),
                    source: "acme".into(),
                    not_after: e.issued.as_ref().map(|c| rfc3339(c.not_after)),
                    days_left: e.issued.as_ref().map(|c| status::days_left(c.not_after)),
                    next_renewal: Some(rfc3339(next)),
                    last_error: e.last_error.clone(),
                });
            }
        }
        rows
    }
}

/// When `c` is due: `renew_before` ahead of expiry, or earlier when the
/// CA's renewal information says so.
fn renew_time(e: &Entry, c: &Issued, plan: &Plan) -> i64 {
    let by_config = plan::renew_at(c.not_before, c.not_after, plan.renew_before);
    e.ari.renew_at.map_or(by_config, |t| t.min(by_config))
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
}

/// Serves what storage holds for `e` when the file changed since it was
/// last read (another instance renewed it, or this is the first pass).
fn pick_up(e: &mut Entry, storage: &Storage) {
    let path = storage.cert_path(&e.wanted.names[0]);
    let m = modified(&path);
    if m.is_none() || m == e.seen {
        return;
    }
    e.seen = m;
    if let Some(issued) = read_stored(storage, &e.wanted.names) {
        let newer = e
            .issued
            .as_ref()
            .is_none_or(|c| issued.not_after > c.not_after);
        if newer {
            state::publish(&e.wanted.names, issued.key.clone());
            e.issued = Some(issued);
            e.ari = Default::default();
            e.last_error = None;
            e.failures = 0;
        }
    }
}

/// The stored certificate for `names`, if it covers them all and has not
/// expired.
pub(super) fn read_stored(storage: &Storage, names: &[String]) -> Option<Issued> {
    let path = storage.cert_path(names.first()?);
    let bytes = match storage.read(&path) {
        Ok(Some(b)) => b,
        Ok(None) => return None,
        Err(e) => {
            log::warn!("acme: cannot read {}: {e}", path.display());
            return None;
        }
    };
    match keys::parse_bundle(&bytes) {
        Ok(c) if names.iter().all(|n| c.names.contains(n)) && c.not_after > now_unix() => Some(c),
        Ok(_) => None,
        Err(e) => {
            log::warn!("acme: {}: {e}", path.display());
            None
        }
    }
}
