//! The admin API (SPEC §5) on its own listener, as a Pingora service so a
//! graceful upgrade hands its socket over too. JSON in, JSON out.
//! Without `admin.token` it is read-only; with one, every call but
//! `GET /health` needs `Authorization: Bearer TOKEN` (compared in constant
//! time). `GET /ready` needs no token either: 200 once every listener is
//! bound, 503 from the moment a stop or upgrade hand-over begins
//! ([`crate::readiness`]). Requests whose `Host` is not the admin address
//! are refused (DNS rebinding).

use crate::config::model::FileConfig;
use crate::live::{ApiError, Live, Removal};
use crate::overlay::BackendState;
use crate::readiness::Readiness;
use crate::values::AdminListen;
use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

const MAX_BODY: usize = 64 * 1024;

/// The admin API application.
pub struct AdminApi {
    live: Arc<Live>,
    token: Option<String>,
    hosts: Vec<String>,
    ready: Arc<Readiness>,
}

/// Compares in constant time (`subtle`; lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

fn respond(status: u16, body: Value) -> Response<Vec<u8>> {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .header("content-length", bytes.len())
        .body(bytes)
        .unwrap_or_default()
}

fn error(status: u16, msg: impl Into<String>) -> Response<Vec<u8>> {
    respond(status, json!({ "error": msg.into() }))
}

/// Decodes `%XX` escapes on bytes (invalid UTF-8 becomes U+FFFD).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Runs a backend change on the blocking pool: it compiles a snapshot
/// under the live lock, which must not hold up the admin's async workers.
async fn off_runtime<T: Send + 'static>(
    live: &Arc<Live>,
    change: impl FnOnce(&Live) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let live = live.clone();
    tokio::task::spawn_blocking(move || change(&live))
        .await
        .unwrap_or_else(|e| Err(ApiError(500, format!("the change did not finish: {e}"))))
}

/// The effective config as JSON, secrets redacted.
pub fn redacted_config(cfg: &FileConfig) -> Value {
    let mut v = serde_json::to_value(cfg).unwrap_or(Value::Null);
    redact_secrets(&mut v, &cfg.substituted);
    let hide = |v: &mut Value| {
        if !v.is_null() {
            *v = Value::String(REDACTED.into());
        }
    };
    if let Some(t) = v.pointer_mut("/admin/token") {
        hide(t);
    }
    if let Some(k) = v.pointer_mut("/acme/external_account/hmac_key") {
        hide(k);
    }
    if let Some(Value::Object(ups)) = v.get_mut("upstreams") {
        for u in ups.values_mut() {
            if let Some(s) = u.pointer_mut("/sticky/secret") {
                hide(s);
            }
        }
    }
    if let Some(Value::Array(routes)) = v.get_mut("routes") {
        for r in routes {
            if let Some(Value::Array(keys)) = r.pointer_mut("/auth/api_keys") {
                keys.iter_mut().for_each(hide);
            }
            if let Some(Value::Object(users)) = r.pointer_mut("/auth/basic/users") {
                users.values_mut().for_each(hide);
            }
            if let Some(Value::String(url)) = r.pointer_mut("/rate_limit/shared/redis") {
                *url = redact_url_password(url);
            }
        }
    }
    v
}

const REDACTED: &str = "<redacted>";

/// Replaces every scalar equal to a `${VAR}`-substituted value.
fn redact_secrets(v: &mut Value, secrets: &[String]) {
    match v {
        Value::String(s) if secrets.iter().any(|x| x == s) => *v = Value::String(REDACTED.into()),
        Value::Number(n) if secrets.iter().any(|x| *x == n.to_string()) => {
            *v = Value::String(REDACTED.into())
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact_secrets(i, secrets)),
        Value::Object(map) => map.values_mut().for_each(|i| redact_secrets(i, secrets)),
        _ => {}
    }
}

/// `scheme://user:password@host` → `scheme://user:<redacted>@host`.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{REDACTED}@{host}"),
        None => url.to_string(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    address: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

/// `DELETE /cache`: which entries to remove (SPEC §5).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    #[serde(default)]
    host: String,
    path: String,
    #[serde(default)]
    prefix: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    state: Option<BackendState>,
    weight: Option<u32>,
}

