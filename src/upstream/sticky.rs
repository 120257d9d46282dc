//! Cookie-based session affinity: each backend is named by an opaque value,
//! the cookie pins a client to that backend while it is up.
//!
//! The value is HMAC-SHA256 (ring) keyed with the upstream's `secret`, over
//! the upstream name and the backend address, cut to 64 bits (16 hex
//! digits): it never shows the address, and every weir instance and version
//! with the same secret computes the same one, so a rolling upgrade of a
//! fleet keeps every client on its backend. Without a `secret` the key is
//! [`DEFAULT_KEY`], fixed and documented (stable too, but anyone can
//! invert a value to the address by trying addresses; `weir check` warns).

use super::BackendInfo;
use http::HeaderValue;
use ring::hmac;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The HMAC key when an upstream's sticky block has no `secret`.
pub const DEFAULT_KEY: &[u8] = b"weir sticky cookie v1 (no secret set)";

/// A group's sticky settings as compiled: the cookie name and the key.
#[derive(Clone)]
pub struct StickySpec {
    /// The cookie name.
    pub cookie: Box<str>,
    key: hmac::Key,
}

impl std::fmt::Debug for StickySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickySpec")
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

impl StickySpec {
    /// `cookie`, its values keyed by `secret` (or [`DEFAULT_KEY`]).
    pub fn new(cookie: &str, secret: Option<&str>) -> StickySpec {
        let key = secret.map_or(DEFAULT_KEY, str::as_bytes);
        StickySpec {
            cookie: cookie.into(),
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }
}

/// A group's sticky cookie and the backend each value names.
#[derive(Debug)]
pub struct Sticky {
    /// The cookie name.
    pub cookie: Box<str>,
    by_value: HashMap<u64, SocketAddr>,
}

fn mac(key: &hmac::Key, upstream: &str, addr: SocketAddr) -> u64 {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(upstream.as_bytes());
    ctx.update(b"\0");
    ctx.update(addr.to_string().as_bytes());
    let tag = ctx.sign();
    let mut first = [0u8; 8];
    first.copy_from_slice(&tag.as_ref()[..8]);
    u64::from_be_bytes(first)
}

/// The cookie value naming `addr` in `upstream`: 16 hex digits (a
/// placeholder when the upstream has no sticky block: never sent).
pub fn value_for(spec: Option<&StickySpec>, upstream: &str, addr: SocketAddr) -> HeaderValue {
    let Some(spec) = spec else {
        return HeaderValue::from_static("0");
    };
    HeaderValue::from_str(&format!("{:016x}", mac(&spec.key, upstream, addr)))
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

    /// `Set-Cookie` for a backend: opaque value, `Path=/`, `HttpOnly`,
    /// `SameSite=Lax`, and `Secure` when the client came over TLS.
    pub fn set_cookie(&self, info: &BackendInfo, https: bool) -> Option<HeaderValue> {
        let v = std::str::from_utf8(info.sticky_value.as_bytes()).ok()?;
        let secure = if https { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}={v}; Path=/; HttpOnly; SameSite=Lax{secure}",
            self.cookie
        ))
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The values are part of the contract between weir versions and
    /// instances: a change here reshuffles every sticky client in a rolling
    /// upgrade. These pin them.
    #[test]
    fn values_are_stable_keyed_and_distinct() {
        let default = StickySpec::new("s", None);
        let keyed = StickySpec::new("s", Some("k3y"));
        let a = addr("10.0.0.1:8080");
        let v = |s: &StickySpec, u: &str, a| value_for(Some(s), u, a);
        assert_eq!(v(&default, "api", a), "4649515dc5298991");
        assert_ne!(v(&keyed, "api", a), v(&default, "api", a));
        assert_ne!(v(&keyed, "api", a), v(&keyed, "web", a));
        assert_ne!(v(&keyed, "api", a), v(&keyed, "api", addr("10.0.0.2:8080")));
        assert_eq!(v(&keyed, "api", a).len(), 16);
    }
}
