//! The Pingora `ProxyHttp` implementation. Each phase is short and delegates:
//! `request_filter` matches the route (404/405/400 and `respond` routes end
//! here), `upstream_peer` selects a backend, `upstream_request_filter`
//! rewrites what goes upstream, `fail_to_connect` / `error_while_proxy`
//! decide retries, and `fail_to_proxy` writes weir's own error answers.

mod answers;
mod ctx;
mod record;

use crate::access_log::AccessLog;
use crate::forward;
use crate::router::{allow_header, normalize_host, Action, Match};
use crate::snapshot::SharedSnapshot;
use crate::upstream::{apply_timeouts, Group, HashKey};
use answers::{finish_response_headers, respond_error, status_for};
use async_trait::async_trait;
use ctx::MAX_TRIES;
pub use ctx::{Ctx, InFlight};
use http::{header, HeaderValue};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// The proxy service state.
pub struct Proxy {
    snapshot: SharedSnapshot,
    /// Set once a graceful stop or upgrade begins: answers then carry
    /// `Connection: close` so keep-alive clients move to the new process.
    draining: Arc<AtomicBool>,
    access_log: Option<Arc<AccessLog>>,
}

impl Proxy {
    /// A proxy reading `snapshot`; `draining` is raised on shutdown.
    pub fn new(
        snapshot: SharedSnapshot,
        draining: Arc<AtomicBool>,
        access_log: Option<Arc<AccessLog>>,
    ) -> Proxy {
        Proxy {
            snapshot,
            draining,
            access_log,
        }
    }
}

fn count_retry(ctx: &Ctx) {
    if let Some(c) = ctx.group().and_then(|g| g.retries.as_ref()) {
        c.inc();
    }
}

fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

fn cookie_value<'a>(cookies: &'a [u8], name: &str) -> Option<&'a [u8]> {
    cookies.split(|&c| c == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let (k, v) = pair.split_at(pair.iter().position(|&c| c == b'=')?);
        (k == name.as_bytes()).then(|| &v[1..])
    })
}

impl Proxy {
    fn select(&self, session: &Session, ctx: &Ctx, group: &Group) -> Option<SocketAddr> {
        let req = session.req_header();
        let mut ip_buf = [0u8; 16];
        let key: &[u8] = if !group.uses_key() {
            b""
        } else {
            match &group.hash_key {
                HashKey::Path => req.uri.path().as_bytes(),
                HashKey::Header(n) => req.headers.get(n).map(|v| v.as_bytes()).unwrap_or(b""),
                HashKey::Cookie(name) => req
                    .headers
                    .get(header::COOKIE)
                    .and_then(|c| cookie_value(c.as_bytes(), name))
                    .unwrap_or(b""),
                HashKey::ClientIp => b"",
            }
        };
        // A missing header or cookie falls back to the client address.
        let key = if key.is_empty() && group.uses_key() {
            match ctx.client {
                Some(IpAddr::V4(a)) => {
                    ip_buf[..4].copy_from_slice(&a.octets());
                    &ip_buf[..4]
                }
                Some(IpAddr::V6(a)) => {
                    ip_buf = a.octets();
                    &ip_buf[..]
                }
                None => b"",
            }
        } else {
            key
        };
        group
            .balancer
            .select_with(key, |b, healthy| {
                healthy && b.addr.as_inet().is_some_and(|a| !ctx.was_tried(*a))
            })
            .and_then(|b| b.addr.as_inet().copied())
    }

