//! `routes[i]`: the matcher, the one action and the policy chain, checked
//! and built in the same pass.

use super::upstream::timeouts;
use super::Listeners;
use crate::config::model::*;
use crate::config::shadow::route_label;
use crate::config::suggest::did_you_mean;
use crate::config::Issue;
use crate::metrics::RouteMetrics;
use crate::policy::auth::Auth;
use crate::policy::body_limit::BodyLimit;
use crate::policy::headers::HeaderOps;
use crate::policy::ip_filter::IpFilter;
use crate::policy::rate_limit::RateLimit;
use crate::policy::redirect::Redirect;
use crate::policy::rewrite::PathRewrite;
use crate::policy::{Chain, Policy};
use crate::router::{HostMatch, Matcher};
use crate::snapshot::{Action, CompiledRoute, RetryOn as Retry, Route};
use crate::upstream::Group;
use crate::values::{method_bit, Timeouts, MAX_RETRIES, METHODS};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// What a route may refer to.
pub(super) struct Context<'a> {
    pub cfg: &'a FileConfig,
    pub listeners: &'a Listeners,
    pub groups: &'a [Arc<Group>],
    pub index: &'a HashMap<&'a str, usize>,
    /// The snapshot being replaced, if any.
    pub previous: Option<&'a crate::snapshot::Snapshot>,
    /// The cache's storage.
    pub cache_tiers: super::cache::Tiers,
}

/// Compiles `routes[i]`; `None` (with issues) when it is invalid.
pub(super) fn compile(
    ctx: &Context<'_>,
    r: &RouteConfig,
    i: usize,
    issues: &mut Vec<Issue>,
) -> Option<CompiledRoute> {
    let before = issues.len();
    let base = format!("routes[{i}]");
    let name = route_label(r, i);
    let matcher = matcher(ctx, r, &base, issues);
    let (action, base_timeouts) = action(ctx, r, &base, issues);
    let mut policies = policies(r, &name, &base, issues);
    // Local rate-limit counts and verified credentials outlive a rebuild
    // (reload, admin change, DNS answer) when the route is unchanged.
    if let Some(prev) = ctx.previous {
        let same = prev
            .routes
            .iter()
            .find(|old| *old.name == *name && prev.config.routes.get(old.index) == Some(r));
        if let Some(old) = same {
            policies.carry_over(&old.policies);
        }
    }
    let timeouts = timeouts(
        base_timeouts,
        r.timeouts.as_ref(),
        &format!("{base}.timeouts"),
        issues,
    );
    if r.retries.is_some_and(|n| n > MAX_RETRIES) {
        issues.push(Issue::new(
            format!("{base}.retries"),
            format!("at most {MAX_RETRIES}"),
        ));
    }
    let retry_on = r.retry_on.clone().unwrap_or_default();
    let (cache, compression) = super::cache::blocks(r, &name, &ctx.cache_tiers, &base, issues);
    if issues.len() != before {
        return None;
    }
    let action = action?;
    let upstream = match &action {
        Action::Upstream(g) => ctx.groups.get(*g).map_or("-", |g| &*g.name),
        _ => "-",
    };
    let route = Route {
        index: i,
        metrics: RouteMetrics::new(&name, upstream),
        name: name.into(),
        action,
        policies,
        timeouts,
        retries: r.retries.unwrap_or(1),
        retry_on: Retry {
            timeout: retry_on.contains(&RetryOn::Timeout),
            status_5xx: retry_on.contains(&RetryOn::Status5xx),
        },
        cache,
        compression,
    };
    Some((matcher, route))
}

