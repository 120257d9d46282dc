//! Who may pass and what weir answers by itself: API-key and basic auth
//! (with credentials hidden from the backend), allow/deny IP rules (also
//! behind trusted proxies), redirects, route response headers on weir's own
//! answers, and the order in which the checks run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;

/// bcrypt (cost 4) of the password "secret", made with Python's `bcrypt`
/// (`bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4))`, checked with
/// `bcrypt.checkpw`).
const SECRET_HASH: &str = "$2b$04$/q3k53qwFcxa4MukAekUt./UICJ8rjItI7mm/T14Cs2zAyK4nWJF.";
/// `Authorization` values for alice.
const ALICE_OK: &str = "Basic YWxpY2U6c2VjcmV0"; // alice:secret
const ALICE_WRONG: &str = "Basic YWxpY2U6d3Jvbmc="; // alice:wrong
const BOB: &str = "Basic Ym9iOnNlY3JldA=="; // bob:secret

fn cfg(listen: SocketAddr, extra_top: &str, routes: &str, backend: SocketAddr) -> String {
    format!(
        r#"server: {{ threads: 2, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
{extra_top}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
{routes}
upstreams:
  pool: {{ backends: ["{backend}"] }}
"#
    )
}

fn send(listen: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    request(listen, method, path, headers)
        .unwrap_or_else(|e| panic!("{method} {path} {headers:?} via {listen}: {e}"))
}

fn status(listen: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    send(listen, "GET", path, headers).status
}

// ------------------------------------------------------------------- auth

