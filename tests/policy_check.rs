//! `weir check` on policy keys: a file using every policy passes; each kind
//! of mistake is refused (exit 1) with `file:line:col: key.path: message`
//! pointing at the offending key or value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// Runs `weir check -c <file>` on `text`; returns (exit code, stderr, file path).
fn check(text: &str) -> (Option<i32>, String, String) {
    let dir = TestDir::create();
    let path = dir.write("weir.yaml", text);
    let p = path.to_str().unwrap().to_string();
    let out = run_weir(&["check", "-c", &p]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        p,
    )
}

/// 1-based (line, column) of `token` on the first line of `text` that
/// contains `line_marker`.
fn at(text: &str, line_marker: &str, token: &str) -> (usize, usize) {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(line_marker))
        .unwrap_or_else(|| panic!("no line with {line_marker:?}"));
    let col = line
        .find(token)
        .unwrap_or_else(|| panic!("{token:?} not on line {line:?}"));
    (i + 1, col + 1)
}

/// Asserts exit code 1 and an error line starting with
/// `file:line:col: key_path: ` where (line, col) is where `token` is on the
/// line containing `line_marker`; returns that error line.
fn assert_error_at(text: &str, line_marker: &str, token: &str, key_path: &str) -> String {
    let (code, err, file) = check(text);
    assert_eq!(code, Some(1), "weir check must fail:\n{err}");
    let (line, col) = at(text, line_marker, token);
    let prefix = format!("{file}:{line}:{col}: {key_path}: ");
    err.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no error line starting with {prefix:?} in:\n{err}"))
        .to_string()
}

const HEAD: &str = "listeners: [{ name: web, address: \"127.0.0.1:1\" }]\n";

#[test]
fn check_accepts_a_file_using_every_policy() {
    let text = format!(
        r#"{HEAD}trusted_proxies: [127.0.0.1, 10.0.0.0/8]
routes:
  - name: api
    match: {{ path_prefix: /api }}
    upstream: pool
    retry_on: [connect_failure, 5xx]
    rate_limit:
      requests_per_second: 100
      key: "header:x-api-key"
      shared: {{ redis: "redis://127.0.0.1:6379", on_error: deny, timeout: 50ms }}
    max_body_size: 10MiB
    auth: {{ api_keys: ["k1", "k2"], header: x-api-key, hide_credentials: true }}
    allow_ips: [10.0.0.0/8, 127.0.0.1/32]
    deny_ips: [10.9.0.0/16]
    response_headers: {{ set: {{ strict-transport-security: "max-age=1" }} }}
  - name: admin
    match: {{ path_prefix: /admin }}
    upstream: pool
    rate_limit: {{ requests_per_second: 5, key: client_ip }}
    auth: {{ basic: {{ users: {{ alice: "$2b$04$/q3k53qwFcxa4MukAekUt./UICJ8rjItI7mm/T14Cs2zAyK4nWJF." }} }} }}
  - name: see-other
    match: {{ path_prefix: /old }}
    redirect: {{ to: "https://example.test$request_uri", status: 303 }}
  - name: temporary
    match: {{ path_prefix: /tmp }}
    redirect: {{ to: "$scheme://$host$path?$query", status: 307 }}
  - name: moved
    match: {{ host: old.test }}
    redirect: {{ to: "https://new.test$path" }}
upstreams:
  pool:
    backends: ["127.0.0.1:2", "127.0.0.1:3"]
    circuit_breaker: {{ consecutive_failures: 3, open_for: 2s }}
    sticky: {{ cookie: weir_affinity }}
"#
    );
    let (code, err, _) = check(&text);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("error"), "{err}");
    assert!(
        err.contains("upstreams.pool.sticky.secret") && err.contains("invert"),
        "a sticky cookie without a secret is warned about: {err}"
    );
    let (code, err, _) = check(&text.replace(
        "cookie: weir_affinity }",
        "cookie: weir_affinity, secret: s3cr3t-value }",
    ));
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("sticky.secret"), "{err}");
}

