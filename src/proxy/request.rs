//! The request phase before any backend: ids and client address, the
//! request's shape (target, Host, framing, head size), normalization, the
//! listener and route, the route's policy chain, and its action.

use super::{peer_ip, shape, Ctx, Proxy};
use crate::forward;
use crate::policy::redirect::Facts;
use crate::policy::{Answer, Decision, RequestView};
use crate::router::{allow_header, normalize_host, Match};
use crate::snapshot::Action;
use bytes::Bytes;
use http::{header, HeaderValue};
use pingora_proxy::Session;

pub(super) fn expects_continue(req: &pingora_http::RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Largest HTTP/2 request body read before a backend is chosen: what
/// Pingora keeps for a retry (its `BODY_BUF_LIMIT`), so the body is sent
/// from that buffer.
const H2_PREREAD: u64 = 64 << 10;

/// Reads a small HTTP/2 request body (a `content-length` of at most
/// [`H2_PREREAD`]) before any backend is contacted, into Pingora's retry
/// buffer, from which the proxy then sends it. HTTP/2 frames a body by its
/// DATA frames, so a `content-length` that disagrees with them is only found
/// while reading; read first, such a malformed request (RFC 9113 §8.1.1,
/// reset by the h2 server) never reaches a backend's head. `false`: the
/// body was malformed.
pub(super) async fn read_small_h2_body(session: &mut Session) -> bool {
    let req = session.req_header();
    if req.version != http::Version::HTTP_2 {
        return true;
    }
    let small = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n <= H2_PREREAD);
    if !small || session.as_mut().is_body_done() {
        return true;
    }
    session.as_mut().enable_retry_buffering();
    loop {
        match session.as_mut().read_request_body().await {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(e) => {
                log::debug!("HTTP/2 request body refused: {e}");
                return false;
            }
        }
    }
}

/// What the request phase decided, with nothing borrowed from the session.
pub(super) enum Next {
    Answer(Answer),
    Close,
    Proxy,
    Respond(u16, Bytes, HeaderValue),
}

impl Proxy {
    /// Ids, client address, path, host and route; then the route's policies
    /// and action.
    pub(super) async fn route_request(&self, session: &mut Session, ctx: &mut Ctx) -> Next {
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
        ctx.trace =
            crate::trace::begin(snap.config.tracing.as_ref(), &req.headers, ctx.peer_trusted);
        // `OPTIONS *` is matched as `/` and forwarded as sent; absolute-form
        // is matched by its path and forwarded in origin-form.
        let (raw_path, asterisk, absolute) = match shape::target(req) {
            Some(shape::Target::Path) => (req.uri.path(), false, false),
            Some(shape::Target::Absolute) => (req.uri.path(), false, true),
            Some(shape::Target::Asterisk) => ("/", true, false),
            None => return Next::Answer(Answer::status(400)),
        };
        if let Some(status) = shape::refusal(req) {
            return Next::Answer(Answer::status(status));
        }
        let Ok(path) = crate::path::normalize(raw_path) else {
            return Next::Answer(Answer::status(400));
        };
        let mut host_buf = [0u8; 256];
        let raw_host = req
            .uri
            .host()
            .map(str::as_bytes)
            .or_else(|| req.headers.get(header::HOST).map(|h| h.as_bytes()))
            .unwrap_or(b"");
        let host = normalize_host(raw_host, &mut host_buf);
        let local = session.server_addr().and_then(|a| a.as_inet()).copied();
        let Some(listener) = snap.listener_index(local) else {
            // Fail closed: no route of any listener answers it.
            log::warn!("connection on {local:?} matches no listener; closing it");
            return Next::Close;
        };
        if let Some(limits) = snap.limits.get(listener) {
            ctx.https = limits.https;
            if let Some(status) = shape::head_size(req, limits.max_header_size) {
                return Next::Answer(Answer::status(status));
            }
        }
        let index = match snap.router.find(
            listener,
            host,
            &crate::path::match_form(&path),
            &req.method,
            &req.headers,
        ) {
            Match::Found(i) => i,
            Match::MethodNotAllowed(mask) => {
                let allow = HeaderValue::from_str(&allow_header(mask))
                    .unwrap_or(HeaderValue::from_static("GET"));
                return Next::Answer(Answer {
                    status: 405,
                    header: Some((header::ALLOW, allow)),
                    body: None,
                });
            }
            Match::NotFound => return Next::Answer(Answer::status(404)),
        };
        let Some(route) = snap.routes.get(index) else {
            return Next::Answer(Answer::status(404));
        };
        ctx.route = Some(index);
        let view = RequestView {
            req,
            path: &path,
            client: ctx.client,
        };
        if let Decision::Respond(a) = route.policies.request(&view, &mut ctx.policy).await {
            return Next::Answer(a);
        }
        if ctx.policy.upstream_uri.is_none() && !asterisk && (absolute || *path != *raw_path) {
            let pq = match req.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            ctx.policy.upstream_uri = pq.parse().ok();
        }
        match &route.action {
            Action::Upstream(g) => {
                ctx.group = Some(*g);
                Next::Proxy
            }
            Action::Respond {
                status,
                body,
                content_type,
            } => Next::Respond(*status, body.clone(), content_type.clone()),
            Action::Redirect(r) => {
                let facts = Facts {
                    scheme: if ctx.https { "https" } else { "http" },
                    host,
                    path: &path,
                    query: req.uri.query(),
                    request_uri: req.uri.path_and_query().map_or("/", |pq| pq.as_str()),
                };
                match r.location(&facts) {
                    Some(loc) => Next::Answer(Answer {
                        status: r.status,
                        header: Some((header::LOCATION, loc)),
                        body: None,
                    }),
                    None => Next::Answer(Answer::status(500)),
                }
            }
        }
    }
}
