//! The cache's metrics (SPEC §6), registered in weir's registry on first
//! use: `weir_cache_requests_total{route,result}` and, per tier,
//! `weir_cache_size_bytes`, `weir_cache_objects`, `weir_cache_evictions_total`.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use std::sync::LazyLock;

struct Tier {
    size: IntGauge,
    objects: IntGauge,
    evictions: IntCounter,
}

struct Stats {
    requests: IntCounterVec,
    memory: Tier,
    disk: Tier,
}

fn build() -> Result<Stats, prometheus::Error> {
    let requests = IntCounterVec::new(
        Opts::new(
            "weir_cache_requests_total",
            "Requests to caching routes, by what the cache did",
        ),
        &["route", "result"],
    )?;
    let size = IntGaugeVec::new(
        Opts::new("weir_cache_size_bytes", "Bytes stored, by tier"),
        &["tier"],
    )?;
    let objects = IntGaugeVec::new(
        Opts::new("weir_cache_objects", "Entries stored, by tier"),
        &["tier"],
    )?;
    let evictions = IntCounterVec::new(
        Opts::new(
            "weir_cache_evictions_total",
            "Entries evicted to make room, by tier",
        ),
        &["tier"],
    )?;
    if let Some(m) = crate::metrics::get() {
        m.registry.register(Box::new(requests.clone()))?;
        m.registry.register(Box::new(size.clone()))?;
        m.registry.register(Box::new(objects.clone()))?;
        m.registry.register(Box::new(evictions.clone()))?;
    }
    let tier = |t: &str| Tier {
        size: size.with_label_values(&[t]),
        objects: objects.with_label_values(&[t]),
        evictions: evictions.with_label_values(&[t]),
    };
    Ok(Stats {
        requests,
        memory: tier("memory"),
        disk: tier("disk"),
    })
}

static STATS: LazyLock<Option<Stats>> = LazyLock::new(|| match build() {
    Ok(s) => Some(s),
    Err(e) => {
        log::error!("cache metrics disabled: {e}");
        None
    }
});

/// Registers the series (so they show as 0 before the first request).
pub fn init() {
    LazyLock::force(&STATS);
}

/// The memory tier's stored bytes and entries changed by these amounts.
pub fn stored(bytes: i64, objects: i64) {
    if let Some(s) = STATS.as_ref() {
        s.memory.size.add(bytes);
        s.memory.objects.add(objects);
    }
}

/// One entry was evicted from the memory tier.
pub fn evicted() {
    if let Some(s) = STATS.as_ref() {
        s.memory.evictions.inc();
    }
}

/// The disk tier now holds `bytes` in `objects` entries.
pub fn disk_state(bytes: u64, objects: usize) {
    if let Some(s) = STATS.as_ref() {
        s.disk.size.set(bytes as i64);
        s.disk.objects.set(objects as i64);
    }
}

/// One entry was evicted from the disk tier.
pub fn disk_evicted() {
    if let Some(s) = STATS.as_ref() {
        s.disk.evictions.inc();
    }
}

/// The request counter of `route` for `result` (kept by the route).
pub fn requests(route: &str, result: &str) -> Option<IntCounter> {
    STATS
        .as_ref()
        .map(|s| s.requests.with_label_values(&[route, result]))
}

/// Each tier's stored bytes and entries as its gauges hold them:
/// `(tier, bytes, objects)` (read by `GET /status`).
pub fn tiers() -> Vec<(&'static str, i64, i64)> {
    STATS.as_ref().map_or_else(Vec::new, |s| {
        vec![
            ("memory", s.memory.size.get(), s.memory.objects.get()),
            ("disk", s.disk.size.get(), s.disk.objects.get()),
        ]
    })
}
