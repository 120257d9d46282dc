//! Shared vocabulary with no dependencies inside weir: HTTP methods and their
//! bit masks, CIDR sets, hash keys, sizes, timeouts and their defaults, and
//! address parsing. The file model, the compiler and the runtime all speak
//! it, so it sits at the bottom of the import graph.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Most extra tries a route may ask for.
pub const MAX_RETRIES: u32 = 7;

/// Methods a route may list, in the order of their bits in a method mask.
pub const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// Bit for a method in a method mask (unknown methods get no bit).
pub fn method_bit(m: &http::Method) -> u16 {
    METHODS
        .iter()
        .position(|x| *x == m.as_str())
        .map(|i| 1 << i)
        .unwrap_or(0)
}

/// Formats a method mask for an `Allow` header.
pub fn allow_header(mask: u16) -> String {
    METHODS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, m)| *m)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128` or a plain address.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (ip, len) = match text.trim().split_once('/') {
            Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
            None => {
                let ip: IpAddr = text.trim().parse().ok()?;
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if len > max {
            return None;
        }
        // `::ffff:10.0.0.0/104` is the IPv4 network 10.0.0.0/8: clients are
        // compared in canonical form, so the network must be too.
        match ip {
            IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Some(Cidr {
                    net: IpAddr::V4(v4),
                    len: len - 96,
                }),
                None => Some(Cidr { net: ip, len }),
            },
            _ => Some(Cidr { net: ip, len }),
        }
    }

    /// Whether `ip` is inside; an IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (ip.to_canonical(), self.net) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// A list of networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet(Box<[Cidr]>);

impl CidrSet {
    /// A set of these networks.
    pub fn new(nets: Vec<Cidr>) -> CidrSet {
        CidrSet(nets.into_boxed_slice())
    }

    /// Whether any network contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// True when the set has no network.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a hash-based selection or a rate limit keys on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client address.
    ClientIp,
    /// A request header's value (missing: client address).
    Header(http::HeaderName),
    /// A cookie's value (missing: client address).
    Cookie(Box<str>),
    /// The normalized path.
    Path,
}

impl HashKey {
    /// Parses `client_ip`, `header:NAME`, `cookie:NAME` or `path`.
    pub fn parse(text: &str) -> Option<HashKey> {
        match text.split_once(':') {
            None if text == "client_ip" => Some(HashKey::ClientIp),
            None if text == "path" => Some(HashKey::Path),
            Some(("header", name)) => http::HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(HashKey::Header),
            Some(("cookie", name)) if !name.is_empty() => Some(HashKey::Cookie(name.into())),
            _ => None,
        }
    }
}

/// Timeouts towards a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connect timeout. Default 5 s.
    pub connect: Duration,
    /// Read timeout (gap between bytes). Default 60 s.
    pub read: Duration,
    /// Write timeout. Default 60 s.
    pub write: Duration,
    /// Idle timeout of pooled connections. Default 60 s.
    pub idle: Duration,
    /// Longest a tunnel (a `tcp` listener's connection) may pass no bytes
    /// either way. Default 1 h.
    pub tunnel_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            write: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            tunnel_idle: Duration::from_secs(3600),
        }
    }
}

/// Default time between health checks.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Default time a health check may take.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Parses a size: `512`, `512B`, `64KiB`, `10MiB`, `1GiB` (also `KB`, `MB`,
/// `GB` as powers of 1000).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// Where the admin API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminListen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket path (mode 0600).
    Unix(String),
}

/// Parses `admin.listen`: `ip:port` or `unix:/path`.
pub fn parse_admin_listen(text: &str) -> Option<AdminListen> {
    match text.strip_prefix("unix:") {
        Some(p) if !p.is_empty() => Some(AdminListen::Unix(p.to_string())),
        Some(_) => None,
        None => text.parse().ok().map(AdminListen::Tcp),
    }
}

/// Resolves `host:port` (or parses `ip:port`) to its first address.
pub fn resolve(address: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !address.contains(':') {
        return Err(format!(
            "invalid address {address:?}; write ip:port or host:port"
        ));
    }
    address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching_includes_mapped_ipv4() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.2.3.4".parse().unwrap()));
        assert!(c.contains("::ffff:10.2.3.4".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains("10.9.9.9".parse().unwrap()));
        assert!(Cidr::parse("::ffff:1.2.3.4")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Some(10 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1KB"), Some(1000));
        assert_eq!(parse_size("10QB"), None);
        assert_eq!(parse_size("KiB"), None);
    }
}
