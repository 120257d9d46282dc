//! What goes upstream and back: X-Forwarded-*, hop-by-hop removal, request
//! ids, header rewriting, host_header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn start(backend: &TestBackend, trusted: &str) -> (WeirProcess, std::net::SocketAddr) {
    let listen = free_addr();
    let cfg = format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
trusted_proxies: [{trusted}]
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - match: {{ path_prefix: /internal }}
    upstream: internal
  - upstream: pool
    request_headers: {{ set: {{ x-env: test }}, remove: [x-debug] }}
    response_headers: {{ set: {{ strict-transport-security: max-age=60 }} }}
upstreams:
  pool: {{ backends: ["{b}"] }}
  internal: {{ backends: ["{b}"], host_header: internal.svc }}
"#,
        b = backend.addr()
    );
    (WeirProcess::start(&cfg, listen), listen)
}

#[test]
fn forwarded_headers_are_set_and_spoofs_dropped() {
    let b = TestBackend::start("b");
    let (_w, listen) = start(&b, "");
    let r = request(
        listen,
        "GET",
        "/x",
        &[
            ("host", "shop.test"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/evil"),
            ("x-forwarded-server", "evil"),
            ("x-forwarded-ssl", "on"),
        ],
    )
    .unwrap();
    assert_eq!(
        r.echoed_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    // The rest of the family (redirect URLs are built from them) is dropped.
    for h in [
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-forwarded-ssl",
    ] {
        assert_eq!(r.echoed_header(h), None, "{h} from an untrusted peer");
    }
    assert_eq!(
        r.echoed_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        r.echoed_header("x-forwarded-host").as_deref(),
        Some("shop.test")
    );
    assert_eq!(r.echoed_header("forwarded"), None);
    assert_eq!(
        r.echoed_header("host").as_deref(),
        Some("shop.test"),
        "Host forwarded unchanged"
    );
    assert_eq!(r.echoed_header("via"), None);
}

#[test]
fn trusted_proxy_chain_is_extended() {
    let b = TestBackend::start("b");
    let (_w, listen) = start(&b, "127.0.0.0/8");
    let r = request(
        listen,
        "GET",
        "/x",
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
        ],
    )
    .unwrap();
    assert_eq!(
        r.echoed_header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        r.echoed_header("x-forwarded-port").as_deref(),
        Some("443"),
        "a trusted proxy's X-Forwarded-Port is passed on"
    );
    assert_eq!(
        r.echoed_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
}

#[test]
fn hop_by_hop_headers_are_stripped() {
    let b = TestBackend::start("b");
    let (_w, listen) = start(&b, "");
    let r = request(
        listen,
        "GET",
        "/x",
        &[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("x-kept", "yes"),
        ],
    )
    .unwrap();
    for h in ["x-secret", "keep-alive", "proxy-connection", "te"] {
        assert_eq!(r.echoed_header(h), None, "{h} must not reach the backend");
    }
    assert_eq!(r.echoed_header("x-kept").as_deref(), Some("yes"));
    let r = request(listen, "GET", "/x", &[("te", "trailers")]).unwrap();
    assert_eq!(r.echoed_header("te").as_deref(), Some("trailers"));
}

/// Each hop-by-hop header alone, on a request without `Connection` (weir
/// skips Pingora's sanitizer only when a request names none of them), still
/// never reaches the backend.
#[test]
fn a_lone_hop_by_hop_header_is_stripped_too() {
    let b = TestBackend::start("b");
    let (_w, listen) = start(&b, "");
    let mut c = KeepAliveClient::connect(listen).unwrap();
    for (h, v) in [
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("proxy-authorization", "Basic eDp5"),
        ("proxy-authenticate", "Basic"),
        ("te", "gzip"),
        ("trailer", "x-checksum"),
        ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
    ] {
        let r = c.send("GET", "/x", &[(h, v), ("x-kept", "yes")]).unwrap();
        assert_eq!(r.status, 200, "{h}");
        assert_eq!(r.echoed_header(h), None, "{h} must not reach the backend");
        assert_eq!(r.echoed_header("x-kept").as_deref(), Some("yes"));
    }
    // and a request with none of them keeps its own headers
    let r = c.send("GET", "/x", &[("x-kept", "yes")]).unwrap();
    assert_eq!(r.echoed_header("x-kept").as_deref(), Some("yes"));
}

#[test]
fn request_id_is_kept_or_generated_both_ways() {
    let b = TestBackend::start("b");
    let (_w, listen) = start(&b, "");
    let r = request(listen, "GET", "/x", &[("x-request-id", "abc-123")]).unwrap();
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(r.echoed_header("x-request-id").as_deref(), Some("abc-123"));
    let r = request(
        listen,
        "GET",
        "/x",
        &[("x-request-id", "bad id with spaces")],
    )
    .unwrap();
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(r.echoed_header("x-request-id"), Some(id.clone()));
    let r2 = get(listen, "/x");
    assert_ne!(r2.header("x-request-id").unwrap(), id);
}

#[test]
fn route_header_rules_and_host_header() {
    let b = TestBackend::start("b");
    let (_w, listen) = start(&b, "");
    let r = request(listen, "GET", "/x", &[("x-debug", "1"), ("x-env", "prod")]).unwrap();
    assert_eq!(r.echoed_header("x-env").as_deref(), Some("test"));
    assert_eq!(r.echoed_header("x-debug"), None);
    assert_eq!(r.header("strict-transport-security"), Some("max-age=60"));
    let r = get_host(listen, "public.test", "/internal/y");
    assert_eq!(r.echoed_header("host").as_deref(), Some("internal.svc"));
    assert_eq!(
        r.echoed_header("x-forwarded-host").as_deref(),
        Some("public.test")
    );
}
