//! The compiled, immutable form of a config: route table, upstream groups
//! and listener list. The proxy holds it in one `ArcSwap`; a reload builds a
//! new one and swaps it whole, so routes and groups always agree, and a
//! request keeps the version it started with.

use crate::config::model::{FileConfig, RouteConfig};
use crate::config::validate::{parse_cidr, route_label};
use crate::policy::headers::HeaderOps;
use crate::policy::rewrite::PathRewrite;
use crate::router::{Action, HostMatch, Route, Router};
use crate::upstream::{merge_timeouts, Group};
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The live snapshot, shared by the proxy and background services.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// Everything the request path needs, compiled.
#[derive(Debug)]
pub struct Snapshot {
    /// Route table.
    pub router: Router,
    /// Upstream groups; routes refer to them by index.
    pub groups: Vec<Arc<Group>>,
    /// Listener addresses by index (the bit positions of `Route::listeners`).
    pub listeners: Vec<(Arc<str>, SocketAddr)>,
    /// Peers whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<(IpAddr, u8)>,
    /// The config it was built from.
    pub config: FileConfig,
}

impl Snapshot {
    /// Compiles a validated config. Groups whose definition is unchanged
    /// from `previous` are reused as they are (health, counters, rotation).
    pub fn build(cfg: &FileConfig, previous: Option<&Snapshot>) -> Result<Snapshot, String> {
        let old: HashMap<&str, &Arc<Group>> = previous
            .map(|p| p.groups.iter().map(|g| (&*g.name, g)).collect())
            .unwrap_or_default();
        let mut groups = Vec::new();
        let mut index = HashMap::new();
        for (name, ucfg) in &cfg.upstreams {
            let group = match old.get(name.as_str()) {
                Some(g) if g.config == *ucfg => Arc::clone(g),
                prev => Arc::new(
                    Group::build(name, ucfg, prev.map(|g| &***g))
                        .map_err(|e| format!("upstreams.{name}: {e}"))?,
                ),
            };
            index.insert(name.as_str(), groups.len());
            groups.push(group);
        }
        let listeners: Vec<(Arc<str>, SocketAddr)> = cfg
            .listeners
            .iter()
            .filter_map(|l| Some((Arc::from(l.name.as_str()), l.address.parse().ok()?)))
            .collect();
        if listeners.len() > 64 {
            return Err("at most 64 listeners are supported".into());
        }
        let routes = cfg
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| compile_route(r, i, &listeners, &index, &groups))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Snapshot {
            router: Router::new(routes),
            groups,
            listeners,
            trusted_proxies: cfg
                .trusted_proxies
                .iter()
                .filter_map(|p| parse_cidr(p))
                .collect(),
            config: cfg.clone(),
        })
    }

    /// Index of the listener that accepted a connection on `local`.
    pub fn listener_index(&self, local: Option<SocketAddr>) -> usize {
        let Some(local) = local else { return 0 };
        self.listeners
            .iter()
            .position(|(_, a)| *a == local)
            .or_else(|| {
                self.listeners
                    .iter()
                    .position(|(_, a)| a.port() == local.port())
            })
            .unwrap_or(0)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|(net, len)| in_network(ip, *net, *len))
    }
}

fn in_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

fn compile_route(
    r: &RouteConfig,
    i: usize,
    listeners: &[(Arc<str>, SocketAddr)],
    index: &HashMap<&str, usize>,
    groups: &[Arc<Group>],
) -> Result<Route, String> {
    let mut mask = 0u64;
    for (j, (name, _)) in listeners.iter().enumerate() {
        if r.listeners
            .as_ref()
            .is_none_or(|ls| ls.iter().any(|l| **l == **name))
        {
            mask |= 1 << j;
        }
    }
    let m = &r.matcher;
    let host = match &m.host {
        None => HostMatch::Any,
        Some(h) => {
            let h = h.to_ascii_lowercase();
            let h = h.strip_suffix('.').unwrap_or(&h);
            match h.strip_prefix("*.") {
                Some(s) => HostMatch::Suffix(format!(".{s}").into()),
                None => HostMatch::Exact(h.into()),
            }
        }
    };
    let methods = m.methods.as_ref().map(|ms| {
        ms.iter()
            .filter_map(|x| x.parse::<http::Method>().ok())
            .fold(0u16, |acc, x| acc | crate::router::method_bit(&x))
    });
    let headers = m
        .headers
        .iter()
        .flatten()
        .filter_map(|(k, v)| {
            Some((
                http::HeaderName::from_bytes(k.as_bytes()).ok()?,
                http::HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    let (action, base_timeouts) = match (&r.upstream, &r.respond) {
        (Some(u), _) => {
            let gi = *index
                .get(u.as_str())
                .ok_or_else(|| format!("unknown upstream {u:?}"))?;
            (Action::Upstream(gi), groups[gi].timeouts)
        }
        (None, Some(resp)) => (
            Action::Respond {
                status: resp.status,
                body: Bytes::from(resp.body.clone()),
                content_type: http::HeaderValue::from_str(
                    resp.content_type.as_deref().unwrap_or("text/plain"),
                )
                .map_err(|_| "invalid content_type".to_string())?,
            },
            Default::default(),
        ),
        (None, None) => return Err("route without action".into()),
    };
    let rewrite = if let Some(rw) = &r.rewrite {
        let re = regex::Regex::new(&rw.from).map_err(|e| e.to_string())?;
        PathRewrite::Regex(re, rw.to.clone().into())
    } else if r.strip_prefix {
        m.path_prefix
            .clone()
            .map(|p| PathRewrite::StripPrefix(p.into()))
            .unwrap_or_default()
    } else {
        PathRewrite::None
    };
    let retry_on = r.retry_on.clone().unwrap_or_default();
    let name = route_label(r, i);
    let metrics = crate::metrics::RouteMetrics::new(&name, r.upstream.as_deref().unwrap_or("-"));
    Ok(Route {
        metrics,
        index: i,
        name: name.into(),
        listeners: mask,
        host,
        prefix: m.path_prefix.clone().map(Into::into),
        methods,
        headers,
        action,
        rewrite,
        timeouts: merge_timeouts(base_timeouts, r.timeouts.as_ref()),
        retries: r.retries.unwrap_or(1),
        retry_on_timeout: retry_on.contains(&crate::config::model::RetryOn::Timeout),
        request_headers: HeaderOps::compile(r.request_headers.as_ref()),
        response_headers: HeaderOps::compile(r.response_headers.as_ref()),
    })
}
