//! A route's `compression`: which answers are encoded and with what, decided
//! per response; the encoding itself is Pingora's response compression
//! (gzip, brotli, zstd, in [`super::encoder`]), switched on for this one
//! response with the one algorithm chosen. Pingora's module does not weigh q-values nor a
//! server preference, so weir chooses and hands it a one-item
//! `Accept-Encoding`.

use super::encoder::Encoder;
use pingora_core::protocols::http::compression::Algorithm;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use std::sync::LazyLock;

/// The algorithms weir encodes with, in the SPEC's default preference.
pub const NAMES: [&str; 3] = ["zstd", "br", "gzip"];

/// A content type pattern: `text/*` or an exact type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeMatch {
    /// Any subtype of this family (`text/`).
    Family(Box<str>),
    /// Exactly this type.
    Exact(Box<str>),
}

/// A route's compiled `compression` block.
#[derive(Debug)]
pub struct Compression {
    /// Indexes into [`NAMES`], in the route's preference.
    pub algorithms: Box<[usize]>,
    /// Smallest `Content-Length` encoded.
    pub min_size: u64,
    /// Types encoded.
    pub types: Box<[TypeMatch]>,
    /// Encoder level per algorithm (index as [`NAMES`]).
    pub levels: [u32; 3],
}

const ALGORITHMS: [Algorithm; 3] = [Algorithm::Zstd, Algorithm::Brotli, Algorithm::Gzip];

/// One request head per algorithm, whose `Accept-Encoding` names only it.
static ONLY: LazyLock<Vec<Option<RequestHeader>>> = LazyLock::new(|| {
    NAMES
        .iter()
        .map(|n| {
            let mut r = RequestHeader::build("GET", b"/", None).ok()?;
            r.insert_header(http::header::ACCEPT_ENCODING, *n).ok()?;
            Some(r)
        })
        .collect()
});

/// The q-value a client's `Accept-Encoding` gives `name` (`*` counts for
/// names it does not list; absent: 0).
fn q_value(accept: &[u8], name: &str) -> f32 {
    let mut star = None;
    for item in accept.split(|b| *b == b',') {
        let mut parts = item.split(|b| *b == b';');
        let coding = parts.next().unwrap_or_default().trim_ascii();
        let q = parts
            .find_map(|p| {
                let p = p.trim_ascii();
                let v = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q="))?;
                std::str::from_utf8(v).ok()?.trim().parse::<f32>().ok()
            })
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case(name.as_bytes()) {
            return q;
        }
        if coding == b"*" {
            star = Some(q);
        }
    }
    star.unwrap_or(0.0)
}

impl Compression {
    /// The algorithm (index into [`NAMES`]) for a client sending `accept`.
    pub fn choose(&self, accept: Option<&[u8]>) -> Option<usize> {
        let accept = accept?;
        self.algorithms
            .iter()
            .copied()
            .find(|&a| q_value(accept, NAMES[a]) > 0.0)
    }

    fn type_listed(&self, resp: &ResponseHeader) -> bool {
        let Some(ct) = resp.headers.get(http::header::CONTENT_TYPE) else {
            return false;
        };
        let ct = ct.as_bytes();
        let essence = ct
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        self.types.iter().any(|t| match t {
            TypeMatch::Family(f) => {
                essence.len() > f.len() && essence[..f.len()].eq_ignore_ascii_case(f.as_bytes())
            }
            TypeMatch::Exact(e) => essence.eq_ignore_ascii_case(e.as_bytes()),
        })
    }

    /// Whether `resp` may be encoded at all (then it varies by `Accept-Encoding`).
    pub fn eligible(&self, resp: &ResponseHeader) -> bool {
        let status = resp.status.as_u16();
        let h = &resp.headers;
        let small = h
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n < self.min_size);
        status >= 200
            && !matches!(status, 204 | 206 | 304)
            && !h.contains_key(http::header::CONTENT_ENCODING)
            && !h.get_all(http::header::CACHE_CONTROL).iter().any(|v| {
                v.as_bytes()
                    .split(|b| *b == b',')
                    .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
            })
            && !small
            && self.type_listed(resp)
    }
}

fn add_vary(resp: &mut ResponseHeader) {
    let present = resp.headers.get_all(http::header::VARY).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|t| {
            let t = t.trim_ascii();
            t == b"*" || t.eq_ignore_ascii_case(b"accept-encoding")
        })
    });
    if !present {
        let _ = resp.append_header(http::header::VARY, "Accept-Encoding");
    }
}

/// `W/"x"` for a strong `"x"`; an invalid one is dropped (as Pingora does).
fn weaken_etag(resp: &mut ResponseHeader) {
    let Some(tag) = resp.headers.get(http::header::ETAG) else {
        return;
    };
    let t = tag.as_bytes();
    if t.starts_with(b"W/") {
        return;
    }
    let weak = t
        .starts_with(b"\"")
        .then(|| http::HeaderValue::from_bytes(&[b"W/", t].concat()).ok())
        .flatten();
    match weak {
        Some(w) => {
            let _ = resp.insert_header(http::header::ETAG, w);
        }
        None => {
            resp.remove_header(&http::header::ETAG);
        }
    }
}

/// The head of a hit served from a kept encoded copy of `len` bytes.
fn pre_encoded(resp: &mut ResponseHeader, algorithm: usize, len: usize) {
    let _ = resp.insert_header(http::header::CONTENT_ENCODING, NAMES[algorithm]);
    let _ = resp.insert_header(http::header::CONTENT_LENGTH, len);
    resp.remove_header(&http::header::TRANSFER_ENCODING);
    resp.remove_header(&http::header::ACCEPT_RANGES);
    weaken_etag(resp);
}

/// Decides the encoding of `resp` for this client and arms Pingora's
/// compression module with it.
pub fn apply(session: &mut Session, c: &Compression, resp: &mut ResponseHeader) {
    if !c.eligible(resp) {
        return;
    }
    add_vary(resp);
    let enc = session.downstream_modules_ctx.get_mut::<Encoder>();
    if let Some((a, len)) = enc.and_then(|e| e.pre_encoded) {
        pre_encoded(resp, a, len);
        return;
    }
    let accept = session
        .req_header()
        .headers
        .get(http::header::ACCEPT_ENCODING)
        .map(|v| v.as_bytes());
    let Some(a) = c.choose(accept) else {
        return;
    };
    let Some(Some(only)) = ONLY.get(a) else {
        return;
    };
    if let Some(m) = session.downstream_modules_ctx.get_mut::<Encoder>() {
        m.arm(ALGORITHMS[a], c.levels[a], only);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> Compression {
        Compression {
            algorithms: vec![0, 1, 2].into(),
            min_size: 10,
            types: vec![TypeMatch::Family("text/".into())].into(),
            levels: [3, 5, 6],
        }
    }

    #[test]
    fn q_values_and_preference() {
        let c = c();
        assert_eq!(c.choose(Some(b"gzip, br")), Some(1));
        assert_eq!(c.choose(Some(b"gzip;q=0, br;q=0")), None);
        assert_eq!(c.choose(Some(b"gzip;q=0")), None);
        assert_eq!(c.choose(Some(b"gzip;q=0.5")), Some(2));
        assert_eq!(c.choose(Some(b"*;q=0.1, zstd;q=0")), Some(1));
        assert_eq!(c.choose(Some(b"identity")), None);
        assert_eq!(c.choose(None), None);
    }
}
