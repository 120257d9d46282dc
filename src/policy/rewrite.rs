//! `strip_prefix` / `rewrite`: how the path sent upstream is derived from
//! the (normalized) request path: with the matched prefix stripped, or
//! rewritten by a regex. The query is kept as sent.

use crate::config::model::RouteConfig;
use crate::config::Issue;
use pingora_http::RequestHeader;
use regex::Regex;
use std::borrow::Cow;

/// A rewrite produced something that is not a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidRewrite;

/// A route's path rewrite.
#[derive(Debug, Clone)]
pub enum PathRewrite {
    /// Remove this prefix (`/v1` → `/`, `/v1/x` → `/x`).
    StripPrefix(Box<str>),
    /// Replace the first match of the regex with the template (`$1`, `${name}`).
    Regex(Regex, Box<str>),
}

impl PathRewrite {
    /// Compiles the route's `strip_prefix` / `rewrite`; `None` when the
    /// path is forwarded as normalized.
    pub fn compile(r: &RouteConfig, base: &str, issues: &mut Vec<Issue>) -> Option<PathRewrite> {
        if r.strip_prefix {
            if r.matcher.path_prefix.is_none() {
                issues.push(Issue::new(
                    format!("{base}.strip_prefix"),
                    "needs match.path_prefix",
                ));
            }
            if r.rewrite.is_some() {
                issues.push(Issue::new(
                    format!("{base}.strip_prefix"),
                    "cannot be combined with rewrite",
                ));
            }
            return r
                .matcher
                .path_prefix
                .as_deref()
                .map(|p| PathRewrite::StripPrefix(p.into()));
        }
        let rw = r.rewrite.as_ref()?;
        if !rw.to.starts_with('/') {
            issues.push(Issue::new(
                format!("{base}.rewrite.to"),
                "must start with \"/\"",
            ));
        }
        match Regex::new(&rw.from) {
            Ok(re) => Some(PathRewrite::Regex(re, rw.to.clone().into())),
            Err(e) => {
                issues.push(Issue::new(
                    format!("{base}.rewrite.from"),
                    format!("invalid regex: {e}"),
                ));
                None
            }
        }
    }

    /// The URI to send upstream: `Ok(None)` when it is the request's own,
    /// an error when the rewritten path is not a valid request-target
    /// (answered 500: the raw path is never forwarded instead).
    pub fn upstream_uri(
        &self,
        req: &RequestHeader,
        path: &str,
    ) -> Result<Option<http::Uri>, InvalidRewrite> {
        let new_path = self.apply(path);
        if new_path == req.uri.path() {
            return Ok(None);
        }
        let pq = match req.uri.query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path.into_owned(),
        };
        if !pq.starts_with('/') {
            return Err(InvalidRewrite);
        }
        pq.parse().map(Some).map_err(|_| InvalidRewrite)
    }

    /// The upstream path for `path`; borrowed when unchanged.
    pub fn apply<'a>(&self, path: &'a str) -> Cow<'a, str> {
        match self {
            PathRewrite::StripPrefix(prefix) => {
                let rest = path.strip_prefix(&**prefix).unwrap_or(path);
                if rest.is_empty() {
                    Cow::Borrowed("/")
                } else if rest.starts_with('/') {
                    Cow::Borrowed(rest)
                } else {
                    // the prefix ended with '/', e.g. "/v1/" on "/v1/x"
                    Cow::Owned(format!("/{rest}"))
                }
            }
            PathRewrite::Regex(re, to) => re.replace(path, &**to),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        let s = PathRewrite::StripPrefix("/v1".into());
        assert_eq!(s.apply("/v1"), "/");
        assert_eq!(s.apply("/v1/x"), "/x");
        let s = PathRewrite::StripPrefix("/v1/".into());
        assert_eq!(s.apply("/v1/x"), "/x");
    }

    #[test]
    fn a_rewrite_to_an_invalid_path_is_an_error() {
        let r = PathRewrite::Regex(Regex::new("^/(.*)").unwrap(), "/$1 x".into());
        let req = RequestHeader::build("GET", b"/a", None).unwrap();
        assert_eq!(r.upstream_uri(&req, "/a"), Err(InvalidRewrite));
        let ok = PathRewrite::Regex(Regex::new("^/(.*)").unwrap(), "/v2/$1".into());
        assert_eq!(
            ok.upstream_uri(&req, "/a").unwrap().unwrap().path(),
            "/v2/a"
        );
    }

    #[test]
    fn regex_rewrite_uses_groups() {
        let r = PathRewrite::Regex(Regex::new("^/v1/(.*)").unwrap(), "/api/$1".into());
        assert_eq!(r.apply("/v1/users"), "/api/users");
        assert_eq!(r.apply("/other"), "/other");
    }
}
