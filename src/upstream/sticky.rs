//! Cookie-based session affinity: each backend is named by an opaque value
//! (a hash of the upstream name and the address, so it never shows the
//! address, and every weir instance of the same build computes the same
//! one); the cookie pins a client to that backend while it is up.

use super::BackendInfo;
use http::HeaderValue;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

/// A group's sticky cookie and the backend each value names.
#[derive(Debug)]
pub struct Sticky {
    /// The cookie name.
    pub cookie: Box<str>,
    by_value: HashMap<u64, SocketAddr>,
}

fn hash(upstream: &str, addr: SocketAddr) -> u64 {
    // DefaultHasher::new() has fixed keys: the same value in every process.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("weir-sticky", upstream, addr).hash(&mut h);
    h.finish()
}

/// The cookie value naming `addr` in `upstream`: 16 hex digits.
pub fn value_for(upstream: &str, addr: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&format!("{:016x}", hash(upstream, addr)))
        .unwrap_or(HeaderValue::from_static("0"))
}

impl Sticky {
    /// The table for these backends.
    pub fn new<'a>(cookie: &str, backends: impl Iterator<Item = &'a Arc<BackendInfo>>) -> Sticky {
        Sticky {
            cookie: cookie.into(),
            by_value: backends
                .map(|b| {
                    let v = std::str::from_utf8(b.sticky_value.as_bytes())
                        .ok()
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .unwrap_or(0);
                    (v, b.addr)
                })
                .collect(),
        }
    }

    /// The backend a cookie value names, if any.
    pub fn lookup(&self, value: &[u8]) -> Option<SocketAddr> {
        if value.len() != 16 {
            return None;
        }
        let v = u64::from_str_radix(std::str::from_utf8(value).ok()?, 16).ok()?;
        self.by_value.get(&v).copied()
    }

    /// `Set-Cookie` for a backend: opaque value, `Path=/`, `HttpOnly`.
    pub fn set_cookie(&self, info: &BackendInfo) -> Option<HeaderValue> {
        let v = std::str::from_utf8(info.sticky_value.as_bytes()).ok()?;
        HeaderValue::from_str(&format!("{}={v}; Path=/; HttpOnly", self.cookie)).ok()
    }
}
