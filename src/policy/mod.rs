//! Per-route policies: one small module per kind, each owning its typed
//! config, its compile step and the phases it needs. A route holds its
//! policies as a [`Chain`] built at compile time in the order of SPEC §2
//! (IP rules → rate limit → auth → body size), then the rewrite and header
//! changes. Dispatch is a `match` over [`Policy`]: no allocation and no
//! lookup per request, and an empty chain costs a length check.
//!
//! Adding a policy: a file here with `compile(cfg, path, issues)` and the
//! phase methods it needs, one [`Policy`] arm, one line in
//! `compile::route` that builds it, its docs and tests.

pub mod auth;
pub mod body_limit;
pub mod headers;
pub mod ip_filter;
pub mod rate_limit;
pub mod redirect;
pub mod rewrite;

use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};
use std::net::IpAddr;

/// What the request phase sees of a request.
pub struct RequestView<'a> {
    /// The request head as the client sent it.
    pub req: &'a RequestHeader,
    /// The normalized path.
    pub path: &'a str,
    /// The derived client address (`trusted_proxies` applied).
    pub client: Option<IpAddr>,
}

/// One of weir's own answers, decided by a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// One extra header (`Retry-After`, `WWW-Authenticate`).
    pub header: Option<(HeaderName, HeaderValue)>,
    /// A body other than the status's usual one.
    pub body: Option<&'static str>,
}

impl Answer {
    /// An answer with just a status.
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            header: None,
            body: None,
        }
    }
}

/// What a policy decided about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go on to the next policy, then the route's action.
    Continue,
    /// Answer now with this.
    Respond(Answer),
}

/// Per-request state the policies keep between phases.
#[derive(Debug, Default)]
pub struct State {
    /// The path and query sent upstream, when a rewrite changed them.
    pub upstream_uri: Option<http::Uri>,
    /// Largest request body allowed (checked as the body streams).
    pub body_limit: Option<u64>,
    /// Request body bytes seen so far.
    pub body_seen: u64,
}

/// One compiled policy.
pub enum Policy {
    /// `allow_ips` / `deny_ips` (403).
    IpFilter(ip_filter::IpFilter),
    /// `rate_limit` (429).
    RateLimit(rate_limit::RateLimit),
    /// `auth` (401).
    Auth(auth::Auth),
    /// `max_body_size` (413).
    BodyLimit(body_limit::BodyLimit),
    /// `strip_prefix` / `rewrite`.
    Rewrite(rewrite::PathRewrite),
    /// `request_headers`.
    RequestHeaders(headers::HeaderOps),
    /// `response_headers`.
    ResponseHeaders(headers::HeaderOps),
}

impl Policy {
    /// Position in the chain (SPEC §2 order for the ones that answer).
    fn rank(&self) -> u8 {
        match self {
            Policy::IpFilter(_) => 0,
            Policy::RateLimit(_) => 1,
            Policy::Auth(_) => 2,
            Policy::BodyLimit(_) => 3,
            Policy::Rewrite(_) => 4,
            Policy::RequestHeaders(_) => 5,
            Policy::ResponseHeaders(_) => 6,
        }
    }

    async fn request(&self, v: &RequestView<'_>, st: &mut State) -> Decision {
        match self {
            Policy::IpFilter(p) => p.request(v),
            Policy::RateLimit(p) => p.request(v).await,
            Policy::Auth(p) => p.request(v).await,
            Policy::BodyLimit(p) => p.request(v, st),
            Policy::Rewrite(p) => match p.upstream_uri(v.req, v.path) {
                Ok(uri) => {
                    st.upstream_uri = uri;
                    Decision::Continue
                }
                Err(rewrite::InvalidRewrite) => Decision::Respond(Answer::status(500)),
            },
            Policy::RequestHeaders(_) | Policy::ResponseHeaders(_) => Decision::Continue,
        }
    }
}

/// A route's policies in the order they run.
#[derive(Default)]
pub struct Chain {
    policies: Box<[Policy]>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chain({} policies)", self.policies.len())
    }
}

impl Chain {
    /// A chain of these policies, put in their running order.
    pub fn new(mut policies: Vec<Policy>) -> Chain {
        policies.sort_by_key(Policy::rank);
        Chain {
            policies: policies.into_boxed_slice(),
        }
    }

    /// Runs the request phase until a policy answers.
    pub async fn request(&self, v: &RequestView<'_>, st: &mut State) -> Decision {
        for p in self.policies.iter() {
            if let Decision::Respond(a) = p.request(v, st).await {
                return Decision::Respond(a);
            }
        }
        Decision::Continue
    }

    /// Changes to the request going upstream.
    pub fn upstream_request(&self, req: &mut RequestHeader) {
        for p in self.policies.iter() {
            match p {
                Policy::Auth(a) => a.upstream_request(req),
                Policy::RequestHeaders(h) => h.apply_request(req),
                _ => {}
            }
        }
    }

    /// Changes to the response going to the client (weir's own answers too).
    pub fn response(&self, resp: &mut ResponseHeader) {
        for p in self.policies.iter() {
            if let Policy::ResponseHeaders(h) = p {
                h.apply_response(resp);
            }
        }
    }

    /// Takes over the state of `prev`'s rate limit and auth (counts,
    /// verified credentials); for a route whose config did not change.
    pub fn carry_over(&mut self, prev: &Chain) {
        for p in self.policies.iter_mut() {
            for q in prev.policies.iter() {
                match (&mut *p, q) {
                    (Policy::RateLimit(a), Policy::RateLimit(b)) => a.carry_over(b),
                    (Policy::Auth(a), Policy::Auth(b)) => a.carry_over(b),
                    _ => {}
                }
            }
        }
    }

    /// The path rewrite, if any (for `weir explain`).
    pub fn rewrite(&self) -> Option<&rewrite::PathRewrite> {
        self.policies.iter().find_map(|p| match p {
            Policy::Rewrite(r) => Some(r),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_runs_in_spec_order() {
        let c = Chain::new(vec![
            Policy::BodyLimit(body_limit::BodyLimit::new(1)),
            Policy::IpFilter(ip_filter::IpFilter::new(
                None,
                crate::values::CidrSet::new(vec![]),
            )),
        ]);
        assert!(matches!(c.policies[0], Policy::IpFilter(_)));
        assert!(matches!(c.policies[1], Policy::BodyLimit(_)));
    }
}