impl AdminApi {
    /// The API for `live`, listening on `listen`; `/ready` reads `ready`.
    pub fn new(
        live: Arc<Live>,
        listen: &AdminListen,
        token: Option<String>,
        ready: Arc<Readiness>,
    ) -> AdminApi {
        let hosts = match listen {
            AdminListen::Tcp(a) => {
                let mut h = vec![a.to_string(), format!("localhost:{}", a.port())];
                if a.ip().is_loopback() && a.is_ipv4() {
                    h.push(format!("[::1]:{}", a.port()));
                }
                h
            }
            AdminListen::Unix(_) => Vec::new(),
        };
        AdminApi {
            live,
            token,
            hosts,
            ready,
        }
    }

    fn status(&self) -> Value {
        let snap = self.live.snapshot.load_full();
        let now = std::time::Instant::now();
        let upstreams: Vec<Value> = snap
            .groups
            .iter()
            .map(|g| {
                let backends: Vec<Value> = g
                    .order
                    .iter()
                    .filter_map(|a| g.backends.get(a))
                    .map(|b| {
                        let recent = b.shared.window.summary(now);
                        let state = if !b.enabled {
                            "disabled"
                        } else if b.draining {
                            "draining"
                        } else {
                            "enabled"
                        };
                        json!({
                            "address": b.addr.to_string(),
                            "name": &*b.label,
                            "weight": b.weight,
                            "state": state,
                            "healthy": b.enabled
                                && !b.draining
                                && !b.shared.probation.load(Relaxed)
                                && g.is_healthy(b.addr),
                            "circuit": g.circuit(b).as_str(),
                            "in_flight": b.shared.in_flight.load(Relaxed),
                            "requests": b.requests.load(Relaxed),
                            "failures": b.failures.load(Relaxed),
                            "source": b.source.as_str(),
                            "rps": recent.rps,
                            "error_ratio": recent.error_ratio,
                            "p50_ms": recent.p50_ms,
                            "p99_ms": recent.p99_ms,
                            "effective_weight": g.effective_weight(b),
                        })
                    })
                    .collect();
                json!({ "name": &*g.name, "algorithm": g.config.algorithm.as_str(), "panic": g.in_panic(), "backends": backends })
            })
            .collect();
        let mut out = crate::admin_page::overview(&snap, self.token.is_none());
        out["upstreams"] = Value::Array(upstreams);
        out
    }

    /// `GET /ready`: 200 when ready, 503 while binding or once stopping.
    fn readiness(&self) -> Response<Vec<u8>> {
        if self.ready.is_ready() {
            respond(200, json!({ "ready": true }))
        } else if self.ready.is_draining() {
            respond(503, json!({ "ready": false, "reason": "stopping" }))
        } else {
            respond(503, json!({ "ready": false, "reason": "starting" }))
        }
    }

    fn authorized(&self, session: &ServerSession, mutating: bool) -> Result<(), ApiError> {
        match &self.token {
            None if mutating => Err(ApiError(
                403,
                "the admin API is read-only: set admin.token to allow changes".into(),
            )),
            None => Ok(()),
            Some(token) => {
                let given = session
                    .req_header()
                    .headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                if ct_eq(given.trim().as_bytes(), token.as_bytes()) {
                    Ok(())
                } else {
                    Err(ApiError(401, "missing or wrong bearer token".into()))
                }
            }
        }
    }

