//! Request shapes weir refuses before routing (SPEC §4 "Matching"): a
//! request-target that is not origin-form (`/…`), absolute-form
//! (`http(s)://…`) or `*` with OPTIONS, a `Host` that is not exactly one
//! `host[:port]`, a `Transfer-Encoding` other than one `chunked`, and a head
//! over the listener's `max_header_size`. Backends resolve such requests
//! differently from weir, so they would bypass the route (and its IP rules
//! or auth) weir chose.

use http::{header, Method};
use pingora_http::RequestHeader;

/// How the request-target is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// `/path?query`: routed by its path.
    Path,
    /// `http(s)://authority/path?query`: routed by its path, forwarded in
    /// origin-form.
    Absolute,
    /// `OPTIONS *`: matched as `/`.
    Asterisk,
}

/// The request-target's form, or `None` for a 400.
pub(super) fn target(req: &RequestHeader) -> Option<Target> {
    let raw = req.raw_path();
    // Matched on a lossy rendering but forwarded as sent, a non-UTF-8 target
    // could mean one path to weir and another to the backend.
    if !req.raw_path_is_utf8() {
        return None;
    }
    if raw.first() == Some(&b'/') {
        return Some(Target::Path);
    }
    if raw == b"*" {
        return (req.method == Method::OPTIONS).then_some(Target::Asterisk);
    }
    let lower = |n: usize| raw.get(..n).map(|p| p.to_ascii_lowercase());
    let absolute =
        lower(7).as_deref() == Some(b"http://") || lower(8).as_deref() == Some(b"https://");
    (absolute && req.uri.path().starts_with('/')).then_some(Target::Absolute)
}

/// The status for a `Transfer-Encoding` weir will not forward: 400 for a
/// repeated header, 501 for a coding other than `chunked` (a backend would
/// read `gzip, chunked` as compressed content that Pingora has re-framed).
pub(super) fn transfer_encoding(req: &RequestHeader) -> Option<u16> {
    let mut te = req.headers.get_all(header::TRANSFER_ENCODING).iter();
    match (te.next(), te.next()) {
        (None, _) => None,
        (Some(v), None) => {
            let v = v.as_bytes().trim_ascii();
            (!v.eq_ignore_ascii_case(b"chunked")).then_some(501)
        }
        (Some(_), Some(_)) => Some(400),
    }
}

/// The status for a head whose `Host` or framing weir refuses (see
/// [`host_ok`], [`transfer_encoding`], [`content_length_ok`]).
pub(super) fn refusal(req: &RequestHeader) -> Option<u16> {
    if !host_ok(req) {
        return Some(400);
    }
    if let Some(status) = transfer_encoding(req) {
        return Some(status);
    }
    (!content_length_ok(req)).then_some(400)
}

/// Whether `Content-Length` frames the body one way only: at most one
/// field, holding digits only. A list (`5, 5`) or a repeated field, even of
/// one value, is refused (400, as nginx) rather than forwarded as sent, so
/// weir and the backend can never read the body's length differently.
pub(super) fn content_length_ok(req: &RequestHeader) -> bool {
    let mut cl = req.headers.get_all(header::CONTENT_LENGTH).iter();
    match (cl.next(), cl.next()) {
        (None, _) => true,
        (Some(v), None) => {
            let v = v.as_bytes().trim_ascii();
            !v.is_empty() && v.iter().all(u8::is_ascii_digit)
        }
        (Some(_), Some(_)) => false,
    }
}

/// Longest request-target (nginx's default buffer is 8 KiB; Pingora's URI
/// parser refuses 64 KiB and more with a 400 of its own).
pub(super) const MAX_TARGET: usize = 16 << 10;

/// The status for a head over `max` bytes: 414 for a request-target over
/// [`MAX_TARGET`] (or `max`), 431 for the header fields together.
pub(super) fn head_size(req: &RequestHeader, max: usize) -> Option<u16> {
    if req.raw_path().len() > max.min(MAX_TARGET) {
        return Some(414);
    }
    let mut total = 0usize;
    for (name, value) in req.headers.iter() {
        total += name.as_str().len() + value.len() + 4;
        if total > max {
            return Some(431);
        }
    }
    None
}

