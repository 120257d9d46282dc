//! DNS discovery (`upstreams.*.discovery.dns`): resolves a name every
//! `refresh` with hickory-resolver and hands the addresses to
//! [`Live::set_dns`]. `type: a` asks for A and AAAA records and uses the
//! configured `port`; `type: srv` asks for SRV records (Consul, Kubernetes
//! headless services) and takes each target's port and weight from its
//! record. Truncated UDP answers are retried over TCP by the resolver.
//! A failed, empty or timed-out lookup keeps the last good set. Without
//! `resolver` the system's resolv.conf is used. Lookups are async on the
//! background runtime; [`Live::set_dns`] is called only with the answer.

use crate::config::model::{DnsDiscovery, DnsKind};
use crate::live::Live;
use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use log::{info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default `refresh`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest weight a backend may have (an SRV weight is clamped to it).
const MAX_WEIGHT: u32 = 1000;

/// Builds a resolver: the system's, or one that asks `server` (UDP, then
/// TCP when an answer is truncated). No cache: every refresh asks again.
pub fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let mut builder = match server {
        Some(s) => TokioResolver::builder_with_config(
            ResolverConfig::from_parts(
                None,
                vec![],
                NameServerConfigGroup::from_ips_clear(&[s.ip()], s.port(), true),
            ),
            TokioConnectionProvider::default(),
        ),
        None => TokioResolver::builder_tokio().map_err(|e| e.to_string())?,
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.timeout = TIMEOUT;
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.ndots = 0;
    Ok(builder.build())
}

/// Resolves one discovery entry to addresses with weights.
pub async fn resolve(
    r: &TokioResolver,
    d: &DnsDiscovery,
) -> Result<Vec<(SocketAddr, u32)>, String> {
    let name = d.name.trim_end_matches('.').to_string() + ".";
    match d.kind {
        DnsKind::A => {
            let port = d.port.unwrap_or(0);
            let ips = r.lookup_ip(name).await.map_err(|e| e.to_string())?;
            Ok(ips
                .iter()
                .map(|ip| (SocketAddr::new(ip, port), 1))
                .collect())
        }
        DnsKind::Srv => {
            let srv = r.srv_lookup(name).await.map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for rec in srv.iter() {
                let weight = u32::from(rec.weight()).clamp(1, MAX_WEIGHT);
                match r.lookup_ip(rec.target().clone()).await {
                    Ok(ips) => out.extend(
                        ips.iter()
                            .map(|ip| (SocketAddr::new(ip, rec.port()), weight)),
                    ),
                    Err(e) => warn!(
                        "discovery: SRV target {} did not resolve ({e})",
                        rec.target()
                    ),
                }
            }
            Ok(out)
        }
    }
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
        let mut resolvers: HashMap<Option<SocketAddr>, TokioResolver> = HashMap::new();
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
                let server = d.dns.resolver.as_deref().and_then(|r| r.parse().ok());
                let r = match resolvers.entry(server) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => match resolver(server) {
                        Ok(r) => v.insert(r),
                        Err(e) => {
                            warn!("discovery: no resolver for {name} ({e})");
                            continue;
                        }
                    },
                };
                let answer = tokio::time::timeout(TIMEOUT * 2, resolve(r, &d.dns)).await;
                match answer {
                    Ok(Ok(addrs)) if !addrs.is_empty() => {
                        let live = self.live.clone();
                        let (n, a) = (name.clone(), addrs.clone());
                        // The rebuild compiles a snapshot: off the async workers.
                        let changed = tokio::task::spawn_blocking(move || live.set_dns(&n, a))
                            .await
                            .unwrap_or(false);
                        if changed {
                            info!("discovery: {} for {name} resolved to {addrs:?}", d.dns.name);
                        }
                    }
                    Ok(Ok(_)) => warn!(
                        "discovery: {} returned no addresses; keeping the last set for {name}",
                        d.dns.name
                    ),
                    Ok(Err(e)) => warn!(
                        "discovery: resolving {} failed ({e}); keeping the last set for {name}",
                        d.dns.name
                    ),
                    Err(_) => warn!(
                        "discovery: resolving {} timed out; keeping the last set for {name}",
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
