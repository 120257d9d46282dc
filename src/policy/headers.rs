//! `request_headers` / `response_headers`: set, add and remove, with names
//! and values parsed once at compile time.

use crate::config::model::HeaderOpsConfig;
use crate::config::Issue;
use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};
use std::collections::BTreeMap;

/// Compiled header changes, applied in the order remove → set → add.
#[derive(Debug, Default, Clone)]
pub struct HeaderOps {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

/// Headers that frame the message or pick its target: setting them from
/// the config would desynchronise weir, the client and the backend.
const FRAMING: [HeaderName; 4] = [
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
    http::header::HOST,
];

fn pairs(
    m: &BTreeMap<String, String>,
    base: &str,
    issues: &mut Vec<Issue>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (k, v) in m {
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(n), Ok(_)) if FRAMING.contains(&n) => issues.push(Issue::at_key(
                format!("{base}.{k}"),
                format!(
                    "{n} cannot be set by a header rule (it frames the message{})",
                    if n == http::header::HOST {
                        "; use the upstream's host_header"
                    } else {
                        ""
                    }
                ),
            )),
            (Ok(n), Ok(v)) => out.push((n, v)),
            _ => issues.push(Issue::new(
                format!("{base}.{k}"),
                "invalid header name or value",
            )),
        }
    }
    out
}

impl HeaderOps {
    /// Compiles the header changes at `base`; `None` when there are none.
    pub fn compile(
        cfg: Option<&HeaderOpsConfig>,
        base: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<HeaderOps> {
        let cfg = cfg?;
        let mut remove = Vec::new();
        for (j, k) in cfg.remove.iter().enumerate() {
            match HeaderName::from_bytes(k.as_bytes()) {
                Ok(n) => remove.push(n),
                Err(_) => issues.push(Issue::new(
                    format!("{base}.remove[{j}]"),
                    "invalid header name",
                )),
            }
        }
        let ops = HeaderOps {
            set: pairs(&cfg.set, &format!("{base}.set"), issues),
            add: pairs(&cfg.add, &format!("{base}.add"), issues),
            remove,
        };
        (!ops.is_empty()).then_some(ops)
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies the changes to a request going upstream.
    pub fn apply_request(&self, req: &mut RequestHeader) {
        for n in &self.remove {
            req.remove_header(n);
        }
        for (n, v) in &self.set {
            let _ = req.insert_header(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            let _ = req.append_header(n.clone(), v.clone());
        }
    }

    /// Applies the changes to a response going to the client.
    pub fn apply_response(&self, resp: &mut ResponseHeader) {
        for n in &self.remove {
            resp.remove_header(n);
        }
        for (n, v) in &self.set {
            let _ = resp.insert_header(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            let _ = resp.append_header(n.clone(), v.clone());
        }
    }
}
