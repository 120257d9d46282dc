//! What a live reload compares between the running file and the new one:
//! the summary it reports, and the changes it cannot apply (they need
//! `weir upgrade`).

use crate::config::model::{FileConfig, ListenerConfig};

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
    for (o, n) in old.listeners.iter().zip(&new.listeners) {
        let names = |l: &ListenerConfig| l.tls.as_ref().map(|t| t.acme.clone()).unwrap_or_default();
        if names(o) != names(n) {
            parts.push(format!("listener {} acme names", n.name));
        }
    }
    if old.acme != new.acme {
        parts.push("acme".into());
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
            // ACME names change by reload (the ACME service follows them).
            tls: l.tls.clone().map(|t| crate::config::model::ListenerTls {
                acme: Vec::new(),
                ..t
            }),
            ..l.clone()
        })
        .collect()
}

pub(super) fn needs_upgrade(old: &FileConfig, new: &FileConfig) -> Option<&'static str> {
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
