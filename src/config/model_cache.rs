//! The file model of caching and compression: the top-level `cache`
//! storage and a route's `cache` and `compression` blocks (SPEC §1.1).
//! Re-exported from [`super::model`].

use super::model::{Dur, Size};
use serde::{Deserialize, Serialize};

/// The top-level `cache` section: storage shared by the routes that cache.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Size of the in-memory tier. Default: 256MiB.
    pub memory: Option<Size>,
    /// Optional second tier on disk.
    pub disk: Option<DiskTierConfig>,
}

/// `cache.disk`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiskTierConfig {
    /// Folder of the entries (relative to the config file's folder).
    pub path: String,
    /// Most bytes kept there.
    pub size: Size,
}

/// `routes[].cache`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteCacheConfig {
    /// Parts of the key: `method`, `host`, `path`, `query`, `header:NAME`,
    /// `cookie:NAME`. Default: `[host, path, query]`.
    pub key: Option<Vec<String>>,
    /// Freshness of a cacheable answer that states none. Default: 0s (not stored).
    pub default_ttl: Option<Dur>,
    /// Larger answers are passed through, not stored. Default: 8MiB.
    pub max_object_size: Option<Size>,
    /// Serve a stale entry while one request refreshes it. Default: 0s.
    pub stale_while_revalidate: Option<Dur>,
    /// Serve a stale entry when the backend fails. Default: 0s.
    pub stale_if_error: Option<Dur>,
    /// How long concurrent misses wait for the one that fills. Default: 5s.
    pub lock_timeout: Option<Dur>,
    /// Response header saying what the cache did; `""` for none. Default: `x-cache`.
    pub status_header: Option<String>,
}

/// `routes[].compression`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    /// weir's preference among `zstd`, `br`, `gzip`. Default: all three in that order.
    pub algorithms: Option<Vec<String>>,
    /// Smaller answers (by `Content-Length`) are sent as they are. Default: 1KiB.
    pub min_size: Option<Size>,
    /// Content types encoded (`text/*` matches a whole family). Default: text,
    /// JSON, JavaScript, XML and SVG.
    pub types: Option<Vec<String>>,
    /// Encoder level for every algorithm. Default: each algorithm's own
    /// (gzip 6, br 5, zstd 3).
    pub level: Option<u32>,
}