    async fn body(session: &mut ServerSession) -> Result<Vec<u8>, ApiError> {
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_BODY {
                        return Err(ApiError(413, "body too large".into()));
                    }
                }
                Ok(None) => return Ok(body),
                Err(_) => return Err(ApiError(400, "cannot read the request body".into())),
            }
        }
    }

    async fn handle(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        if !self.hosts.is_empty() {
            // Fails closed: a missing or non-UTF-8 Host is refused too.
            let host = req
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            // On a wildcard address, the address the client reached is the
            // admin address too (still no DNS name can pass).
            let reached = session
                .server_addr()
                .and_then(|a| a.as_inet())
                .is_some_and(|a| a.to_string().eq_ignore_ascii_case(host));
            if !reached && !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                return error(
                    403,
                    format!("Host must be the admin address ({})", self.hosts[0]),
                );
            }
        }
        let mutating = !matches!(method, Method::GET | Method::HEAD);
        if method == Method::GET && path == "/" {
            // The page holds no data; what it shows it reads with the token.
            return crate::admin_page::page();
        }
        let open = path == "/health" || path == "/ready";
        if !open || mutating {
            if let Err(ApiError(code, msg)) = self.authorized(session, mutating) {
                return error(code, msg);
            }
        }
        match endpoint(method.as_str(), &path) {
            Endpoint::Health => respond(
                200,
                json!({
                    "status": "UP",
                    "uptime_seconds": self.live.started.elapsed().as_secs(),
                    "version": env!("CARGO_PKG_VERSION"),
                }),
            ),
            Endpoint::Ready => self.readiness(),
            Endpoint::Status => respond(200, self.status()),
            Endpoint::Certificates => respond(
                200,
                json!({ "certificates": certificates(&self.live.snapshot.load()) }),
            ),
            Endpoint::Events => respond(200, json!({ "events": crate::observe::events::recent() })),
            Endpoint::Config => respond(200, redacted_config(&self.live.snapshot.load().config)),
            Endpoint::Metrics => {
                let text = crate::metrics::render(self.live.snapshot.load().samples());
                Response::builder()
                    .status(200)
                    .header("content-type", "text/plain; version=0.0.4")
                    .header("content-length", text.len())
                    .body(text.into_bytes())
                    .unwrap_or_default()
            }
            Endpoint::Reload => match self.live.reload_off_runtime().await {
                Ok(summary) => respond(200, json!({ "reloaded": true, "changed": summary })),
                Err(e) => error(400, e),
            },
            Endpoint::AddBackend { upstream: name } => {
                let body = match Self::body(session).await {
                    Ok(b) => b,
                    Err(ApiError(code, msg)) => return error(code, msg),
                };
                let add: AddBody = match serde_json::from_slice(&body) {
                    Ok(a) => a,
                    Err(e) => return error(400, format!("invalid body: {e}")),
                };
                let (n, a, w) = (name.clone(), add.address.clone(), add.weight);
                match off_runtime(&self.live, move |l| l.add_backend(&n, &a, w)).await {
                    Ok(()) => respond(
                        201,
                        json!({ "upstream": name, "address": add.address, "weight": add.weight }),
                    ),
                    Err(ApiError(code, msg)) => error(code, msg),
                }
            }
            Endpoint::PatchBackend {
                upstream: name,
                address: addr,
            } => {
                let body = match Self::body(session).await {
                    Ok(b) => b,
                    Err(ApiError(code, msg)) => return error(code, msg),
                };
                let patch: PatchBody = match serde_json::from_slice(&body) {
                    Ok(p) => p,
                    Err(e) => return error(400, format!("invalid body: {e}")),
                };
                let (n, a) = (name.clone(), addr.clone());
                let change = move |l: &Live| l.patch_backend(&n, &a, patch.state, patch.weight);
                match off_runtime(&self.live, change).await {
                    Ok(()) => respond(200, json!({ "upstream": name, "address": addr })),
                    Err(ApiError(code, msg)) => error(code, msg),
                }
            }
            Endpoint::RemoveBackend {
                upstream: n,
                address: a,
            } => match off_runtime(&self.live, move |l| l.remove_backend(&n, &a)).await {
                Ok(removal) => {
                    if let Removal::Draining { upstream, address } = removal {
                        tokio::spawn(self.live.clone().finish_when_idle(upstream, address));
                    }
                    Response::builder()
                        .status(204)
                        .body(Vec::new())
                        .unwrap_or_default()
                }
                Err(ApiError(code, msg)) => error(code, msg),
            },
            Endpoint::PurgeCache => {
                let body = match Self::body(session).await {
                    Ok(b) => b,
                    Err(ApiError(code, msg)) => return error(code, msg),
                };
                match serde_json::from_slice::<PurgeBody>(&body) {
                    Ok(p) if p.path.starts_with('/') => {
                        let n = crate::cache::purge(&p.host, &p.path, p.prefix);
                        respond(200, json!({ "purged": n }))
                    }
                    Ok(_) => error(400, "path must start with /"),
                    Err(e) => error(400, format!("invalid body: {e}")),
                }
            }
            Endpoint::MethodNotAllowed => error(405, "method not allowed"),
            Endpoint::NotFound => error(404, "not found"),
        }
    }
}

