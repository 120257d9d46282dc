//! Request path normalization (SPEC §4): unreserved %-escapes decoded,
//! dot-segments resolved, repeated slashes merged. A path that would need
//! an encoded `/` or NUL, or climbs above `/`, is rejected.
//!
//! Already-normal paths (nearly all of them) are returned borrowed, so the
//! common case allocates nothing.

use std::borrow::Cow;

/// Why a path cannot be normalized (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not starting with `/`.
    NotAbsolute,
    /// `%2F` or `%00`.
    EncodedSlashOrNul,
    /// `..` above the root.
    AboveRoot,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A path backends read differently: a `\` (or `%5C`), or a `.;…` or
    /// `..;…` segment (Java servers treat those as dot segments).
    Ambiguous,
}

/// Whether a path holds a `\` or a `.;…` / `..;…` segment.
fn ambiguous(path: &[u8]) -> bool {
    path.iter().enumerate().any(|(i, &c)| {
        c == b'\\'
            || (c == b'/'
                && (path[i + 1..].starts_with(b".;") || path[i + 1..].starts_with(b"..;")))
    })
}

/// The form of a normalized path used for matching: each segment's `;`
/// parameters removed (`/admin;x/y` → `/admin/y`), so they cannot change
/// which route a request matches. Borrowed when there is no `;`.
pub fn match_form(path: &str) -> Cow<'_, str> {
    if !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        let bare = seg.split(';').next().unwrap_or("");
        // A segment that was only parameters (`/;x/admin`) disappears, as
        // backends that strip parameters and merge slashes see it.
        if i == 0 {
            out.push_str(bare);
        } else if !bare.is_empty() || seg.is_empty() {
            out.push('/');
            out.push_str(bare);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

fn needs_work(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &c) in path.iter().enumerate() {
        if c == b'%' || (prev == b'/' && c == b'/') {
            return true;
        }
        if prev == b'/' && c == b'.' {
            let rest = &path[i + 1..];
            if rest.is_empty()
                || rest[0] == b'/'
                || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/'))
            {
                return true;
            }
        }
        prev = c;
    }
    false
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Normalizes an absolute path (no query).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if !needs_work(bytes) {
        if ambiguous(bytes) {
            return Err(PathError::Ambiguous);
        }
        return Ok(Cow::Borrowed(path));
    }
    // 1. decode unreserved escapes, keep others (hex upper-cased). Bytes,
    // not chars: a non-ASCII character is copied byte for byte.
    let mut decoded: Vec<u8> = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'%' {
            let (h, l) = match (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(PathError::BadEscape),
            };
            let v = h * 16 + l;
            if v == b'/' || v == 0 {
                return Err(PathError::EncodedSlashOrNul);
            }
            if v == b'\\' {
                return Err(PathError::Ambiguous);
            }
            if is_unreserved(v) {
                decoded.push(v);
            } else {
                decoded.push(b'%');
                decoded.extend(bytes[i + 1..i + 3].iter().map(u8::to_ascii_uppercase));
            }
            i += 3;
        } else {
            decoded.push(c);
            i += 1;
        }
    }
    // Checked before dot segments are resolved: `/a/..;/..` must not
    // launder a `..;` segment away.
    if ambiguous(&decoded) {
        return Err(PathError::Ambiguous);
    }
    // Only unreserved ASCII was decoded, so the bytes are still UTF-8.
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Err(PathError::BadEscape);
    };
    // 2. merge slashes and resolve dot segments.
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Segment-aware prefix test: `/v1` matches `/v1` and `/v1/x`, not `/v10`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// [`prefix_matches`] ignoring ASCII case (`/V1/x` under `/v1`); no allocation.
pub fn prefix_matches_ignore_case(prefix: &str, path: &str) -> bool {
    let (p, q) = (prefix.as_bytes(), path.as_bytes());
    if q.len() < p.len() || !q[..p.len()].eq_ignore_ascii_case(p) {
        return false;
    }
    let rest = &q[p.len()..];
    rest.is_empty() || p.last() == Some(&b'/') || rest.first() == Some(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(normalize("/v1/users/7"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a/.hidden"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn normalizes_tricks() {
        assert_eq!(normalize("//v1").unwrap(), "/v1");
        assert_eq!(normalize("/x/../v1").unwrap(), "/v1");
        assert_eq!(normalize("/%76%31").unwrap(), "/v1");
        assert_eq!(normalize("/a/./b/").unwrap(), "/a/b/");
        assert_eq!(normalize("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize("/a%20b").unwrap(), "/a%20b");
        assert_eq!(normalize("/a%2fb"), Err(PathError::EncodedSlashOrNul));
        assert_eq!(normalize("/a%00"), Err(PathError::EncodedSlashOrNul));
        assert_eq!(normalize("/../x"), Err(PathError::AboveRoot));
        assert_eq!(normalize("/%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("x"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("/a\\b"), Err(PathError::Ambiguous));
        assert_eq!(normalize("/a%5cb"), Err(PathError::Ambiguous));
        assert_eq!(normalize("/admin/..;/x"), Err(PathError::Ambiguous));
        assert_eq!(normalize("/.;x/admin"), Err(PathError::Ambiguous));
        assert_eq!(normalize("//a/%2e%2e;/b"), Err(PathError::Ambiguous));
        assert_eq!(match_form("/admin;a/x;b=1"), "/admin/x");
        assert!(prefix_matches_ignore_case("/admin", "/ADMIN/x"));
        assert!(prefix_matches_ignore_case("/admin", "/Admin"));
        assert!(!prefix_matches_ignore_case("/admin", "/ADMINS"));
        assert!(!prefix_matches_ignore_case("/admin", "/adm"));
        assert_eq!(match_form("/;x/admin"), "/admin");
        assert_eq!(match_form("/;x"), "/");
        assert_eq!(match_form("/a;x/"), "/a/");
        assert_eq!(normalize("//é").unwrap(), "/é");
        assert_eq!(normalize("/é%41/.").unwrap(), "/éA/");
        assert_eq!(normalize("/\\/.."), Err(PathError::Ambiguous));
        assert_eq!(normalize("/a/.;x/.."), Err(PathError::Ambiguous));
        assert!(matches!(match_form("/admin/x"), Cow::Borrowed(_)));
    }
}
