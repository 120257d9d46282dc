//! The admin overlay: backend changes made through the admin API (add,
//! remove, drain, weight), keyed by upstream and address, persisted in
//! `admin.state_file` and applied on top of the file at every load, so they
//! survive reloads, upgrades and restarts.

use crate::config::model::{BackendEntry, BackendLong, FileConfig, Source};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

/// A backend's admin state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes traffic.
    Enabled,
    /// No new requests; in-flight ones finish.
    Draining,
    /// No traffic (as `enabled: false` in the file).
    Disabled,
}

/// What the admin API did to one backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Op {
    /// Added by the admin API (not in the file).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub added: bool,
    /// Removed (a file backend the admin API took out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    /// Weight override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// State override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<BackendState>,
}

/// All admin changes, by upstream then backend address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// Format version.
    #[serde(default)]
    pub version: u32,
    /// upstream → address → change.
    #[serde(default)]
    pub upstreams: BTreeMap<String, BTreeMap<String, Op>>,
}

fn same_addr(entry: &str, addr: &str) -> bool {
    entry == addr
        || matches!(
            (entry.parse::<SocketAddr>(), addr.parse::<SocketAddr>()),
            (Ok(a), Ok(b)) if a == b
        )
}

impl Overlay {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.upstreams.values().all(BTreeMap::is_empty)
    }

    /// Reads a state file; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Overlay>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                // Kept for the operator, never silently overwritten.
                let aside = match crate::files::move_aside(path) {
                    Ok(bad) => format!("moved to {}", bad.display()),
                    Err(err) => format!("could not move it aside: {err}"),
                };
                format!(
                    "state file {} is unreadable ({e}); ignoring it ({aside})",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!(
                "cannot read state file {}: {e}; ignoring it",
                path.display()
            )),
        }
    }

    /// Writes atomically (mode 0600, never through a symlink).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        crate::files::write_atomic(path, text.as_bytes(), 0o600)
    }

    /// Drops entries for upstreams the file no longer has; returns their names.
    pub fn prune(&mut self, cfg: &FileConfig) -> Vec<String> {
        let gone: Vec<String> = self
            .upstreams
            .keys()
            .filter(|u| !cfg.upstreams.contains_key(*u))
            .cloned()
            .collect();
        for u in &gone {
            self.upstreams.remove(u);
        }
        gone
    }

    /// The file config with the overlay (and discovered backends) applied.
    pub fn apply(
        &self,
        cfg: &FileConfig,
        dns: &BTreeMap<String, Vec<(SocketAddr, u32)>>,
    ) -> FileConfig {
        let mut out = cfg.clone();
        for (name, up) in out.upstreams.iter_mut() {
            let ops = self.upstreams.get(name);
            let mut list: Vec<BackendLong> = Vec::new();
            for entry in &up.backends {
                let mut b = entry.long();
                let op = ops.and_then(|o| {
                    o.iter()
                        .find(|(a, _)| same_addr(&b.address, a))
                        .map(|(_, op)| op)
                });
                if let Some(op) = op {
                    if op.removed {
                        continue;
                    }
                    apply_op(&mut b, op);
                }
                list.push(b);
            }
            for (addr, op) in ops.into_iter().flatten() {
                if op.added && !op.removed && !list.iter().any(|b| same_addr(&b.address, addr)) {
                    let mut b = BackendLong {
                        address: addr.clone(),
                        weight: 1,
                        name: None,
                        enabled: true,
                        source: Source::Admin,
                        draining: false,
                    };
                    apply_op(&mut b, op);
                    list.push(b);
                }
            }
            for (addr, weight) in dns.get(name).into_iter().flatten() {
                let text = addr.to_string();
                if !list.iter().any(|b| same_addr(&b.address, &text)) {
                    let mut b = BackendLong {
                        address: text.clone(),
                        weight: *weight,
                        name: None,
                        enabled: true,
                        source: Source::Dns,
                        draining: false,
                    };
                    if let Some(op) = ops.and_then(|o| o.get(&text)) {
                        if op.removed {
                            continue;
                        }
                        apply_op(&mut b, op);
                    }
                    list.push(b);
                }
            }
            up.backends = list.into_iter().map(BackendEntry::Long).collect();
        }
        out
    }
}

fn apply_op(b: &mut BackendLong, op: &Op) {
    if let Some(w) = op.weight {
        b.weight = w;
    }
    match op.state {
        Some(BackendState::Enabled) => {
            b.enabled = true;
            b.draining = false;
        }
        Some(BackendState::Draining) => b.draining = true,
        Some(BackendState::Disabled) => b.enabled = false,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FileConfig {
        crate::compile::load_str(
            "listeners: [{name: w, address: \"127.0.0.1:1\"}]\nroutes: [{upstream: u}]\nupstreams:\n  u: {backends: [\"127.0.0.1:2\", \"127.0.0.1:3\"]}\n",
            "t",
            &|_| None,
        )
        .unwrap()
    }

    #[test]
    fn applies_adds_removes_states_and_dns() {
        let mut o = Overlay::default();
        let u = o.upstreams.entry("u".into()).or_default();
        u.insert(
            "127.0.0.1:2".into(),
            Op {
                removed: true,
                ..Op::default()
            },
        );
        u.insert(
            "127.0.0.1:3".into(),
            Op {
                state: Some(BackendState::Draining),
                weight: Some(5),
                ..Op::default()
            },
        );
        u.insert(
            "127.0.0.1:4".into(),
            Op {
                added: true,
                weight: Some(2),
                ..Op::default()
            },
        );
        let mut dns = BTreeMap::new();
        dns.insert("u".to_string(), vec![("127.0.0.1:5".parse().unwrap(), 1)]);
        let eff = o.apply(&cfg(), &dns);
        let list: Vec<BackendLong> = eff.upstreams["u"]
            .backends
            .iter()
            .map(BackendEntry::long)
            .collect();
        let addrs: Vec<&str> = list.iter().map(|b| b.address.as_str()).collect();
        assert_eq!(addrs, ["127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5"]);
        assert!(list[0].draining && list[0].weight == 5 && list[0].source == Source::File);
        assert_eq!((list[1].weight, list[1].source), (2, Source::Admin));
        assert_eq!(list[2].source, Source::Dns);
    }

    #[test]
    fn round_trips_through_a_file_and_prunes() {
        let dir = std::env::temp_dir().join(format!("weir-overlay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let mut o = Overlay::default();
        o.upstreams.entry("gone".into()).or_default().insert(
            "1.2.3.4:5".into(),
            Op {
                added: true,
                ..Op::default()
            },
        );
        o.write(&path).unwrap();
        let mut back = Overlay::read(&path).unwrap().unwrap();
        assert_eq!(back, o);
        assert_eq!(back.prune(&cfg()), vec!["gone".to_string()]);
        std::fs::write(&path, "{not json").unwrap();
        assert!(Overlay::read(&path).is_err());
        // Moved aside for the operator, not left to be overwritten.
        let mut bad = path.as_os_str().to_owned();
        bad.push(".bad");
        assert_eq!(std::fs::read_to_string(&bad).unwrap(), "{not json");
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