/// Whether `Host` is one `host[:port]` (at most one header; required for
/// HTTP/1.1 unless the target is absolute-form).
pub(super) fn host_ok(req: &RequestHeader) -> bool {
    let mut hosts = req.headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => req.version != http::Version::HTTP_11 || req.uri.host().is_some(),
        (Some(h), None) => valid_host(h.as_bytes()),
        (Some(_), Some(_)) => false,
    }
}

fn valid_port(p: &[u8]) -> bool {
    !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit)
}

/// `name[:port]`, `v4[:port]` or `[v6][:port]`.
fn valid_host(h: &[u8]) -> bool {
    if let Some(rest) = h.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&c| c == b']') else {
            return false;
        };
        let inner = std::str::from_utf8(&rest[..end]).unwrap_or("");
        let after = &rest[end + 1..];
        return inner.parse::<std::net::Ipv6Addr>().is_ok()
            && (after.is_empty() || after.strip_prefix(b":").is_some_and(valid_port));
    }
    let (name, port) = match h.iter().position(|&c| c == b':') {
        Some(i) => (&h[..i], Some(&h[i + 1..])),
        None => (h, None),
    };
    !name.is_empty()
        && name.len() <= 253
        // No empty label (`a..b`, `a..`): one trailing dot is the root.
        && !name.windows(2).any(|w| w == b"..")
        && name.first() != Some(&b'.')
        && name
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && port.is_none_or(valid_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &[u8], hosts: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build(method, target, None).unwrap();
        for h in hosts {
            r.append_header("host", *h).unwrap();
        }
        r
    }

    #[test]
    fn non_utf8_targets_are_refused() {
        assert_eq!(target(&req("GET", b"/public/\xC0\xAEadmin", &[])), None);
    }

    #[test]
    fn request_target_forms() {
        assert_eq!(target(&req("GET", b"/x", &[])), Some(Target::Path));
        assert_eq!(
            target(&req("GET", b"http://a/x", &[])),
            Some(Target::Absolute)
        );
        assert_eq!(target(&req("OPTIONS", b"*", &[])), Some(Target::Asterisk));
        assert_eq!(target(&req("GET", b"*", &[])), None);
    }

    #[test]
    fn transfer_codings() {
        let mut r = req("POST", b"/", &["a"]);
        assert_eq!(transfer_encoding(&r), None);
        r.append_header("transfer-encoding", "Chunked").unwrap();
        assert_eq!(transfer_encoding(&r), None);
        r.append_header("transfer-encoding", "chunked").unwrap();
        assert_eq!(transfer_encoding(&r), Some(400));
        let mut g = req("POST", b"/", &["a"]);
        g.append_header("transfer-encoding", "gzip, chunked")
            .unwrap();
        assert_eq!(transfer_encoding(&g), Some(501));
    }

    #[test]
    fn head_limits() {
        let mut r = req("GET", &[b'/'; 100], &["a"]);
        assert_eq!(head_size(&r, 99), Some(414));
        assert_eq!(head_size(&r, 200), None);
        r.append_header("x-big", "v".repeat(300)).unwrap();
        assert_eq!(head_size(&r, 200), Some(431));
    }

    #[test]
    fn host_values() {
        for ok in [
            "a.example",
            "a.example:8080",
            "127.0.0.1:80",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(host_ok(&req("GET", b"/", &[ok])), "{ok}");
        }
        for bad in [
            "a b", "a,b", "a:port", "a:", "[::1", "[zz]:1", "a/b", "a@b", "", "a..", ".a",
        ] {
            assert!(!host_ok(&req("GET", b"/", &[bad])), "{bad:?}");
        }
        assert!(!host_ok(&req("GET", b"/", &["a", "b"])));
        assert!(!host_ok(&req("GET", b"/", &[])));
    }
}
