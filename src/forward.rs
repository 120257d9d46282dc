//! Forwarding headers: `X-Forwarded-*`, `te: trailers`, request ids.

use http::{header, HeaderName, HeaderValue};
use pingora_http::RequestHeader;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-forwarded-for`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-forwarded-host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// Headers some backends take as the client's identity or the real URL:
/// dropped when they come from an untrusted peer.
static IDENTITY: [HeaderName; 4] = [
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];
/// Whether `req` names none of the headers Pingora's upstream-request
/// sanitizer removes (the standard hop-by-hop ones, and `Connection`,
/// whose nominations it removes too: pingora-proxy `proxy_common.rs`,
/// `sanitize_h1_upstream_request` / `sanitize_h2_upstream_request`). Then
/// the sanitizer has nothing to do, and the proxy tells Pingora to skip it
/// (`HttpUpstreamRequestPolicy::preserve()`): thirteen header removals, each
/// two hash lookups, per request otherwise (~3.5 k instructions, 3.5 % of
/// a request, measured in benches/README.md). One look at each name,
/// compared by length first.
pub fn nothing_hop_by_hop(req: &RequestHeader) -> bool {
    !req.headers.keys().any(|n| {
        matches!(
            n.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "http2-settings"
        )
    })
}

/// Puts `te: trailers` back on the upstream request when the client sent it.
///
/// Pingora itself strips hop-by-hop headers (and those the client named in
/// `Connection`) before `upstream_request_filter` runs; it drops `TE`
/// entirely, but `te: trailers` is end-to-end meaningful (gRPC needs it).
pub fn keep_te_trailers(downstream: &RequestHeader, upstream: &mut RequestHeader) {
    let wants_trailers = downstream.headers.get_all(header::TE).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
    });
    if wants_trailers {
        let _ = upstream.insert_header(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The host a client asked for: its `Host` header, or for an HTTP/2 client
/// (and an absolute-form target without one) the request's authority
/// (`:authority`), which takes `Host`'s place there.
pub fn request_host(req: &RequestHeader) -> Option<HeaderValue> {
    if let Some(h) = req.headers.get(header::HOST) {
        return Some(h.clone());
    }
    let authority = req.uri.authority()?;
    HeaderValue::from_str(authority.as_str()).ok()
}

/// The host a client asked for, as text for the access log (see
/// [`request_host`]); empty when there is none.
pub fn request_host_text(req: &RequestHeader) -> &str {
    match req.headers.get(header::HOST) {
        Some(h) => h.to_str().unwrap_or(""),
        None => req.uri.authority().map_or("", |a| a.as_str()),
    }
}

/// Joins the `cookie` fields of an HTTP/2 request into one, separated by
/// `; ` (RFC 9113 §8.2.3): HTTP/2 clients send one field per cookie, and
/// an HTTP/1.1 backend expects one `Cookie` line.
pub fn join_cookies(req: &mut RequestHeader) {
    let mut fields = req.headers.get_all(header::COOKIE).iter();
    if fields.next().is_none() || fields.next().is_none() {
        return;
    }
    let mut joined = Vec::with_capacity(128);
    for v in req.headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        let _ = req.insert_header(header::COOKIE, v);
    }
}

/// The names weir adds, as written on the wire. Pingora keeps every
/// header's case next to its value: a `&'static str` name is kept as it is,
/// where a [`HeaderName`] would be copied into a title-cased buffer on every
/// insert.
pub mod wire {
    /// `X-Request-Id`.
    pub const X_REQUEST_ID: &str = "X-Request-Id";
    /// `X-Forwarded-For`.
    pub const X_FORWARDED_FOR: &str = "X-Forwarded-For";
    /// `X-Forwarded-Proto`.
    pub const X_FORWARDED_PROTO: &str = "X-Forwarded-Proto";
    /// `X-Forwarded-Host`.
    pub const X_FORWARDED_HOST: &str = "X-Forwarded-Host";
}

/// Whether `name` is one that an untrusted peer may not send on: the
/// whole `X-Forwarded-*` family (`-Port`, `-Prefix`, `-Server`, … as well
/// as `-Host` and `-Proto`: frameworks build redirect URLs from them),
/// `Forwarded` and the [`IDENTITY`] headers. (`X-Forwarded-For` is
/// replaced in any case.)
fn untrusted_drops(name: &HeaderName) -> bool {
    name.as_str().starts_with("x-forwarded-") || *name == FORWARDED || IDENTITY.contains(name)
}

