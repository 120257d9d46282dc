//! Choosing a backend for one attempt: the sticky cookie's backend while it
//! may take the request, otherwise the group's algorithm over the backends
//! that are healthy, untried and admitted by their circuit (and out of
//! probation). The hash key is computed only for algorithms that use it.

use super::Ctx;
use crate::upstream::{Admit, BackendInfo, Group, HashKey};
use http::header;
use pingora_load_balancing::Backend;
use pingora_proxy::Session;
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The backend chosen and whether it is a half-open circuit's trial.
pub(super) struct Choice {
    pub addr: SocketAddr,
    pub trial: bool,
    /// The request's sticky cookie named this backend.
    pub sticky_hit: bool,
    /// Its state, when selection already holds it (no lookup needed).
    pub info: Option<Arc<BackendInfo>>,
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
            addr,
            trial: a == Admit::Trial,
            sticky_hit: true,
            info: Some(info.clone()),
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
            HashKey::Path => req.uri.path().as_bytes(),
            HashKey::Header(n) => req.headers.get(n).map(|v| v.as_bytes()).unwrap_or(b""),
            HashKey::Cookie(name) => cookie(session, name).unwrap_or(b""),
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
    let trial = Cell::new(false);
    let accept = |b: &Backend, healthy: bool| {
        let Some(addr) = b.addr.as_inet() else {
            return false;
        };
        if !healthy || ctx.was_tried(*addr) {
            return false;
        }
        if !group.is_gated() {
            return true;
        }
        match group.backends.get(addr).map(|i| group.admit(i, claim)) {
            Some(Admit::Yes) => true,
            Some(Admit::Trial) => {
                trial.set(true);
                true
            }
            _ => false,
        }
    };
    if let Some((only, info)) = &group.single {
        return accept(only, group.balancer.ready(only)).then(|| Choice {
            addr: info.addr,
            trial: trial.get(),
            sticky_hit: false,
            info: Some(info.clone()),
        });
    }
    let chosen = group.balancer.select_with(key, accept)?;
    Some(Choice {
        addr: *chosen.addr.as_inet()?,
        trial: trial.get(),
        sticky_hit: false,
        info: None,
    })
}
