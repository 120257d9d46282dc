//! weir's own answers: `respond` routes, short plain-text error bodies, the
//! status an error maps to (504 for upstream timeouts), and the headers
//! every answer carries (request id, the route's `response_headers`). An
//! answer to a request whose body was not read closes the connection.

use super::Ctx;
use crate::forward;
use bytes::Bytes;
use http::{header, HeaderValue};
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Writes an answer of weir's own.
pub(super) async fn respond(
    session: &mut Session,
    ctx: &Ctx,
    status: u16,
    body: Bytes,
    content_type: HeaderValue,
) -> Result<()> {
    write(session, ctx, status, body, content_type, None).await
}

async fn write(
    session: &mut Session,
    ctx: &Ctx,
    status: u16,
    body: Bytes,
    content_type: HeaderValue,
    extra: Option<(header::HeaderName, HeaderValue)>,
) -> Result<()> {
    if !session.is_body_empty() && !session.is_body_done() {
        // The unread body stays unread: the connection cannot be reused.
        session.set_keepalive(None);
    }
    let mut resp = ResponseHeader::build(status, Some(6))?;
    resp.insert_header(header::CONTENT_TYPE, content_type)?;
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    if let Some((n, v)) = extra {
        resp.insert_header(n, v)?;
    }
    finish_response_headers(&mut resp, ctx);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Writes weir's own short answer for a status, with one extra header.
pub(super) async fn respond_answer(
    session: &mut Session,
    ctx: &Ctx,
    status: u16,
    extra: Option<(header::HeaderName, HeaderValue)>,
    body: Option<&'static str>,
) -> Result<()> {
    write(
        session,
        ctx,
        status,
        Bytes::from_static(body.unwrap_or(error_body(status)).as_bytes()),
        HeaderValue::from_static("text/plain; charset=utf-8"),
        extra,
    )
    .await
}

/// Adds the request id and the route's response header changes.
pub(super) fn finish_response_headers(resp: &mut ResponseHeader, ctx: &Ctx) {
    if let Some(id) = &ctx.request_id {
        let _ = resp.insert_header(forward::wire::X_REQUEST_ID, id.clone());
    }
    if let Some(r) = ctx.route() {
        r.policies.response(resp);
    }
}

/// The status weir answers for a proxy error (0: the client is gone).
pub(super) fn status_for(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout
        | ErrorType::ReadTimedout
        | ErrorType::WriteTimedout
        | ErrorType::TLSHandshakeTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

fn error_body(status: u16) -> &'static str {
    match status {
        301 | 302 | 303 | 307 | 308 => "redirecting\n",
        400 => "bad request\n",
        401 => "unauthorized\n",
        403 => "forbidden\n",
        404 => "no route matched\n",
        405 => "method not allowed\n",
        413 => "request body too large\n",
        414 => "request-target too long\n",
        429 => "too many requests\n",
        431 => "request header fields too large\n",
        502 => "bad gateway\n",
        503 => "no healthy backend\n",
        501 => "not implemented\n",
        504 => "gateway timeout\n",
        _ => "error\n",
    }
}
