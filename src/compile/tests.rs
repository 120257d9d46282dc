//! Every class of config error, each pinned to its exact `line:col`, key path
//! and message, plus the warnings of `weir check`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::load_str;
use crate::config::model::{Algorithm, BackendEntry, FileConfig};
use crate::config::shadow as validate;
use crate::config::ConfigError;

/// The only environment the tests see.
fn env(name: &str) -> Option<String> {
    match name {
        "THREADS" => Some("3".into()),
        "WORD" => Some("lots".into()),
        "BACKEND" => Some("127.0.0.1:9000".into()),
        _ => None,
    }
}

fn render(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {}:{} {} | {}", e.pos.line, e.pos.col, e.path, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The errors `yaml` yields; panics if it loads.
#[track_caller]
fn errors(yaml: &str) -> Vec<ConfigError> {
    match load_str(yaml, "t.yaml", &env) {
        Ok(_) => panic!("expected errors, but this loaded:\n{yaml}"),
        Err(e) => {
            assert_eq!(e.file, "t.yaml");
            assert!(!e.errors.is_empty(), "ConfigErrors without errors");
            e.errors
        }
    }
}

/// The config `yaml` yields; panics with the errors if it does not load.
#[track_caller]
fn load_ok(yaml: &str) -> FileConfig {
    load_str(yaml, "t.yaml", &env).unwrap_or_else(|e| panic!("expected to load, got:\n{e}"))
}

/// One expected error: the file must yield exactly this one.
struct Case {
    name: &'static str,
    yaml: &'static str,
    line: usize,
    col: usize,
    path: &'static str,
    /// Every one of these must appear in the message.
    message: &'static [&'static str],
}

