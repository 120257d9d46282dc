//! The logging phase: metrics for every request and, when enabled, an
//! access log line.

use super::{peer_ip, Ctx};
use crate::access_log::{AccessLog, Entry};
use crate::trace::Finished;
use http::header;
use pingora_error::Error;
use pingora_proxy::Session;

/// Records a finished request.
pub(super) fn record(
    session: &mut Session,
    e: Option<&Error>,
    ctx: &mut Ctx,
    access_log: Option<&AccessLog>,
) {
    ctx.in_flight = None;
    let written = session.response_written().map(|r| r.status.as_u16());
    let status = match (written, e) {
        (Some(s), _) => s,
        (None, Some(_)) => 499,
        (None, None) => 0,
    };
    let now = std::time::Instant::now();
    let elapsed = now.saturating_duration_since(ctx.start);
    if let Some(b) = &ctx.backend {
        b.shared.window.record(now, elapsed, status >= 500);
    }
    let req = session.req_header();
    match ctx.route() {
        Some(r) => r.metrics.record(&req.method, status, elapsed.as_secs_f64()),
        None => crate::metrics::unmatched().record(&req.method, status, elapsed.as_secs_f64()),
    }
    let trace_id = ctx.trace.as_ref().map(|t| t.trace_id_hex());
    if let Some(t) = ctx.trace.take() {
        (*t).finish(&Finished {
            method: req.method.as_str(),
            route: ctx.route().map_or("-", |r| &r.name),
            upstream: ctx.group().map_or("-", |g| &g.name),
            host: crate::forward::request_host_text(req),
            path: req.uri.path(),
            status,
            client: ctx.client,
        });
    }
    let Some(log) = access_log else { return };
    let header = |n: header::HeaderName| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let version = match req.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    log.log(&Entry {
        client: ctx.client,
        peer: peer_ip(session),
        method: req.method.as_str(),
        host: crate::forward::request_host_text(req),
        path: req.uri.path(),
        query: req.uri.query(),
        status,
        upstream_status: ctx.upstream_status,
        bytes: session.body_bytes_sent(),
        bytes_in: session.body_bytes_read(),
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        route: ctx.route().map_or("-", |r| &r.name),
        upstream: ctx.group().map_or("-", |g| &g.name),
        backend: ctx.backend.as_ref().map_or("-", |b| &b.addr_text),
        attempts: ctx.attempts,
        request_id: ctx
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        user_agent: header(header::USER_AGENT),
        referer: header(header::REFERER),
        version,
        trace_id: trace_id
            .as_ref()
            .map_or("", |h| std::str::from_utf8(h).unwrap_or("")),
        listener: None,
    });
}
