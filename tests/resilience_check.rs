//! `weir check` on the resilience keys: a file using all of them passes;
//! each mistake is refused (exit 1) naming its key path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn check(upstream_extra: &str) -> (Option<i32>, String) {
    let text = format!(
        "listeners: [{{ name: web, address: \"127.0.0.1:1\" }}]\nroutes: [{{ upstream: pool }}]\nupstreams:\n  pool:\n    backends: [\"127.0.0.1:2\", \"127.0.0.1:3\"]\n{upstream_extra}"
    );
    let dir = TestDir::create();
    let path = dir.write("weir.yaml", &text);
    let out = run_weir(&["check", "-c", path.to_str().unwrap()]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_resilience_key_together_passes() {
    let (code, err) = check(
        "    algorithm: peak_ewma
    circuit_breaker:
      consecutive_failures: 5
      failure_rate: { threshold: 50%, min_requests: 20, window: 10s }
      open_for: 10s
      max_open_for: 5m
      max_open_percent: 50%
    panic_threshold: 25%
    slow_start: 30s
    retry_budget: { ratio: 20%, min_retries: 3 }
",
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = check("    algorithm: least_request\n");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn each_resilience_mistake_names_its_key() {
    let cases = [
        (
            "    circuit_breaker: { open_for: 10s, max_open_for: 5s }\n",
            "upstreams.pool.circuit_breaker.max_open_for: must be at least open_for",
        ),
        (
            "    circuit_breaker: { failure_rate: { threshold: 150% } }\n",
            "upstreams.pool.circuit_breaker.failure_rate.threshold",
        ),
        (
            "    circuit_breaker: { failure_rate: { threshold: 10%, min_requests: 0 } }\n",
            "upstreams.pool.circuit_breaker.failure_rate.min_requests: must be at least 1",
        ),
        (
            "    circuit_breaker: { max_open_percent: half }\n",
            "upstreams.pool.circuit_breaker.max_open_percent",
        ),
        (
            "    algorithm: consistent_hash\n    slow_start: 30s\n",
            "upstreams.pool.slow_start: does not apply to consistent_hash",
        ),
        (
            "    retry_budget: { ratio: 0%, min_retries: 0 }\n",
            "upstreams.pool.retry_budget.ratio",
        ),
        (
            "    retry_budget: { ratio: 20%, burst: 3 }\n",
            "upstreams.pool.retry_budget",
        ),
        (
            "    panic_threshold: 101%\n",
            "upstreams.pool.panic_threshold",
        ),
        ("    algorithm: p2c\n", "upstreams.pool.algorithm"),
    ];
    for (extra, want) in cases {
        let (code, err) = check(extra);
        assert_eq!(code, Some(1), "{extra}: {err}");
        assert!(err.contains(want), "{extra}: want {want:?} in:\n{err}");
    }
}
