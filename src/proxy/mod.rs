//! The Pingora `ProxyHttp` implementation. Each phase is short and delegates:
//! `request_filter` matches the route (404/405/400 end here), runs the
//! route's policy chain (403/429/401/413) and its action (`respond` and
//! `redirect` end here), `upstream_peer` selects a backend, the upstream
//! filters apply the chain's request changes and judge the answer (circuit
//! breaker, retry on 5xx), `fail_to_connect` / `error_while_proxy` decide
//! retries, and `fail_to_proxy` writes weir's own error answers.

mod answers;
mod caching;
mod ctx;
mod record;
mod request;
mod select;
mod shape;

use request::{expects_continue, Next};

use crate::access_log::AccessLog;
use crate::forward;
use crate::snapshot::SharedSnapshot;
use crate::upstream::apply_timeouts;
use answers::{finish_response_headers, respond, respond_answer, status_for};
use async_trait::async_trait;
use bytes::Bytes;
use ctx::MAX_TRIES;
pub use ctx::{Ctx, InFlight};
use http::{header, HeaderValue};
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, CacheMeta, RespCacheable};
use pingora_core::upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy};
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
#[doc(hidden)]
pub use shape::valid_host;
use std::net::IpAddr;
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

/// Writes `100 Continue`. Pingora closes a connection whose response
/// starts before the request body is read (its
/// `close_on_response_before_downstream_finish`), and counts the interim
/// `100` as such a start: the final answer then carried `Connection: close`
/// (nginx keeps the connection). The rule is lifted for the `100` only.
async fn write_continue(session: &mut Session) -> Result<()> {
    let downstream = session.as_mut();
    downstream.set_close_on_response_before_downstream_finish(false);
    let written = downstream.write_continue_response().await;
    downstream.set_close_on_response_before_downstream_finish(true);
    written
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

/// Whether another untried backend could take a retry.
fn has_alternative(session: &Session, ctx: &Ctx) -> bool {
    ctx.group()
        .is_some_and(|g| select::select(session, ctx, g, false).is_some())
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.snapshot.load_full())
    }

    fn init_downstream_modules(&self, modules: &mut pingora_core::modules::http::HttpModules) {
        // Pingora's response compression, disabled until a route's
        // `compression` arms it for one response.
        modules.add_module(Box::new(crate::cache::encoder::EncoderBuilder));
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        crate::observe::account::request_started();
        ctx.counted = true;
        // Pipelined HTTP/1.1 requests are answered in order instead of the
        // connection being closed after the first (Pingora's default).
        session.as_mut().set_pipelining_enabled(true);
        // The head is in: the listener's header deadline stops here, and
        // its keep-alive idle applies after the answer.
        crate::front::head_done(session.as_mut());
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if self.draining.load(Relaxed) {
            session.set_keepalive(None);
        }
        // ACME http-01: a pending token is answered before routing (one
        // prefix compare for every other request).
        if let Some(ka) = crate::acme::state::http01_answer(session.req_header().uri.path()) {
            let body = Bytes::copy_from_slice(ka.as_bytes());
            let text = http::HeaderValue::from_static("text/plain");
            respond(session, ctx, 200, body, text).await?;
            return Ok(true);
        }
        match self.route_request(session, ctx).await {
            Next::Proxy => {
                // weir answers `Expect: 100-continue` itself once the request
                // passed its checks (as nginx does); the backend gets no Expect.
                if expects_continue(session.req_header()) {
                    ctx.sent_continue = true;
                    write_continue(session).await?;
                }
                if !request::read_small_h2_body(session).await {
                    // The h2 stream was malformed (DATA and content-length
                    // disagree) and reset; no backend was contacted.
                    return Error::e_explain(
                        ErrorType::HTTPStatus(400),
                        "HTTP/2 request body does not match its content-length",
                    )
                    .map_err(|e| e.into_down());
                }
                Ok(false)
            }
            Next::Close => Error::e_explain(
                ErrorType::ConnectionClosed,
                "the accepting listener is unknown",
            )
            .map_err(|e| e.into_down()),
            Next::Answer(a) => {
                if matches!(a.status, 400 | 414 | 431 | 501) {
                    // A malformed head: nothing after it on this connection
                    // can be trusted to be framed as the client meant.
                    session.set_keepalive(None);
                }
                respond_answer(session, ctx, a.status, a.header, a.body).await?;
                Ok(true)
            }
            Next::Respond(status, body, content_type) => {
                respond(session, ctx, status, body, content_type).await?;
                Ok(true)
            }
        }
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        caching::enable(session, ctx);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        caching::key(session, ctx)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        Ok(caching::cacheable(session, resp, ctx))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut Ctx,
        req: &pingora_http::RequestHeader,
    ) -> Option<HashBinary> {
        caching::variance(meta, req)
    }

    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        handler: &mut pingora_cache::storage::HitHandler,
        is_fresh: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<pingora_cache::ForcedFreshness>> {
        if is_fresh {
            caching::hit(session, meta, handler, ctx);
        }
        Ok(None)
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut Ctx,
        error: Option<&Error>,
    ) -> bool {
        crate::cache::serve_stale(error)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(limit), Some(b)) = (ctx.policy.body_limit, body.as_ref()) {
            ctx.policy.body_seen += b.len() as u64;
            if ctx.policy.body_seen > limit {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body over max_body_size",
                );
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let (Some(group), Some(route)) = (ctx.group(), ctx.route()) else {
            return Error::e_explain(ErrorType::HTTPStatus(500), "no upstream for route");
        };
        let Some(choice) = select::select(session, ctx, group, true) else {
            return Error::e_explain(ErrorType::HTTPStatus(503), "no healthy backend");
        };
        let info = choice.info;
        let mut peer = Box::new(info.peer.clone());
        if forward::nothing_hop_by_hop(session.req_header()) {
            // Pingora's sanitizer would find nothing to remove.
            peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::preserve();
        }
        if route.timeouts != group.timeouts {
            apply_timeouts(&mut peer, &route.timeouts);
        }
        if session.is_upgrade_req() {
            // An upgraded connection (WebSocket) idles for tunnel_idle, not
            // for the request read timeout, on both sides.
            let idle = Some(route.timeouts.tunnel_idle);
            peer.options.read_timeout = idle;
            peer.options.write_timeout = idle;
            session.as_mut().set_read_timeout(idle);
            session.as_mut().set_write_timeout(idle);
        }
        if let Some(v) = group.config.send_proxy_protocol {
            // New connections start with a header naming this client, and
            // are pooled for this client only (see `proxy_protocol::attach`).
            let inet = |a: Option<&pingora_core::protocols::l4::socket::SocketAddr>| {
                a.and_then(|a| a.as_inet()).copied()
            };
            let source =
                crate::proxy_protocol::client_source(inet(session.client_addr()), ctx.client);
            let header = crate::proxy_protocol::header_for(v, source, inet(session.server_addr()));
            crate::proxy_protocol::attach(&mut peer, header);
        }
        // The request counts in its upstream's retry budget from its first try.
        let hold = match ctx.budget {
            None => group.budget.as_ref().map(|b| b.hold()),
            Some(_) => None,
        };
        ctx.set_cookie = match (&group.sticky, choice.sticky_hit) {
            (Some(s), false) => s.set_cookie(&info, ctx.https),
            _ => None,
        };
        if hold.is_some() {
            ctx.budget = hold;
        }
        info.shared.in_flight.fetch_add(1, Relaxed);
        info.requests.fetch_add(1, Relaxed);
        if ctx.attempts < MAX_TRIES {
            ctx.tried[ctx.attempts] = Some(info.addr);
        }
        ctx.attempts += 1;
        ctx.in_flight = Some(InFlight(info.shared.in_flight.clone()));
        ctx.trial = choice.trial.then(|| ctx::Trial(Some(info.clone())));
        ctx.reported = false;
        // A retry replays the buffered body through request_body_filter.
        ctx.policy.body_seen = 0;
        if let Some(t) = ctx.trace.as_mut() {
            t.attempt(info.addr);
        }
        ctx.backend = Some(info);
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut pingora_http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(uri) = &ctx.policy.upstream_uri {
            upstream.set_uri(uri.clone());
        }
        forward::keep_te_trailers(session.req_header(), upstream);
        let host = forward::request_host(session.req_header());
        if session.req_header().version == http::Version::HTTP_2 {
            forward::join_cookies(upstream);
        }
        forward::set_forwarded(
            upstream,
            peer_ip(session),
            ctx.peer_trusted,
            host,
            ctx.https,
        );
        if let Some(h) = ctx.group().and_then(|g| g.host_header.clone()) {
            upstream.insert_header(header::HOST, h)?;
        }
        // A kept id is already on the copied request; only a new one is set.
        if let (true, Some(id)) = (ctx.request_id_is_new, &ctx.request_id) {
            upstream.insert_header(forward::wire::X_REQUEST_ID, id.clone())?;
        }
        if ctx.sent_continue {
            upstream.remove_header(&header::EXPECT);
        }
        if let Some(r) = ctx.route() {
            r.policies.upstream_request(upstream);
        }
        if let Some(t) = &ctx.trace {
            t.set_upstream_headers(upstream)?;
        }
        ctx.sent_upstream = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        ctx.upstream_status = status;
        if let Some(t) = ctx.trace.as_mut() {
            t.answered(status);
        }
        if let (Some(sent), Some(b)) = (ctx.sent_upstream, &ctx.backend) {
            let took = sent.elapsed();
            b.shared.latency.observe(took);
            if let Some(h) = &b.ttfb {
                h.observe(took.as_secs_f64());
            }
        }
        let failed = (502..=504).contains(&status);
        ctx.report(!failed);
        if failed
            && ctx.route().is_some_and(|r| r.retry_on.status_5xx)
            && session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && ctx.may_retry()
            && has_alternative(session, ctx)
            && ctx.spend_retry()
        {
            // Nothing has reached the client yet: failing here makes Pingora
            // call error_while_proxy, which asks for a retry elsewhere.
            ctx.retrying_5xx = true;
            return Error::e_explain(
                ErrorType::HTTPStatus(status),
                "backend answered 5xx; retrying on another",
            );
        }
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
        if let Some(c) = ctx.set_cookie.take() {
            resp.append_header(header::SET_COOKIE, c)?;
        }
        caching::response(session, resp, ctx);
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
        ctx.report(false);
        ctx.in_flight = None;
        if let Some(t) = ctx.trace.as_mut() {
            t.failed(e.etype().as_str());
        }
        if ctx.may_retry() && has_alternative(session, ctx) && ctx.spend_retry() {
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
        let mut e = e.more_context(format!("backend {}", peer._address));
        if let Some(t) = ctx.trace.as_mut() {
            t.failed(e.etype().as_str());
        }
        if std::mem::take(&mut ctx.retrying_5xx) {
            e.set_retry(true);
            count_retry(ctx);
            return e;
        }
        if matches!(e.etype(), ErrorType::HTTPStatus(_)) {
            // weir's own decision (e.g. a body over max_body_size).
            e.set_retry(false);
            return e;
        }
        if e.esource() == &ErrorSource::Upstream {
            if let Some(b) = &ctx.backend {
                b.failures.fetch_add(1, Relaxed);
            }
            ctx.report(false);
        }
        let idempotent = session.req_header().method.is_idempotent();
        if session.as_ref().retry_buffer_truncated() || !ctx.may_retry() {
            e.set_retry(false);
        } else if idempotent
            && ctx.route().is_some_and(|r| r.retry_on.timeout)
            && matches!(e.etype(), ErrorType::ReadTimedout)
        {
            e.set_retry(has_alternative(session, ctx) && ctx.spend_retry());
        } else {
            // A reused pooled connection that failed before the answer is
            // retried for any method (nothing was processed), but only on
            // another backend (SPEC §4): with none left the client gets 502.
            e.retry.decide_reuse(client_reused);
            let reused_reset = e.retry() && (idempotent || client_reused);
            e.set_retry(reused_reset && has_alternative(session, ctx) && ctx.spend_retry());
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = status_for(e);
        if code > 0 && session.response_written().is_none() {
            let extra = (code == 503).then(|| (header::RETRY_AFTER, HeaderValue::from_static("1")));
            session.set_keepalive(None);
            if let Err(err) = respond_answer(session, ctx, code, extra, None).await {
                log::debug!("could not send the {code} answer: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A failure on the client's side (it left, reset its stream as a gRPC
    /// cancel does, or sent a malformed body) is the client's doing: the
    /// access log has it (499 or the status sent); the process log keeps
    /// its errors for weir and its backends.
    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, e: &Error) -> bool {
        if e.esource() == &ErrorSource::Downstream {
            log::debug!(
                "request {} ended on the client's side: {e}",
                ctx.request_id
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
            );
            return true;
        }
        false
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if std::mem::take(&mut ctx.counted) {
            crate::observe::account::request_finished();
        }
        record::record(session, e, ctx, self.access_log.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::select::cookie_value;

    #[test]
    fn cookie_lookup() {
        assert_eq!(cookie_value(b"a=1; sid=xyz; b=2", "sid"), Some(&b"xyz"[..]));
        assert_eq!(cookie_value(b"a=1", "sid"), None);
    }
}
