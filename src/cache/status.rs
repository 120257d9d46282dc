//! The cache's part of `GET /status` (and so of the status page): for each
//! caching route its requests by result and its hit ratio, for each tier
//! its size. Everything is read from the counters and gauges the cache keeps
//! for its metrics anyway, so a request pays nothing more for it.

use super::route::{Outcome, RouteCache};
use super::stats;
use serde_json::{json, Map, Value};

/// Results answered from a stored entry (the hit ratio's numerator).
const FROM_STORE: [Outcome; 4] = [
    Outcome::Hit,
    Outcome::Stale,
    Outcome::Updating,
    Outcome::Revalidated,
];

/// `{"routes": [...], "tiers": [...]}` for the caching `routes` (name and
/// compiled `cache` block, in file order).
pub fn status<'a>(routes: impl Iterator<Item = (&'a str, &'a RouteCache)>) -> Value {
    let routes: Vec<Value> = routes.map(|(name, c)| route(name, c)).collect();
    let tiers: Vec<Value> = stats::tiers()
        .into_iter()
        .map(|(tier, bytes, objects)| json!({ "tier": tier, "size_bytes": bytes, "objects": objects }))
        .collect();
    json!({ "routes": routes, "tiers": tiers })
}

/// One route's counts by result, and `hit_ratio`: answers from the store
/// (HIT, STALE, UPDATING, REVALIDATED) over all lookups (every result but
/// BYPASS); `null` before the first lookup.
fn route(name: &str, c: &RouteCache) -> Value {
    let mut out = Map::new();
    out.insert("route".into(), name.into());
    let (mut stored, mut lookups) = (0u64, 0u64);
    for (outcome, counter) in Outcome::ALL.iter().zip(&c.counters) {
        let n = counter.as_ref().map_or(0, |c| c.get());
        if *outcome != Outcome::Bypass {
            lookups += n;
        }
        if FROM_STORE.contains(outcome) {
            stored += n;
        }
        let key = match outcome {
            Outcome::Hit => "hits",
            Outcome::Miss => "misses",
            other => other.label(),
        };
        out.insert(key.into(), n.into());
    }
    let ratio = (lookups > 0).then(|| stored as f64 / lookups as f64);
    out.insert("hit_ratio".into(), json!(ratio));
    Value::Object(out)
}
