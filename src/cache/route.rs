//! A route's compiled `cache` block: its key recipe, freshness defaults,
//! stale windows, lock wait, status header and metric handles, all built
//! once per config so a request only reads them.

use prometheus::IntCounter;
use std::time::Duration;

/// One part of the cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The request method.
    Method,
    /// The host as routing sees it (lower case, no port).
    Host,
    /// The normalized path.
    Path,
    /// The query as sent.
    Query,
    /// A request header's value.
    Header(http::HeaderName),
    /// A cookie's value.
    Cookie(Box<str>),
}

/// What the cache did for a request (the status header's value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served fresh from the cache.
    Hit,
    /// Not in the cache; fetched (and stored if allowed).
    Miss,
    /// A stale entry served (the backend failed, or it is being refreshed).
    Stale,
    /// A stale entry served while another request refreshes it.
    Updating,
    /// A stale entry confirmed by the backend (`304`) and served.
    Revalidated,
    /// A stale entry replaced by a new answer.
    Expired,
    /// The cache was not used for this request.
    Bypass,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Hit,
        Outcome::Miss,
        Outcome::Stale,
        Outcome::Updating,
        Outcome::Revalidated,
        Outcome::Expired,
        Outcome::Bypass,
    ];

    /// The status header's value.
    pub fn header(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Miss => "MISS",
            Outcome::Stale => "STALE",
            Outcome::Updating => "UPDATING",
            Outcome::Revalidated => "REVALIDATED",
            Outcome::Expired => "EXPIRED",
            Outcome::Bypass => "BYPASS",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Stale => "stale",
            Outcome::Updating => "updating",
            Outcome::Revalidated => "revalidated",
            Outcome::Expired => "expired",
            Outcome::Bypass => "bypass",
        }
    }
}

/// A route's compiled `cache` block.
#[derive(Debug)]
pub struct RouteCache {
    /// Hash of the route name and its `cache` block: entries stored under
    /// another block are never served to this one.
    pub namespace: [u8; 16],
    /// The key recipe.
    pub parts: Box<[KeyPart]>,
    /// Freshness of an answer that states none (zero: not stored).
    pub default_ttl: Duration,
    /// Largest stored body.
    pub max_object_size: usize,
    /// Default stale-while-revalidate seconds.
    pub swr: u32,
    /// Default stale-if-error seconds.
    pub sie: u32,
    /// Longest wait behind another request's fill.
    pub lock_timeout: Duration,
    /// The status header, if any.
    pub status_header: Option<http::HeaderName>,
    /// Size of the memory tier (the first config's size is used).
    pub memory: usize,
    /// Folder and size of the disk tier, if any (the first config's).
    pub disk: Option<(std::path::PathBuf, u64)>,
    /// Request counters by [`Outcome`] (index in [`Outcome::ALL`]).
    pub counters: [Option<IntCounter>; 7],
}

impl RouteCache {
    /// Counts one request with `outcome`.
    pub fn count(&self, outcome: Outcome) {
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        if let Some(Some(c)) = self.counters.get(i) {
            c.inc();
        }
    }
}
