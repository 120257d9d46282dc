//! The file model of a route's traffic policies: `redirect`, `rate_limit`,
//! `auth`. Re-exported from [`super::model`].

use super::model::Dur;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `routes[].redirect`: weir answers with a redirect.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Target; may use `$scheme $host $path $query $request_uri`.
    pub to: String,
    /// 301, 302, 303, 307 or 308. Default: 302.
    pub status: Option<u16>,
}

/// `routes[].rate_limit`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests allowed per key in each one-second window.
    pub requests_per_second: u32,
    /// `client_ip` (default) or `header:NAME` (missing header: client address).
    pub key: Option<String>,
    /// Count in Redis, shared by every weir that names the same server.
    pub shared: Option<SharedLimitConfig>,
}

/// `routes[].rate_limit.shared`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SharedLimitConfig {
    /// `redis://host:port[/db]`.
    pub redis: String,
    /// What to do when Redis cannot answer in time. Default: allow.
    #[serde(default)]
    pub on_error: OnError,
    /// Longest wait for Redis per request. Default: 50ms.
    pub timeout: Option<Dur>,
}

/// What a shared limit does when its store is unreachable.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Let the request through.
    #[default]
    Allow,
    /// Refuse it (503).
    Deny,
}

/// `routes[].auth`: API keys and/or HTTP basic users.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted keys, from `header` or `Authorization: Bearer`.
    pub api_keys: Option<Vec<String>>,
    /// Header carrying the key. Default: `x-api-key`.
    pub header: Option<String>,
    /// HTTP basic users.
    pub basic: Option<BasicAuthConfig>,
    /// Remove the credentials before the request goes upstream. Default: false.
    #[serde(default)]
    pub hide_credentials: bool,
}

/// `routes[].auth.basic`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// User name → bcrypt hash (`$2b$…`, as `htpasswd -B` writes).
    pub users: BTreeMap<String, String>,
    /// Realm in `WWW-Authenticate`. Default: `weir`.
    pub realm: Option<String>,
}
