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
        humantime::parse_duration(text.trim())
            .map(Dur)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?} ({e}); write e.g. \"250ms\", \"5s\", \"1m\""
                ))
            })
    }
}

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

pub use super::model_ops::*;

/// One entry of `listeners`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Unique name, referenced by `routes[].listeners`.
    pub name: String,
    /// `ip:port` to bind.
    pub address: String,
    /// What the listener speaks. Default: http.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// Largest request head (request-target: 414; header fields: 431).
    /// Default: 64KiB.
    pub max_header_size: Option<Size>,
    /// TLS settings (`https` listeners only).
    pub tls: Option<ListenerTls>,
    /// The upstream group a `tcp` listener relays to (`tcp` listeners only).
    pub upstream: Option<String>,
    /// Client-side deadlines (http and https listeners). Default: header
    /// 10s, keepalive 60s.
    pub timeouts: Option<ListenerTimeouts>,
    /// Most connections served at once; past it new connections wait.
    /// Default: unlimited.
    pub max_connections: Option<u32>,
    /// Every connection starts with a PROXY protocol v1 or v2 header whose
    /// source address is the client's. Default: false.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// `listeners[].timeouts`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTimeouts {
    /// Deadline for a whole request head, from its first byte. Default 10s.
    pub header: Option<Dur>,
    /// Idle time allowed between requests on a keep-alive connection (whole
    /// seconds; `0s` turns keep-alive off). Default 60s.
    pub keepalive: Option<Dur>,
}

/// The PROXY protocol version weir sends to a backend.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocolVersion {
    /// The text form (`PROXY TCP4 …\r\n`).
    V1,
    /// The binary form.
    V2,
}

/// `listeners[].tls`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// Certificate chains and keys; SNI picks by the certificate's names,
    /// the first is the default.
    pub certificates: Vec<CertificateFiles>,
    /// Offer HTTP/2 (ALPN h2, then http/1.1). Default: false.
    #[serde(default)]
    pub http2: bool,
    /// CA bundle for client certificates (mTLS): clients without a valid
    /// certificate are refused.
    pub client_ca: Option<String>,
    /// Lowest TLS version: "1.2" (default) or "1.3".
    pub min_version: Option<String>,
}

/// One certificate of an https listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    /// PEM certificate chain (leaf first).
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// The protocol of a listener.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// Plain HTTP/1.1.
    #[default]
    Http,
    /// TLS-terminated HTTP/1.1 and, with `tls.http2`, HTTP/2.
    Https,
    /// Plain TCP relay to the listener's `upstream`.
    Tcp,
}

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
}

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

/// `routes[].match`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `api.example.com` or `*.example.com`.
    pub host: Option<String>,
    /// Segment-aware path prefix.
    pub path_prefix: Option<String>,
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

/// One upstream group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// How a backend is chosen. Default: round_robin.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Key for consistent_hash: `client_ip`, `header:NAME`, `cookie:NAME` or `path`.
    pub hash_key: Option<String>,
    /// The servers.
    #[serde(default)]
    pub backends: Vec<BackendEntry>,
    /// Active health checking. Default: none (backends always up).
    pub health_check: Option<HealthCheckConfig>,
    /// Timeouts towards these backends.
    pub timeouts: Option<TimeoutsConfig>,
    /// Host header sent upstream. Default: the client's.
    pub host_header: Option<String>,
    /// Backends found in DNS, in addition to `backends`.
    pub discovery: Option<DiscoveryConfig>,
    /// Passive circuit breaking per backend. Default: none.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Session affinity by cookie. Default: none.
    pub sticky: Option<StickyConfig>,
    /// What weir speaks to the backends. Default: http1.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// TLS towards the backends. Default: none (plaintext).
    pub tls: Option<UpstreamTls>,
    /// Start each backend connection with a PROXY protocol header naming
    /// the client. Default: none.
    pub send_proxy_protocol: Option<ProxyProtocolVersion>,
}

/// `upstreams.*.protocol`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS when `tls` is set).
    #[default]
    Http1,
    /// HTTP/2 over TLS (needs `tls`).
    H2,
    /// HTTP/2 in cleartext with prior knowledge (gRPC backends).
    H2c,
}

/// `upstreams.*.tls`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Server name sent and verified. Default: `host_header`, else the
    /// backend's IP address.
    pub sni: Option<String>,
    /// Verify the backend's certificate and name. Default: true.
    pub verify: Option<bool>,
    /// PEM bundle of CAs to trust instead of the system's.
    pub ca: Option<String>,
}

/// `upstreams.*.circuit_breaker`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Real-traffic failures in a row that open it. Default: 5.
    pub consecutive_failures: Option<u32>,
    /// How long it stays open before one trial request. Default: 10s.
    pub open_for: Option<Dur>,
}

