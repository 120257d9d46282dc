//! DNS discovery (`upstreams.*.discovery.dns`): resolves a name every
//! `refresh` and hands the addresses to [`Live::set_dns`]. A failed, empty
//! or timed-out lookup keeps the last good set. Without `resolver` the
//! system resolver is used; with one, a minimal A/AAAA query over UDP is
//! sent to it (Pingora has no DNS client).

use crate::live::Live;
use async_trait::async_trait;
use log::{info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default `refresh`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(2);

fn build_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("invalid DNS name {name:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Ok(q)
}

fn skip_name(buf: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *buf.get(i)? as usize;
        if len == 0 {
            return Some(i + 1);
        }
        if len & 0xC0 == 0xC0 {
            return Some(i + 2);
        }
        i += 1 + len;
    }
}

fn u16_at(buf: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]))
}

/// Parses the A/AAAA answers of a response to query `id`.
pub fn parse_answers(buf: &[u8], id: u16) -> Result<Vec<IpAddr>, String> {
    if buf.len() < 12 || u16_at(buf, 0) != Some(id) {
        return Err("malformed DNS answer".into());
    }
    let rcode = buf[3] & 0x0F;
    if rcode != 0 {
        return Err(format!("DNS error code {rcode}"));
    }
    let qd = u16_at(buf, 4).unwrap_or(0);
    let an = u16_at(buf, 6).unwrap_or(0);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(buf, i).ok_or("malformed DNS question")? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        i = skip_name(buf, i).ok_or("malformed DNS answer")?;
        let rtype = u16_at(buf, i).ok_or("short answer")?;
        let rdlen = u16_at(buf, i + 8).ok_or("short answer")? as usize;
        let data = buf.get(i + 10..i + 10 + rdlen).ok_or("short answer")?;
        match (rtype, rdlen) {
            (1, 4) => out.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (28, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(data);
                out.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            _ => {}
        }
        i += 10 + rdlen;
    }
    Ok(out)
}

async fn query(resolver: SocketAddr, name: &str, qtype: u16) -> Result<Vec<IpAddr>, String> {
    let bind: SocketAddr = if resolver.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| "bind address")?;
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    let id = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        & 0xFFFF) as u16;
    sock.send_to(&build_query(id, name, qtype)?, resolver)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (n, from) = tokio::time::timeout(left, sock.recv_from(&mut buf))
            .await
            .map_err(|_| format!("no answer from {resolver} within {TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        if from == resolver {
            return parse_answers(&buf[..n], id);
        }
    }
}

/// Resolves `name` to addresses with `port`.
pub async fn resolve(
    name: &str,
    port: u16,
    resolver: Option<SocketAddr>,
) -> Result<Vec<SocketAddr>, String> {
    let ips: Vec<IpAddr> = match resolver {
        Some(r) => {
            let (a, aaaa) = tokio::join!(query(r, name, 1), query(r, name, 28));
            match (a, aaaa) {
                (Err(e), Err(_)) => return Err(e),
                (a, aaaa) => a
                    .unwrap_or_default()
                    .into_iter()
                    .chain(aaaa.unwrap_or_default())
                    .collect(),
            }
        }
        None => tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((name, port)))
            .await
            .map_err(|_| "lookup timed out".to_string())?
            .map_err(|e| e.to_string())?
            .map(|a| a.ip())
            .collect(),
    };
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// The background service that refreshes every discovered upstream.
pub struct DnsService {
    live: Arc<Live>,
}

impl DnsService {
    /// A service for the live state.
    pub fn new(live: Arc<Live>) -> DnsService {
        DnsService { live }
    }
}

#[async_trait]
impl BackgroundService for DnsService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut due: HashMap<String, Instant> = HashMap::new();
        loop {
            let cfg = self.live.file_config();
            let now = Instant::now();
            for (name, u) in &cfg.upstreams {
                let Some(d) = &u.discovery else { continue };
                if due.get(name).is_some_and(|t| *t > now) {
                    continue;
                }
                let refresh = d.dns.refresh.map_or(DEFAULT_REFRESH, |r| r.0);
                due.insert(name.clone(), now + refresh);
                let resolver = d.dns.resolver.as_deref().and_then(|r| r.parse().ok());
                match resolve(&d.dns.name, d.dns.port, resolver).await {
                    Ok(addrs) if !addrs.is_empty() => {
                        if self.live.set_dns(name, addrs.clone()) {
                            info!("discovery: {} for {name} resolved to {addrs:?}", d.dns.name);
                        }
                    }
                    Ok(_) => warn!(
                        "discovery: {} returned no addresses; keeping the last set for {name}",
                        d.dns.name
                    ),
                    Err(e) => warn!(
                        "discovery: resolving {} failed ({e}); keeping the last set for {name}",
                        d.dns.name
                    ),
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_answer_round_trip() {
        let q = build_query(0x1234, "api.test", 1).unwrap();
        // answer: copy the question, set QR and ANCOUNT=1, one A record via pointer
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 0, 9]);
        assert_eq!(
            parse_answers(&r, 0x1234).unwrap(),
            vec![IpAddr::from([127, 0, 0, 9])]
        );
        assert!(parse_answers(&r, 0x9999).is_err());
        assert!(build_query(1, "a..b", 1).is_err());
    }
}
