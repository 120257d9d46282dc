//! The file model of `upstreams.<name>`: backends, algorithms, health
//! checks, discovery, circuit breaker, stickiness, protocol and TLS.
//! Re-exported from [`super::model`].

use super::model::{Dur, ProxyProtocolVersion, TimeoutsConfig};
use serde::{Deserialize, Serialize};

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
    /// Below this share of backends in service, balance over every enabled
    /// backend, healthy or not. Default: 0% (never).
    pub panic_threshold: Option<Pct>,
    /// A backend entering service ramps from 10% to its full share over
    /// this long. Default: 0s (at once).
    pub slow_start: Option<Dur>,
    /// Limits retries to a share of the requests in flight. Default: none.
    pub retry_budget: Option<RetryBudgetConfig>,
}

/// `upstreams.*.retry_budget`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// Retries in flight may be at most this share of requests in flight.
    pub ratio: Pct,
    /// Retries in flight always allowed, whatever the ratio. Default: 3.
    pub min_retries: Option<u32>,
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
    /// How long it stays open before one trial request; doubles with each
    /// opening in a row. Default: 10s.
    pub open_for: Option<Dur>,
    /// Opens on a failure ratio too. Default: none.
    pub failure_rate: Option<FailureRateConfig>,
    /// The longest `open_for` gets by doubling. Default: 5m.
    pub max_open_for: Option<Dur>,
    /// Never more than this share of the group's backends open at once (one
    /// may always open). Default: 50%.
    pub max_open_percent: Option<Pct>,
}

/// `upstreams.*.circuit_breaker.failure_rate`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FailureRateConfig {
    /// Failed share of the window's requests that opens the circuit.
    pub threshold: Pct,
    /// Fewer requests than this in the window never open it. Default: 20.
    pub min_requests: Option<u32>,
    /// How long requests are counted before the count starts over. Default: 10s.
    pub window: Option<Dur>,
}

/// A percentage written as a string (`50%`, `12.5%`), 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pct(pub f64);

impl<'de> Deserialize<'de> for Pct {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "invalid percentage {text:?}; write e.g. \"50%\" (0% to 100%)"
            ))
        };
        let n: f64 = text
            .trim()
            .strip_suffix('%')
            .ok_or_else(bad)?
            .trim()
            .parse()
            .map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&n) {
            return Err(bad());
        }
        Ok(Pct(n))
    }
}

impl Serialize for Pct {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}%", self.0))
    }
}

/// `upstreams.*.sticky`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    /// Cookie that pins a client to its backend.
    pub cookie: String,
    /// Key of the cookie values' HMAC (default: a fixed, documented key,
    /// which `weir check` warns about: the values can then be inverted to
    /// the backends' addresses by trial). Every instance serving the same
    /// clients needs the same secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
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
    /// Of two random backends, the one with fewer requests in flight (Envoy's P2C).
    LeastRequest,
    /// Of two random backends, the lower peak-EWMA latency × (in flight + 1).
    PeakEwma,
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
            Algorithm::LeastRequest => "least_request",
            Algorithm::PeakEwma => "peak_ewma",
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