    /// Whether another untried healthy backend exists for a retry.
    fn has_alternative(&self, session: &Session, ctx: &Ctx) -> bool {
        ctx.group()
            .is_some_and(|g| self.select(session, ctx, g).is_some())
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            snap: self.snapshot.load_full(),
            route: None,
            group: None,
            upstream_uri: None,
            tried: [None; MAX_TRIES],
            attempts: 0,
            backend: None,
            in_flight: None,
            request_id: None,
            request_id_is_new: false,
            client: None,
            peer_trusted: false,
            start: Instant::now(),
            sent_upstream: None,
            upstream_status: 0,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self.draining.load(Relaxed) {
            session.set_keepalive(None);
        }
        let req = session.req_header();
        let mut ids = req.headers.get_all(&forward::X_REQUEST_ID).iter();
        ctx.request_id = Some(match (ids.next(), ids.next()) {
            (Some(v), None) if forward::valid_request_id(v) => v.clone(),
            _ => {
                ctx.request_id_is_new = true;
                forward::new_request_id()
            }
        });
        let peer = peer_ip(session);
        let snap = ctx.snap.clone();
        ctx.peer_trusted = peer.is_some_and(|p| snap.is_trusted(p));
        ctx.client = forward::client_ip(req, peer, |ip| snap.is_trusted(ip));

        let path = match crate::path::normalize(req.uri.path()) {
            Ok(p) => p,
            Err(_) => {
                respond_error(session, ctx, 400, &[]).await?;
                return Ok(true);
            }
        };
        let mut host_buf = [0u8; 256];
        let raw_host = req
            .uri
            .host()
            .map(str::as_bytes)
            .or_else(|| req.headers.get(header::HOST).map(|h| h.as_bytes()))
            .unwrap_or(b"");
        let host = normalize_host(raw_host, &mut host_buf);
        let listener =
            snap.listener_index(session.server_addr().and_then(|a| a.as_inet()).copied());
        let found = match snap
            .router
            .find(listener, host, &path, &req.method, &req.headers)
        {
            Match::Found(r) => r,
            Match::MethodNotAllowed(mask) => {
                let allow = HeaderValue::from_str(&allow_header(mask))
                    .unwrap_or(HeaderValue::from_static("GET"));
                respond_error(session, ctx, 405, &[(header::ALLOW, allow)]).await?;
                return Ok(true);
            }
            Match::NotFound => {
                respond_error(session, ctx, 404, &[]).await?;
                return Ok(true);
            }
        };
        let new_path = found.rewrite.apply(&path);
        if new_path != req.uri.path() {
            let pq = match req.uri.query() {
                Some(q) => format!("{new_path}?{q}"),
                None => new_path.into_owned(),
            };
            ctx.upstream_uri = pq.parse().ok();
        }
        ctx.route = Some(found.index);
        match &found.action {
            Action::Upstream(g) => {
                ctx.group = Some(*g);
                Ok(false)
            }
            Action::Respond {
                status,
                body,
                content_type,
            } => {
                let mut resp = ResponseHeader::build(*status, Some(4))?;
                resp.insert_header(header::CONTENT_TYPE, content_type.clone())?;
                resp.insert_header(header::CONTENT_LENGTH, body.len())?;
                finish_response_headers(&mut resp, ctx);
                session.write_response_header(Box::new(resp), false).await?;
                session
                    .write_response_body(Some(body.clone()), true)
                    .await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let (Some(group), Some(route)) = (ctx.group(), ctx.route()) else {
            return Error::e_explain(ErrorType::HTTPStatus(500), "no upstream for route");
        };
        let Some(addr) = self.select(session, ctx, group) else {
            return Error::e_explain(ErrorType::HTTPStatus(503), "no healthy backend");
        };
        let Some(info) = group.backends.get(&addr).cloned() else {
            return Error::e_explain(ErrorType::HTTPStatus(503), "backend vanished");
        };
        let mut peer = Box::new(info.peer.clone());
        if route.timeouts != group.timeouts {
            apply_timeouts(&mut peer, &route.timeouts);
        }
        info.in_flight.fetch_add(1, Relaxed);
        info.requests.fetch_add(1, Relaxed);
        if ctx.attempts < MAX_TRIES {
            ctx.tried[ctx.attempts] = Some(addr);
        }
        ctx.attempts += 1;
        ctx.in_flight = Some(InFlight(info.in_flight.clone()));
        ctx.backend = Some(info);
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut pingora_http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(uri) = &ctx.upstream_uri {
            upstream.set_uri(uri.clone());
        }
        forward::keep_te_trailers(session.req_header(), upstream);
        let host = session.req_header().headers.get(header::HOST).cloned();
        forward::set_forwarded(upstream, peer_ip(session), ctx.peer_trusted, host);
        if let Some(h) = ctx.group().and_then(|g| g.host_header.clone()) {
            upstream.insert_header(header::HOST, h)?;
        }
        // A kept id is already on the copied request; only a new one is set.
        if let (true, Some(id)) = (ctx.request_id_is_new, &ctx.request_id) {
            upstream.insert_header(forward::X_REQUEST_ID.clone(), id.clone())?;
        }
        if let Some(r) = ctx.route() {
            r.request_headers.apply_request(upstream);
        }
        ctx.sent_upstream = Some(Instant::now());
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if self.draining.load(Relaxed) {
            session.set_keepalive(None);
        }
        finish_response_headers(resp, ctx);
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(b) = &ctx.backend {
            b.failures.fetch_add(1, Relaxed);
        }
        ctx.in_flight = None;
        if ctx.may_retry() && self.has_alternative(session, ctx) {
            e.set_retry(true);
            count_retry(ctx);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        if let Some(b) = &ctx.backend {
            b.failures.fetch_add(1, Relaxed);
        }
        let mut e = e.more_context(format!("backend {}", peer._address));
        let idempotent = session.req_header().method.is_idempotent();
        if !idempotent || session.as_ref().retry_buffer_truncated() || !ctx.may_retry() {
            e.set_retry(false);
        } else if ctx.route().is_some_and(|r| r.retry_on_timeout)
            && matches!(e.etype(), ErrorType::ReadTimedout)
        {
            e.set_retry(self.has_alternative(session, ctx));
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = status_for(e);
        if code > 0 {
            let extra: &[(header::HeaderName, HeaderValue)] = if code == 503 {
                &[(header::RETRY_AFTER, HeaderValue::from_static("1"))]
            } else {
                &[]
            };
            session.set_keepalive(None);
            if let Err(err) = respond_error(session, ctx, code, extra).await {
                log::debug!("could not send the {code} answer: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_status = resp.status.as_u16();
        if let (Some(sent), Some(b)) = (ctx.sent_upstream, &ctx.backend) {
            if let Some(h) = &b.ttfb {
                h.observe(sent.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        record::record(session, e, ctx, self.access_log.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_lookup() {
        assert_eq!(cookie_value(b"a=1; sid=xyz; b=2", "sid"), Some(&b"xyz"[..]));
        assert_eq!(cookie_value(b"a=1", "sid"), None);
    }
}
