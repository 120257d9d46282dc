//! What the handshake and request paths read, published by the ACME
//! service: the certificates obtained so far (by name), the pending
//! http-01 tokens and the tls-alpn-01 challenge certificates. Every read is
//! one lock-free `ArcSwap` load; writers replace the whole map.

use arc_swap::ArcSwap;
use pingora_rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

type Map<V> = ArcSwap<HashMap<String, V>>;

static ISSUED: LazyLock<Map<Arc<CertifiedKey>>> = LazyLock::new(Default::default);
static TOKENS: LazyLock<Map<Arc<str>>> = LazyLock::new(Default::default);
static ALPN: LazyLock<Map<Arc<CertifiedKey>>> = LazyLock::new(Default::default);

/// The path prefix of http-01 challenges.
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The certificate obtained for `name` (lower-case), if there is one.
pub fn issued(name: &str) -> Option<Arc<CertifiedKey>> {
    ISSUED.load().get(name).cloned()
}

/// Serves `key` for every name in `names` from the next handshake on.
pub fn publish(names: &[String], key: Arc<CertifiedKey>) {
    ISSUED.rcu(|m| {
        let mut m = HashMap::clone(m);
        for n in names {
            m.insert(n.clone(), key.clone());
        }
        m
    });
}

/// Stops serving the certificates of `names` (no longer configured).
pub fn withdraw(names: &[String]) {
    ISSUED.rcu(|m| {
        let mut m = HashMap::clone(m);
        for n in names {
            m.remove(n);
        }
        m
    });
}

/// The key authorization for a request path, when it is
/// `/.well-known/acme-challenge/TOKEN` and TOKEN is pending; `None` for
/// every other path (which is then routed as usual).
pub fn http01_answer(path: &str) -> Option<Arc<str>> {
    let token = path.strip_prefix(CHALLENGE_PREFIX)?;
    let tokens = TOKENS.load();
    if tokens.is_empty() {
        return None;
    }
    tokens.get(token).cloned()
}

/// Sets the pending http-01 tokens (token → key authorization).
pub fn set_tokens(tokens: HashMap<String, Arc<str>>) {
    TOKENS.store(Arc::new(tokens));
}

/// The tls-alpn-01 challenge certificate for `name`, while it is being
/// validated.
pub fn alpn_cert(name: &str) -> Option<Arc<CertifiedKey>> {
    ALPN.load().get(name).cloned()
}

/// Adds (`Some`) or removes (`None`) the challenge certificate of `name`.
pub fn set_alpn_cert(name: &str, key: Option<Arc<CertifiedKey>>) {
    ALPN.rcu(|m| {
        let mut m = HashMap::clone(m);
        match &key {
            Some(k) => m.insert(name.to_string(), k.clone()),
            None => m.remove(name),
        };
        m
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pending_tokens_under_the_challenge_path_are_answered() {
        let mut t = HashMap::new();
        t.insert("tok-1".to_string(), Arc::from("tok-1.thumb"));
        set_tokens(t);
        let answer = http01_answer("/.well-known/acme-challenge/tok-1");
        assert_eq!(answer.as_deref(), Some("tok-1.thumb"));
        assert!(http01_answer("/.well-known/acme-challenge/other").is_none());
        assert!(http01_answer("/tok-1").is_none());
        assert!(http01_answer("/.well-known/acme-challenge/tok-1/x").is_none());
        set_tokens(HashMap::new());
        assert!(http01_answer("/.well-known/acme-challenge/tok-1").is_none());
    }
}
