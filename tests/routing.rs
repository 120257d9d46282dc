//! Routing as a client sees it: hosts, segment-aware prefixes, methods,
//! headers, 404/405/400, `respond` routes, path rewriting, and the
//! `check`/`explain` commands on the same files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn config(listen: std::net::SocketAddr, a: &TestBackend, b: &TestBackend) -> String {
    format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
listeners:
  - {{ name: web, address: "{listen}" }}
routes:
  - name: status
    match: {{ path_prefix: /status.txt }}
    respond: {{ status: 200, body: "fine\n" }}
  - name: canary
    match: {{ host: api.example.com, headers: {{ x-canary: "true" }} }}
    upstream: b
  - name: api-write
    match: {{ host: api.example.com, path_prefix: /v1, methods: [POST, PUT] }}
    upstream: b
  - name: api
    match: {{ host: api.example.com, path_prefix: /v1, methods: [GET] }}
    upstream: a
    strip_prefix: true
  - name: wild
    match: {{ host: "*.example.com" }}
    upstream: b
    rewrite: {{ from: "^/old/(.*)", to: "/new/$1" }}
  - name: docs
    match: {{ path_prefix: /docs/ }}
    upstream: a
upstreams:
  a: {{ backends: ["{a}"] }}
  b: {{ backends: ["{b}"] }}
"#,
        a = a.addr(),
        b = b.addr()
    )
}

#[test]
fn routes_by_host_path_method_and_header() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let listen = free_addr();
    let _weir = WeirProcess::start(&config(listen, &a, &b), listen);

    // exact host + segment-aware prefix + strip_prefix
    let r = get_host(listen, "api.example.com", "/v1/users?id=7");
    assert_eq!((r.status, r.backend()), (200, "a".to_string()));
    assert_eq!(r.echoed_path().as_deref(), Some("/users?id=7"));
    let r = get_host(listen, "API.Example.COM:8080", "/v1");
    assert_eq!(r.backend(), "a");
    assert_eq!(r.echoed_path().as_deref(), Some("/"));
    // /v10 is not under /v1: falls to the wildcard route
    let r = get_host(listen, "api.example.com", "/v10");
    assert_eq!(r.backend(), "b");
    assert_eq!(r.echoed_path().as_deref(), Some("/v10"));

    // method picks between routes; a method no route allows is a 405 with Allow
    let r = request(listen, "POST", "/v1/users", &[("host", "api.example.com")]).unwrap();
    assert_eq!(r.backend(), "b");
    let r = request(
        listen,
        "DELETE",
        "/v1/users",
        &[("host", "api.example.com")],
    )
    .unwrap();
    assert_eq!(
        r.backend(),
        "b",
        "wildcard route without methods still takes DELETE"
    );

    // header match
    let r = request(
        listen,
        "GET",
        "/v1/users",
        &[("host", "api.example.com"), ("x-canary", "true")],
    )
    .unwrap();
    assert_eq!(r.backend(), "b");

    // wildcard matches any depth, not the bare domain; regex rewrite
    let r = get_host(listen, "a.b.example.com", "/old/page");
    assert_eq!(r.backend(), "b");
    assert_eq!(r.echoed_path().as_deref(), Some("/new/page"));
    let r = get_host(listen, "example.com", "/old/page");
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("no route"),
        "short plain-text body: {:?}",
        r.body
    );
    assert!(r.header("x-request-id").is_some());

    // respond route
    let r = get(listen, "/status.txt");
    assert_eq!((r.status, r.body.as_str()), (200, "fine\n"));
    assert_eq!(
        (a.requests(), b.requests()),
        (2, 5),
        "404 and respond never reach a backend"
    );
}

#[test]
fn method_not_allowed_lists_allow() {
    let a = TestBackend::start("a");
    let listen = free_addr();
    let cfg = format!(
        r#"
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - {{ match: {{ path_prefix: /r, methods: [GET, HEAD] }}, upstream: a }}
  - {{ match: {{ path_prefix: /r, methods: [POST] }}, upstream: a }}
upstreams:
  a: {{ backends: ["{a}"] }}
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
"#,
        a = a.addr()
    );
    let _weir = WeirProcess::start(&cfg, listen);
    let r = request(listen, "DELETE", "/r/1", &[]).unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    let r = request(listen, "DELETE", "/other", &[]).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(a.requests(), 0);
}

