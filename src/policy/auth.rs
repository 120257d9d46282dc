//! `auth`: API keys (from `auth.header`, default `x-api-key`, or
//! `Authorization: Bearer KEY`, compared in constant time with `subtle`)
//! and/or HTTP basic users with bcrypt hashes. 401 without valid
//! credentials (`WWW-Authenticate: Basic` when basic users are configured).
//! `hide_credentials` strips them before the request goes upstream.
//!
//! bcrypt is slow by design, so a check runs on the blocking pool, and a
//! credential that passed once is remembered as a keyed hash (a random
//! SipHash key per process; never the password) in a small bounded set.

use super::{Answer, Decision, RequestView};
use crate::config::model::AuthConfig;
use crate::config::Issue;
use base64::Engine;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue};
use pingora_http::RequestHeader;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// Most remembered basic credentials per route.
const CACHE_MAX: usize = 1024;

/// bcrypt checks running at once, process-wide: each takes tens of ms of
/// CPU by design, so a flood of wrong passwords must not queue without
/// bound. Past it a check is refused (401) at once.
fn bcrypt_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(n)
    })
}

/// Verified against for unknown users, so timing does not tell which user
/// names exist (cost 10, as `htpasswd -B` writes by default).
const DUMMY_HASH: &str = "$2b$10$Uyh3S0xOQ1f7zL5VYqWy5eW5yY5l5mQfQ4k1c8vQH0mQ0sD3Zr0pW";

/// A compiled `auth`.
pub struct Auth {
    keys: Box<[Box<[u8]>]>,
    header: HeaderName,
    basic: Option<Arc<Basic>>,
    challenge: Option<HeaderValue>,
    hide: bool,
}

struct Basic {
    users: HashMap<String, String>,
    seed: RandomState,
    passed: Mutex<HashSet<u64>>,
}