/// `upstreams.*.sticky`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    /// Cookie that pins a client to its backend.
    pub cookie: String,
}

/// `upstreams.*.discovery`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// A/AAAA lookup.
    pub dns: DnsDiscovery,
}

/// `upstreams.*.discovery.dns`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsDiscovery {
    /// Name to resolve.
    pub name: String,
    /// What to ask for. Default: `a` (A and AAAA records).
    #[serde(default, rename = "type")]
    pub kind: DnsKind,
    /// Port of every resolved address (`a` only; SRV records carry their own).
    pub port: Option<u16>,
    /// How often to resolve. Default 10s.
    pub refresh: Option<Dur>,
    /// `ip:port` of the DNS server. Default: the system's resolv.conf.
    pub resolver: Option<String>,
}

/// The record type DNS discovery asks for.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DnsKind {
    /// A and AAAA records, with `port`.
    #[default]
    A,
    /// SRV records (Consul, Kubernetes headless services): target, port and
    /// weight from each record.
    Srv,
}

/// Where a backend came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Source {
    /// The config file.
    #[default]
    File,
    /// The admin API (persisted in `state_file`).
    Admin,
    /// DNS discovery.
    Dns,
}

impl Source {
    /// `file`, `admin` or `dns`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Admin => "admin",
            Source::Dns => "dns",
        }
    }
}

/// Selection algorithms.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each backend in turn (weights repeat a backend, as Pingora does).
    #[default]
    RoundRobin,
    /// Smooth weighted round robin, as nginx does it.
    Weighted,
    /// The backend with the fewest requests in flight (per weight).
    LeastConnections,
    /// Uniformly random (weights respected).
    Random,
    /// Ketama consistent hashing on `hash_key`.
    ConsistentHash,
    /// Hash of the client address.
    IpHash,
}

impl Algorithm {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::Weighted => "weighted",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::Random => "random",
            Algorithm::ConsistentHash => "consistent_hash",
            Algorithm::IpHash => "ip_hash",
        }
    }
}

/// A backend: either `"ip:port"` or the long form.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BackendEntry {
    /// `- 10.0.0.2:8080`
    Short(String),
    /// `- { address: …, weight: … }`
    Long(BackendLong),
}

/// The long form of a backend.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendLong {
    /// `ip:port` or `host:port` (resolved at load).
    pub address: String,
    /// Relative weight. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Label for logs and metrics. Default: the address.
    pub name: Option<String>,
    /// `false` keeps the backend in the file but sends it nothing. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where it came from (not a file key).
    #[serde(skip)]
    pub source: Source,
    /// Takes no new requests; in-flight ones finish (admin state, not a file key).
    #[serde(skip)]
    pub draining: bool,
}

// Not `#[serde(untagged)]`: that would replace every error inside the long
// form (unknown key, wrong type) by "did not match any variant", with no path.
impl<'de> Deserialize<'de> for BackendEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = BackendEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a backend: \"ip:port\" or a mapping with address, weight, name, enabled",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BackendEntry, E> {
                Ok(BackendEntry::Short(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<BackendEntry, A::Error> {
                BackendLong::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(BackendEntry::Long)
            }
        }
        d.deserialize_any(Visit)
    }
}

fn default_weight() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

impl BackendEntry {
    /// The backend in long form.
    pub fn long(&self) -> BackendLong {
        match self {
            BackendEntry::Short(address) => BackendLong {
                address: address.clone(),
                weight: 1,
                name: None,
                enabled: true,
                source: Source::File,
                draining: false,
            },
            BackendEntry::Long(l) => l.clone(),
        }
    }
}

/// `upstreams.*.health_check`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `tcp` or `http`.
    #[serde(rename = "type")]
    pub kind: HealthCheckKind,
    /// Time between checks. Default 5s.
    pub interval: Option<Dur>,
    /// Time a check may take. Default 2s; must be below interval.
    pub timeout: Option<Dur>,
    /// http only: path to request. Default `/`.
    pub path: Option<String>,
    /// http only: Host header. Default: the upstream's `host_header`, else `localhost`.
    pub host: Option<String>,
    /// Check this port instead of the traffic port.
    pub port: Option<u16>,
    /// http only: statuses that count as healthy. Default: any 2xx/3xx.
    pub expect_status: Option<Vec<u16>>,
    /// Passing checks in a row that bring a backend back. Default 2.
    pub healthy_threshold: Option<usize>,
    /// Failing checks in a row that take a backend out. Default 3.
    pub unhealthy_threshold: Option<usize>,
}

/// Kinds of active health check.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckKind {
    /// A TCP connect succeeds.
    Tcp,
    /// An HTTP request gets an expected status.
    Http,
}
