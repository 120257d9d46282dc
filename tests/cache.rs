//! Response caching (SPEC §1.1), each behaviour against a scripted backend
//! that counts the requests reaching it: freshness, what is never stored,
//! `Vary`, revalidation, conditionals, ranges, `HEAD`, invalidation,
//! purges, the status header and policies on hits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache_common;
mod common;

use cache_common::{answer, start, xcache, Setup, TOKEN};
use common::{request_with_body, run_weir, RawRequest, Reply};

/// The backend of most tests: the path picks the answer's headers.
fn script(req: &RawRequest) -> Reply {
    let path = req.target.split('?').next().unwrap_or("");
    let body = format!("body of {}", req.target);
    let cc = |v: &str| vec![("cache-control", v.to_string())];
    let mut h: Vec<(&str, String)> = match path {
        "/max-age" => cc("max-age=60"),
        "/s-maxage" => cc("max-age=0, s-maxage=60"),
        "/expires" => vec![("expires", "Thu, 01 Jan 2099 00:00:00 GMT".into())],
        "/plain" => vec![],
        "/no-store" => cc("no-store, max-age=60"),
        "/private" => cc("private, max-age=60"),
        "/cookie" => vec![
            ("cache-control", "max-age=60".into()),
            ("set-cookie", "a=b".into()),
        ],
        "/vary-star" => vec![("cache-control", "max-age=60".into()), ("vary", "*".into())],
        "/public" => cc("public, max-age=60"),
        "/vary" => vec![
            ("cache-control", "max-age=60".into()),
            ("vary", "accept-language".into()),
        ],
        _ => cc("max-age=60"),
    };
    h.push(("content-type", "text/plain".into()));
    if path == "/vary" {
        let lang = req.header("accept-language").unwrap_or("none").to_string();
        let hv: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        return answer(200, &hv, &format!("lang {lang}"));
    }
    let hv: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    answer(200, &hv, &body)
}

fn setup(route: &str) -> Setup {
    start(route, "", script)
}

/// Two GETs of `path`: how many reached the backend, and the second's status header.
fn twice(s: &Setup, path: &str, headers: &[(&str, &str)]) -> (usize, String) {
    let before = s.hits();
    let a = s.send("GET", path, headers);
    assert_eq!(a.status, 200, "{path}: {a:?}");
    let b = s.send("GET", path, headers);
    assert_eq!(b.status, 200, "{path}: {b:?}");
    assert_eq!(a.body, b.body, "{path}");
    (s.hits() - before, xcache(&b).to_string())
}

#[test]
fn a_fresh_hit_never_reaches_the_backend_and_carries_age() {
    let s = setup("    cache: {}\n");
    let a = s.get("/max-age");
    assert_eq!(xcache(&a), "MISS");
    for _ in 0..5 {
        let b = s.get("/max-age");
        assert_eq!(xcache(&b), "HIT", "{b:?}");
        assert!(b.header("age").is_some(), "no Age on a hit: {b:?}");
        assert_eq!(b.body, "body of /max-age");
    }
    assert_eq!(s.hits(), 1);
}

#[test]
fn freshness_comes_from_s_maxage_max_age_expires_or_default_ttl() {
    let s = setup("    cache: {}\n");
    assert_eq!(
        twice(&s, "/s-maxage", &[]),
        (1, "HIT".into()),
        "s-maxage wins over max-age=0"
    );
    assert_eq!(twice(&s, "/expires", &[]), (1, "HIT".into()));
    assert_eq!(
        twice(&s, "/plain", &[]).0,
        2,
        "no freshness and no default_ttl: not stored"
    );
    let d = setup("    cache: { default_ttl: 60s }\n");
    assert_eq!(twice(&d, "/plain", &[]), (1, "HIT".into()), "default_ttl");
}

#[test]
fn what_is_never_stored_reaches_the_backend_every_time() {
    let s = setup("    cache: { default_ttl: 60s }\n");
    for path in ["/no-store", "/private", "/cookie", "/vary-star"] {
        let (n, x) = twice(&s, path, &[]);
        assert_eq!(n, 2, "{path} was stored (second answer {x})");
    }
    let auth = [("authorization", "Bearer x")];
    assert_eq!(
        twice(&s, "/max-age", &auth).0,
        2,
        "Authorization without public"
    );
    assert_eq!(
        twice(&s, "/public", &auth),
        (1, "HIT".into()),
        "public allows it"
    );
}

#[test]
fn vary_keeps_one_entry_per_variant() {
    let s = setup("    cache: {}\n");
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(s.send("GET", "/vary", &en).body, "lang en");
    assert_eq!(s.send("GET", "/vary", &fr).body, "lang fr");
    let (e, f) = (s.send("GET", "/vary", &en), s.send("GET", "/vary", &fr));
    assert_eq!((e.body.as_str(), xcache(&e)), ("lang en", "HIT"));
    assert_eq!((f.body.as_str(), xcache(&f)), ("lang fr", "HIT"));
    assert_eq!(s.hits(), 2);
}

