//! The file model: serde types that mirror `weir.yaml` key for key.
//!
//! These types only describe what the file says. The compiler
//! (`crate::compile`) checks them and turns them into runtime structures in
//! one pass; nothing on the request path reads them, and this module imports
//! nothing from the runtime.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A duration written as a string (`250ms`, `5s`, `1m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let d = humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write e.g. \"250ms\", \"5s\", \"1m\""
            ))
        })?;
        // Far beyond any sensible timeout, and small enough that adding it to
        // an Instant or to milliseconds never overflows.
        if d > MAX_DURATION {
            return Err(serde::de::Error::custom(format!(
                "duration {text:?} is too long (at most 365 days)"
            )));
        }
        Ok(Dur(d))
    }
}

/// The longest duration a config may give.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A size written as a string (`512KiB`, `10MiB`) or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        let parsed = match &v {
            serde_yaml::Value::Number(n) => n.as_u64(),
            serde_yaml::Value::String(s) => crate::values::parse_size(s),
            _ => None,
        };
        parsed.map(Size).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid size {}; write e.g. \"512KiB\", \"10MiB\" or a number of bytes",
                serde_yaml::to_string(&v).unwrap_or_default().trim()
            ))
        })
    }
}

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Process settings handed to Pingora's `ServerConf`.
    #[serde(default)]
    pub server: ServerSection,
    /// Process log and access log settings.
    #[serde(default)]
    pub log: LogSection,
    /// The admin API. Default: none.
    pub admin: Option<AdminSection>,
    /// Peers whose `X-Forwarded-For` is believed (CIDR or plain addresses). Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Where weir accepts connections.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// Route rules, first match in file order wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Upstream groups by name.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Storage of the routes that cache (SPEC §1.1). Default: none (a
    /// route's `cache` then uses a 256MiB memory tier).
    pub cache: Option<CacheSection>,
    /// Reload by itself when this file or a certificate / key / CA file it
    /// names changes, after 1 s of quiet (`crate::watch`). Default: false.
    #[serde(default)]
    pub watch: bool,
    /// Certificates from an ACME CA for the names in `listeners[].tls.acme`.
    /// Default: none.
    pub acme: Option<AcmeSection>,
    /// OpenTelemetry tracing. Default: off.
    pub tracing: Option<TracingSection>,
    /// Values that came from `${VAR}` substitution (not a file key; hidden
    /// by `GET /config`).
    #[serde(skip)]
    pub substituted: Vec<String>,
    /// The folder relative file names are read from (the config file's; not
    /// a file key).
    #[serde(skip)]
    pub base_dir: std::path::PathBuf,
}

/// The `server` section: a subset of Pingora's `ServerConf`, same names and units.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Worker threads of the proxy service. Default: the number of CPUs.
    pub threads: Option<usize>,
    /// Run in the background. Default: false.
    pub daemon: Option<bool>,
    /// Default: `/tmp/weir.pid`.
    pub pid_file: Option<String>,
    /// Default: `/tmp/weir_upgrade.sock`.
    pub upgrade_sock: Option<String>,
    /// Process log file; default: stderr.
    pub error_log: Option<String>,
    /// User to switch to when daemonizing.
    pub user: Option<String>,
    /// Group to switch to when daemonizing.
    pub group: Option<String>,
    /// How long in-flight requests may finish after a stop or upgrade begins. Default: 5.
    pub grace_period_seconds: Option<u64>,
    /// Then what is left is closed after this long. Default: 5.
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    /// Idle upstream connections kept per process. Default: 128.
    pub upstream_keepalive_pool_size: Option<usize>,
    /// Let idle worker threads steal work. Default: true, but false with one thread.
    pub work_stealing: Option<bool>,
}

pub use super::model_acme::*;
pub use super::model_cache::*;
pub use super::model_listen::*;
pub use super::model_ops::*;
pub use super::model_policy::*;
pub use super::model_upstream::*;

