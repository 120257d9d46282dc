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

/// Sets `X-Forwarded-For/Proto/Host`. From a trusted proxy the client's
/// `X-Forwarded-For` is extended; from anyone else incoming `X-Forwarded-*`
/// and `Forwarded` are replaced by what the connection shows.
pub fn set_forwarded(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    trusted: bool,
    host: Option<HeaderValue>,
) {
    // Formatted on the stack: one allocation (the header value), not two.
    let mut buf = [0u8; 48];
    let peer_text: &[u8] = match peer {
        Some(p) => {
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cur, "{p}");
            let n = cur.position() as usize;
            &buf[..n]
        }
        None => b"",
    };
    let xff = match req.headers.get(&X_FORWARDED_FOR) {
        Some(prev) if trusted && !prev.is_empty() => {
            let mut v = Vec::with_capacity(prev.len() + 2 + peer_text.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer_text);
            HeaderValue::from_bytes(&v).ok()
        }
        _ => HeaderValue::from_bytes(peer_text).ok(),
    };
    if !trusted {
        req.remove_header(&FORWARDED);
        req.remove_header(&X_FORWARDED_HOST);
        req.remove_header(&X_FORWARDED_PROTO);
    }
    if let Some(v) = xff {
        let _ = req.insert_header(X_FORWARDED_FOR.clone(), v);
    }
    if !(trusted && req.headers.contains_key(&X_FORWARDED_PROTO)) {
        let _ = req.insert_header(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if let Some(h) = host {
        if !(trusted && req.headers.contains_key(&X_FORWARDED_HOST)) {
            let _ = req.insert_header(X_FORWARDED_HOST.clone(), h);
        }
    }
}

/// The client address: the socket peer, or from a trusted peer the
/// rightmost `X-Forwarded-For` entry that is not itself trusted.
pub fn client_ip(
    req: &RequestHeader,
    peer: Option<IpAddr>,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let peer = peer?;
    if !is_trusted(peer) {
        return Some(peer);
    }
    let Some(xff) = req
        .headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
    else {
        return Some(peer);
    };
    for part in xff.rsplit(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) if !is_trusted(ip) => return Some(ip),
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    Some(peer)
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
    use super::*;

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
}
