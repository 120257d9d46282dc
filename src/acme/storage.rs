//! The `acme.storage` folder: one sub-folder per CA directory holding the
//! account (`account.json`), one `NAME.pem` per certificate (chain, then
//! key, in one file so a reader never sees a key from another
//! certificate), the pending http-01 tokens (`http-01/TOKEN`, so every
//! instance sharing the folder answers them) and the `lock` file that
//! serializes orders between instances. Files are written atomically with
//! mode 0600 ([`crate::files::write_atomic`]) and read without following
//! symlinks.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The storage of one CA directory.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
}

/// Largest file read from storage.
const MAX_FILE: u64 = 1 << 20;

impl Storage {
    /// The folder for `directory` under `root` (created 0700 if missing).
    pub fn open(root: &Path, directory: &str) -> std::io::Result<Storage> {
        let digest = ring::digest::digest(&ring::digest::SHA256, directory.as_bytes());
        let hex: String = digest.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let host: String = directory
            .split("://")
            .nth(1)
            .unwrap_or(directory)
            .split(['/', ':'])
            .next()
            .unwrap_or("ca")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
            .collect();
        let dir = root.join(format!("{host}-{hex}"));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("http-01"))?;
        Ok(Storage { dir })
    }

    /// The folder itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the account credentials are.
    pub fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    /// Where the certificate whose first name is `key` is.
    pub fn cert_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.pem"))
    }

    /// Where a pending http-01 token is.
    pub fn token_path(&self, token: &str) -> PathBuf {
        self.dir.join("http-01").join(token)
    }

    /// Reads a file of this storage; `Ok(None)` when it does not exist.
    pub fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        read_nofollow(path)
    }

    /// Writes a file atomically, mode 0600.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        crate::files::write_atomic(path, bytes, 0o600)
    }

    /// The pending http-01 tokens of every instance (token → key
    /// authorization); tokens older than an hour are left-overs and skipped.
    pub fn tokens(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("http-01")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let fresh = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() < 3600);
            if !fresh || !is_token(&name) {
                continue;
            }
            if let Ok(Some(bytes)) = read_nofollow(&e.path()) {
                out.push((name, String::from_utf8_lossy(&bytes).trim().to_string()));
            }
        }
        out
    }

    /// Takes the lock file without waiting: `Ok(None)` while another
    /// process holds it. The lock is released when the guard is dropped.
    pub fn try_lock(&self) -> std::io::Result<Option<LockGuard>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.dir.join("lock"))?;
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(LockGuard { _file: file }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(err)
        }
    }
}

/// Holds the storage lock until dropped (closing the file releases it).
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// Whether `s` can be an ACME token (base64url, RFC 8555 §8.1).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads a regular file without following a symlink at its last component.
pub fn read_nofollow(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn root(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-acme-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn files_are_0600_and_a_symlink_is_neither_followed_nor_read() {
        let r = root("perm");
        let s = Storage::open(&r, "https://ca.test/dir").unwrap();
        let p = s.cert_path("a.test");
        s.write(&p, b"pem").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let victim = r.join("victim");
        std::fs::write(&victim, "secret").unwrap();
        let link = s.cert_path("b.test");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(s.read(&link).is_err());
        s.write(&link, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let r = root("lock");
        let s = Storage::open(&r, "https://ca.test/dir").unwrap();
        let held = s.try_lock().unwrap();
        assert!(held.is_some());
        assert!(s.try_lock().unwrap().is_none());
        drop(held);
        assert!(s.try_lock().unwrap().is_some());
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn only_token_shaped_names_are_tokens() {
        assert!(is_token("abc-DEF_123"));
        assert!(!is_token("../etc"));
        assert!(!is_token(""));
    }
}