#[test]
fn a_stale_entry_is_revalidated_and_a_304_refreshes_it() {
    // no-cache: stored, but revalidated before every use.
    let s = start("    cache: {}\n", "", |req: &RawRequest| {
        if req.header("if-none-match") == Some("\"v1\"") {
            return answer(
                304,
                &[("etag", "\"v1\""), ("cache-control", "no-cache")],
                "",
            );
        }
        answer(
            200,
            &[
                ("etag", "\"v1\""),
                ("cache-control", "no-cache"),
                ("content-type", "text/plain"),
            ],
            "original",
        )
    });
    assert_eq!(s.get("/r").body, "original");
    let b = s.get("/r");
    assert_eq!(
        (b.status, b.body.as_str(), xcache(&b)),
        (200, "original", "REVALIDATED")
    );
    let reqs = s.backend.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[1].header("if-none-match"),
        Some("\"v1\""),
        "{:?}",
        reqs[1]
    );
}

#[test]
fn a_clients_conditional_on_a_fresh_entry_gets_304_from_weir() {
    let s = start("    cache: {}\n", "", |_: &RawRequest| {
        answer(
            200,
            &[("etag", "\"e1\""), ("cache-control", "max-age=60")],
            "payload",
        )
    });
    assert_eq!(s.get("/c").status, 200);
    let r = s.send("GET", "/c", &[("if-none-match", "\"e1\"")]);
    assert_eq!((r.status, r.body.as_str()), (304, ""));
    assert_eq!(s.hits(), 1);
}

#[test]
fn range_head_and_client_no_cache_are_answered_from_the_entry() {
    let s = setup("    cache: {}\n");
    assert_eq!(s.get("/max-age").body, "body of /max-age");
    let r = s.send("GET", "/max-age", &[("range", "bytes=0-3")]);
    assert_eq!((r.status, r.body.as_str()), (206, "body"), "{r:?}");
    assert_eq!(r.header("content-range"), Some("bytes 0-3/16"));
    let h = s.send("HEAD", "/max-age", &[]);
    assert_eq!((h.status, xcache(&h)), (200, "HIT"));
    assert_eq!(h.header("content-length"), Some("16"));
    let n = s.send(
        "GET",
        "/max-age",
        &[("cache-control", "no-cache"), ("pragma", "no-cache")],
    );
    assert_eq!(xcache(&n), "HIT", "a client's no-cache does not bypass");
    assert_eq!(s.hits(), 1);
}

#[test]
fn an_unsafe_method_invalidates_its_uri() {
    let s = setup("    cache: {}\n");
    assert_eq!(twice(&s, "/max-age", &[]), (1, "HIT".into()));
    let p = request_with_body(s.listen, "POST", "/max-age", &[], b"x").unwrap();
    assert_eq!((p.status, xcache(&p)), (200, "BYPASS"));
    let after = s.get("/max-age");
    assert_eq!(xcache(&after), "MISS");
    assert_eq!(s.hits(), 3);
}

fn purge(s: &Setup, body: &str) -> String {
    let host = s.admin.to_string();
    let auth = format!("Bearer {TOKEN}");
    let r = request_with_body(
        s.admin,
        "DELETE",
        "/cache",
        &[("host", host.as_str()), ("authorization", auth.as_str())],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[test]
fn purge_by_url_and_by_prefix() {
    let s = setup("    cache: {}\n");
    for p in ["/a/1", "/a/2", "/ab", "/b"] {
        s.get(p);
    }
    assert_eq!(s.hits(), 4);
    let one = purge(&s, r#"{"host":"localhost","path":"/b"}"#);
    assert!(one.contains("\"purged\":1"), "{one}");
    assert_eq!(xcache(&s.get("/b")), "MISS");
    let out = purge(&s, r#"{"host":"localhost","path":"/a","prefix":true}"#);
    assert!(
        out.contains("\"purged\":2"),
        "segment-aware: /ab stays: {out}"
    );
    assert_eq!(xcache(&s.get("/a/1")), "MISS");
    assert_eq!(xcache(&s.get("/ab")), "HIT");
    // The command line goes through the same endpoint.
    let admin = s.admin.to_string();
    let cli = run_weir(&[
        "cache",
        "purge",
        "http://localhost/a/1",
        "--admin",
        &admin,
        "--token",
        TOKEN,
    ]);
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success() && text.contains("purged 1"), "{cli:?}");
    assert_eq!(xcache(&s.get("/a/1")), "MISS");
}

#[test]
fn policies_apply_to_hits() {
    let route = "    cache: {}\n    auth: { api_keys: [k1] }\n";
    let s = setup(route);
    let key = [("x-api-key", "k1")];
    assert_eq!(twice(&s, "/max-age", &key), (1, "HIT".into()));
    let anon = s.get("/max-age");
    assert_eq!(
        anon.status, 401,
        "a stored answer is no way around auth: {anon:?}"
    );
}

#[test]
fn a_route_without_cache_stores_nothing_and_says_nothing() {
    let s = setup("");
    let (n, x) = twice(&s, "/max-age", &[]);
    assert_eq!((n, x.as_str()), (2, "-"));
}

#[test]
fn bad_cache_and_compression_blocks_are_reported_with_positions() {
    let dir = common::TestDir::create();
    let path = dir.write(
        "weir.yaml",
        "listeners: [{ name: web, address: \"127.0.0.1:1\" }]\nroutes:\n  - upstream: p\n    cache: { key: [host, body] }\n    compression: { algorithms: [gzip, lz4] }\nupstreams:\n  p: { backends: [\"127.0.0.1:2\"] }\n",
    );
    let out = run_weir(&["check", "-c", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("weir.yaml:4:") && err.contains("routes[0].cache.key[1]"),
        "{err}"
    );
    assert!(
        err.contains("weir.yaml:5:") && err.contains("unknown algorithm \"lz4\""),
        "{err}"
    );
}
