//! The admin listener's status page (`GET /`, SPEC §5) and the overview it
//! reads beside `/status`.
//!
//! One HTML file compiled in (`src/admin_page.html`): its style and script
//! are inline, and the `Content-Security-Policy` allows exactly those two
//! blocks by their SHA-256 hashes (computed once), nothing from elsewhere,
//! no `eval`, no frames, no form posts. The page holds no data: it reads
//! `/status` (and `/events` when weir has it) with `fetch`, sending the
//! token typed into it as `Authorization: Bearer` (kept in the tab's
//! `sessionStorage`, never a cookie, so no CSRF), and builds every cell with
//! `textContent`, so a backend named `<script>` is shown as text.

use crate::snapshot::Snapshot;
use base64::Engine as _;
use http::Response;
use serde_json::{json, Value};
use std::sync::LazyLock;

/// Whether the admin API serves `GET /events` (the page reads it then).
const EVENTS_API: bool = true;

/// The page.
const PAGE: &str = include_str!("admin_page.html");

/// `sha256-…` of the text between `open` and `</tag>` in [`PAGE`].
fn inline_hash(open: &str, close: &str) -> String {
    let body = PAGE
        .split_once(open)
        .and_then(|(_, rest)| rest.split_once(close))
        .map_or("", |(b, _)| b);
    let digest = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

/// The page's Content-Security-Policy.
static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hash("<script>", "</script>"),
        inline_hash("<style>", "</style>")
    )
});

/// `GET /`: the page, with its CSP.
pub fn page() -> Response<Vec<u8>> {
    Response::builder()
        .status(200)
        .header("content-type", "text/html; charset=utf-8")
        .header("content-security-policy", CSP.as_str())
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("cache-control", "no-store")
        .header("content-length", PAGE.len())
        .body(PAGE.as_bytes().to_vec())
        .unwrap_or_default()
}

/// Listeners, routes, certificates and the cache of `snap`, for the page (added to
/// `/status` beside `upstreams`); `read_only`: the API takes no changes.
pub fn overview(snap: &Snapshot, read_only: bool) -> Value {
    let cfg = &snap.config;
    let listeners: Vec<Value> = cfg
        .listeners
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "address": l.address,
                "protocol": format!("{:?}", l.protocol).to_lowercase(),
            })
        })
        .collect();
    let routes: Vec<Value> = cfg
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let action = match (&r.upstream, &r.redirect, &r.respond) {
                (Some(u), _, _) => format!("→ {u}"),
                (_, Some(_), _) => "redirect".to_string(),
                (_, _, Some(a)) => format!("respond {}", a.status),
                _ => String::new(),
            };
            json!({
                "name": crate::compile::route_label(r, i),
                "host": r.matcher.host,
                "path_prefix": r.matcher.path_prefix,
                "action": action,
            })
        })
        .collect();
    json!({
        "read_only": read_only,
        "events_api": EVENTS_API,
        "listeners": listeners,
        "routes": routes,
        "certificates": certificates(snap),
        "cache": crate::cache::status::status(
            snap.routes
                .iter()
                .filter_map(|r| r.cache.as_deref().map(|c| (&*r.name, c))),
        ),
    })
}

fn certificates(snap: &Snapshot) -> Vec<Value> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut out = Vec::new();
    for ((name, _), set) in snap.listeners.iter().zip(&snap.certs) {
        let Some(set) = set else { continue };
        for c in &set.certs {
            out.push(json!({
                "listener": &**name,
                "names": c.names,
                "not_after": c.not_after,
                "days_left": (c.not_after - now).div_euclid(86_400),
            }));
        }
    }
    // Certificates from ACME, once obtained.
    for r in crate::acme::status::acme_rows().iter() {
        let not_after = r
            .not_after
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        if let Some(not_after) = not_after {
            out.push(json!({
                "listener": r.listener,
                "names": r.names,
                "not_after": not_after,
                "days_left": (not_after - now).div_euclid(86_400),
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_inline_blocks() {
        let csp = CSP.as_str();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'sha256-"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
        assert!(PAGE.matches("<script>").count() == 1 && PAGE.matches("<style>").count() == 1);
        assert!(
            !PAGE.contains("innerHTML"),
            "cells are built with textContent"
        );
        assert!(
            !PAGE.contains("http://") && !PAGE.contains("https://"),
            "no outside assets"
        );
    }
}
