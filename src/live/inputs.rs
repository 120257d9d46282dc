//! What a snapshot is built from: the file, the admin overlay, discovered
//! addresses and backends deleted while busy, and how they combine.

use crate::config::model::FileConfig;
use crate::overlay::{Op, Overlay};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What a snapshot is built from.
pub(super) struct Inputs {
    /// Shared: the DNS service reads it five times a second, admin
    /// changes copy it into the next inputs.
    pub(super) file_config: Arc<FileConfig>,
    pub(super) overlay: Overlay,
    pub(super) dns: BTreeMap<String, Vec<(SocketAddr, u32)>>,
    /// Backends deleted through the admin API while requests were in flight
    /// on them (upstream → address → their change before the delete): the
    /// overlay has them removed (so a restart forgets them), the snapshot
    /// keeps them `draining` until their last request finishes.
    pub(super) leaving: BTreeMap<String, BTreeMap<String, Op>>,
}

impl Inputs {
    /// The file with the admin changes, discovered backends and leaving
    /// backends applied: what is compiled.
    pub(super) fn effective(&self) -> FileConfig {
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
    pub(super) fn with_overlay(&self, overlay: Overlay) -> Inputs {
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
