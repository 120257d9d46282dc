//! Certificates from an ACME CA (RFC 8555) for the names in
//! `listeners[].tls.acme`: a Pingora background service orders, stores and
//! renews them ([`service`]) and publishes them to the handshake path
//! ([`state`], read lock-free by [`crate::tls::SniResolver`]); http-01
//! tokens are answered by the proxy before routing, tls-alpn-01 challenge
//! certificates by the resolver. Start-up only reads what `storage` holds
//! ([`load_stored`]) and never waits for the CA.

pub mod ari;
pub mod keys;
pub mod order;
pub mod plan;
mod service;
pub mod state;
pub mod status;
pub mod storage;

pub use service::AcmeService;

use prometheus::{IntCounterVec, Opts};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use storage::Storage;

static ORDERS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new("weir_acme_orders_total", "ACME orders, by result"),
        &["result"],
    )
    .ok()?;
    crate::metrics::get()?
        .registry
        .register(Box::new(c.clone()))
        .ok()?;
    for r in ["success", "failure"] {
        c.with_label_values(&[r]);
    }
    Some(c)
});

/// Counts an order in `weir_acme_orders_total` (and registers the metric
/// with both results at 0 when `ok` is `None`).
pub fn count_order(ok: Option<bool>) {
    let Some(c) = ORDERS.as_ref() else { return };
    match ok {
        Some(true) => c.with_label_values(&["success"]).inc(),
        Some(false) => c.with_label_values(&["failure"]).inc(),
        None => {}
    }
}

/// Re-reads the pending http-01 tokens of every instance sharing `storage`.
pub fn refresh_tokens(storage: &Storage) {
    let tokens: HashMap<String, Arc<str>> = storage
        .tokens()
        .into_iter()
        .map(|(t, ka)| (t, Arc::from(ka.as_str())))
        .collect();
    state::set_tokens(tokens);
}

/// Serves every valid certificate `storage` already holds for the config's
/// names, before any listener accepts (no CA is contacted).
pub fn load_stored(cfg: &crate::config::model::FileConfig) {
    let Some(plan) = plan::plan(cfg) else { return };
    let storage = match Storage::open(&plan.storage, &plan.ca.directory) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("acme: storage {}: {e}", plan.storage.display());
            return;
        }
    };
    for w in &plan.wanted {
        if let Some(issued) = service::read_stored(&storage, &w.names) {
            state::publish(&w.names, issued.key.clone());
            log::info!(
                "acme: serving the stored certificate for {} (valid until {})",
                w.names.join(", "),
                status::rfc3339(issued.not_after)
            );
        }
    }
}
