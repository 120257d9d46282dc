//! weir's `Storage` for pingora-cache: the memory tier in front of the
//! optional disk tier. A fill goes to both; a memory miss that the disk
//! has is read from there (off the async threads) and kept in memory
//! again; purges and updates reach both.

use super::disk::DiskTier;
use super::entry::{Entry, StoredMeta};
use super::hit::Hit;
use super::memory::{key_of, MemoryStorage, MAX_OBJECT};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_cache::storage::{
    HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget, PurgeType,
    Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta};
use pingora_error::{Error, ErrorType, Result};
use std::any::Any;
use std::sync::Arc;

/// The cache's storage.
pub struct Tiers {
    /// The memory tier.
    pub memory: MemoryStorage,
    /// The disk tier, if configured (and its folder usable).
    pub disk: Option<DiskTier>,
}

impl Tiers {
    /// Stores `entry` in memory, and on disk in the background.
    fn store(&'static self, entry: Entry) {
        if let Some(d) = &self.disk {
            let copy = entry.clone();
            tokio::task::spawn_blocking(move || d.write(&copy));
        }
        self.memory.insert(entry);
    }

    async fn read_disk(&'static self, key: u128) -> Option<Arc<Entry>> {
        let d = self.disk.as_ref().filter(|d| d.contains(key))?;
        let entry = tokio::task::spawn_blocking(move || d.read(key))
            .await
            .ok()??;
        self.memory.insert(entry.clone());
        Some(Arc::new(entry))
    }

    /// Keeps an encoded copy of an entry in the memory tier (never on disk).
    pub fn store_encoded(&self, entry: Entry) {
        self.memory.insert(entry);
    }

    /// Removes the entry under `key` from both tiers; whether there was one.
    pub fn remove(&self, key: u128) -> bool {
        let m = self.memory.remove(key);
        let d = self.disk.as_ref().is_some_and(|d| d.remove(key));
        m || d
    }

    /// Removes the entries (every variant) of exactly `url`; how many.
    pub fn purge_url(&self, url: &str) -> usize {
        let mut keys = self.memory.keys_for(url);
        if let Some(d) = &self.disk {
            keys.extend(d.keys_for(url));
        }
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter().filter(|k| self.remove(*k)).count()
    }

    /// Removes the entries whose URL `matches` from both tiers; how many.
    pub fn purge_matching(&self, matches: impl Fn(&str) -> bool) -> usize {
        let mut keys = self.memory.keys_matching(&matches);
        if let Some(d) = &self.disk {
            keys.extend(d.keys_matching(&matches));
        }
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter().filter(|k| self.remove(*k)).count()
    }
}

/// Collects a fill's body, then stores it whole.
struct Miss {
    tiers: &'static Tiers,
    key: u128,
    url: Arc<str>,
    meta: StoredMeta,
    body: BytesMut,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.body.len() + data.len() > MAX_OBJECT.min(self.tiers.memory.limit()) {
            return Error::e_explain(ErrorType::InternalError, "object over the cache's limit");
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let size = self.body.len();
        self.tiers.store(Entry {
            key: self.key,
            url: self.url,
            meta: self.meta,
            body: self.body.freeze(),
        });
        Ok(MissFinishType::Created(size))
    }
}

#[async_trait]
impl Storage for Tiers {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let k = key_of(key);
        let found = match self.memory.get(k) {
            Some(e) => Some(e),
            None => self.read_disk(k).await,
        };
        Ok(found.map(|e| {
            let hit: HitHandler = Box::new(Hit::new(k, e.url.clone(), e.body.clone()));
            (e.meta.to_meta(), hit)
        }))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(Box::new(Miss {
            tiers: self,
            key: key_of(key),
            url: key.user_tag.as_str().into(),
            meta: StoredMeta::from_meta(meta),
            body: BytesMut::new(),
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        Ok(match self.remove(key_of(target.key())) {
            true => PurgeOutcome::Purged(None),
            false => PurgeOutcome::NotFound,
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let k = key_of(key);
        let old = match self.memory.get(k) {
            Some(e) => e,
            None => match self.read_disk(k).await {
                Some(e) => e,
                None => return Ok(false),
            },
        };
        self.store(Entry {
            key: k,
            url: old.url.clone(),
            meta: StoredMeta::from_meta(meta),
            body: old.body.clone(),
        });
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
