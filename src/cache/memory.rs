//! The memory tier. Entries live in a
//! TinyUFO cache (lock-free reads; admission by TinyLFU frequency and
//! S3-FIFO eviction) weighted by their size, so the tier never holds more
//! than its configured bytes. Writes (fills, revalidations, purges) go
//! through one mutex that also keeps the URL index purges and unsafe
//! methods use; hits never take it.

use super::entry::Entry;
use super::stats;
use pingora_cache::key::CacheHashKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tinyufo::TinyUfo;

/// TinyUFO weighs entries in `u16`: weir weighs them in KiB.
const UNIT: usize = 1024;
/// The largest object the memory tier can hold (`u16::MAX` KiB).
pub const MAX_OBJECT: usize = u16::MAX as usize * UNIT;

#[derive(Default)]
struct Index {
    /// Bytes accounted per stored key, and its URL.
    by_key: HashMap<u128, (Arc<str>, usize)>,
    /// Keys (variants) stored per URL.
    by_url: super::url_index::UrlIndex,
}

impl Index {
    fn insert(&mut self, key: u128, url: Arc<str>, bytes: usize) {
        self.by_url.add(url.clone(), key);
        self.by_key.insert(key, (url, bytes));
    }

    /// Forgets `key`; its accounted bytes.
    fn remove(&mut self, key: u128) -> Option<usize> {
        let (url, bytes) = self.by_key.remove(&key)?;
        self.by_url.forget(&url, key);
        Some(bytes)
    }
}

/// The memory tier.
pub struct MemoryStorage {
    entries: TinyUfo<u128, Arc<Entry>>,
    index: Mutex<Index>,
    limit: usize,
}

impl MemoryStorage {
    /// A tier holding at most `limit` bytes.
    pub fn new(limit: usize) -> MemoryStorage {
        let estimated = (limit / (8 * UNIT)).clamp(1024, 1 << 20);
        MemoryStorage {
            entries: TinyUfo::new((limit / UNIT).max(1), estimated),
            index: Mutex::new(Index::default()),
            limit,
        }
    }

    /// Its size limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry stored under `key`, if any (counts as a use).
    pub fn get(&self, key: u128) -> Option<Arc<Entry>> {
        self.entries.get(&key)
    }

    /// Stores `entry` (replacing one under the same key); `false` when the
    /// admission policy kept the entries it would have evicted instead.
    pub fn insert(&self, entry: Entry) -> bool {
        let bytes = entry.bytes();
        let weight = bytes.div_ceil(UNIT).clamp(1, u16::MAX as usize) as u16;
        let (key, url) = (entry.key, entry.url.clone());
        let entry = Arc::new(entry);
        let mut index = self.lock();
        if let Some(old) = index.remove(key) {
            stats::stored(-(old as i64), -1);
        }
        let evicted = self.entries.put(key, entry.clone(), weight);
        let mut admitted = true;
        for kv in evicted {
            if Arc::ptr_eq(&kv.data, &entry) {
                admitted = false;
                continue;
            }
            if let Some(b) = index.remove(kv.data.key) {
                stats::stored(-(b as i64), -1);
                stats::evicted();
            }
        }
        if admitted {
            index.insert(key, url, bytes);
            stats::stored(bytes as i64, 1);
        }
        admitted
    }

    /// Removes the entry under `key`; whether there was one.
    pub fn remove(&self, key: u128) -> bool {
        let mut index = self.lock();
        self.remove_locked(&mut index, key)
    }

    fn remove_locked(&self, index: &mut Index, key: u128) -> bool {
        let gone = self.entries.remove(&key).is_some();
        if let Some(b) = index.remove(key) {
            stats::stored(-(b as i64), -1);
        }
        gone
    }

    /// Keys (variants) stored for exactly `url`.
    pub fn keys_for(&self, url: &str) -> Vec<u128> {
        self.lock().by_url.keys_for(url)
    }

    /// Keys stored for URLs that `matches`.
    pub fn keys_matching(&self, matches: impl Fn(&str) -> bool) -> Vec<u128> {
        self.lock().by_url.keys_matching(matches)
    }
}

/// The storage key of a pingora-cache key.
pub fn key_of(key: &impl CacheHashKey) -> u128 {
    u128::from_be_bytes(key.combined_bin())
}
