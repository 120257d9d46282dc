//! weir's own answers: short plain-text bodies, the status an error maps
//! to (504 for upstream timeouts), and the headers every answer carries.

use super::Ctx;
use crate::forward;
use bytes::Bytes;
use http::{header, HeaderValue};
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Writes a short plain-text answer of weir's own.
async fn respond(
    session: &mut Session,
    ctx: &Ctx,
    status: u16,
    body: Bytes,
    extra: &[(header::HeaderName, HeaderValue)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(6))?;
    resp.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    for (n, v) in extra {
        resp.insert_header(n.clone(), v.clone())?;
    }
    finish_response_headers(&mut resp, ctx);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Writes weir's own short answer for an error status.
pub(super) async fn respond_error(
    session: &mut Session,
    ctx: &Ctx,
    status: u16,
    extra: &[(header::HeaderName, HeaderValue)],
) -> Result<()> {
    respond(
        session,
        ctx,
        status,
        Bytes::from_static(error_body(status).as_bytes()),
        extra,
    )
    .await
}

pub(super) fn finish_response_headers(resp: &mut ResponseHeader, ctx: &Ctx) {
    if let Some(id) = &ctx.request_id {
        let _ = resp.insert_header(forward::X_REQUEST_ID.clone(), id.clone());
    }
    if let Some(r) = ctx.route() {
        r.response_headers.apply_response(resp);
    }
}

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
        400 => "bad request\n",
        404 => "no route matched\n",
        405 => "method not allowed\n",
        502 => "bad gateway\n",
        503 => "no healthy backend\n",
        504 => "gateway timeout\n",
        _ => "error\n",
    }
}