#[test]
fn api_keys_from_the_header_or_bearer_and_hidden_from_the_backend() {
    let b = TestBackend::start("b");
    let listen = free_addr();
    let routes = r#"
  - name: hidden
    match: { path_prefix: /hidden }
    upstream: pool
    auth: { api_keys: ["k1", "k2"], hide_credentials: true }
  - name: shown
    match: { path_prefix: /shown }
    upstream: pool
    auth: { api_keys: ["k1", "k2"], hide_credentials: false }
  - name: custom
    match: { path_prefix: /custom }
    upstream: pool
    auth: { api_keys: ["k1"], header: x-token }"#;
    let _w = WeirProcess::start(&cfg(listen, "", routes, b.addr()), listen);

    // refused: no key, a wrong key, a near miss, a wrong bearer, basic instead of bearer
    for headers in [
        vec![],
        vec![("x-api-key", "nope")],
        vec![("x-api-key", "K1")],
        vec![("x-api-key", "k1k2")],
        vec![("x-api-key", "")],
        vec![("authorization", "Bearer nope")],
        vec![("authorization", "Basic azE6azE=")],
        vec![("x-other", "k1")],
    ] {
        assert_eq!(status(listen, "/hidden/x", &headers), 401, "{headers:?}");
    }
    assert_eq!(b.received(), 0, "refused requests never reach the backend");

    // the key in x-api-key
    let r = send(listen, "GET", "/hidden/x", &[("x-api-key", "k1")]);
    assert_eq!((r.status, r.backend()), (200, "b".to_string()));
    assert_eq!(
        r.echoed_header("x-api-key"),
        None,
        "hide_credentials strips the key"
    );
    // the key as a bearer token
    let r = send(
        listen,
        "GET",
        "/hidden/x",
        &[("authorization", "Bearer k2")],
    );
    assert_eq!((r.status, r.backend()), (200, "b".to_string()));
    assert_eq!(
        r.echoed_header("authorization"),
        None,
        "hide_credentials strips Authorization"
    );

    // without hide_credentials the backend sees them
    let r = send(listen, "GET", "/shown/x", &[("x-api-key", "k2")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed_header("x-api-key").as_deref(), Some("k2"));
    let r = send(listen, "GET", "/shown/x", &[("authorization", "Bearer k1")]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.echoed_header("authorization").as_deref(),
        Some("Bearer k1")
    );
    assert_eq!(status(listen, "/shown/x", &[]), 401);

    // auth.header names the header; Bearer still works; x-api-key is then just a header
    assert_eq!(status(listen, "/custom/x", &[("x-token", "k1")]), 200);
    assert_eq!(
        status(listen, "/custom/x", &[("authorization", "Bearer k1")]),
        200
    );
    assert_eq!(status(listen, "/custom/x", &[("x-api-key", "k1")]), 401);
    assert_eq!(status(listen, "/custom/x", &[("x-token", "k2")]), 401);
}

#[test]
fn basic_auth_checks_bcrypt_hashes_and_asks_with_www_authenticate() {
    let b = TestBackend::start("b");
    let listen = free_addr();
    let routes = format!(
        r#"
  - name: basic
    match: {{ path_prefix: /basic }}
    upstream: pool
    auth: {{ basic: {{ users: {{ alice: "{SECRET_HASH}" }} }}, hide_credentials: true }}
  - name: basic-shown
    match: {{ path_prefix: /shown }}
    upstream: pool
    auth: {{ basic: {{ users: {{ alice: "{SECRET_HASH}" }} }} }}"#
    );
    let _w = WeirProcess::start(&cfg(listen, "", &routes, b.addr()), listen);

    let r = send(listen, "GET", "/basic/x", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Basic realm="weir""#));
    for auth in [
        ALICE_WRONG,
        BOB,
        "Basic !!!",
        "Basic ",
        "Bearer secret",
        "Basic YWxpY2U=",
    ] {
        let r = send(listen, "GET", "/basic/x", &[("authorization", auth)]);
        assert_eq!(r.status, 401, "{auth}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Basic realm="weir""#),
            "{auth}"
        );
    }
    assert_eq!(b.received(), 0, "refused requests never reach the backend");

    let r = send(listen, "GET", "/basic/x", &[("authorization", ALICE_OK)]);
    assert_eq!((r.status, r.backend()), (200, "b".to_string()));
    assert_eq!(r.echoed_header("authorization"), None, "hide_credentials");
    // the scheme name is case-insensitive (RFC 9110 §11.1)
    let lower = ALICE_OK.replace("Basic", "basic");
    assert_eq!(
        status(listen, "/basic/x", &[("authorization", &lower)]),
        200
    );

    let r = send(listen, "GET", "/shown/x", &[("authorization", ALICE_OK)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed_header("authorization").as_deref(), Some(ALICE_OK));
}

// --------------------------------------------------------------- IP rules

#[test]
fn allow_and_deny_ips_refuse_with_403_before_the_backend() {
    let b = TestBackend::start("b");
    let listen = free_addr();
    let routes = r#"
  - name: tens-only
    match: { path_prefix: /tens-only }
    upstream: pool
    allow_ips: [10.0.0.0/8]
  - name: no-loopback
    match: { path_prefix: /no-loopback }
    upstream: pool
    deny_ips: [127.0.0.0/8]
  - name: loopback-too
    match: { path_prefix: /loopback-too }
    upstream: pool
    allow_ips: [10.0.0.0/8, 127.0.0.1/32]
  - name: no-tens
    match: { path_prefix: /no-tens }
    upstream: pool
    deny_ips: [10.0.0.0/8]"#;
    let _w = WeirProcess::start(&cfg(listen, "", routes, b.addr()), listen);

    assert_eq!(
        status(listen, "/tens-only/x", &[]),
        403,
        "127.0.0.1 is outside allow_ips"
    );
    // an untrusted peer cannot claim another address
    assert_eq!(
        status(listen, "/tens-only/x", &[("x-forwarded-for", "10.1.2.3")]),
        403,
        "X-Forwarded-For from an untrusted peer is not believed"
    );
    assert_eq!(
        status(listen, "/no-loopback/x", &[]),
        403,
        "127.0.0.1 is inside deny_ips"
    );
    assert_eq!(b.received(), 0, "refused requests never reach the backend");

    let r = send(listen, "GET", "/loopback-too/x", &[]);
    assert_eq!((r.status, r.backend()), (200, "b".to_string()));
    let r = send(listen, "GET", "/no-tens/x", &[]);
    assert_eq!((r.status, r.backend()), (200, "b".to_string()));
    assert_eq!(b.received(), 2);
}

#[test]
fn ip_rules_cannot_be_bypassed_by_spelling_the_path_differently() {
    // With a catch-all route after the guarded one, a path that fails to
    // match the guarded route would reach the backend unchecked; backends
    // read these spellings as /admin/x (§4: normalized before matching,
    // `;` parameters do not change which route a segment matches).
    let b = TestBackend::start("b");
    let listen = free_addr();
    let routes = r#"
  - name: admin
    match: { path_prefix: /admin }
    upstream: pool
    allow_ips: [10.0.0.0/8]
  - name: rest
    upstream: pool"#;
    let _w = WeirProcess::start(&cfg(listen, "", routes, b.addr()), listen);
    assert_eq!(status(listen, "/admin/x", &[]), 403);
    for sneaky in [
        "//admin/x",
        "/x/../admin/x",
        "/%61dmin/x",
        "/admin;a/x",
        "/admin;a",
    ] {
        let r = send(listen, "GET", sneaky, &[]);
        assert!(
            r.status == 403 || r.status == 400,
            "{sneaky} must not get past the admin route's IP rule: {} {}",
            r.status,
            r.body
        );
    }
    assert_eq!(b.received(), 0, "nothing reached the backend");
    assert_eq!(send(listen, "GET", "/other", &[]).backend(), "b");
}

#[test]
fn ip_rules_use_the_client_address_behind_trusted_proxies() {
    let b = TestBackend::start("b");
    let listen = free_addr();
    let routes = r#"
  - name: tens-only
    match: { path_prefix: /tens-only }
    upstream: pool
    allow_ips: [10.0.0.0/8]
  - name: not-that-net
    match: { path_prefix: /not-that-net }
    upstream: pool
    deny_ips: [10.9.0.0/16]"#;
    let _w = WeirProcess::start(
        &cfg(listen, "trusted_proxies: [127.0.0.1]", routes, b.addr()),
        listen,
    );
    let xff = |v: &'static str| vec![("x-forwarded-for", v)];

    let r = send(listen, "GET", "/tens-only/x", &xff("10.1.2.3"));
    assert_eq!(
        (r.status, r.backend()),
        (200, "b".to_string()),
        "client 10.1.2.3 is allowed"
    );
    assert!(
        r.echoed_header("x-forwarded-for")
            .is_some_and(|v| v.contains("10.1.2.3")),
        "{r:?}"
    );
    // the rightmost entry that is not a trusted proxy is the client
    assert_eq!(
        status(listen, "/tens-only/x", &xff("192.168.1.1, 10.1.2.3")),
        200
    );
    assert_eq!(
        status(listen, "/tens-only/x", &xff("10.1.2.3, 127.0.0.1")),
        200
    );
    assert_eq!(
        status(listen, "/tens-only/x", &xff("10.1.2.3, 192.168.1.1")),
        403
    );
    assert_eq!(status(listen, "/tens-only/x", &xff("192.168.1.1")), 403);
    assert_eq!(
        status(listen, "/tens-only/x", &[]),
        403,
        "no XFF: the client is 127.0.0.1"
    );

    assert_eq!(status(listen, "/not-that-net/x", &xff("10.9.1.1")), 403);
    assert_eq!(status(listen, "/not-that-net/x", &xff("10.8.1.1")), 200);
    assert_eq!(
        b.received(),
        4,
        "only the allowed requests reached the backend"
    );
}

// -------------------------------------------------------------- redirects

#[test]
fn redirects_expand_request_variables_and_default_to_302() {
    let b = TestBackend::start("b");
    let listen = free_addr();
    let routes = r#"
  - name: moved
    match: { path_prefix: /a }
    redirect: { to: "https://example.test$request_uri", status: 301 }
  - name: old-host
    match: { host: old.test }
    redirect: { to: "$scheme://new.test/moved$path?$query&from=$host" }
  - name: perm
    match: { path_prefix: /perm }
    redirect: { to: "https://example.test$path", status: 308 }
  - name: rest
    upstream: pool"#;
    let _w = WeirProcess::start(&cfg(listen, "", routes, b.addr()), listen);

    let r = send(listen, "GET", "/a/b?x=1", &[]);
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(r.header("location"), Some("https://example.test/a/b?x=1"));

    let r = send(listen, "GET", "/p/q?y=2", &[("host", "old.test:8080")]);
    assert_eq!(r.status, 302, "default status: {r:?}");
    assert_eq!(
        r.header("location"),
        Some("http://new.test/moved/p/q?y=2&from=old.test"),
        "$scheme is http, $host has no port"
    );

    let r = send(listen, "POST", "/perm/x", &[]);
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(r.header("location"), Some("https://example.test/perm/x"));

    assert_eq!(b.received(), 0, "redirects never reach a backend");
    assert_eq!(send(listen, "GET", "/other", &[]).backend(), "b");
}

// ------------------------------------------------ weir's own answers, order

#[test]
fn route_response_headers_apply_to_weirs_own_answers() {
    let b = TestBackend::start("b");
    let listen = free_addr();
    let routes = r#"
  - name: limited
    match: { path_prefix: /limited }
    upstream: pool
    rate_limit: { requests_per_second: 1 }
    response_headers: { set: { strict-transport-security: "max-age=1" } }
  - name: guarded
    match: { path_prefix: /guarded }
    upstream: pool
    auth: { api_keys: ["k"] }
    response_headers: { set: { strict-transport-security: "max-age=1" } }
  - name: walled
    match: { path_prefix: /walled }
    upstream: pool
    allow_ips: [10.0.0.0/8]
    response_headers: { set: { strict-transport-security: "max-age=1" } }"#;
    let _w = WeirProcess::start(&cfg(listen, "", routes, b.addr()), listen);

    let mut seen = Vec::new();
    let mut limited = None;
    for _ in 0..10 {
        let r = send(listen, "GET", "/limited/x", &[]);
        seen.push(r.status);
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=1"),
            "{r:?}"
        );
    }
    let r = limited.unwrap_or_else(|| panic!("never rate limited at 1/s: {seen:?}"));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=1"),
        "429: {r:?}"
    );
    assert!(r.header("retry-after").is_some(), "{r:?}");

    let r = send(listen, "GET", "/guarded/x", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=1"),
        "401: {r:?}"
    );

    let r = send(listen, "GET", "/walled/x", &[]);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=1"),
        "403: {r:?}"
    );
}