/// Checks every case and reports all that fail, each by name.
#[track_caller]
fn check(cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let errs = match load_str(c.yaml, "t.yaml", &env) {
            Ok(_) => {
                failures.push(format!("[{}] loaded without errors", c.name));
                continue;
            }
            Err(e) => e.errors,
        };
        if errs.len() != 1 {
            failures.push(format!(
                "[{}] expected 1 error, got {}:\n{}",
                c.name,
                errs.len(),
                render(&errs)
            ));
            continue;
        }
        let e = &errs[0];
        if (e.pos.line, e.pos.col, e.path.as_str()) != (c.line, c.col, c.path) {
            failures.push(format!(
                "[{}] expected {}:{} {}, got {}:{} {} ({})",
                c.name, c.line, c.col, c.path, e.pos.line, e.pos.col, e.path, e.message
            ));
        }
        for part in c.message {
            if !e.message.contains(part) {
                failures.push(format!(
                    "[{}] message {:?} lacks {:?}",
                    c.name, e.message, part
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn yaml_syntax_errors_use_the_parser_position() {
    check(&[
        Case {
            name: "bad indentation",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
   routes: []
",
            line: 4,
            col: 4,
            path: "",
            message: &["invalid YAML: ", "did not find expected '-' indicator"],
        },
        Case {
            name: "unclosed flow sequence",
            yaml: "\
upstreams:
  api:
    backends: [127.0.0.1:9000
routes: []
",
            line: 4,
            col: 7,
            path: "",
            message: &["invalid YAML: ", "did not find expected ',' or ']'"],
        },
    ]);
}

#[test]
fn unknown_top_level_section() {
    check(&[
        Case {
            name: "close to a section",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routs: []
",
            line: 4,
            col: 1,
            path: "routs",
            message: &[
                "unknown section (did you mean \"routes\"?)",
                "sections are server, log",
            ],
        },
        Case {
            name: "far from every section",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
metrics:
  port: 9100
",
            line: 4,
            col: 1,
            path: "metrics",
            message: &["unknown section; sections are"],
        },
    ]);
}

#[test]
fn unknown_keys_point_at_the_key() {
    check(&[
        Case {
            name: "in server",
            yaml: "\
server:
  thread: 4
listeners:
  - name: web
    address: 127.0.0.1:8080
",
            line: 2,
            col: 3,
            path: "server.thread",
            message: &["unknown key (did you mean \"threads\"?)", "expected one of"],
        },
        Case {
            name: "in a route",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - name: r
    upstrem: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 6,
            col: 5,
            path: "routes[0].upstrem",
            message: &[
                "unknown key (did you mean \"upstream\"?)",
                "expected one of name,",
            ],
        },
        Case {
            name: "in a route, nothing close",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
    colour: red
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 6,
            col: 5,
            path: "routes[0].colour",
            message: &["unknown key; expected one of name, listeners, match"],
        },
        Case {
            name: "in a route's match",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - match:
      host: a.example.com
      pathprefix: /api
    upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 7,
            col: 7,
            path: "routes[0].match.pathprefix",
            message: &[
                "unknown key (did you mean \"path_prefix\"?)",
                "expected one of host, path_prefix, ignore_case, methods, headers",
            ],
        },
        Case {
            name: "in an upstream",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    algoritm: random
    backends: [127.0.0.1:9000]
",
            line: 8,
            col: 5,
            path: "upstreams.api.algoritm",
            message: &["unknown key (did you mean \"algorithm\"?)"],
        },
        Case {
            name: "in an upstream whose name ends with the key",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: myhost
upstreams:
  myhost:
    backends: [127.0.0.1:9000]
    host: api.internal
",
            line: 9,
            col: 5,
            path: "upstreams.myhost.host",
            message: &["unknown key", "host_header"],
        },
        Case {
            name: "in a backend's long form",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends:
      - address: 127.0.0.1:9000
        wieght: 2
",
            line: 10,
            col: 9,
            path: "upstreams.api.backends[0].wieght",
            message: &[
                "unknown key (did you mean \"weight\"?)",
                "expected one of address, weight, name, enabled",
            ],
        },
        Case {
            name: "in a health check",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
    health_check:
      type: http
      intervall: 5s
",
            line: 11,
            col: 7,
            path: "upstreams.api.health_check.intervall",
            message: &["unknown key (did you mean \"interval\"?)"],
        },
    ]);
}

#[test]
fn wrong_types_point_at_the_value() {
    check(&[
        Case {
            name: "retries as text",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
    retries: \"many\"
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 6,
            col: 14,
            path: "routes[0].retries",
            message: &["invalid type: string \"many\", expected u32"],
        },
        Case {
            name: "negative threads",
            yaml: "\
server:
  threads: -1
listeners:
  - name: web
    address: 127.0.0.1:8080
",
            line: 2,
            col: 12,
            path: "server.threads",
            message: &["invalid value: integer \"-1\", expected usize"],
        },
        Case {
            name: "weight as text",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends:
      - address: 127.0.0.1:9000
        weight: x
",
            line: 10,
            col: 17,
            path: "upstreams.api.backends[0].weight",
            message: &["invalid type: string \"x\", expected u32"],
        },
        Case {
            name: "backend neither text nor mapping",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: [9000]
",
            line: 8,
            col: 16,
            path: "upstreams.api.backends[0]",
            message: &["invalid type: integer \"9000\"", "expected a backend"],
        },
        Case {
            name: "listeners not a list",
            yaml: "\
listeners: web
",
            line: 1,
            col: 12,
            path: "listeners",
            message: &["expected a list"],
        },
        Case {
            name: "unknown algorithm",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    algorithm: fastest
    backends: [127.0.0.1:9000]
",
            line: 8,
            col: 16,
            path: "upstreams.api.algorithm",
            message: &["unknown variant \"fastest\"", "\"round_robin\""],
        },
    ]);
}

#[test]
fn bad_durations() {
    check(&[
        Case {
            name: "interval with an unknown unit",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
    health_check:
      type: tcp
      interval: 5 fortnights
",
            line: 11,
            col: 17,
            path: "upstreams.api.health_check.interval",
            message: &["invalid duration \"5 fortnights\"", "write e.g. \"250ms\""],
        },
        Case {
            name: "timeout not a duration",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
    health_check:
      type: tcp
      timeout: abc
",
            line: 11,
            col: 16,
            path: "upstreams.api.health_check.timeout",
            message: &["invalid duration \"abc\""],
        },
        Case {
            name: "route timeout not a duration",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
    timeouts:
      read: soon
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 7,
            col: 13,
            path: "routes[0].timeouts.read",
            message: &["invalid duration \"soon\""],
        },
    ]);
}

#[test]
fn duplicate_mapping_key_is_reported_at_the_repeat() {
    check(&[
        Case {
            name: "upstream written twice",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
  api:
    backends: [127.0.0.1:9001]
",
            line: 9,
            col: 3,
            path: "upstreams.api",
            message: &["key is written twice"],
        },
        Case {
            name: "route key written twice",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
    retries: 1
    upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 7,
            col: 5,
            path: "routes[0].upstream",
            message: &["key is written twice"],
        },
    ]);
}

#[test]
fn duplicate_names_and_addresses() {
    check(&[
        Case {
            name: "listener name",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
  - name: web
    address: 127.0.0.1:8081
",
            line: 4,
            col: 11,
            path: "listeners[1].name",
            message: &["duplicate listener name \"web\""],
        },
        Case {
            name: "listener address",
            yaml: "\
listeners:
  - name: a
    address: 127.0.0.1:8080
  - name: b
    address: 127.0.0.1:8080
",
            line: 5,
            col: 14,
            path: "listeners[1].address",
            message: &["127.0.0.1:8080 is used by another listener"],
        },
        Case {
            name: "route name",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - name: r
    upstream: api
  - name: r
    upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 7,
            col: 11,
            path: "routes[1].name",
            message: &["duplicate route name \"r\""],
        },
    ]);
}

#[test]
fn dangling_references() {
    check(&[
        Case {
            name: "route upstream misspelt",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api-pol
upstreams:
  api-pool:
    backends: [127.0.0.1:9000]
",
            line: 5,
            col: 15,
            path: "routes[0].upstream",
            message: &["unknown upstream \"api-pol\" (did you mean \"api-pool\"?)"],
        },
        Case {
            name: "route listener unknown",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - listeners: [web, wbe]
    upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 5,
            col: 22,
            path: "routes[0].listeners[1]",
            message: &["unknown listener \"wbe\" (did you mean \"web\"?)"],
        },
    ]);
}

#[test]
fn backend_rules() {
    check(&[
        Case {
            name: "weight 0",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends:
      - address: 127.0.0.1:9000
        weight: 0
",
            line: 10,
            col: 17,
            path: "upstreams.api.backends[0].weight",
            message: &["must be at least 1", "enabled: false"],
        },
        Case {
            name: "empty backend list",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: []
",
            line: 8,
            col: 15,
            path: "upstreams.api.backends",
            message: &["needs at least one backend"],
        },
        Case {
            name: "no backends key: at the upstream's first key",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    algorithm: random
",
            line: 8,
            col: 5,
            path: "upstreams.api.backends",
            message: &["needs at least one backend"],
        },
        Case {
            name: "backend listed twice (short then long form)",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends:
      - 127.0.0.1:9000
      - address: 127.0.0.1:9000
        weight: 2
",
            line: 10,
            col: 9,
            path: "upstreams.api.backends[1]",
            message: &["backend 127.0.0.1:9000 is listed twice"],
        },
        Case {
            name: "address without port",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends:
      - localhost
",
            line: 9,
            col: 9,
            path: "upstreams.api.backends[0]",
            message: &["invalid address \"localhost\"", "ip:port or host:port"],
        },
        Case {
            name: "invalid listener address",
            yaml: "\
listeners:
  - name: web
    address: localhost:8080
",
            line: 3,
            col: 14,
            path: "listeners[0].address",
            message: &["invalid address \"localhost:8080\"", "write ip:port"],
        },
    ]);
}

#[test]
fn hash_key_rules() {
    check(&[
        Case {
            name: "hash_key on the default round_robin",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    hash_key: client_ip
    backends: [127.0.0.1:9000]
",
            line: 8,
            col: 15,
            path: "upstreams.api.hash_key",
            message: &["algorithm round_robin ignores hash_key", "consistent_hash"],
        },
        Case {
            name: "hash_key on random",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    algorithm: random
    hash_key: client_ip
    backends: [127.0.0.1:9000]
",
            line: 9,
            col: 15,
            path: "upstreams.api.hash_key",
            message: &["algorithm random ignores hash_key"],
        },
        Case {
            name: "invalid hash_key on consistent_hash",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    algorithm: consistent_hash
    hash_key: body
    backends: [127.0.0.1:9000]
",
            line: 9,
            col: 15,
            path: "upstreams.api.hash_key",
            message: &[
                "invalid hash_key \"body\"",
                "client_ip, header:NAME, cookie:NAME or path",
            ],
        },
    ]);
}

#[test]
fn health_check_rules() {
    check(&[
        Case {
            name: "timeout equal to interval",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
    health_check:
      type: http
      interval: 2s
      timeout: 2s
",
            line: 12,
            col: 16,
            path: "upstreams.api.health_check.timeout",
            message: &["below interval"],
        },
        Case {
            name: "default timeout above a short interval: at the check",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
    health_check:
      type: tcp
      interval: 1s
",
            line: 10,
            col: 7,
            path: "upstreams.api.health_check.timeout",
            message: &["below interval"],
        },
        Case {
            name: "threshold 0",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
    health_check:
      type: tcp
      unhealthy_threshold: 0
",
            line: 11,
            col: 28,
            path: "upstreams.api.health_check.unhealthy_threshold",
            message: &["must be at least 1"],
        },
        Case {
            name: "path on a tcp check: at the key",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
    health_check:
      type: tcp
      path: /healthz
",
            line: 11,
            col: 7,
            path: "upstreams.api.health_check.path",
            message: &["only for type: http"],
        },
    ]);
}

#[test]
fn route_rules() {
    check(&[
        Case {
            name: "upstream and respond",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - name: both
    upstream: api
    respond:
      status: 204
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 5,
            col: 5,
            path: "routes[0]",
            message: &["a route has exactly one action: upstream, redirect or respond"],
        },
        Case {
            name: "neither upstream nor respond",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - name: nothing
    match:
      path_prefix: /x
",
            line: 5,
            col: 5,
            path: "routes[0]",
            message: &["a route needs an action: upstream, redirect or respond"],
        },
        Case {
            name: "strip_prefix without path_prefix",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
    strip_prefix: true
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 6,
            col: 19,
            path: "routes[0].strip_prefix",
            message: &["needs match.path_prefix"],
        },
        Case {
            name: "strip_prefix with rewrite",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - match:
      path_prefix: /api
    upstream: api
    strip_prefix: true
    rewrite:
      from: ^/api/(.*)$
      to: /$1
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 8,
            col: 19,
            path: "routes[0].strip_prefix",
            message: &["cannot be combined with rewrite"],
        },
        Case {
            name: "bad rewrite regex",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
    rewrite:
      from: \"^/api/(.*$\"
      to: /$1
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 7,
            col: 13,
            path: "routes[0].rewrite.from",
            message: &["invalid regex"],
        },
        Case {
            name: "path_prefix without leading slash",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - match:
      path_prefix: api
    upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 6,
            col: 20,
            path: "routes[0].match.path_prefix",
            message: &["must start with \"/\""],
        },
        Case {
            name: "unknown method",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - match:
      methods: [GET, GTE]
    upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 6,
            col: 22,
            path: "routes[0].match.methods[1]",
            message: &["unknown method \"GTE\" (did you mean \"GET\"?)"],
        },
    ]);
}

#[test]
fn an_https_listener_needs_certificates() {
    check(&[Case {
        name: "protocol https without tls",
        yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8443
    protocol: https
routes:
  - respond: { status: 200 }
",
        line: 2,
        col: 5,
        path: "listeners[0]",
        message: &["an https listener needs tls"],
    }]);
}

#[test]
fn unset_variables_are_errors_at_the_value() {
    check(&[
        Case {
            name: "inside a string",
            yaml: "\
server:
  pid_file: ${PID_DIR}/weir.pid
listeners:
  - name: web
    address: 127.0.0.1:8080
",
            line: 2,
            col: 13,
            path: "server.pid_file",
            message: &[
                "environment variable PID_DIR is not set",
                "${PID_DIR:-default}",
            ],
        },
        Case {
            name: "inside a list item",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000, \"127.0.0.1:${SECOND_PORT}\"]
",
            line: 8,
            col: 32,
            path: "upstreams.api.backends[1]",
            message: &["environment variable SECOND_PORT is not set"],
        },
        Case {
            name: "whole variable of the wrong type",
            yaml: "\
server:
  threads: ${WORD}
listeners:
  - name: web
    address: 127.0.0.1:8080
",
            line: 2,
            col: 12,
            path: "server.threads",
            message: &["invalid type: string \"lots\", expected usize"],
        },
    ]);
}

#[test]
fn variables_defaults_and_types() {
    let cfg = load_ok(
        "\
server:
  threads: ${THREADS}
  pid_file: ${PID_DIR:-/run}/weir.pid
  daemon: ${DAEMON:-false}
listeners:
  - name: web
    address: ${LISTEN:-127.0.0.1:8080}
routes:
  - upstream: api
    rewrite:
      from: ^/v1/(.*)$
      to: /$1/$$
upstreams:
  api:
    backends: [\"${BACKEND}\"]
",
    );
    assert_eq!(cfg.server.threads, Some(3));
    assert_eq!(cfg.server.pid_file.as_deref(), Some("/run/weir.pid"));
    assert_eq!(cfg.server.daemon, Some(false));
    assert_eq!(cfg.listeners[0].address, "127.0.0.1:8080");
    assert_eq!(
        cfg.routes[0].rewrite.as_ref().map(|r| r.to.as_str()),
        Some("/$1/$")
    );
    assert_eq!(
        cfg.upstreams["api"].backends,
        vec![BackendEntry::Short("127.0.0.1:9000".into())]
    );
}

#[test]
fn every_validation_error_is_reported_at_once_in_file_order() {
    // validate() finds these in the order listeners, routes, upstreams.
    let errs = errors(
        "\
upstreams:
  api:
    backends:
      - address: 127.0.0.1:9000
        weight: 0
routes:
  - name: a
    upstream: nope
  - name: b
    match:
      path_prefix: api
    upstream: api
listeners:
  - name: web
    address: localhost:80
",
    );
    let got: Vec<(usize, usize, &str)> = errs
        .iter()
        .map(|e| (e.pos.line, e.pos.col, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (5, 17, "upstreams.api.backends[0].weight"),
            (8, 15, "routes[0].upstream"),
            (11, 20, "routes[1].match.path_prefix"),
            (15, 14, "listeners[0].address"),
        ],
        "\n{}",
        render(&errs)
    );
}

#[test]
fn every_type_error_is_reported_at_once_in_file_order() {
    let errs = errors(
        "\
listeners:
  - name: web
    address: 127.0.0.1:8080
    port: 80
routes:
  - upstrem: api
  - upstream: api
    retries: lots
upstreams:
  api:
    backends: [127.0.0.1:9000]
    algorithm: fastest
extra: 1
",
    );
    let got: Vec<(usize, usize, &str)> = errs
        .iter()
        .map(|e| (e.pos.line, e.pos.col, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (4, 5, "listeners[0].port"),
            (6, 5, "routes[0].upstrem"),
            (8, 14, "routes[1].retries"),
            (12, 16, "upstreams.api.algorithm"),
            (13, 1, "extra"),
        ],
        "\n{}",
        render(&errs)
    );
}

#[test]
fn missing_sections_are_reported_at_the_top_of_the_file() {
    check(&[
        Case {
            name: "no listeners",
            yaml: "\
server:
  threads: 2
",
            line: 1,
            col: 1,
            path: "listeners",
            message: &["at least one listener is needed"],
        },
        Case {
            name: "empty file",
            yaml: "",
            line: 1,
            col: 1,
            path: "listeners",
            message: &["at least one listener is needed"],
        },
    ]);
}

#[test]
fn display_is_file_line_col_path_message() {
    let yaml = "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api-pol
upstreams:
  api-pool:
    backends:
      - {address: 127.0.0.1:9000, weight: 0}
";
    let err = load_str(yaml, "t.yaml", &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "t.yaml:5:15: routes[0].upstream: unknown upstream \"api-pol\" (did you mean \"api-pool\"?)\n\
         t.yaml:9:43: upstreams.api-pool.backends[0].weight: must be at least 1 (use enabled: false to drain a backend)"
    );
    // A whole-file error has no path part.
    let err = load_str("a: [1\n", "t.yaml", &env).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("t.yaml:2:1: invalid YAML: "), "{text}");
}

const FULL: &str = "\
server:
  threads: ${THREADS}
  grace_period_seconds: 3
log:
  level: debug
  format: json
trusted_proxies: [10.0.0.0/8, 127.0.0.1]
listeners:
  - name: web
    address: 127.0.0.1:8080
  - name: admin
    address: \"[::1]:9090\"
routes:
  - name: health
    listeners: [admin]
    respond:
      status: 200
      body: ok
  - name: api
    match:
      host: api.example.com
      path_prefix: /api
      methods: [GET, POST]
      headers:
        x-tenant: acme
    upstream: rr
    strip_prefix: true
    retries: 2
    retry_on: [connect_failure, timeout]
    timeouts:
      connect: 250ms
      read: 30s
    request_headers:
      set: {x-forwarded-proto: http}
      remove: [x-debug]
    response_headers:
      add: {x-served-by: weir}
  - name: legacy
    match:
      path_prefix: /old
    rewrite:
      from: ^/old/(.*)$
      to: /new/$1
    upstream: weighted
  - name: static
    match: {host: \"*.static.example.com\"}
    upstream: random
  - name: sticky
    match: {path_prefix: /cart}
    upstream: hash
  - name: sockets
    match: {path_prefix: /ws}
    upstream: least
  - name: fallback
    upstream: iphash
upstreams:
  rr:
    algorithm: round_robin
    backends: [127.0.0.1:9001, 127.0.0.1:9002]
    host_header: api.internal
    health_check:
      type: http
      path: /healthz
      interval: 5s
      timeout: 1s
      expect_status: [200, 204]
      healthy_threshold: 2
      unhealthy_threshold: 3
  weighted:
    algorithm: weighted
    backends:
      - {address: 127.0.0.1:9003, weight: 3, name: big}
      - address: 127.0.0.1:9004
        weight: 1
        enabled: false
  random:
    algorithm: random
    backends: [127.0.0.1:9005]
    health_check: {type: tcp, interval: 2s, timeout: 500ms, port: 9999}
  hash:
    algorithm: consistent_hash
    hash_key: cookie:session
    backends: [127.0.0.1:9006, 127.0.0.1:9007]
  least:
    algorithm: least_connections
    backends: [127.0.0.1:9008]
    timeouts: {connect: 1s, idle: 90s}
  iphash:
    algorithm: ip_hash
    backends: [127.0.0.1:9009]
";

#[test]
fn a_full_valid_config_loads() {
    let cfg = load_ok(FULL);
    assert_eq!(cfg.server.threads, Some(3));
    assert_eq!(cfg.listeners.len(), 2);
    assert_eq!(cfg.routes.len(), 7);
    let algorithms: Vec<(&str, Algorithm)> = cfg
        .upstreams
        .iter()
        .map(|(n, u)| (n.as_str(), u.algorithm))
        .collect();
    assert_eq!(
        algorithms,
        vec![
            ("hash", Algorithm::ConsistentHash),
            ("iphash", Algorithm::IpHash),
            ("least", Algorithm::LeastConnections),
            ("random", Algorithm::Random),
            ("rr", Algorithm::RoundRobin),
            ("weighted", Algorithm::Weighted),
        ]
    );
    assert_eq!(
        cfg.upstreams["rr"].backends[1],
        BackendEntry::Short("127.0.0.1:9002".into())
    );
    let drained = cfg.upstreams["weighted"].backends[1].long();
    assert_eq!((drained.weight, drained.enabled), (1, false));
    let big = cfg.upstreams["weighted"].backends[0].long();
    assert_eq!((big.weight, big.name.as_deref()), (3, Some("big")));
    assert_eq!(
        cfg.routes[2].rewrite.as_ref().map(|r| r.to.as_str()),
        Some("/new/$1")
    );
    assert!(
        validate::warnings(&cfg).is_empty(),
        "{:?}",
        validate::warnings(&cfg)
    );
}

/// The warnings of a config that must load.
fn warnings(yaml: &str) -> Vec<(String, String)> {
    validate::warnings(&load_ok(yaml))
        .into_iter()
        .map(|i| (i.path, i.message))
        .collect()
}

#[test]
fn a_route_behind_a_catch_all_is_warned_naming_both() {
    let w = warnings(
        "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - name: everything
    upstream: api
  - name: api-only
    match: {path_prefix: /api}
    upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, "routes[1]");
    assert!(w[0].1.contains("route api-only can never match"), "{w:?}");
    assert!(w[0].1.contains("route everything (routes[0])"), "{w:?}");
}

#[test]
fn a_route_behind_a_wider_prefix_is_warned() {
    let w = warnings(
        "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - match: {path_prefix: /api}
    upstream: api
  - match: {path_prefix: /api/v1}
    upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, "routes[1]");
    assert!(
        w[0].1
            .contains("route route1 can never match: route route0"),
        "{w:?}"
    );
}

#[test]
fn routes_that_can_still_match_are_not_warned() {
    for (name, routes) in [
        (
            "different hosts",
            "  - match: {host: a.example.com}\n    upstream: api\n  - match: {host: b.example.com}\n    upstream: api\n",
        ),
        (
            "narrower earlier prefix",
            "  - match: {path_prefix: /api/v1}\n    upstream: api\n  - match: {path_prefix: /api}\n    upstream: api\n",
        ),
        (
            "prefix is not a path segment",
            "  - match: {path_prefix: /api}\n    upstream: api\n  - match: {path_prefix: /apix}\n    upstream: api\n",
        ),
        (
            "earlier route limited to methods",
            "  - match: {methods: [GET]}\n    upstream: api\n  - match: {methods: [GET, POST]}\n    upstream: api\n",
        ),
        (
            "earlier catch-all on another listener",
            "  - listeners: [admin]\n    upstream: api\n  - upstream: api\n",
        ),
    ] {
        let yaml = format!(
            "\
listeners:
  - name: web
    address: 127.0.0.1:8080
  - name: admin
    address: 127.0.0.1:8081
routes:
{routes}upstreams:
  api:
    backends: [127.0.0.1:9000]
"
        );
        let w = warnings(&yaml);
        assert!(w.is_empty(), "[{name}] unexpected warnings: {w:?}");
    }
}

#[test]
fn an_unused_upstream_is_warned() {
    let w = warnings(
        "\
listeners:
  - name: web
    address: 127.0.0.1:8080
routes:
  - upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
  spare:
    backends: [127.0.0.1:9001]
",
    );
    assert_eq!(
        w,
        vec![(
            "upstreams.spare".to_string(),
            "upstream \"spare\" is not used by any route".to_string()
        )]
    );
}

#[test]
fn a_connection_belongs_to_its_listener_or_to_none() {
    let yaml = "\
listeners:
  - { name: a, address: \"[::1]:8080\" }
  - { name: b, address: \"0.0.0.0:8080\" }
  - { name: c, address: \"127.0.0.2:9090\" }
routes:
  - respond: { status: 200 }
";
    let cfg = load_ok(yaml);
    let snap = super::compile(&cfg, None).unwrap();
    let at = |s: &str| snap.listener_index(Some(s.parse().unwrap()));
    assert_eq!(at("[::1]:8080"), Some(0));
    assert_eq!(at("127.0.0.1:8080"), Some(1));
    assert_eq!(at("127.0.0.2:9090"), Some(2));
    // No wildcard of that family, no exact address: fail closed.
    assert_eq!(at("[::2]:8080"), None);
    assert_eq!(at("127.0.0.1:9090"), None);
    assert_eq!(snap.listener_index(None), None);
}

#[test]
fn routes_apply_to_http_listeners_and_tcp_listeners_to_their_upstream() {
    let yaml = "\
listeners:
  - { name: db, address: 127.0.0.1:5433, protocol: tcp, upstream: pg }
  - { name: web, address: 127.0.0.1:8080 }
routes:
  - respond: { status: 200 }
upstreams:
  pg: { backends: [127.0.0.1:5432] }
";
    let cfg = load_ok(yaml);
    let snap = super::compile(&cfg, None).unwrap();
    let get = http::Method::GET;
    let h = http::HeaderMap::new();
    let found = |l| {
        matches!(
            snap.router.find(l, "x", "/", &get, &h),
            crate::router::Match::Found(0)
        )
    };
    assert!(
        !found(0),
        "a route without listeners never applies to a tcp listener"
    );
    assert!(found(1));
    assert_eq!(snap.tcp_group(0).map(|g| &*g.name), Some("pg"));
    assert!(snap.tcp_group(1).is_none());
}

/// A config with one route carrying `policy` (indented as route keys).
macro_rules! route_with {
    ($policy:literal) => {
        concat!(
            "listeners:\n  - { name: web, address: 127.0.0.1:8080 }\nroutes:\n  - upstream: api\n",
            $policy,
            "upstreams:\n  api: { backends: [127.0.0.1:9000] }\n"
        )
    };
}

#[test]
fn policy_rules() {
    check(&[
        Case {
            name: "rate limit of zero",
            yaml: route_with!("    rate_limit: { requests_per_second: 0 }\n"),
            line: 5,
            col: 40,
            path: "routes[0].rate_limit.requests_per_second",
            message: &["at least 1"],
        },
        Case {
            name: "rate limit key",
            yaml: route_with!("    rate_limit: { requests_per_second: 5, key: cookie:x }\n"),
            line: 5,
            col: 48,
            path: "routes[0].rate_limit.key",
            message: &["client_ip or header:NAME"],
        },
        Case {
            name: "unknown rate limit key",
            yaml: route_with!("    rate_limit: { requests_per_second: 5, burst: 9 }\n"),
            line: 5,
            col: 43,
            path: "routes[0].rate_limit.burst",
            message: &["unknown key"],
        },
        Case {
            name: "redis url",
            yaml: route_with!(
                "    rate_limit: { requests_per_second: 5, shared: { redis: \"http://x\" } }\n"
            ),
            line: 5,
            col: 60,
            path: "routes[0].rate_limit.shared.redis",
            message: &["invalid Redis URL"],
        },
        Case {
            name: "empty api key",
            yaml: route_with!("    auth: { api_keys: [\"\"] }\n"),
            line: 5,
            col: 24,
            path: "routes[0].auth.api_keys[0]",
            message: &["must not be empty"],
        },
        Case {
            name: "not a bcrypt hash",
            yaml: route_with!("    auth: { basic: { users: { alice: secret } } }\n"),
            line: 5,
            col: 38,
            path: "routes[0].auth.basic.users.alice",
            message: &["not a bcrypt hash"],
        },
        Case {
            name: "auth without a method",
            yaml: route_with!("    auth: { hide_credentials: true }\n"),
            line: 5,
            col: 11,
            path: "routes[0].auth",
            message: &["needs api_keys or basic"],
        },
        Case {
            name: "bad CIDR",
            yaml: route_with!("    deny_ips: [10.0.0.0/8, 10.0.0.0/99]\n"),
            line: 5,
            col: 28,
            path: "routes[0].deny_ips[1]",
            message: &["invalid address or CIDR"],
        },
        Case {
            name: "bad size",
            yaml: route_with!("    max_body_size: 10QB\n"),
            line: 5,
            col: 20,
            path: "routes[0].max_body_size",
            message: &["invalid size"],
        },
        Case {
            name: "redirect status",
            yaml: "listeners:\n  - { name: web, address: 127.0.0.1:8080 }\nroutes:\n  - redirect: { to: /x, status: 200 }\n",
            line: 4,
            col: 33,
            path: "routes[0].redirect.status",
            message: &["301, 302, 303, 307 or 308"],
        },
        Case {
            name: "redirect variable",
            yaml: "listeners:\n  - { name: web, address: 127.0.0.1:8080 }\nroutes:\n  - redirect: { to: \"/$uri\" }\n",
            line: 4,
            col: 21,
            path: "routes[0].redirect.to",
            message: &["unknown variable $uri"],
        },
        Case {
            name: "two actions",
            yaml: "listeners:\n  - { name: web, address: 127.0.0.1:8080 }\nroutes:\n  - { respond: { status: 200 }, redirect: { to: /x } }\n",
            line: 4,
            col: 5,
            path: "routes[0]",
            message: &["exactly one action"],
        },
        Case {
            name: "circuit breaker of zero",
            yaml: "listeners:\n  - { name: web, address: 127.0.0.1:8080 }\nroutes:\n  - upstream: api\nupstreams:\n  api:\n    backends: [127.0.0.1:9000]\n    circuit_breaker: { consecutive_failures: 0 }\n",
            line: 8,
            col: 46,
            path: "upstreams.api.circuit_breaker.consecutive_failures",
            message: &["at least 1"],
        },
        Case {
            name: "sticky cookie name",
            yaml: "listeners:\n  - { name: web, address: 127.0.0.1:8080 }\nroutes:\n  - upstream: api\nupstreams:\n  api:\n    backends: [127.0.0.1:9000]\n    sticky: { cookie: \"a b\" }\n",
            line: 8,
            col: 23,
            path: "upstreams.api.sticky.cookie",
            message: &["invalid cookie name"],
        },
        Case {
            name: "respond 1xx",
            yaml: "listeners:\n  - { name: web, address: 127.0.0.1:8080 }\nroutes:\n  - respond: { status: 101 }\n",
            line: 4,
            col: 24,
            path: "routes[0].respond.status",
            message: &["200..=599"],
        },
    ]);
}

#[test]
fn header_rules_cannot_set_framing_headers() {
    check(&[Case {
        name: "content-length",
        yaml: "listeners:\n  - { name: web, address: 127.0.0.1:8080 }\nroutes:\n  - respond: { status: 200 }\n    response_headers: { set: { content-length: \"5\" } }\n",
        line: 5,
        col: 32,
        path: "routes[0].response_headers.set.content-length",
        message: &["cannot be set by a header rule"],
    }]);
    for name in ["transfer-encoding", "connection", "host"] {
        let yaml = format!(
            "listeners:\n  - {{ name: web, address: 127.0.0.1:8080 }}\nroutes:\n  - respond: {{ status: 200 }}\n    request_headers: {{ add: {{ {name}: x }} }}\n"
        );
        let e = errors(&yaml);
        assert_eq!(e.len(), 1, "{name}");
        assert!(e[0].message.contains("cannot be set"), "{name}");
    }
}

#[test]
fn short_admin_token_is_a_warning() {
    let cfg = load_ok(
        "admin: { listen: 127.0.0.1:9901, token: short }\nlisteners:\n  - { name: web, address: 127.0.0.1:8080 }\nroutes:\n  - respond: { status: 200 }\n",
    );
    assert!(validate::warnings(&cfg)
        .iter()
        .any(|w| w.path == "admin.token" && w.message.contains("16 characters")));
}

#[test]
fn http2_belongs_to_http_listeners_and_a_sticky_secret_may_not_be_empty() {
    check(&[
        Case {
            name: "http2 on a tcp listener",
            yaml: "\
listeners:
  - name: pg
    address: 127.0.0.1:5433
    protocol: tcp
    upstream: api
    http2: true
upstreams:
  api:
    backends: [127.0.0.1:9000]
",
            line: 6,
            col: 5,
            path: "listeners[0].http2",
            message: &["http2 is for protocol: http listeners"],
        },
        Case {
            name: "empty sticky secret",
            yaml: "\
listeners:
  - name: web
    address: 127.0.0.1:8080
    http2: true
routes:
  - upstream: api
upstreams:
  api:
    backends: [127.0.0.1:9000]
    sticky: { cookie: sid, secret: \"\" }
",
            line: 10,
            col: 36,
            path: "upstreams.api.sticky.secret",
            message: &["empty"],
        },
    ]);
}