/// One entry of `routes`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name used in logs and metrics. Default: `route<N>` (its index).
    pub name: Option<String>,
    /// Listeners this route applies to. Default: every http listener.
    pub listeners: Option<Vec<String>>,
    /// What a request must look like. Default: everything.
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    /// The upstream group that serves the route.
    pub upstream: Option<String>,
    /// A fixed answer instead of an upstream.
    pub respond: Option<RespondConfig>,
    /// A redirect instead of an upstream.
    pub redirect: Option<RedirectConfig>,
    /// Remove the matched `path_prefix` before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Regex path rewrite applied to the upstream request.
    pub rewrite: Option<RewriteConfig>,
    /// Overrides of the upstream's timeouts.
    pub timeouts: Option<TimeoutsConfig>,
    /// Extra tries on other backends. Default: 1.
    pub retries: Option<u32>,
    /// Which failures are retried. Default: `[connect_failure]`.
    pub retry_on: Option<Vec<RetryOn>>,
    /// Header changes on the request sent upstream.
    pub request_headers: Option<HeaderOpsConfig>,
    /// Header changes on the response sent to the client (weir's own answers too).
    pub response_headers: Option<HeaderOpsConfig>,
    /// Requests per second per key; 429 past it.
    pub rate_limit: Option<RateLimitConfig>,
    /// Credentials a request must carry; 401 without them.
    pub auth: Option<AuthConfig>,
    /// Only these client networks may use the route; 403 for others.
    pub allow_ips: Option<Vec<String>>,
    /// These client networks may not use the route; 403.
    pub deny_ips: Option<Vec<String>>,
    /// Largest request body; 413 past it. Default: unlimited.
    pub max_body_size: Option<Size>,
    /// Answers may be stored and served from the cache.
    pub cache: Option<RouteCacheConfig>,
    /// Answers are encoded for clients that accept it.
    pub compression: Option<CompressionConfig>,
}

/// `routes[].match`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `api.example.com` or `*.example.com`.
    pub host: Option<String>,
    /// Segment-aware path prefix.
    pub path_prefix: Option<String>,
    /// The prefix matches whatever the case (`/V1` for `/v1`), for
    /// case-insensitive backends. Default: false.
    #[serde(default)]
    pub ignore_case: bool,
    /// Allowed methods.
    pub methods: Option<Vec<String>>,
    /// Required header values (names case-insensitive, values exact).
    pub headers: Option<BTreeMap<String, String>>,
}

/// `routes[].respond`: weir answers by itself.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    /// Status code. Default: 200.
    #[serde(default = "default_respond_status")]
    pub status: u16,
    /// Body. Default: empty.
    #[serde(default)]
    pub body: String,
    /// Content type. Default: `text/plain`.
    pub content_type: Option<String>,
}

fn default_respond_status() -> u16 {
    200
}

/// `routes[].rewrite`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// Regex matched against the normalized path.
    pub from: String,
    /// Replacement; `$1` or `${name}` refer to groups.
    pub to: String,
}

/// Failures a route may retry on.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The backend refused, reset or timed out while connecting (always retried).
    ConnectFailure,
    /// The backend did not answer in time (idempotent requests only).
    Timeout,
    /// The backend answered 502, 503 or 504 (idempotent requests only).
    #[serde(rename = "5xx")]
    Status5xx,
}

/// `request_headers` / `response_headers`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderOpsConfig {
    /// Replace (or add) these headers.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append these headers.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Timeouts towards backends.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// TCP connect. Default 5s.
    pub connect: Option<Dur>,
    /// Longest gap between bytes read from the backend. Default 60s.
    pub read: Option<Dur>,
    /// Longest gap between bytes written to the backend. Default 60s.
    pub write: Option<Dur>,
    /// How long a pooled idle connection is kept. Default 60s.
    pub idle: Option<Dur>,
    /// How long a tunnel (a `tcp` listener's connection) may pass no bytes
    /// either way before it is closed. Default 1h.
    pub tunnel_idle: Option<Dur>,
}
