//! The disk tier: one file per entry under `cache.disk.path`, in 256 shard
//! folders, each file `magic, lengths, meta, head, url, body, hash`. Files
//! are written to a fresh temporary name opened with `O_NOFOLLOW | O_EXCL`
//! (never through a symlink, never over another file) and renamed into
//! place, so a reader sees a whole entry or none. A file that is short,
//! has another magic or a wrong hash is a miss: logged and removed. The
//! tier is bounded by its size; the oldest entries go first. The index is
//! rebuilt from the folder on start, so entries survive restarts and
//! upgrades.

use super::entry::{Entry, StoredMeta};
use pingora_cache::CacheMeta;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const MAGIC: &[u8; 8] = b"WEIRC01\0";
/// magic, 3 × u32 lengths, u64 body length.
const FIXED: usize = 8 + 12 + 8;
const HASH: usize = 16;

#[derive(Default)]
struct Index {
    /// Per key: URL, file size, age order.
    by_key: HashMap<u128, (Arc<str>, u64, u64)>,
    by_url: super::url_index::UrlIndex,
    order: BTreeMap<u64, u128>,
    total: u64,
    next: u64,
}

impl Index {
    fn insert(&mut self, key: u128, url: Arc<str>, size: u64) {
        self.remove(key);
        let seq = self.next;
        self.next += 1;
        self.by_url.add(url.clone(), key);
        self.by_key.insert(key, (url, size, seq));
        self.order.insert(seq, key);
        self.total += size;
    }

    fn remove(&mut self, key: u128) -> Option<u64> {
        let (url, size, seq) = self.by_key.remove(&key)?;
        self.order.remove(&seq);
        self.by_url.forget(&url, key);
        self.total -= size;
        Some(size)
    }
}

/// The disk tier.
pub struct DiskTier {
    dir: PathBuf,
    limit: u64,
    index: Mutex<Index>,
    tmp: AtomicU64,
}

fn u32_at(b: &[u8], at: usize) -> usize {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(x) as usize
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// A file's parts: meta, head, url, body.
type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8], &'a [u8]);

/// The parts of a file's bytes, if it is whole.
fn parse(b: &[u8]) -> Option<Parts<'_>> {
    if b.len() < FIXED + HASH || &b[..8] != MAGIC {
        return None;
    }
    let (m, h, u) = (u32_at(b, 8), u32_at(b, 12), u32_at(b, 16));
    let body = usize::try_from(u64_at(b, 20)).ok()?;
    let end = FIXED
        .checked_add(m)?
        .checked_add(h)?
        .checked_add(u)?
        .checked_add(body)?;
    if b.len() != end + HASH || b[end..] != pingora_cache::key::hash_key(&b[..end]) {
        return None;
    }
    let (meta, rest) = b[FIXED..end].split_at(m);
    let (head, rest) = rest.split_at(h);
    let (url, body) = rest.split_at(u);
    Some((meta, head, url, body))
}

