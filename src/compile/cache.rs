//! `cache`, `routes[i].cache` and `routes[i].compression`: checked and
//! built into [`RouteCache`] and [`Compression`] in one pass.

use crate::cache::compress::{Compression, TypeMatch, NAMES};
use crate::cache::memory::MAX_OBJECT;
use crate::cache::{stats, KeyPart, Outcome, RouteCache};
use crate::config::model::*;
use crate::config::Issue;
use std::sync::Arc;
use std::time::Duration;

/// Memory tier size when the file has no `cache` section.
const DEFAULT_MEMORY: u64 = 256 << 20;
const DEFAULT_MAX_OBJECT: u64 = 8 << 20;
const DEFAULT_TYPES: [&str; 5] = [
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "image/svg+xml",
];

/// The storage the routes share: memory size, disk folder and size.
pub(super) type Tiers = (u64, Option<(std::path::PathBuf, u64)>);

/// Checks the top-level `cache` section.
pub(super) fn section(cfg: &FileConfig, issues: &mut Vec<Issue>) -> Tiers {
    let Some(c) = &cfg.cache else {
        return (DEFAULT_MEMORY, None);
    };
    let memory = c.memory.map_or(DEFAULT_MEMORY, |s| s.0);
    if memory < 1 << 20 {
        issues.push(Issue::new("cache.memory", "at least 1MiB"));
    }
    let disk = c.disk.as_ref().and_then(|d| {
        if d.size.0 < 1 << 20 {
            issues.push(Issue::new("cache.disk.size", "at least 1MiB"));
        }
        if d.path.trim().is_empty() {
            issues.push(Issue::new("cache.disk.path", "must name a folder"));
            return None;
        }
        Some((cfg.base_dir.join(&d.path), d.size.0))
    });
    (memory, disk)
}

fn key_part(text: &str, at: &str, issues: &mut Vec<Issue>) -> Option<KeyPart> {
    let part = match text {
        "method" => KeyPart::Method,
        "host" => KeyPart::Host,
        "path" => KeyPart::Path,
        "query" => KeyPart::Query,
        _ => match text.split_once(':') {
            Some(("header", n)) => match http::HeaderName::from_bytes(n.trim().as_bytes()) {
                Ok(h) => KeyPart::Header(h),
                Err(_) => {
                    issues.push(Issue::new(at, format!("invalid header name {n:?}")));
                    return None;
                }
            },
            Some(("cookie", n)) if !n.trim().is_empty() => KeyPart::Cookie(n.trim().into()),
            _ => {
                issues.push(Issue::new(
                    at,
                    format!("unknown key part {text:?}; parts are method, host, path, query, header:NAME, cookie:NAME"),
                ));
                return None;
            }
        },
    };
    Some(part)
}

fn secs(d: Option<Dur>) -> u32 {
    d.map_or(0, |d| d.0.as_secs().min(u32::MAX as u64) as u32)
}

fn status_header(h: Option<&str>, base: &str, issues: &mut Vec<Issue>) -> Option<http::HeaderName> {
    match h {
        None => Some(http::HeaderName::from_static("x-cache")),
        Some("") => None,
        Some(h) => match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                issues.push(Issue::new(
                    format!("{base}.status_header"),
                    format!("invalid header name {h:?}"),
                ));
                None
            }
        },
    }
}

/// A route's compiled `cache` and `compression` blocks.
pub(super) type Blocks = (Option<Arc<RouteCache>>, Option<Arc<Compression>>);

/// Checks and builds the `cache` and `compression` blocks of route `r`.
pub(super) fn blocks(
    r: &RouteConfig,
    name: &str,
    tiers: &Tiers,
    base: &str,
    issues: &mut Vec<Issue>,
) -> Blocks {
    for (key, set) in [
        ("cache", r.cache.is_some()),
        ("compression", r.compression.is_some()),
    ] {
        if set && r.upstream.is_none() {
            issues.push(Issue::at_key(
                format!("{base}.{key}"),
                "applies to answers from an upstream; this route answers by itself",
            ));
        }
    }
    let cache = r
        .cache
        .as_ref()
        .and_then(|c| route_cache(c, name, tiers, &format!("{base}.cache"), issues));
    let compression = r
        .compression
        .as_ref()
        .and_then(|c| compression(c, &format!("{base}.compression"), issues));
    (cache.map(Arc::new), compression.map(Arc::new))
}