fn matcher(ctx: &Context<'_>, r: &RouteConfig, base: &str, issues: &mut Vec<Issue>) -> Matcher {
    let mut listeners = 0u64;
    // tcp listeners relay bytes to their own upstream: routes never apply.
    let is_tcp = |name: &str| {
        ctx.cfg
            .listeners
            .iter()
            .any(|x| x.name == name && x.protocol == ListenerProtocol::Tcp)
    };
    match &r.listeners {
        None => {
            for (k, (n, _)) in ctx.listeners.iter().enumerate() {
                if !is_tcp(n) {
                    listeners |= 1 << k;
                }
            }
        }
        Some(ls) => {
            for (j, l) in ls.iter().enumerate() {
                match ctx.listeners.iter().position(|(n, _)| **n == **l) {
                    Some(_) if is_tcp(l) => issues.push(Issue::new(
                        format!("{base}.listeners[{j}]"),
                        format!(
                            "{l:?} is a tcp listener: it relays connections to its upstream, routes do not apply to it"
                        ),
                    )),
                    Some(k) => listeners |= 1 << k,
                    None => issues.push(Issue::new(
                        format!("{base}.listeners[{j}]"),
                        format!(
                            "unknown listener {l:?}{}",
                            did_you_mean(l, ctx.cfg.listeners.iter().map(|x| x.name.as_str()))
                        ),
                    )),
                }
            }
        }
    }
    let m = &r.matcher;
    let host = match &m.host {
        None => HostMatch::Any,
        Some(h) => {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            if bare.is_empty() || bare.contains(['*', '/', ' ', ':']) {
                issues.push(Issue::new(
                    format!("{base}.match.host"),
                    format!("invalid host {h:?}; write an exact name or \"*.example.com\""),
                ));
            }
            let h = h.to_ascii_lowercase();
            let h = h.strip_suffix('.').unwrap_or(&h);
            match h.strip_prefix("*.") {
                Some(s) => HostMatch::Suffix(format!(".{s}").into()),
                None => HostMatch::Exact(h.into()),
            }
        }
    };
    if let Some(p) = &m.path_prefix {
        if !p.starts_with('/') {
            issues.push(Issue::new(
                format!("{base}.match.path_prefix"),
                "must start with \"/\"",
            ));
        } else if crate::path::normalize(p).map(|n| n != *p).unwrap_or(true) {
            issues.push(Issue::new(
                format!("{base}.match.path_prefix"),
                "must be a normalized path (no \"//\", \".\", \"..\" or %-escapes of unreserved characters)",
            ));
        }
    }
    let methods = m.methods.as_ref().map(|ms| {
        if ms.is_empty() {
            issues.push(Issue::new(
                format!("{base}.match.methods"),
                "must list at least one method",
            ));
        }
        let mut mask = 0u16;
        for (j, meth) in ms.iter().enumerate() {
            match meth.parse::<http::Method>() {
                Ok(x) if METHODS.contains(&meth.as_str()) => mask |= method_bit(&x),
                _ => issues.push(Issue::new(
                    format!("{base}.match.methods[{j}]"),
                    format!(
                        "unknown method {meth:?}{}",
                        did_you_mean(meth, METHODS.iter().copied())
                    ),
                )),
            }
        }
        mask
    });
    let mut headers = Vec::new();
    for (k, v) in m.headers.iter().flatten() {
        match (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => issues.push(Issue::new(
                format!("{base}.match.headers.{k}"),
                "invalid header name or value",
            )),
        }
    }
    Matcher {
        listeners,
        host,
        prefix: m.path_prefix.as_deref().map(Into::into),
        ignore_case: m.ignore_case,
        methods,
        headers: headers.into_boxed_slice(),
    }
}

fn action(
    ctx: &Context<'_>,
    r: &RouteConfig,
    base: &str,
    issues: &mut Vec<Issue>,
) -> (Option<Action>, Timeouts) {
    let count = [
        r.upstream.is_some(),
        r.respond.is_some(),
        r.redirect.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if count != 1 {
        issues.push(Issue::new(
            base,
            if count == 0 {
                "a route needs an action: upstream, redirect or respond"
            } else {
                "a route has exactly one action: upstream, redirect or respond"
            },
        ));
        return (None, Timeouts::default());
    }
    if let Some(u) = &r.upstream {
        return match ctx.index.get(u.as_str()) {
            Some(&g) => (Some(Action::Upstream(g)), ctx.groups[g].timeouts),
            None => {
                // An upstream that failed to compile has its own issues.
                if !ctx.cfg.upstreams.contains_key(u) {
                    issues.push(Issue::new(
                        format!("{base}.upstream"),
                        format!(
                            "unknown upstream {u:?}{}",
                            did_you_mean(u, ctx.cfg.upstreams.keys().map(String::as_str))
                        ),
                    ));
                }
                (None, Timeouts::default())
            }
        };
    }
    if let Some(rd) = &r.redirect {
        let redirect = Redirect::compile(rd, &format!("{base}.redirect"), issues);
        return (redirect.map(Action::Redirect), Timeouts::default());
    }
    let Some(resp) = &r.respond else {
        return (None, Timeouts::default());
    };
    if !(200..=599).contains(&resp.status) {
        issues.push(Issue::new(
            format!("{base}.respond.status"),
            "must be 200..=599",
        ));
    }
    let content_type = resp.content_type.as_deref().unwrap_or("text/plain");
    let Ok(content_type) = http::HeaderValue::from_str(content_type) else {
        issues.push(Issue::new(
            format!("{base}.respond.content_type"),
            "invalid header value",
        ));
        return (None, Timeouts::default());
    };
    let action = Action::Respond {
        status: resp.status,
        body: Bytes::from(resp.body.clone()),
        content_type,
    };
    (Some(action), Timeouts::default())
}

fn policies(r: &RouteConfig, name: &str, base: &str, issues: &mut Vec<Issue>) -> Chain {
    let mut list = Vec::new();
    if let Some(f) = IpFilter::compile(r.allow_ips.as_ref(), r.deny_ips.as_ref(), base, issues) {
        list.push(Policy::IpFilter(f));
    }
    if let Some(rl) = &r.rate_limit {
        if let Some(p) = RateLimit::compile(rl, name, &format!("{base}.rate_limit"), issues) {
            list.push(Policy::RateLimit(p));
        }
    }
    if let Some(a) = &r.auth {
        if let Some(p) = Auth::compile(a, &format!("{base}.auth"), issues) {
            list.push(Policy::Auth(p));
        }
    }
    if let Some(max) = r.max_body_size {
        list.push(Policy::BodyLimit(BodyLimit::new(max.0)));
    }
    if let Some(rw) = PathRewrite::compile(r, base, issues) {
        list.push(Policy::Rewrite(rw));
    }
    let path = format!("{base}.request_headers");
    if let Some(h) = HeaderOps::compile(r.request_headers.as_ref(), &path, issues) {
        list.push(Policy::RequestHeaders(h));
    }
    let path = format!("{base}.response_headers");
    if let Some(h) = HeaderOps::compile(r.response_headers.as_ref(), &path, issues) {
        list.push(Policy::ResponseHeaders(h));
    }
    Chain::new(list)
}
