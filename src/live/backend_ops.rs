//! The admin API's backend changes (add, delete with drain, patch): each is
//! an overlay edit that [`Live::change`] checks, compiles and persists.

use super::{ApiError, Live, Removal, LEAVING_POLL};
use crate::config::model::{BackendEntry, FileConfig};
use crate::overlay::{BackendState, Op};
use log::{info, warn};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

impl Live {
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
