//! The keys (variants) each tier stores per URL, for invalidation and
//! purges: one structure shared by the memory and disk tiers.

use std::collections::HashMap;
use std::sync::Arc;

/// Stored keys by URL.
#[derive(Debug, Default)]
pub struct UrlIndex(HashMap<Arc<str>, Vec<u128>>);

impl UrlIndex {
    /// Records `key` as stored for `url`.
    pub fn add(&mut self, url: Arc<str>, key: u128) {
        self.0.entry(url).or_default().push(key);
    }

    /// Forgets `key` of `url` (and the URL with its last key).
    pub fn forget(&mut self, url: &str, key: u128) {
        if let Some(keys) = self.0.get_mut(url) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.0.remove(url);
            }
        }
    }

    /// Keys stored for exactly `url`.
    pub fn keys_for(&self, url: &str) -> Vec<u128> {
        self.0.get(url).cloned().unwrap_or_default()
    }

    /// Keys stored for URLs that `matches`.
    pub fn keys_matching(&self, matches: impl Fn(&str) -> bool) -> Vec<u128> {
        self.0
            .iter()
            .filter(|(u, _)| matches(u))
            .flat_map(|(_, ks)| ks.iter().copied())
            .collect()
    }
}
