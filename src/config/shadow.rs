//! Warnings for `weir check`: routes that can never match because an
//! earlier route matches everything they would, and unused upstreams.

use super::load::Issue;
use super::model::{FileConfig, ListenerProtocol, RouteConfig};
use std::collections::HashSet;

/// Warnings for `weir check`: routes an earlier route always pre-empts, and
/// upstreams no route uses.
pub fn warnings(cfg: &FileConfig) -> Vec<Issue> {
    let mut out = Vec::new();
    for (j, later) in cfg.routes.iter().enumerate() {
        if let Some(i) = (0..j).find(|&i| covers(cfg, &cfg.routes[i], later)) {
            out.push(Issue::new(
                format!("routes[{j}]"),
                format!(
                    "route {} can never match: route {} (routes[{i}]) matches every request it would",
                    route_label(later, j),
                    route_label(&cfg.routes[i], i)
                ),
            ));
        }
    }
    if let Some(t) = cfg.admin.as_ref().and_then(|a| a.token.as_deref()) {
        if t.chars().count() < 16 {
            out.push(Issue::new(
                "admin.token",
                "shorter than 16 characters: anyone who can reach the admin API can guess it; use e.g. `openssl rand -hex 24`",
            ));
        }
    }
    for (name, u) in &cfg.upstreams {
        if u.sticky.as_ref().is_some_and(|s| s.secret.is_none()) {
            out.push(Issue::new(
                format!("upstreams.{name}.sticky.secret"),
                "not set: the cookie values use weir's public default key, so anyone can invert one to its backend's address by trying addresses; set a secret (e.g. ${STICKY_SECRET}), the same on every instance",
            ));
        }
    }
    for name in cfg.upstreams.keys() {
        if !cfg
            .routes
            .iter()
            .any(|r| r.upstream.as_deref() == Some(name))
            && !cfg
                .listeners
                .iter()
                .any(|l| l.upstream.as_deref() == Some(name))
        {
            out.push(Issue::new(
                format!("upstreams.{name}"),
                format!("upstream {name:?} is not used by any route"),
            ));
        }
    }
    out
}

/// A route's name for messages: its `name`, else `route<N>`.
pub fn route_label(r: &RouteConfig, index: usize) -> String {
    r.name.clone().unwrap_or_else(|| format!("route{index}"))
}

fn covers(cfg: &FileConfig, a: &RouteConfig, b: &RouteConfig) -> bool {
    let listeners = |r: &RouteConfig| -> HashSet<String> {
        r.listeners
            .clone()
            .unwrap_or_else(|| {
                cfg.listeners
                    .iter()
                    .filter(|l| l.protocol != ListenerProtocol::Tcp)
                    .map(|l| l.name.clone())
                    .collect()
            })
            .into_iter()
            .collect()
    };
    let host_ok = match (&a.matcher.host, &b.matcher.host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(ha), Some(hb)) => {
            let (ha, hb) = (ha.to_ascii_lowercase(), hb.to_ascii_lowercase());
            match ha.strip_prefix("*.") {
                None => ha == hb,
                Some(suffix) => {
                    let hb = hb.strip_prefix("*.").unwrap_or(&hb);
                    hb.ends_with(&format!(".{suffix}"))
                }
            }
        }
    };
    let path_ok = match (&a.matcher.path_prefix, &b.matcher.path_prefix) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(pa), Some(pb)) if a.matcher.ignore_case => {
            crate::path::prefix_matches_ignore_case(pa, pb)
        }
        (Some(pa), Some(pb)) => !b.matcher.ignore_case && crate::path::prefix_matches(pa, pb),
    };
    let methods_ok = match (&a.matcher.methods, &b.matcher.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(ma), Some(mb)) => mb.iter().all(|m| ma.contains(m)),
    };
    let headers_ok = match (&a.matcher.headers, &b.matcher.headers) {
        (None, _) => true,
        (Some(ha), hb) => ha.iter().all(|(k, v)| {
            hb.as_ref()
                .and_then(|hb| hb.iter().find(|(k2, _)| k2.eq_ignore_ascii_case(k)))
                .is_some_and(|(_, v2)| v2 == v)
        }),
    };
    host_ok && path_ok && methods_ok && headers_ok && listeners(a).is_superset(&listeners(b))
}
