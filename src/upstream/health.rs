//! Active health checks: Pingora's `TcpHealthCheck` / `HttpHealthCheck`
//! configured from the file, wrapped so every UP/DOWN change is logged with
//! its reason and a passing check ends a new backend's probation, and the
//! schedule the health service (`crate::background`) follows.

use crate::config::model::{HealthCheckConfig, HealthCheckKind};
use crate::values::{HEALTH_INTERVAL, HEALTH_TIMEOUT};
use async_trait::async_trait;
use log::info;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::Backend;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEFAULT_HEALTHY: usize = 2;
const DEFAULT_UNHEALTHY: usize = 3;

/// When a group's checks run next.
#[derive(Debug)]
pub struct Schedule {
    interval: Duration,
    /// Milliseconds after [`epoch`] when the next pass is due.
    next_due_ms: AtomicU64,
    /// Set while a pass runs.
    pub running: Arc<AtomicBool>,
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl Schedule {
    /// A schedule whose first pass is due now.
    pub fn new(cfg: &HealthCheckConfig) -> Schedule {
        Schedule {
            interval: cfg.interval.map_or(HEALTH_INTERVAL, |d| d.0),
            next_due_ms: AtomicU64::new(now_ms()),
            running: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Claims the pass if it is due and none is running.
    pub fn claim(&self) -> bool {
        let now = now_ms();
        if now < self.next_due_ms.load(Relaxed) || self.running.swap(true, Relaxed) {
            return false;
        }
        self.next_due_ms
            .store(now + self.interval.as_millis() as u64, Relaxed);
        true
    }
}

/// Backend labels and shared state by address, shared between a group and
/// its health check (the check outlives group rebuilds that keep the same
/// health config).
pub type Labels = Arc<arc_swap::ArcSwap<HashMap<SocketAddr, (Arc<str>, Arc<super::Shared>)>>>;

/// Wraps a Pingora check to remember why a backend failed and log changes.
struct LoggedCheck {
    upstream: Arc<str>,
    labels: Labels,
    inner: Box<dyn HealthCheck + Send + Sync>,
    port: Option<u16>,
    last_error: Mutex<HashMap<SocketAddr, String>>,
}

fn addr_of(b: &Backend) -> Option<SocketAddr> {
    b.addr.as_inet().copied()
}

#[async_trait]
impl HealthCheck for LoggedCheck {
    async fn check(&self, target: &Backend) -> Result<()> {
        let result = match self.port {
            Some(port) => {
                let mut t = target.clone();
                t.addr.set_port(port);
                self.inner.check(&t).await
            }
            None => self.inner.check(target).await,
        };
        if let (Ok(()), Some(addr)) = (&result, addr_of(target)) {
            if let Some((_, shared)) = self.labels.load().get(&addr) {
                if shared.probation.swap(false, Relaxed) {
                    info!("backend {addr} in {} passed its first check", self.upstream);
                }
            }
            if let Ok(mut m) = self.last_error.lock() {
                m.remove(&addr);
            }
        }
        if let (Err(e), Some(addr)) = (&result, addr_of(target)) {
            let label = self
                .labels
                .load()
                .get(&addr)
                .map(|(l, _)| l.clone())
                .unwrap_or_else(|| addr.to_string().into());
            crate::metrics::health_check_failed(&self.upstream, &label);
            let reason = describe(e);
            if let Ok(mut m) = self.last_error.lock() {
                m.insert(addr, reason);
                // Backends that left (DNS, admin) while failing.
                let labels = self.labels.load();
                if m.len() > labels.len() {
                    m.retain(|a, _| labels.contains_key(a));
                }
            }
        }
        result
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        let addr = addr_of(target).map_or_else(|| target.addr.to_string(), |a| a.to_string());
        let up = &*self.upstream;
        if healthy {
            info!("backend {addr} in {up} is UP");
            // Back in service: slow start ramps its share from here.
            if let Some((_, shared)) =
                addr_of(target).and_then(|a| self.labels.load().get(&a).cloned())
            {
                shared.enter_service();
            }
            crate::observe::events::record("backend", Some(up), Some(&addr), "UP".into());
        } else {
            let reason = addr_of(target)
                .and_then(|a| self.last_error.lock().ok()?.get(&a).cloned())
                .unwrap_or_else(|| "check failed".into());
            info!("backend {addr} in {up} is DOWN ({reason})");
            crate::observe::events::record(
                "backend",
                Some(up),
                Some(&addr),
                format!("DOWN ({reason})"),
            );
        }
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}

/// The upstream's verification settings on a health check's peer.
fn tls_options(o: &mut pingora_core::upstreams::peer::PeerOptions, t: &super::TlsSpec) {
    o.verify_cert = t.verify;
    o.verify_hostname = t.verify;
    if let Some(ders) = &t.ca {
        let certs: Vec<pingora_core::utils::tls::WrappedX509> = ders
            .iter()
            .map(|d| {
                pingora_core::utils::tls::WrappedX509::new(
                    d.clone(),
                    pingora_core::utils::tls::parse_x509,
                )
            })
            .collect();
        o.ca = Some(std::sync::Arc::from(certs.into_boxed_slice()));
    }
}

fn describe(e: &Error) -> String {
    match e.etype() {
        ErrorType::ConnectRefused => "connect refused".into(),
        ErrorType::ConnectTimedout => "connect timed out".into(),
        ErrorType::ReadTimedout => "read timed out".into(),
        ErrorType::CustomCode(_, code) => format!("status {code}"),
        other => other.as_str().to_string(),
    }
}

/// Builds the configured check for an upstream.
pub fn build_check(
    upstream: &str,
    cfg: &HealthCheckConfig,
    host_header: Option<&str>,
    tls: Option<&super::TlsSpec>,
    send_proxy: Option<crate::config::model::ProxyProtocolVersion>,
    labels: Labels,
) -> Box<dyn HealthCheck + Send + Sync> {
    let timeout = cfg.timeout.map_or(HEALTH_TIMEOUT, |d| d.0);
    // Backends that want a PROXY header get a LOCAL one (no client) on checks.
    let proxy_l4 = send_proxy.map(|v| crate::proxy_protocol::local_connector(v, timeout));
    let up = cfg.healthy_threshold.unwrap_or(DEFAULT_HEALTHY);
    let down = cfg.unhealthy_threshold.unwrap_or(DEFAULT_UNHEALTHY);
    let inner: Box<dyn HealthCheck + Send + Sync> = match cfg.kind {
        HealthCheckKind::Tcp => {
            // Over TLS the check is a full handshake, as traffic does.
            let mut c = match tls {
                Some(t) => TcpHealthCheck::new_tls(&t.sni),
                None => TcpHealthCheck::new(),
            };
            if let Some(t) = tls {
                tls_options(&mut c.peer_template.options, t);
            }
            c.peer_template.options.connection_timeout = Some(timeout);
            c.peer_template.options.total_connection_timeout = Some(timeout);
            c.peer_template.options.custom_l4 = proxy_l4;
            c.consecutive_success = up;
            c.consecutive_failure = down;
            c
        }
        HealthCheckKind::Http => {
            let host = cfg.host.as_deref().or(host_header).unwrap_or("localhost");
            let mut c = HttpHealthCheck::new(host, tls.is_some());
            if let Some(t) = tls {
                if !t.sni.is_empty() {
                    c.peer_template.sni = t.sni.clone();
                }
                tls_options(&mut c.peer_template.options, t);
            }
            let path = cfg.path.as_deref().unwrap_or("/");
            if let Ok(mut req) = RequestHeader::build("GET", path.as_bytes(), None) {
                let _ = req.append_header("Host", host);
                let _ = req.append_header("User-Agent", "weir-health-check");
                c.req = req;
            }
            c.peer_template.options.connection_timeout = Some(timeout);
            c.peer_template.options.total_connection_timeout = Some(timeout);
            c.peer_template.options.read_timeout = Some(timeout);
            c.peer_template.options.write_timeout = Some(timeout);
            c.peer_template.options.custom_l4 = proxy_l4;
            c.consecutive_success = up;
            c.consecutive_failure = down;
            let expect = cfg.expect_status.clone();
            c.validator = Some(Box::new(move |resp: &ResponseHeader| {
                let s = resp.status.as_u16();
                let ok = match &expect {
                    Some(list) => list.contains(&s),
                    None => (200..400).contains(&s),
                };
                if ok {
                    Ok(())
                } else {
                    Error::e_explain(
                        ErrorType::CustomCode("unexpected status", s),
                        "health check",
                    )
                }
            }));
            Box::new(c)
        }
    };
    Box::new(LoggedCheck {
        upstream: upstream.into(),
        labels,
        inner,
        port: cfg.port,
        last_error: Mutex::new(HashMap::new()),
    })
}