#[test]
fn paths_are_normalized_before_matching_and_forwarding() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let listen = free_addr();
    let _weir = WeirProcess::start(&config(listen, &a, &b), listen);
    for tricky in ["//docs/x", "/x/../docs/x", "/%64ocs/x", "/docs/./x"] {
        let r = get(listen, tricky);
        assert_eq!(r.backend(), "a", "{tricky}");
        assert_eq!(
            r.echoed_path().as_deref(),
            Some("/docs/x"),
            "{tricky} forwarded normalized"
        );
    }
    for bad in ["/docs%2fx", "/../docs/x", "/docs/%00"] {
        let r = get(listen, bad);
        assert_eq!(r.status, 400, "{bad}");
    }
    // the connection is handled, not dropped: a malformed request line gets
    // weir's 400 (with a request id) and the connection is closed (a
    // dropped connection fails here)
    let before = a.received() + b.received();
    let r = raw(listen, b"GARBAGE\r\n\r\n")
        .unwrap_or_else(|e| panic!("malformed request line: no answer ({e})"));
    assert_eq!((r.status, r.body.as_str()), (400, "bad request\n"), "{r:?}");
    assert!(r.header("x-request-id").is_some(), "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert_eq!(
        a.received() + b.received(),
        before,
        "nothing reached a backend"
    );
    assert_eq!(get(listen, "/docs/ok").status, 200, "weir still serves");
}

#[test]
fn check_and_explain_use_the_same_rules() {
    let dir = TestDir::create();
    let cfg = r#"
listeners: [{ name: web, address: "127.0.0.1:1" }]
routes:
  - { name: all, upstream: a }
  - { name: never, match: { path_prefix: /v1 }, upstream: a }
upstreams:
  a: { backends: ["127.0.0.1:2"] }
  unused: { backends: ["127.0.0.1:3"] }
"#;
    let path = dir.write("weir.yaml", cfg);
    let p = path.to_str().unwrap();
    let out = run_weir(&["check", "-c", p]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(":5:5: warning: routes[1]: route never can never match: route all"),
        "{err}"
    );
    assert!(err.contains("upstream \"unused\" is not used"), "{err}");

    let real = dir.write(
        "real.yaml",
        &config(
            "127.0.0.1:1".parse().unwrap(),
            &TestBackend::start("a"),
            &TestBackend::start("b"),
        ),
    );
    let out = run_weir(&[
        "explain",
        "-c",
        real.to_str().unwrap(),
        "--host",
        "api.example.com",
        "--path",
        "/v1/users?x=1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("route:    api"), "{text}");
    assert!(text.contains("path:     /users?x=1"), "{text}");
    let out = run_weir(&[
        "explain",
        "-c",
        real.to_str().unwrap(),
        "--host",
        "nope.test",
        "--path",
        "/x",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("404"));
    let out = run_weir(&[
        "explain",
        "-c",
        real.to_str().unwrap(),
        "--host",
        "api.example.com",
        "--path",
        "/v1/x",
        "--header",
        "x-canary:true",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("route:    canary"));

    let bad = dir.write("bad.yaml", "listeners: [{ name: web, address: \"127.0.0.1:1\" }]\nroutes:\n  - { upstream: api-pol }\nupstreams:\n  api-pool: { backends: [\"127.0.0.1:2\"] }\n");
    let out = run_weir(&["check", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("bad.yaml:3:17: routes[0].upstream: unknown upstream \"api-pol\" (did you mean \"api-pool\"?)"), "{err}");
}

#[test]
fn shipped_config_is_clean() {
    let out = run_weir(&[
        "check",
        "-c",
        concat!(env!("CARGO_MANIFEST_DIR"), "/conf/weir.yaml"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn ignore_case_prefixes_match_any_case_and_keep_their_guard() {
    let b = TestBackend::start("b");
    let listen = free_addr();
    let cfg = format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - {{ name: admin, match: {{ path_prefix: /admin, ignore_case: true }}, upstream: b, allow_ips: [10.0.0.0/8] }}
  - {{ name: exact, match: {{ path_prefix: /docs }}, respond: {{ status: 200, body: "docs\n" }} }}
  - {{ name: rest, upstream: b }}
upstreams:
  b: {{ backends: ["{b}"] }}
"#,
        b = b.addr()
    );
    let _w = WeirProcess::start(&cfg, listen);
    for path in ["/admin", "/ADMIN/x", "/Admin/users"] {
        assert_eq!(get(listen, path).status, 403, "{path}");
    }
    assert_eq!(b.requests(), 0, "a case variant reached the backend");
    // Without ignore_case the prefix is exact-case.
    assert_eq!(get(listen, "/docs").body, "docs\n");
    assert_eq!(get(listen, "/DOCS").backend(), "b");
    assert_eq!(get(listen, "/ADMINS").backend(), "b");
}
