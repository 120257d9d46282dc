//! Choosing a backend for one attempt: the sticky cookie's backend while it
//! may take the request, otherwise the group's algorithm over the backends
//! that are healthy, untried and admitted by their circuit (and out of
//! probation, [`Group::pick`]). The hash key is computed only for algorithms
//! that use it.

use super::Ctx;
use crate::upstream::{client_key, Admit, BackendInfo, Group, HashKey};
use http::header;
use pingora_proxy::Session;
use std::sync::Arc;

/// The backend chosen and whether it is a half-open circuit's trial.
pub(super) struct Choice {
    pub trial: bool,
    /// The request's sticky cookie named this backend.
    pub sticky_hit: bool,
    /// Its state.
    pub info: Arc<BackendInfo>,
}

pub(super) fn cookie_value<'a>(cookies: &'a [u8], name: &str) -> Option<&'a [u8]> {
    cookies.split(|&c| c == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let (k, v) = pair.split_at(pair.iter().position(|&c| c == b'=')?);
        (k == name.as_bytes()).then(|| &v[1..])
    })
}

fn cookie<'a>(session: &'a Session, name: &str) -> Option<&'a [u8]> {
    session
        .req_header()
        .headers
        .get_all(header::COOKIE)
        .iter()
        .find_map(|c| cookie_value(c.as_bytes(), name))
}

/// The backend the sticky cookie names, if it may take this request.
fn sticky(session: &Session, ctx: &Ctx, group: &Group, claim: bool) -> Option<Choice> {
    let s = group.sticky.as_ref()?;
    let addr = s.lookup(cookie(session, &s.cookie)?)?;
    let info = group.backends.get(&addr)?;
    if !info.enabled || info.draining || ctx.was_tried(addr) || !group.is_healthy(addr) {
        return None;
    }
    match group.admit(info, claim) {
        Admit::No => None,
        a => Some(Choice {
            trial: a == Admit::Trial,
            sticky_hit: true,
            info: info.clone(),
        }),
    }
}

/// Picks a backend; with `claim` a half-open circuit's trial is taken
/// (without, this only asks whether one is available).
pub(super) fn select(session: &Session, ctx: &Ctx, group: &Group, claim: bool) -> Option<Choice> {
    if let Some(c) = sticky(session, ctx, group, claim) {
        return Some(c);
    }
    let req = session.req_header();
    let mut ip_buf = [0u8; 16];
    let key: &[u8] = if !group.uses_key() {
        b""
    } else {
        match &group.hash_key {
            // The path the backend gets: normalized (and rewritten) when
            // that differs from what the client wrote.
            HashKey::Path => ctx
                .policy
                .upstream_uri
                .as_ref()
                .map_or(req.uri.path(), |u| u.path())
                .as_bytes(),
            HashKey::Header(n) => req.headers.get(n).map(|v| v.as_bytes()).unwrap_or(b""),
            HashKey::Cookie(name) => cookie(session, name).unwrap_or(b""),
            HashKey::ClientIp => b"",
        }
    };
    // A missing header or cookie falls back to the client address.
    let key = match key.is_empty() && group.uses_key() {
        true => client_key(ctx.client, &mut ip_buf),
        false => key,
    };
    let (info, trial) = group.pick(key, |a| ctx.was_tried(a), claim)?;
    Some(Choice {
        trial,
        sticky_hit: false,
        info,
    })
}
