//! `request_headers` / `response_headers`: set, add and remove, with names
//! and values parsed once when the snapshot is built.

use crate::config::model::HeaderOpsConfig;
use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};

/// Compiled header changes, applied in the order remove → set → add.
#[derive(Debug, Default, Clone)]
pub struct HeaderOps {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderOps {
    /// Compiles validated config; invalid entries (already reported by
    /// validation) are skipped.
    pub fn compile(cfg: Option<&HeaderOpsConfig>) -> HeaderOps {
        let Some(cfg) = cfg else {
            return HeaderOps::default();
        };
        let pairs = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .filter_map(|(k, v)| {
                    Some((
                        HeaderName::from_bytes(k.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect()
        };
        HeaderOps {
            set: pairs(&cfg.set),
            add: pairs(&cfg.add),
            remove: cfg
                .remove
                .iter()
                .filter_map(|k| HeaderName::from_bytes(k.as_bytes()).ok())
                .collect(),
        }
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
