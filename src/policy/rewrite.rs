//! How the path sent upstream is derived from the (normalized) request path:
//! unchanged, with the matched prefix stripped, or rewritten by a regex.

use regex::Regex;
use std::borrow::Cow;

/// A route's path rewrite.
#[derive(Debug, Clone, Default)]
pub enum PathRewrite {
    /// Forward the normalized path as is.
    #[default]
    None,
    /// Remove this prefix (`/v1` → `/`, `/v1/x` → `/x`).
    StripPrefix(Box<str>),
    /// Replace the first match of the regex with the template (`$1`, `${name}`).
    Regex(Regex, Box<str>),
}

impl PathRewrite {
    /// The upstream path for `path`; borrowed when unchanged.
    pub fn apply<'a>(&self, path: &'a str) -> Cow<'a, str> {
        match self {
            PathRewrite::None => Cow::Borrowed(path),
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
    fn regex_rewrite_uses_groups() {
        let r = PathRewrite::Regex(Regex::new("^/v1/(.*)").unwrap(), "/api/$1".into());
        assert_eq!(r.apply("/v1/users"), "/api/users");
        assert_eq!(r.apply("/other"), "/other");
    }
}