/// Removes every header [`untrusted_drops`] names (rare: the names are
/// collected only when one is there).
fn drop_untrusted(req: &mut RequestHeader) {
    let names: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|n| untrusted_drops(n))
        .cloned()
        .collect();
    for n in &names {
        req.remove_header(n);
    }
}

/// `ip` as text into `buf` (IPv4 by hand: the formatter machinery costs
/// more than the rest of the header work).
fn ip_text(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            &buf[..n]
        }
        IpAddr::V6(_) => {
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cur, "{ip}");
            let n = cur.position() as usize;
            &buf[..n]
        }
    }
}

/// Sets `X-Forwarded-For/Proto/Host`. From a trusted proxy the client's
/// `X-Forwarded-For` (every line of it, in order) is extended; from anyone
/// else incoming `X-Forwarded-*`, `Forwarded`, `X-Real-IP`,
/// `True-Client-IP`, `X-Original-URL` and `X-Rewrite-URL` are dropped and
/// the forwarding headers rebuilt from what the connection shows.
pub fn set_forwarded(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    trusted: bool,
    host: Option<HeaderValue>,
    https: bool,
) {
    // Formatted on the stack: one allocation (the header value), not two.
    let mut buf = [0u8; 48];
    let peer_text: &[u8] = match peer {
        Some(p) => ip_text(p, &mut buf),
        None => b"",
    };
    let xff = match trusted && req.headers.contains_key(&X_FORWARDED_FOR) {
        true => {
            let mut v = Vec::with_capacity(64);
            for line in req.headers.get_all(&X_FORWARDED_FOR) {
                if !line.is_empty() {
                    v.extend_from_slice(line.as_bytes());
                    v.extend_from_slice(b", ");
                }
            }
            v.extend_from_slice(peer_text);
            HeaderValue::from_bytes(&v).ok()
        }
        false => HeaderValue::from_bytes(peer_text).ok(),
    };
    // One look at the names the client sent, instead of a removal (two
    // hash lookups) per name that is almost never there.
    if !trusted && req.headers.keys().any(untrusted_drops) {
        drop_untrusted(req);
    }
    if let Some(v) = xff {
        let _ = req.insert_header(wire::X_FORWARDED_FOR, v);
    }
    if !(trusted && req.headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = HeaderValue::from_static(if https { "https" } else { "http" });
        let _ = req.insert_header(wire::X_FORWARDED_PROTO, proto);
    }
    if let Some(h) = host {
        if !(trusted && req.headers.contains_key(&X_FORWARDED_HOST)) {
            let _ = req.insert_header(wire::X_FORWARDED_HOST, h);
        }
    }
}

/// The client address: the socket peer, or from a trusted peer the
/// rightmost `X-Forwarded-For` entry that is not itself trusted, reading
/// every line of a repeated header in order (a proxy that appends its own
/// line puts the nearest hop last). An entry that is not an address stops
/// the walk: the client is unknown (`None`), so allow lists refuse it
/// rather than mistaking the last trusted hop for the client.
pub fn client_ip(
    req: &RequestHeader,
    peer: Option<IpAddr>,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut nearest = peer;
    for line in req.headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = line.to_str() else {
            return None;
        };
        for part in text.rsplit(',') {
            match parse_hop(part.trim()) {
                Some(ip) if !is_trusted(ip) => return Some(ip.to_canonical()),
                Some(ip) => nearest = ip,
                None => return None,
            }
        }
    }
    Some(nearest)
}

/// One `X-Forwarded-For` entry: `ip`, `ip:port` or `[v6]:port` (some load
/// balancers append the port).
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// Whether an incoming `x-request-id` may be kept: 1–128 of `[A-Za-z0-9._:-]`.
pub fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        h.finish()
    })
}