/// What an admin request asks for, from its method and path; upstream
/// names and addresses percent-decoded (public for the fuzz targets in
/// `fuzz/`).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /health`.
    Health,
    /// `GET /ready`.
    Ready,
    /// `GET /status`.
    Status,
    /// `GET /events`.
    Events,
    /// `GET /config`.
    Config,
    /// `GET /metrics`.
    Metrics,
    /// `POST /reload`.
    Reload,
    /// `GET /certificates`.
    Certificates,
    /// `POST /upstreams/{upstream}/backends`.
    AddBackend {
        /// The upstream's name.
        upstream: String,
    },
    /// `PATCH /upstreams/{upstream}/backends/{address}`.
    PatchBackend {
        /// The upstream's name.
        upstream: String,
        /// The backend's address.
        address: String,
    },
    /// `DELETE /upstreams/{upstream}/backends/{address}`.
    RemoveBackend {
        /// The upstream's name.
        upstream: String,
        /// The backend's address.
        address: String,
    },
    /// `DELETE /cache`.
    PurgeCache,
    /// A known path with another method (405).
    MethodNotAllowed,
    /// Anything else (404).
    NotFound,
}

/// Every certificate the https listeners serve: file certificates from the
/// running snapshot, then the ACME ones (`GET /certificates`, `weir certs`).
pub fn certificates(snap: &crate::snapshot::Snapshot) -> Vec<crate::acme::status::Row> {
    let mut rows: Vec<crate::acme::status::Row> = snap
        .config
        .listeners
        .iter()
        .zip(&snap.certs)
        .filter_map(|(l, set)| Some((l, set.as_ref()?)))
        .flat_map(|(l, set)| {
            set.certs
                .iter()
                .map(|c| crate::acme::status::file_row(&l.name, &c.names, c.not_after))
        })
        .collect();
    rows.extend(crate::acme::status::acme_rows().iter().cloned());
    rows
}

/// The endpoint `method` and `path` (no query) name.
#[doc(hidden)]
pub fn endpoint(method: &str, path: &str) -> Endpoint {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["health"]) => Endpoint::Health,
        ("GET", ["ready"]) => Endpoint::Ready,
        ("GET", ["status"]) => Endpoint::Status,
        ("GET", ["events"]) => Endpoint::Events,
        ("GET", ["config"]) => Endpoint::Config,
        ("GET", ["metrics"]) => Endpoint::Metrics,
        ("POST", ["reload"]) => Endpoint::Reload,
        ("DELETE", ["cache"]) => Endpoint::PurgeCache,
        ("GET", ["certificates"]) => Endpoint::Certificates,
        ("POST", ["upstreams", name, "backends"]) => Endpoint::AddBackend {
            upstream: percent_decode(name),
        },
        ("PATCH", ["upstreams", name, "backends", addr]) => Endpoint::PatchBackend {
            upstream: percent_decode(name),
            address: percent_decode(addr),
        },
        ("DELETE", ["upstreams", name, "backends", addr]) => Endpoint::RemoveBackend {
            upstream: percent_decode(name),
            address: percent_decode(addr),
        },
        (
            _,
            ["health" | "ready" | "status" | "events" | "config" | "metrics" | "reload" | "cache"
            | "certificates"],
        )
        | (_, ["upstreams", _, "backends", ..]) => Endpoint::MethodNotAllowed,
        _ => Endpoint::NotFound,
    }
}

#[async_trait]
impl ServeHttp for AdminApi {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        self.handle(session).await
    }
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod tests;
