//! Encoded copies of cache entries: the first compressed hit of an entry
//! for an algorithm keeps what the encoder made (in the memory tier, as an
//! entry of its own, weighed and evicted like any other), and later hits
//! for that algorithm are served from it instead of compressing again.
//! A copy's key is derived from its entry's key, the time the entry was
//! stored or revalidated, the algorithm and the level, so a new answer
//! never meets an old copy.

use super::compress::Compression;
use super::encoder::{Encoder, Record};
use super::entry::{Entry, StoredMeta};
use super::hit::Hit;
use pingora_cache::storage::HitHandler;
use pingora_cache::CacheMeta;
use pingora_proxy::Session;
use std::time::UNIX_EPOCH;

fn copy_key(key: u128, meta: &CacheMeta, algorithm: usize, level: u32) -> u128 {
    let at = meta
        .updated()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut b = [0u8; 40];
    b[..16].copy_from_slice(&key.to_be_bytes());
    b[16..32].copy_from_slice(&at.to_be_bytes());
    b[32] = algorithm as u8;
    b[33..37].copy_from_slice(&level.to_be_bytes());
    u128::from_be_bytes(pingora_cache::key::hash_key(b))
}

/// `cache_hit_filter` on a route with compression: serve a kept encoded
/// copy, or keep the one this hit makes.
pub fn on_hit(session: &mut Session, c: &Compression, meta: &CacheMeta, hit: &mut HitHandler) {
    let req = session.req_header();
    if req.method != http::Method::GET
        || req.headers.contains_key(http::header::RANGE)
        || !c.eligible(meta.response_header())
    {
        return;
    }
    let accept = req
        .headers
        .get(http::header::ACCEPT_ENCODING)
        .map(|v| v.as_bytes());
    let (Some(a), Some(storage)) = (c.choose(accept), super::STORAGE.get()) else {
        return;
    };
    let Some(h) = hit.as_any_mut().downcast_mut::<Hit>() else {
        return;
    };
    let Some(enc) = session.downstream_modules_ctx.get_mut::<Encoder>() else {
        return;
    };
    let key = copy_key(h.key, meta, a, c.levels[a]);
    match storage.memory.get(key) {
        Some(copy) => {
            h.replace(copy.body.clone());
            enc.pre_encoded = Some((a, copy.body.len()));
        }
        None => {
            enc.record = Some(Record {
                entry: Entry {
                    key,
                    url: h.url.clone(),
                    meta: StoredMeta::from_meta(meta),
                    body: bytes::Bytes::new(),
                },
                max: storage.memory.limit() / 8,
            })
        }
    }
}
