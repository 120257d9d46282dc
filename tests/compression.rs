//! Compression (SPEC §1.1) through Pingora's response compression module:
//! the algorithm weir prefers among those the client allows (q-values
//! honoured), `Vary: Accept-Encoding`, a weakened `ETag`, and nothing
//! encoded that must not be; a chunked answer is encoded as it streams;
//! cache hits are encoded per client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache_common;
mod common;

use cache_common::{answer, start, xcache, Setup};
use common::{raw_bytes, RawRequest};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A JSON-ish text of `n` bytes.
fn text(n: usize) -> String {
    let mut s = String::with_capacity(n);
    let mut i = 0u64;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"item {}\"}},",
            i * 7919 % 1000
        ));
        i += 1;
    }
    s.truncate(n);
    s
}

fn script(req: &RawRequest) -> common::Reply {
    let body = text(4096);
    let path = req.target.as_str();
    let ct = match path {
        "/png" => "image/png",
        _ => "application/json; charset=utf-8",
    };
    match path {
        "/small" => answer(200, &[("content-type", ct)], "{\"a\":1}"),
        "/encoded" => answer(
            200,
            &[("content-type", ct), ("content-encoding", "gzip")],
            &body,
        ),
        "/no-transform" => answer(
            200,
            &[("content-type", ct), ("cache-control", "no-transform")],
            &body,
        ),
        "/partial" => answer(
            206,
            &[("content-type", ct), ("content-range", "bytes 0-4095/9000")],
            &body,
        ),
        _ => answer(
            200,
            &[
                ("content-type", ct),
                ("etag", "\"abc\""),
                ("cache-control", "max-age=60"),
            ],
            &body,
        ),
    }
}