/// A new request id: 32 hex digits, unique per process (random prefix + counter).
pub fn new_request_id() -> HeaderValue {
    let n = COUNTER.fetch_add(1, Relaxed);
    let mut buf = [0u8; 32];
    let hexd = b"0123456789abcdef";
    let words = [seed(), n];
    for (w, word) in words.iter().enumerate() {
        for i in 0..16 {
            buf[w * 16 + i] = hexd[((word >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_name_pingora_strips_counts_as_hop_by_hop() {
        let clean = RequestHeader::build("GET", b"/", None).unwrap();
        assert!(nothing_hop_by_hop(&clean));
        for h in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "http2-settings",
        ] {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.append_header("x-other", "1").unwrap();
            req.append_header(h, "x").unwrap();
            assert!(!nothing_hop_by_hop(&req), "{h}");
        }
    }

    use super::*;

    #[test]
    fn addresses_as_text() {
        let mut buf = [0u8; 48];
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "10.200.3.47",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(parsed, &mut buf), ip.as_bytes(), "{ip}");
        }
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id(&HeaderValue::from_static("abc-1.2:3_x")));
        assert!(!valid_request_id(&HeaderValue::from_static("a b")));
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(valid_request_id(&a));
    }

    #[test]
    fn client_ip_from_trusted_chain() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-forwarded-for", "1.2.3.4, 10.0.0.5")
            .unwrap();
        let trusted = |ip: IpAddr| ip.to_string().starts_with("10.");
        let peer = Some("10.0.0.1".parse().unwrap());
        assert_eq!(
            client_ip(&req, peer, trusted),
            Some("1.2.3.4".parse().unwrap())
        );
        let untrusted = Some("8.8.8.8".parse().unwrap());
        assert_eq!(client_ip(&req, untrusted, trusted), untrusted);
    }

    #[test]
    fn every_line_of_a_repeated_x_forwarded_for_counts() {
        // The client claims 6.6.6.6; the trusted proxy appended its own line
        // with the address it saw (5.5.5.5).
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("x-forwarded-for", "6.6.6.6").unwrap();
        req.append_header("x-forwarded-for", "5.5.5.5").unwrap();
        let trusted = |ip: IpAddr| ip.to_string().starts_with("10.");
        let peer = Some("10.0.0.1".parse().unwrap());
        assert_eq!(
            client_ip(&req, peer, trusted),
            Some("5.5.5.5".parse().unwrap())
        );
        set_forwarded(&mut req, peer, true, None, false);
        // ip:port entries (Azure's) parse; garbage makes the client unknown.
        let mut r2 = RequestHeader::build("GET", b"/", None).unwrap();
        r2.append_header("x-forwarded-for", "1.2.3.4:5678").unwrap();
        assert_eq!(
            client_ip(&r2, peer, trusted),
            Some("1.2.3.4".parse().unwrap())
        );
        let mut r3 = RequestHeader::build("GET", b"/", None).unwrap();
        r3.append_header("x-forwarded-for", "bogus").unwrap();
        assert_eq!(client_ip(&r3, peer, trusted), None);
        assert_eq!(
            req.headers.get("x-forwarded-for").unwrap(),
            "6.6.6.6, 5.5.5.5, 10.0.0.1"
        );
    }

    #[test]
    fn http2_cookie_fields_are_joined_and_one_is_left_alone() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("cookie", "a=1").unwrap();
        req.append_header("cookie", "b=2").unwrap();
        req.append_header("cookie", "c=3").unwrap();
        join_cookies(&mut req);
        let all: Vec<_> = req.headers.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
        let mut one = RequestHeader::build("GET", b"/", None).unwrap();
        one.append_header("cookie", "a=1").unwrap();
        join_cookies(&mut one);
        assert_eq!(one.headers.get("cookie").unwrap(), "a=1");
    }

    #[test]
    fn the_host_of_an_http2_request_is_its_authority() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.set_uri(http::Uri::from_static("https://api.test:8443/x"));
        assert_eq!(request_host(&req).unwrap(), "api.test:8443");
        assert_eq!(request_host_text(&req), "api.test:8443");
        req.insert_header("host", "other.test").unwrap();
        assert_eq!(request_host(&req).unwrap(), "other.test");
        let bare = RequestHeader::build("GET", b"/x", None).unwrap();
        assert_eq!((request_host(&bare), request_host_text(&bare)), (None, ""));
    }

    #[test]
    fn identity_headers_from_untrusted_peers_are_dropped() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for h in [
            "x-real-ip",
            "true-client-ip",
            "x-original-url",
            "x-rewrite-url",
        ] {
            req.append_header(h, "1.1.1.1").unwrap();
        }
        set_forwarded(
            &mut req,
            Some("8.8.8.8".parse().unwrap()),
            false,
            None,
            true,
        );
        assert_eq!(req.headers.get("x-forwarded-proto").unwrap(), "https");
        for h in [
            "x-real-ip",
            "true-client-ip",
            "x-original-url",
            "x-rewrite-url",
        ] {
            assert!(req.headers.get(h).is_none(), "{h} kept");
        }
    }
}
