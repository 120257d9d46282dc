//! The checks behind weir's fuzz targets: one function per target, taking
//! the raw fuzz input, calling weir's own parser of untrusted bytes and
//! asserting what must hold of its answer (a panic is a finding). The
//! cargo-fuzz binaries in `fuzz_targets/` are one line each around these;
//! `tests/fuzz_seeds.rs` in the main crate includes this file and runs every
//! seed and regression input through the same functions on stable, so the
//! entry points cannot rot.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use weir::admin::{endpoint, Endpoint};
use weir::path::{match_form, normalize, PathError};
use weir::proxy_protocol::{self, Parsed};

/// Path normalizer (`weir::path`, SPEC §4): the request-target's path as
/// routing and the backend see it.
pub fn path(data: &[u8]) {
    // The proxy refuses a non-UTF-8 request-target before normalizing.
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match normalize(input) {
        Ok(out) => normal_path_holds(input, &out),
        Err(e) => error_has_a_cause(input, e),
    }
}

fn normal_path_holds(input: &str, out: &str) {
    assert!(out.starts_with('/'), "{input:?} -> {out:?}: not absolute");
    assert!(out.len() <= input.len(), "{input:?} -> {out:?}: grew");
    for bad in ["//", "/./", "/../", "\\"] {
        assert!(!out.contains(bad), "{input:?} -> {out:?}: holds {bad:?}");
    }
    let segments: Vec<&str> = out.split('/').collect();
    assert!(
        !segments.iter().any(|s| *s == "." || *s == ".."),
        "{input:?} -> {out:?}: a dot segment is left"
    );
    assert!(
        !segments
            .iter()
            .any(|s| s.starts_with(".;") || s.starts_with("..;")),
        "{input:?} -> {out:?}: a `.;` segment is left"
    );
    if !input.contains('\0') {
        assert!(!out.contains('\0'), "{input:?} -> {out:?}: decoded a NUL");
    }
    escapes_are_canonical(input, out);
    // Idempotent; without a `%` left the fast path hands it back as is.
    match normalize(out) {
        Ok(again) => {
            assert_eq!(again, out, "{input:?}: not idempotent");
            let borrowed = matches!(again, Cow::Borrowed(_));
            assert!(
                borrowed || out.contains('%'),
                "{out:?} is normal but copied"
            );
        }
        Err(e) => panic!("{input:?} -> {out:?}: refused as {e:?} the second time"),
    }
    let m = match_form(out);
    assert!(
        m.starts_with('/') && !m.contains(';') && !m.contains("//"),
        "{out:?} -> {m:?}"
    );
    assert!(
        !m.split('/').any(|s| s == "." || s == ".."),
        "{out:?} matches as {m:?}, with a dot segment"
    );
    assert_eq!(match_form(&m), m, "match_form({out:?}) not idempotent");
}

/// Every `%` left starts an upper-case escape of a byte that is neither
/// unreserved (those are decoded) nor `/`, NUL or `\`.
fn escapes_are_canonical(input: &str, out: &str) {
    let b = out.as_bytes();
    for (i, _) in b.iter().enumerate().filter(|(_, &c)| c == b'%') {
        let hex = |j: usize| {
            b.get(j)
                .filter(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
                .and_then(|&c| (c as char).to_digit(16))
        };
        let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) else {
            panic!("{input:?} -> {out:?}: bad escape at {i}");
        };
        let v = (h * 16 + l) as u8;
        let unreserved = v.is_ascii_alphanumeric() || b"-._~".contains(&v);
        assert!(
            !unreserved && !b"/\0\\".contains(&v),
            "{input:?} -> {out:?}: escape %{v:02X} left"
        );
    }
}

fn error_has_a_cause(input: &str, e: PathError) {
    let lower = input.to_ascii_lowercase();
    let cause = match e {
        PathError::NotAbsolute => !input.starts_with('/'),
        PathError::EncodedSlashOrNul => lower.contains("%2f") || lower.contains("%00"),
        PathError::AboveRoot => lower.contains("..") || lower.contains("%2e"),
        PathError::BadEscape => input.contains('%'),
        PathError::Ambiguous => {
            lower.contains('\\') || lower.contains("%5c") || input.contains(';')
        }
    };
    assert!(cause, "{input:?} refused as {e:?} without a cause");
}