#[test]
fn check_names_an_unknown_rate_limit_key() {
    let text = format!(
        r#"{HEAD}routes:
  - name: api
    upstream: pool
    rate_limit:
      requests_per_second: 5
      burst: 10
upstreams:
  pool: {{ backends: ["127.0.0.1:2"] }}
"#
    );
    let line = assert_error_at(&text, "burst: 10", "burst", "routes[0].rate_limit.burst");
    assert!(line.contains("unknown key"), "{line}");
}

#[test]
fn check_names_a_bad_cidr_in_allow_ips() {
    let text = format!(
        r#"{HEAD}routes:
  - name: api
    upstream: pool
    allow_ips:
      - 10.0.0.0/8
      - 10.0.0.300/8
upstreams:
  pool: {{ backends: ["127.0.0.1:2"] }}
"#
    );
    assert_error_at(
        &text,
        "10.0.0.300/8",
        "10.0.0.300/8",
        "routes[0].allow_ips[1]",
    );
}

#[test]
fn check_names_a_bad_size() {
    let text = format!(
        r#"{HEAD}routes:
  - name: api
    upstream: pool
    max_body_size: 10QB
upstreams:
  pool: {{ backends: ["127.0.0.1:2"] }}
"#
    );
    assert_error_at(&text, "max_body_size", "10QB", "routes[0].max_body_size");
}

#[test]
fn check_refuses_a_route_with_two_actions() {
    let text = format!(
        r#"{HEAD}routes:
  - name: both
    upstream: pool
    redirect: {{ to: "https://example.test$path" }}
upstreams:
  pool: {{ backends: ["127.0.0.1:2"] }}
"#
    );
    let (code, err, file) = check(&text);
    assert_eq!(code, Some(1), "{err}");
    // Reported at the route, or at one of its two actions.
    let allowed = [
        (at(&text, "- name: both", "name"), "routes[0]"),
        (at(&text, "upstream: pool", "pool"), "routes[0].upstream"),
        (
            at(&text, "upstream: pool", "upstream"),
            "routes[0].upstream",
        ),
        (at(&text, "redirect:", "{"), "routes[0].redirect"),
        (at(&text, "redirect:", "redirect"), "routes[0].redirect"),
    ];
    let found = allowed.iter().any(|((line, col), path)| {
        err.lines()
            .any(|l| l.starts_with(&format!("{file}:{line}:{col}: {path}: ")))
    });
    assert!(
        found,
        "expected an error at the route or its upstream/redirect key, e.g. {file}:{}:{}: routes[0].redirect: …, in:\n{err}",
        allowed[3].0 .0,
        allowed[3].0 .1
    );
}

#[test]
fn check_refuses_zero_consecutive_failures() {
    let text = format!(
        r#"{HEAD}routes:
  - name: api
    upstream: pool
upstreams:
  pool:
    backends: ["127.0.0.1:2"]
    circuit_breaker:
      consecutive_failures: 0
      open_for: 2s
"#
    );
    assert_error_at(
        &text,
        "consecutive_failures",
        "0",
        "upstreams.pool.circuit_breaker.consecutive_failures",
    );
}

#[test]
fn check_refuses_a_redirect_status_that_is_not_a_redirect() {
    let text = format!(
        r#"{HEAD}routes:
  - name: old
    redirect:
      to: "https://example.test$path"
      status: 200
"#
    );
    assert_error_at(&text, "status: 200", "200", "routes[0].redirect.status");
}

#[test]
fn check_refuses_an_unknown_on_error_and_an_empty_api_key() {
    let text = format!(
        r#"{HEAD}routes:
  - name: api
    upstream: pool
    rate_limit:
      requests_per_second: 5
      shared: {{ redis: "redis://127.0.0.1:6379", on_error: maybe }}
upstreams:
  pool: {{ backends: ["127.0.0.1:2"] }}
"#
    );
    assert_error_at(
        &text,
        "on_error",
        "maybe",
        "routes[0].rate_limit.shared.on_error",
    );

    let text = format!(
        r#"{HEAD}routes:
  - name: api
    upstream: pool
    auth:
      api_keys:
        - k1
        - ""
upstreams:
  pool: {{ backends: ["127.0.0.1:2"] }}
"#
    );
    assert_error_at(&text, "- \"\"", "\"\"", "routes[0].auth.api_keys[1]");
}
