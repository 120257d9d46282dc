//! `allow_ips` / `deny_ips`: CIDR lists checked against the derived client
//! address (after `trusted_proxies`); 403 for a client outside `allow_ips`
//! or inside `deny_ips`. A request with no client address (none can be
//! derived) is refused when an allow list exists.

use super::{Answer, Decision, RequestView};
use crate::config::Issue;
use crate::values::{Cidr, CidrSet};

/// Compiled IP rules.
#[derive(Debug)]
pub struct IpFilter {
    allow: Option<CidrSet>,
    deny: CidrSet,
}

/// Compiles a list of CIDRs at `base` (`base[i]` names a bad entry).
pub fn cidr_list(list: &[String], base: &str, issues: &mut Vec<Issue>) -> CidrSet {
    let mut nets = Vec::new();
    for (i, p) in list.iter().enumerate() {
        match Cidr::parse(p) {
            Some(c) => nets.push(c),
            None => issues.push(Issue::new(
                format!("{base}[{i}]"),
                format!("invalid address or CIDR {p:?}; write e.g. 10.0.0.0/8 or 192.0.2.7"),
            )),
        }
    }
    CidrSet::new(nets)
}

impl IpFilter {
    /// Rules from already-parsed sets.
    pub fn new(allow: Option<CidrSet>, deny: CidrSet) -> IpFilter {
        IpFilter { allow, deny }
    }

    /// Compiles `allow_ips` / `deny_ips` of the route at `base`; `None` when
    /// neither is set.
    pub fn compile(
        allow: Option<&Vec<String>>,
        deny: Option<&Vec<String>>,
        base: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<IpFilter> {
        if allow.is_none() && deny.is_none() {
            return None;
        }
        if allow.is_some_and(|a| a.is_empty()) {
            issues.push(Issue::new(
                format!("{base}.allow_ips"),
                "an empty allow list refuses everyone; remove it or list networks",
            ));
        }
        Some(IpFilter {
            allow: allow.map(|a| cidr_list(a, &format!("{base}.allow_ips"), issues)),
            deny: deny
                .map(|d| cidr_list(d, &format!("{base}.deny_ips"), issues))
                .unwrap_or_default(),
        })
    }

    /// 403 unless the client may use the route.
    pub fn request(&self, v: &RequestView<'_>) -> Decision {
        let ok = match v.client {
            Some(ip) => {
                !self.deny.contains(ip) && self.allow.as_ref().is_none_or(|a| a.contains(ip))
            }
            None => self.allow.is_none(),
        };
        if ok {
            Decision::Continue
        } else {
            Decision::Respond(Answer::status(403))
        }
    }
}