/// `Host` validation (`weir::proxy::valid_host`) and the host routing sees
/// (`weir::router::normalize_host`).
pub fn host(data: &[u8]) {
    let mut buf = [0u8; 256];
    let routed = weir::router::normalize_host(data, &mut buf).to_string();
    assert!(
        !routed.bytes().any(|c| c.is_ascii_uppercase()),
        "{routed:?}"
    );
    // Routing only ever sees a value `valid_host` accepted (others are a 400).
    if !weir::proxy::valid_host(data) {
        return;
    }
    assert!(!routed.ends_with('.'), "{data:?} -> {routed:?}");
    let text = std::str::from_utf8(data).unwrap_or_else(|_| panic!("accepted non-UTF-8 {data:?}"));
    assert!(
        text.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-_:[]".contains(&c)),
        "accepted {text:?}"
    );
    // What a backend parses out of the same header must be what weir routed
    // on: one authority, no user info, the same host.
    let authority: http::uri::Authority = text
        .parse()
        .unwrap_or_else(|e| panic!("accepted {text:?}, not an authority: {e}"));
    assert!(!text.contains('@'), "accepted user info in {text:?}");
    let theirs = authority.host().to_ascii_lowercase();
    let theirs = theirs.strip_suffix('.').unwrap_or(&theirs);
    assert_eq!(routed, theirs, "Host {text:?}: weir routes on {routed:?}");
    assert!(!routed.is_empty(), "accepted {text:?}, routed as no host");
    let mut again = [0u8; 256];
    assert_eq!(
        weir::router::normalize_host(routed.as_bytes(), &mut again),
        routed,
        "{text:?}: normalize_host not idempotent"
    );
    if let Some(port) = authority.port() {
        assert!(
            !port.as_str().is_empty() && port.as_str().len() <= 5,
            "{text:?}"
        );
    }
}

/// PROXY protocol v1/v2 framing (`weir::proxy_protocol::parse` and `read`).
pub fn proxy_protocol(data: &[u8]) {
    let parsed = proxy_protocol::parse(data);
    match parsed {
        Parsed::Complete(h) => {
            assert!(
                h.len > 0 && h.len <= data.len(),
                "{h:?} past {} bytes",
                data.len()
            );
            assert!(h.len <= proxy_protocol::MAX_LEN, "{h:?}");
            // Decided by the header's own bytes only: never read past it.
            assert_eq!(proxy_protocol::parse(&data[..h.len]), parsed, "{data:?}");
            if data[0] == b'P' {
                assert!(h.len <= 107 && data[..h.len].ends_with(b"\r\n"), "{h:?}");
            } else {
                assert!(h.len >= 16, "{h:?}");
            }
            // A header arriving in pieces is waited for, never refused.
            for cut in 0..h.len {
                let p = proxy_protocol::parse(&data[..cut]);
                assert_eq!(
                    p,
                    Parsed::Incomplete,
                    "prefix {cut} of {:?}",
                    &data[..h.len]
                );
            }
        }
        Parsed::Invalid(_) => {
            // No byte that follows can make it valid.
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\r\n\r\nPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
            assert!(
                matches!(proxy_protocol::parse(&longer), Parsed::Invalid(_)),
                "{data:?} refused, but not once extended"
            );
        }
        Parsed::Incomplete => {
            assert!(data.len() < proxy_protocol::MAX_LEN, "waits past MAX_LEN");
        }
    }
    read_agrees(data, parsed);
    round_trip(data);
}

/// A reader handing out `data` in pieces of sizes taken from `data`
/// itself; never pending.
struct Pieces<'a> {
    data: &'a [u8],
    at: usize,
    step: usize,
}

impl tokio::io::AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = self
            .data
            .get(self.step % self.data.len().max(1))
            .map_or(1, |&b| b as usize % 61 + 1);
        self.step += 1;
        let end = (self.at + size).min(self.data.len());
        let n = (end - self.at).min(buf.remaining());
        buf.put_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

