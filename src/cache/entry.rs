//! One stored answer: what pingora-cache's `CacheMeta` needs to be rebuilt
//! on a hit without parsing anything, and the body as one shared buffer.

use bytes::Bytes;
use pingora_cache::key::HashBinary;
use pingora_cache::CacheMeta;
use pingora_http::ResponseHeader;
use std::sync::Arc;
use std::time::SystemTime;

/// The metadata of a stored answer, kept as plain fields.
#[derive(Debug, Clone)]
pub struct StoredMeta {
    /// Fresh until then.
    pub fresh_until: SystemTime,
    /// When it was stored or last revalidated (the `Age` reference).
    pub updated: SystemTime,
    /// Seconds a stale entry may be served while one request refreshes it.
    pub swr: u32,
    /// Seconds a stale entry may be served when the backend fails.
    pub sie: u32,
    /// The `Vary` variant this entry is, if any.
    pub variance: Option<HashBinary>,
    /// An `Age` reference that overrides `updated`.
    pub epoch_override: Option<SystemTime>,
    /// The stored response head.
    pub header: ResponseHeader,
}

impl StoredMeta {
    /// Copies what a `CacheMeta` says.
    pub fn from_meta(meta: &CacheMeta) -> StoredMeta {
        StoredMeta {
            fresh_until: meta.fresh_until(),
            updated: meta.updated(),
            swr: meta.stale_while_revalidate_sec(),
            sie: meta.stale_if_error_sec(),
            variance: meta.variance(),
            epoch_override: meta.epoch_override(),
            header: meta.response_header_copy(),
        }
    }

    /// A `CacheMeta` with the same freshness, variant, `Age` reference and head.
    pub fn to_meta(&self) -> CacheMeta {
        let mut m = CacheMeta::new(
            self.fresh_until,
            self.updated,
            self.swr,
            self.sie,
            self.header.clone(),
        );
        if let Some(v) = self.variance {
            m.set_variance_key(v);
        }
        if let Some(e) = self.epoch_override {
            m.set_epoch_override(e);
        }
        m
    }

    /// Bytes the head takes, roughly (names, values and the map's own cost).
    pub fn head_bytes(&self) -> usize {
        self.header
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum::<usize>()
            + 128
    }
}

/// One stored answer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its storage key (pingora-cache's combined hash, variant included).
    pub key: u128,
    /// `host` + NUL + path and query: what purges and unsafe methods match.
    pub url: Arc<str>,
    /// Metadata and head.
    pub meta: StoredMeta,
    /// The whole body.
    pub body: Bytes,
}

impl Entry {
    /// Bytes accounted for this entry.
    pub fn bytes(&self) -> usize {
        self.body.len() + self.meta.head_bytes() + self.url.len() + 64
    }
}
