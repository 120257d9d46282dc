//! The file model of `listeners[]`: protocol, TLS, limits and PROXY
//! protocol. Re-exported from [`super::model`].

use super::model::{Dur, Size};
use serde::{Deserialize, Serialize};

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
    /// `http` listeners: also accept cleartext HTTP/2 with prior knowledge
    /// (h2c: gRPC clients without TLS) beside HTTP/1.1 on the same port.
    /// (https listeners offer HTTP/2 by ALPN with `tls.http2`.) Default: false.
    #[serde(default)]
    pub http2: bool,
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
    #[serde(default)]
    pub certificates: Vec<CertificateFiles>,
    /// Names weir obtains (one certificate) and renews itself from the CA
    /// of the `acme` section. Default: none.
    #[serde(default)]
    pub acme: Vec<String>,
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