/// `read` over the same bytes, in pieces, says what `parse` says and hands
/// back exactly the bytes after the header.
fn read_agrees(data: &[u8], parsed: Parsed) {
    let mut reader = Pieces {
        data,
        at: 0,
        step: 0,
    };
    let got = {
        let mut fut = pin!(proxy_protocol::read(&mut reader));
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(got) => got,
            Poll::Pending => panic!("read pending on a ready reader"),
        }
    };
    let consumed = reader.at;
    match (parsed, got) {
        (Parsed::Complete(h), Ok((hh, rest))) => {
            assert_eq!(h, hh, "{data:?}");
            assert_eq!(
                &data[h.len..consumed],
                &rest[..],
                "{data:?}: bytes after the header"
            );
        }
        (Parsed::Invalid(_), Err(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
        (Parsed::Incomplete, Err(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
        (p, r) => panic!("{data:?}: parse says {p:?}, read says {r:?}"),
    }
}

/// What weir writes to a backend reads back as the same addresses.
fn round_trip(data: &[u8]) {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use weir::config::model::ProxyProtocolVersion;
    if data.len() < 38 {
        return;
    }
    let word = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
    let v6 = |i: usize| {
        let mut o = [0u8; 16];
        o.copy_from_slice(&data[i..i + 16]);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    let v4 = |i: usize| {
        IpAddr::V4(Ipv4Addr::new(
            data[i],
            data[i + 1],
            data[i + 2],
            data[i + 3],
        ))
    };
    let s = SocketAddr::new(if data[0] & 1 == 0 { v4(4) } else { v6(4) }, word(0));
    let d = SocketAddr::new(if data[0] & 2 == 0 { v4(20) } else { v6(20) }, word(2));
    for version in [ProxyProtocolVersion::V1, ProxyProtocolVersion::V2] {
        let header = proxy_protocol::encode(version, s, d);
        let Parsed::Complete(h) = proxy_protocol::parse(&header) else {
            panic!("{s} -> {d} as {version:?}: {header:?} does not parse");
        };
        assert_eq!(h.len, header.len());
        let same = |a: Option<SocketAddr>, b: SocketAddr| {
            a.is_some_and(|a| {
                a.ip().to_canonical() == b.ip().to_canonical() && a.port() == b.port()
            })
        };
        assert!(
            same(h.source, s) && same(h.destination, d),
            "{s} -> {d}: {h:?}"
        );
    }
}

/// The value `${A}` stands for in the config fuzz target, to look for in
/// what `GET /config` shows.
const SECRET: &str = "S3CR3T-9f7c";

/// The config loader (`weir check` on a text): YAML, `${VAR}`s, the model,
/// then the compiler.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "A" => Some(SECRET.to_string()),
        "N" => Some("8080".to_string()),
        "E" => Some(String::new()),
        _ => None,
    };
    match weir::compile::load_str(text, "fuzz.yaml", &env) {
        Ok(cfg) => {
            let shown = weir::admin::redacted_config(&cfg).to_string();
            if !text.contains(SECRET) {
                assert!(
                    !shown.contains(SECRET),
                    "GET /config shows a secret: {shown}"
                );
            }
            let _ = weir::config::shadow::warnings(&cfg);
        }
        Err(errors) => {
            assert!(!errors.errors.is_empty(), "refused without a reason");
            // YAML's line breaks: CRLF, a lone CR, LF. The end of input is
            // the start of the line after the last (libyaml's position for
            // an error there, trailing newline or not).
            let lines = text.replace("\r\n", "\n").matches(['\r', '\n']).count() + 1;
            for e in &errors.errors {
                assert!(e.pos.line >= 1 && e.pos.col >= 1, "{e:?}");
                let at_end = e.pos.line == lines + 1 && e.pos.col == 1;
                assert!(
                    e.pos.line <= lines || at_end,
                    "{e:?} past the file's {lines} lines"
                );
                assert!(!e.message.is_empty(), "{e:?}");
            }
            let keys: Vec<_> = errors
                .errors
                .iter()
                .map(|e| (e.pos.line, e.pos.col))
                .collect();
            assert!(keys.windows(2).all(|w| w[0] <= w[1]), "not in file order");
            let shown = errors.to_string();
            assert!(shown.lines().count() >= errors.errors.len(), "{shown}");
        }
    }
}

/// Admin API paths (`weir::admin::endpoint`) and the ones `weir backends`
/// builds (`weir::admin_client`).
pub fn admin_path(data: &[u8]) {
    // Any path: what it names must be consistent with its segments.
    if let Ok(path) = std::str::from_utf8(data) {
        for method in ["GET", "POST", "PATCH", "DELETE"] {
            let e = endpoint(method, path);
            let names_backend = matches!(
                e,
                Endpoint::AddBackend { .. }
                    | Endpoint::PatchBackend { .. }
                    | Endpoint::RemoveBackend { .. }
            );
            if names_backend {
                assert!(path.contains("upstreams"), "{method} {path:?} -> {e:?}");
            }
        }
    }
    // Any upstream name and address: the path `weir backends` sends must
    // reach the server as a valid URI and name exactly that backend.
    let text = String::from_utf8_lossy(data);
    let (upstream, addr) = text.split_once('\n').unwrap_or((&text, "127.0.0.1:80"));
    if upstream.is_empty() || addr.is_empty() {
        return; // names nothing; the server answers 404 or 405
    }
    for (method, path) in [
        ("DELETE", weir::admin_client::item_path(upstream, addr)),
        ("PATCH", weir::admin_client::item_path(upstream, addr)),
        ("POST", weir::admin_client::list_path(upstream)),
    ] {
        let uri: http::Uri = path
            .parse()
            .unwrap_or_else(|e| panic!("{upstream:?} {addr:?}: {path:?} is not a URI: {e}"));
        let got = endpoint(method, uri.path());
        let want = match method {
            "DELETE" => Endpoint::RemoveBackend {
                upstream: upstream.into(),
                address: addr.into(),
            },
            "PATCH" => Endpoint::PatchBackend {
                upstream: upstream.into(),
                address: addr.into(),
            },
            _ => Endpoint::AddBackend {
                upstream: upstream.into(),
            },
        };
        assert_eq!(got, want, "{method} {path:?}");
    }
}