/// Builds `routes[i].cache`.
pub(super) fn route_cache(
    c: &RouteCacheConfig,
    route: &str,
    tiers: &Tiers,
    base: &str,
    issues: &mut Vec<Issue>,
) -> Option<RouteCache> {
    let before = issues.len();
    let memory = tiers.0;
    let default_key = ["host", "path", "query"].map(String::from).to_vec();
    let texts = c.key.clone().unwrap_or(default_key);
    if texts.is_empty() {
        issues.push(Issue::new(format!("{base}.key"), "needs at least one part"));
    }
    let parts: Vec<KeyPart> = texts
        .iter()
        .enumerate()
        .filter_map(|(j, t)| key_part(t.trim(), &format!("{base}.key[{j}]"), issues))
        .collect();
    let limit = (MAX_OBJECT as u64).min(memory);
    let max = c
        .max_object_size
        .map_or(DEFAULT_MAX_OBJECT.min(limit), |s| s.0);
    if max == 0 || max > limit {
        issues.push(Issue::new(
            format!("{base}.max_object_size"),
            format!("between 1 byte and {limit} bytes (the memory tier's size, at most 64MiB)"),
        ));
    }
    let status_header = status_header(c.status_header.as_deref(), base, issues);
    let lock_timeout = c.lock_timeout.map_or(Duration::from_secs(5), |d| d.0);
    if lock_timeout.is_zero() {
        issues.push(Issue::new(
            format!("{base}.lock_timeout"),
            "must be over 0s",
        ));
    }
    if issues.len() != before {
        return None;
    }
    let ident = format!("{route}\n{}", serde_yaml::to_string(c).unwrap_or_default());
    Some(RouteCache {
        namespace: pingora_cache::key::hash_key(ident),
        parts: parts.into(),
        default_ttl: c.default_ttl.map_or(Duration::ZERO, |d| d.0),
        max_object_size: max as usize,
        swr: secs(c.stale_while_revalidate),
        sie: secs(c.stale_if_error),
        lock_timeout,
        status_header,
        memory: memory as usize,
        disk: tiers.1.clone(),
        counters: Outcome::ALL.map(|o| stats::requests(route, o.label())),
    })
}

fn type_match(t: &str, at: &str, issues: &mut Vec<Issue>) -> Option<TypeMatch> {
    let t = t.trim().to_ascii_lowercase();
    let Some((family, sub)) = t.split_once('/') else {
        issues.push(Issue::new(
            at,
            format!("{t:?} is not a content type (write e.g. text/* or application/json)"),
        ));
        return None;
    };
    if family.is_empty() || sub.is_empty() || family == "*" {
        issues.push(Issue::new(at, format!("{t:?} is not a content type")));
        return None;
    }
    Some(match sub {
        "*" => TypeMatch::Family(format!("{family}/").into()),
        _ => TypeMatch::Exact(t.into()),
    })
}

/// Builds `routes[i].compression`.
pub(super) fn compression(
    c: &CompressionConfig,
    base: &str,
    issues: &mut Vec<Issue>,
) -> Option<Compression> {
    let before = issues.len();
    let names = c
        .algorithms
        .clone()
        .unwrap_or_else(|| NAMES.map(String::from).to_vec());
    if names.is_empty() {
        issues.push(Issue::new(
            format!("{base}.algorithms"),
            "needs at least one algorithm",
        ));
    }
    let mut algorithms = Vec::new();
    for (j, n) in names.iter().enumerate() {
        match NAMES.iter().position(|x| *x == n.trim()) {
            Some(a) if !algorithms.contains(&a) => algorithms.push(a),
            Some(_) => issues.push(Issue::new(
                format!("{base}.algorithms[{j}]"),
                format!("{n:?} is listed twice"),
            )),
            None => issues.push(Issue::new(
                format!("{base}.algorithms[{j}]"),
                format!("unknown algorithm {n:?}; algorithms are zstd, br, gzip"),
            )),
        }
    }
    let texts = c
        .types
        .clone()
        .unwrap_or_else(|| DEFAULT_TYPES.map(String::from).to_vec());
    let types: Vec<TypeMatch> = texts
        .iter()
        .enumerate()
        .filter_map(|(j, t)| type_match(t, &format!("{base}.types[{j}]"), issues))
        .collect();
    let levels = match c.level {
        None => [3, 5, 6],
        Some(l) if (1..=9).contains(&l) => [l; 3],
        Some(_) => {
            issues.push(Issue::new(format!("{base}.level"), "between 1 and 9"));
            [0; 3]
        }
    };
    if issues.len() != before {
        return None;
    }
    Some(Compression {
        algorithms: algorithms.into(),
        min_size: c.min_size.map_or(1024, |s| s.0),
        types: types.into(),
        levels,
    })
}
