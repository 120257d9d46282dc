//! `redirect`: a route that answers with a redirect. `to` is a template
//! compiled once into literal parts and variables: `$scheme`, `$host` (the
//! normalized host, without port), `$path` (the normalized path), `$query`
//! (without `?`) and `$request_uri` (path and query as sent).

use crate::config::model::RedirectConfig;
use crate::config::Issue;
use http::HeaderValue;

/// Redirect statuses a route may use.
pub const STATUSES: &[u16] = &[301, 302, 303, 307, 308];
/// The status when none is given.
pub const DEFAULT_STATUS: u16 = 302;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Scheme,
    Host,
    Path,
    Query,
    RequestUri,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Box<str>),
    Var(Var),
}

/// The request facts a redirect may use.
pub struct Facts<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Normalized host without port.
    pub host: &'a str,
    /// Normalized path.
    pub path: &'a str,
    /// Query without `?`, if any.
    pub query: Option<&'a str>,
    /// Path and query as sent.
    pub request_uri: &'a str,
}

/// A compiled redirect.
#[derive(Debug)]
pub struct Redirect {
    /// The status code.
    pub status: u16,
    parts: Box<[Part]>,
}

const VARS: &[(&str, Var)] = &[
    ("request_uri", Var::RequestUri),
    ("scheme", Var::Scheme),
    ("host", Var::Host),
    ("path", Var::Path),
    ("query", Var::Query),
];

fn parse(to: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = to;
    while let Some(i) = rest.find('$') {
        lit.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some((name, var)) = VARS.iter().find(|(n, _)| after.starts_with(n)) else {
            let word: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            return Err(format!(
                "unknown variable ${word}; use $scheme, $host, $path, $query or $request_uri"
            ));
        };
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut lit).into()));
        }
        parts.push(Part::Var(*var));
        rest = &after[name.len()..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Lit(lit.into()));
    }
    Ok(parts)
}

impl Redirect {
    /// Compiles `redirect` at `base`.
    pub fn compile(cfg: &RedirectConfig, base: &str, issues: &mut Vec<Issue>) -> Option<Redirect> {
        let status = cfg.status.unwrap_or(DEFAULT_STATUS);
        if !STATUSES.contains(&status) {
            issues.push(Issue::new(
                format!("{base}.status"),
                "must be 301, 302, 303, 307 or 308",
            ));
        }
        if cfg.to.is_empty() {
            issues.push(Issue::new(format!("{base}.to"), "must not be empty"));
        }
        match parse(&cfg.to) {
            Ok(parts) => Some(Redirect {
                status,
                parts: parts.into_boxed_slice(),
            }),
            Err(e) => {
                issues.push(Issue::new(format!("{base}.to"), e));
                None
            }
        }
    }

    /// The `Location` for a request.
    pub fn location(&self, f: &Facts<'_>) -> Option<HeaderValue> {
        let mut out = String::with_capacity(64);
        for p in self.parts.iter() {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(Var::Scheme) => out.push_str(f.scheme),
                Part::Var(Var::Host) => out.push_str(f.host),
                Part::Var(Var::Path) => out.push_str(f.path),
                Part::Var(Var::Query) => out.push_str(f.query.unwrap_or("")),
                Part::Var(Var::RequestUri) => out.push_str(f.request_uri),
            }
        }
        HeaderValue::from_str(&out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_variables() {
        let r = Redirect {
            status: 301,
            parts: parse("https://$host$request_uri#$scheme:$path?$query")
                .unwrap()
                .into(),
        };
        let f = Facts {
            scheme: "http",
            host: "a.test",
            path: "/x",
            query: Some("q=1"),
            request_uri: "/x?q=1",
        };
        assert_eq!(r.location(&f).unwrap(), "https://a.test/x?q=1#http:/x?q=1");
        assert!(parse("/$nope").is_err());
    }
}