impl DiskTier {
    /// The tier in `dir` (created if missing), holding at most `limit`
    /// bytes; its index is read from the files already there.
    pub fn open(dir: &Path, limit: u64) -> std::io::Result<DiskTier> {
        for shard in 0..256 {
            std::fs::create_dir_all(dir.join(format!("{shard:02x}")))?;
        }
        let tier = DiskTier {
            dir: dir.to_path_buf(),
            limit,
            index: Mutex::new(Index::default()),
            tmp: AtomicU64::new(0),
        };
        tier.scan();
        Ok(tier)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, key: u128) -> PathBuf {
        let hex = format!("{key:032x}");
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Rebuilds the index, oldest files first; removes leftovers and files
    /// that are not entries.
    fn scan(&self) {
        let mut found = Vec::new();
        for shard in 0..256 {
            let Ok(rd) = std::fs::read_dir(self.dir.join(format!("{shard:02x}"))) else {
                continue;
            };
            for e in rd.flatten() {
                let (path, name) = (e.path(), e.file_name().to_string_lossy().to_string());
                let key = u128::from_str_radix(&name, 16)
                    .ok()
                    .filter(|_| name.len() == 32);
                match (key, read_head(&path)) {
                    (Some(k), Some((url, size, mtime))) => found.push((mtime, k, url, size)),
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        found.sort();
        let mut index = self.lock();
        for (_, k, url, size) in found {
            index.insert(k, url.into(), size);
        }
        drop(index);
        // Past the size (a smaller size, or files from elsewhere): oldest go.
        self.evict();
    }

    /// The entry stored under `key`; a damaged file is logged, removed and a miss.
    pub fn read(&self, key: u128) -> Option<Entry> {
        let path = self.path(key);
        let bytes = read_file(&path, self.limit)?;
        let entry = parse(&bytes).and_then(|(meta, head, url, body)| {
            let m = CacheMeta::deserialize(meta, head).ok()?;
            Some(Entry {
                key,
                url: String::from_utf8_lossy(url).into(),
                meta: StoredMeta::from_meta(&m),
                body: bytes::Bytes::copy_from_slice(body),
            })
        });
        if entry.is_none() {
            log::warn!("cache: damaged entry {} removed (a miss)", path.display());
            self.remove(key);
        }
        entry
    }

    /// Writes `entry` (replacing the one under its key), then evicts the
    /// oldest entries past the size limit.
    pub fn write(&self, entry: &Entry) {
        let meta = entry.meta.to_meta();
        let Ok((m, h)) = meta.serialize() else {
            return;
        };
        let url = entry.url.as_bytes();
        let mut b =
            Vec::with_capacity(FIXED + m.len() + h.len() + url.len() + entry.body.len() + HASH);
        b.extend_from_slice(MAGIC);
        for n in [m.len(), h.len(), url.len()] {
            b.extend_from_slice(&(n as u32).to_be_bytes());
        }
        b.extend_from_slice(&(entry.body.len() as u64).to_be_bytes());
        for part in [&m[..], &h[..], url, &entry.body[..]] {
            b.extend_from_slice(part);
        }
        let hash = pingora_cache::key::hash_key(&b);
        b.extend_from_slice(&hash);
        if b.len() as u64 > self.limit {
            return;
        }
        let path = self.path(entry.key);
        let tmp = path.with_extension(format!("tmp{}", self.tmp.fetch_add(1, Ordering::Relaxed)));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&b))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            log::warn!("cache: could not write {}: {e}", path.display());
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        self.lock()
            .insert(entry.key, entry.url.clone(), b.len() as u64);
        self.evict();
    }

    fn evict(&self) {
        let mut index = self.lock();
        while index.total > self.limit {
            let Some((_, key)) = index.order.first_key_value().map(|(s, k)| (*s, *k)) else {
                break;
            };
            index.remove(key);
            let _ = std::fs::remove_file(self.path(key));
            super::stats::disk_evicted();
        }
        super::stats::disk_state(index.total, index.by_key.len());
    }

    /// Removes the entry under `key`; whether there was one.
    pub fn remove(&self, key: u128) -> bool {
        let mut index = self.lock();
        let known = index.remove(key).is_some();
        let gone = std::fs::remove_file(self.path(key)).is_ok();
        super::stats::disk_state(index.total, index.by_key.len());
        known || gone
    }

    /// Whether an entry is stored under `key`.
    pub fn contains(&self, key: u128) -> bool {
        self.lock().by_key.contains_key(&key)
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

/// A whole file, read without following a symlink; `None` if missing or
/// larger than `limit`.
fn read_file(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let len = f.metadata().ok()?.len();
    if len > limit {
        return None;
    }
    let mut b = Vec::with_capacity(len as usize);
    f.read_to_end(&mut b).ok()?;
    Some(b)
}

/// A file's URL, size and modification time, from its fixed part.
fn read_head(path: &Path) -> Option<(String, u64, std::time::SystemTime)> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let md = f.metadata().ok()?;
    let mut fixed = [0u8; FIXED];
    f.read_exact(&mut fixed).ok()?;
    if &fixed[..8] != MAGIC {
        return None;
    }
    let skip = (u32_at(&fixed, 8) + u32_at(&fixed, 12)) as u64;
    let mut url = vec![0u8; u32_at(&fixed, 16)];
    std::io::copy(&mut (&mut f).take(skip), &mut std::io::sink()).ok()?;
    f.read_exact(&mut url).ok()?;
    Some((
        String::from_utf8_lossy(&url).into(),
        md.len(),
        md.modified().ok()?,
    ))
}