#[test]
fn checks_run_in_order_ip_rules_rate_limit_auth_body_size() {
    let b = TestBackend::start("b");
    let listen = free_addr();
    let routes = r#"
  - name: walled
    match: { path_prefix: /walled }
    upstream: pool
    deny_ips: [127.0.0.0/8]
    rate_limit: { requests_per_second: 1 }
    auth: { api_keys: ["k"] }
  - name: limited
    match: { path_prefix: /limited }
    upstream: pool
    rate_limit: { requests_per_second: 2 }
    auth: { api_keys: ["k"] }
  - name: sized
    match: { path_prefix: /sized }
    upstream: pool
    auth: { api_keys: ["k"] }
    max_body_size: 10"#;
    let _w = WeirProcess::start(&cfg(listen, "", routes, b.addr()), listen);

    // IP rules come first: never 429 or 401 for a denied address
    let walled: Vec<u16> = (0..4).map(|_| status(listen, "/walled/x", &[])).collect();
    assert_eq!(walled, [403, 403, 403, 403]);

    // the rate limit comes before auth: requests without credentials use up
    // the budget, then get 429 rather than 401
    let limited: Vec<u16> = (0..6).map(|_| status(listen, "/limited/x", &[])).collect();
    assert_eq!(limited[0], 401, "{limited:?}");
    assert!(limited.contains(&429), "{limited:?}");
    assert!(
        limited.iter().all(|s| *s == 401 || *s == 429),
        "{limited:?}"
    );

    // auth comes before the body size
    let over = |auth: &str| {
        raw(
            listen,
            format!("POST /sized/x HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100\r\n\r\n")
                .as_bytes(),
        )
        .unwrap()
        .status
    };
    assert_eq!(over(""), 401);
    assert_eq!(over("x-api-key: k\r\n"), 413);
    assert_eq!(b.received(), 0);
}