impl Auth {
    /// Compiles `auth` at `base`.
    pub fn compile(cfg: &AuthConfig, base: &str, issues: &mut Vec<Issue>) -> Option<Auth> {
        let mut keys = Vec::new();
        for (i, k) in cfg.api_keys.iter().flatten().enumerate() {
            if k.trim().is_empty() {
                issues.push(Issue::new(
                    format!("{base}.api_keys[{i}]"),
                    "an API key must not be empty",
                ));
            } else if k.trim() != k {
                issues.push(Issue::new(
                    format!("{base}.api_keys[{i}]"),
                    "an API key cannot start or end with spaces (a header value never does)",
                ));
            } else {
                keys.push(k.as_bytes().into());
            }
        }
        if cfg.api_keys.as_ref().is_some_and(|k| k.is_empty()) {
            issues.push(Issue::new(
                format!("{base}.api_keys"),
                "list at least one key",
            ));
        }
        let header =
            match HeaderName::from_bytes(cfg.header.as_deref().unwrap_or("x-api-key").as_bytes()) {
                Ok(h) => h,
                Err(_) => {
                    issues.push(Issue::new(format!("{base}.header"), "invalid header name"));
                    HeaderName::from_static("x-api-key")
                }
            };
        let mut challenge = None;
        let basic = cfg.basic.as_ref().map(|b| {
            for (user, hash) in &b.users {
                if user.is_empty() || user.contains(':') {
                    issues.push(Issue::at_key(
                        format!("{base}.basic.users.{user}"),
                        "a user name must not be empty or contain ':'",
                    ));
                }
                if hash.parse::<bcrypt::HashParts>().is_err() {
                    issues.push(Issue::new(
                        format!("{base}.basic.users.{user}"),
                        "not a bcrypt hash; write one made by `htpasswd -nbB user password` (the part after ':')",
                    ));
                }
            }
            if b.users.is_empty() {
                issues.push(Issue::new(format!("{base}.basic.users"), "list at least one user"));
            }
            let realm = b.realm.as_deref().unwrap_or("weir");
            match HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")) {
                Ok(v) => challenge = Some(v),
                Err(_) => issues.push(Issue::new(format!("{base}.basic.realm"), "invalid realm")),
            }
            Arc::new(Basic {
                users: b.users.clone().into_iter().collect(),
                seed: RandomState::new(),
                passed: Mutex::new(HashSet::new()),
            })
        });
        if cfg.api_keys.is_none() && cfg.basic.is_none() {
            issues.push(Issue::new(base, "needs api_keys or basic"));
        }
        Some(Auth {
            keys: keys.into_boxed_slice(),
            header,
            basic,
            challenge,
            hide: cfg.hide_credentials,
        })
    }

    fn key_ok(&self, presented: &[u8]) -> bool {
        // Every key is compared, so timing says nothing about which matched.
        self.keys
            .iter()
            .fold(0u8, |acc, k| acc | k.as_ref().ct_eq(presented).unwrap_u8())
            == 1
    }

    /// 401 unless the request carries a valid key or user.
    pub async fn request(&self, v: &RequestView<'_>) -> Decision {
        let h = &v.req.headers;
        if !self.keys.is_empty() {
            let from_header = h.get(&self.header).map(HeaderValue::as_bytes);
            let bearer = h
                .get(AUTHORIZATION)
                .and_then(|a| strip_scheme(a.as_bytes(), b"bearer"));
            if from_header.is_some_and(|k| self.key_ok(k)) || bearer.is_some_and(|k| self.key_ok(k))
            {
                return Decision::Continue;
            }
        }
        if let Some(basic) = &self.basic {
            let creds = h
                .get(AUTHORIZATION)
                .and_then(|a| strip_scheme(a.as_bytes(), b"basic"));
            if let Some(c) = creds {
                if basic.check(c).await {
                    return Decision::Continue;
                }
            }
        }
        Decision::Respond(Answer {
            status: 401,
            header: self.challenge.clone().map(|c| (WWW_AUTHENTICATE, c)),
            body: None,
        })
    }

    /// Keeps `prev`'s cache of verified basic credentials (the same route,
    /// unchanged, in the snapshot being replaced).
    pub fn carry_over(&mut self, prev: &Auth) {
        if self.basic.is_some() {
            self.basic = prev.basic.clone();
        }
    }

    /// Strips the credentials when `hide_credentials` is set.
    pub fn upstream_request(&self, req: &mut RequestHeader) {
        if self.hide {
            if !self.keys.is_empty() {
                req.remove_header(&self.header);
            }
            req.remove_header(&AUTHORIZATION);
        }
    }
}

/// The credentials after `Scheme ` (scheme compared case-insensitively).
fn strip_scheme<'a>(value: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let (s, rest) = value.split_at_checked(scheme.len())?;
    if !s.eq_ignore_ascii_case(scheme) || rest.first() != Some(&b' ') {
        return None;
    }
    Some(rest.trim_ascii())
}

impl Basic {
    async fn check(self: &Arc<Self>, encoded: &[u8]) -> bool {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&c| c == b':') else {
            return false;
        };
        let Ok(user) = std::str::from_utf8(&decoded[..colon]) else {
            return false;
        };
        let known = self.users.get(user).cloned();
        let hash = known.clone().unwrap_or_else(|| DUMMY_HASH.to_string());
        let tag = self.seed.hash_one((user, &decoded[colon + 1..], &hash));
        if known.is_some() && self.passed.lock().is_ok_and(|p| p.contains(&tag)) {
            return true;
        }
        let Ok(_slot) = bcrypt_slots().try_acquire() else {
            return false;
        };
        let password = decoded[colon + 1..].to_vec();
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let ok = verified && known.is_some();
        if ok {
            if let Ok(mut p) = self.passed.lock() {
                if p.len() >= CACHE_MAX {
                    p.clear();
                }
                p.insert(tag);
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_schemes() {
        assert_eq!(strip_scheme(b"Bearer abc", b"bearer"), Some(&b"abc"[..]));
        assert_eq!(strip_scheme(b"bearer  abc ", b"bearer"), Some(&b"abc"[..]));
        assert_eq!(strip_scheme(b"Bearerabc", b"bearer"), None);
        assert_eq!(strip_scheme(b"Basic x", b"bearer"), None);
    }
}
