//! Reading a stored body: the whole of it, or the byte range a `Range`
//! request asked for (pingora-cache seeks before reading).

use async_trait::async_trait;
use bytes::Bytes;
use pingora_cache::storage::{HandleHit, Storage};
use pingora_cache::trace::SpanHandle;
use pingora_cache::CacheKey;
use pingora_error::{Error, ErrorType, Result};
use std::any::Any;

/// A hit's body reader.
pub struct Hit {
    /// The entry's storage key.
    pub key: u128,
    /// The entry's URL.
    pub url: std::sync::Arc<str>,
    body: Bytes,
    start: usize,
    end: usize,
    done: bool,
}

impl Hit {
    /// A reader of all of `body`, the entry under `key`.
    pub fn new(key: u128, url: std::sync::Arc<str>, body: Bytes) -> Hit {
        let end = body.len();
        Hit {
            key,
            url,
            body,
            start: 0,
            end,
            done: false,
        }
    }

    /// Serves `body` (an encoded copy) instead, whole.
    pub fn replace(&mut self, body: Bytes) {
        self.end = body.len();
        self.body = body;
        self.start = 0;
        self.done = false;
    }
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done || self.start >= self.end {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.body.len();
        let end = end.unwrap_or(len).min(len);
        if start > end {
            return Error::e_explain(ErrorType::InternalError, "seek past the end of the body");
        }
        self.start = start;
        self.end = end;
        self.done = false;
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}