/// One GET over a closed connection: status, headers (lower case) and the de-chunked body.
fn fetch(s: &Setup, path: &str, accept: Option<&str>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let ae = accept
        .map(|a| format!("accept-encoding: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n{ae}connection: close\r\n\r\n");
    let raw = raw_bytes(s.listen, req.as_bytes()).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = raw[end + 4..].to_vec();
    (
        status,
        headers.clone(),
        if chunked { dechunk(&body) } else { body },
    )
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 4 + size..];
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn gunzip(b: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(b)
        .read_to_string(&mut s)
        .unwrap();
    s
}

const ROUTE: &str = "    compression: {}\n";

#[test]
fn gzip_for_a_gzip_client_with_vary_and_a_weak_etag() {
    let s = start(ROUTE, "", script);
    let (st, h, body) = fetch(&s, "/json", Some("gzip"));
    assert_eq!(st, 200);
    assert_eq!(header(&h, "content-encoding"), Some("gzip"), "{h:?}");
    assert!(header(&h, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")));
    assert_eq!(header(&h, "etag"), Some("W/\"abc\""));
    assert!(body.len() < 4096);
    assert_eq!(gunzip(&body), text(4096));
}

#[test]
fn q_values_and_weirs_preference_pick_the_algorithm() {
    let s = start(ROUTE, "", script);
    let enc =
        |a: &str| header(&fetch(&s, "/json", Some(a)).1, "content-encoding").map(String::from);
    assert_eq!(enc("gzip;q=0"), None, "q=0 refuses");
    assert_eq!(enc("identity"), None);
    assert_eq!(
        enc("gzip, br;q=0.5"),
        Some("br".into()),
        "weir prefers br to gzip"
    );
    assert_eq!(enc("gzip, br, zstd"), Some("zstd".into()));
    assert_eq!(enc("*;q=0.1, zstd;q=0"), Some("br".into()));
    let (_, h, body) = fetch(&s, "/json", Some("zstd"));
    assert_eq!(header(&h, "content-encoding"), Some("zstd"));
    assert_eq!(
        zstd::decode_all(&body[..]).unwrap(),
        text(4096).into_bytes()
    );
    let (_, h, body) = fetch(&s, "/json", Some("br"));
    assert_eq!(header(&h, "content-encoding"), Some("br"));
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut &body[..], &mut out).unwrap();
    assert_eq!(out, text(4096).into_bytes());
    // No Accept-Encoding: sent as it is, but it still varies by it.
    let (_, h, body) = fetch(&s, "/json", None);
    assert_eq!((header(&h, "content-encoding"), body.len()), (None, 4096));
    assert!(header(&h, "vary").is_some());
}

#[test]
fn nothing_is_encoded_that_must_not_be() {
    let s = start(ROUTE, "", script);
    for path in ["/small", "/png", "/no-transform", "/partial"] {
        let (_, h, _) = fetch(&s, path, Some("gzip"));
        assert_eq!(
            header(&h, "content-encoding"),
            None,
            "{path} was encoded: {h:?}"
        );
    }
    let (_, h, body) = fetch(&s, "/encoded", Some("gzip, br"));
    assert_eq!(header(&h, "content-encoding"), Some("gzip"), "{h:?}");
    assert_eq!(
        body.len(),
        4096,
        "the backend's own encoding was encoded again"
    );
}

#[test]
fn cache_hits_are_encoded_per_client() {
    let s = start(&format!("    cache: {{}}\n{ROUTE}"), "", script);
    let (_, h, body) = fetch(&s, "/json", Some("gzip"));
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&body), text(4096));
    let (_, h, body) = fetch(&s, "/json", None);
    assert_eq!(
        (header(&h, "x-cache"), header(&h, "content-encoding")),
        (Some("HIT"), None)
    );
    assert_eq!(body, text(4096).into_bytes());
    let (_, h, body) = fetch(&s, "/json", Some("gzip"));
    assert_eq!(
        (header(&h, "x-cache"), header(&h, "content-encoding")),
        (Some("HIT"), Some("gzip"))
    );
    assert_eq!(gunzip(&body), text(4096));
    // Later hits are served from the encoded copy the first one kept:
    // whole, with its length, decoding to the same bytes.
    for enc in ["gzip", "br"] {
        let mut last = None;
        for _ in 0..3 {
            last = Some(fetch(&s, "/json", Some(enc)));
        }
        let (_, h, body) = last.unwrap();
        assert_eq!(header(&h, "content-encoding"), Some(enc));
        assert_eq!(
            header(&h, "content-length"),
            Some(body.len().to_string().as_str()),
            "{h:?}"
        );
        assert_eq!(header(&h, "etag"), Some("W/\"abc\""));
        let plain = match enc {
            "gzip" => gunzip(&body).into_bytes(),
            _ => {
                let mut out = Vec::new();
                brotli::BrotliDecompress(&mut &body[..], &mut out).unwrap();
                out
            }
        };
        assert_eq!(plain, text(4096).into_bytes());
    }
    let r = s.get("/json");
    assert_eq!(xcache(&r), "HIT");
    assert_eq!(s.hits(), 1);
    let objects = cache_common::metric(&s.metrics(), r#"weir_cache_objects{tier="memory"}"#);
    assert_eq!(objects, 3.0, "the entry and its gzip and br copies");
}

/// Pseudo-random hex: deflate cannot sit on it, so output follows input.
fn noise(n: usize) -> String {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"0123456789abcdef"[(x & 15) as usize])
        })
        .collect()
}

#[test]
fn a_chunked_answer_is_encoded_as_it_streams() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let backend = listener.local_addr().unwrap();
    let (go, wait) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = c.read(&mut buf);
        let first = noise(256 * 1024);
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
        write!(c, "{head}{:x}\r\n{first}\r\n", first.len()).unwrap();
        c.flush().unwrap();
        // The rest only once the client saw encoded bytes (or after 5 s).
        let _ = wait.recv_timeout(Duration::from_secs(5));
        let _ = write!(c, "4\r\nlast\r\n0\r\n\r\n");
    });
    let (listen, admin) = (common::free_addr(), common::free_addr());
    let cfg = cache_common::config(listen, admin, backend, ROUTE, "");
    let w = common::WeirProcess::start(&cfg, listen);
    let mut c = std::net::TcpStream::connect(listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    c.write_all(
        b"GET /s HTTP/1.1\r\nhost: localhost\r\naccept-encoding: gzip\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let (mut got, t0) = (Vec::new(), Instant::now());
    let mut buf = [0u8; 65536];
    while t0.elapsed() < Duration::from_secs(4) && got.len() < 64 * 1024 {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let streamed = got.len() >= 64 * 1024;
    let _ = go.send(());
    server.join().unwrap();
    let head = String::from_utf8_lossy(&got[..got.len().min(400)]).to_ascii_lowercase();
    assert!(
        head.contains("content-encoding: gzip"),
        "{head}\n{}",
        w.logs()
    );
    assert!(
        streamed,
        "only {} bytes before the backend finished: the answer was buffered",
        got.len()
    );
}
