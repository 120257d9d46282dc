#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;

fn env(n: &str) -> Option<String> {
    match n {
        "THREADS" => Some("3".into()),
        "HOST" => Some("api.example.com".into()),
        _ => None,
    }
}

fn show(yaml: &str) {
    match load_str(yaml, "t.yaml", &env) {
        Ok(_) => println!("OK"),
        Err(e) => println!("{e}"),
    }
}

const BASE: &str = "listeners:\n  - name: web\n    address: 127.0.0.1:8080\nroutes:\n  - upstream: api\nupstreams:\n  api:\n    backends: [127.0.0.1:9000]\n";

#[test]
fn probe() {
    let cases = [
        "a: [1, 2\nb: 3\n",
        "a:\n  b: 1\n c: 2\n",
        "listners: []\n",
        "upstreams:\n  api:\n    backends:\n      - address: 127.0.0.1:9000\n        wieght: 2\n",
        "upstreams:\n  api:\n    backends:\n      - address: 127.0.0.1:9000\n        weight: x\n",
        "upstreams:\n  api:\n    backends: [127.0.0.1:9000]\n  api:\n    backends: [127.0.0.1:9001]\n",
        "upstreams:\n  myhost:\n    host: x\n    backends: [127.0.0.1:9000]\n",
        "routes:\n  - upstrem: api\n",
        "routes:\n  - match:\n      pathprefix: /a\n    upstream: api\n",
        "upstreams:\n  api:\n    algoritm: random\n",
        "server:\n  threads: -1\n",
        "server:\n  threads: ${THREADS}\n",
        "routes:\n  - retries: \"many\"\n",
        "upstreams:\n  api:\n    backends: [127.0.0.1:9000]\n    health_check:\n      type: tcp\n      interval: 5 seconds\n",
        "upstreams:\n  api:\n    backends: [127.0.0.1:9000]\n    health_check:\n      type: tcp\n      timeout: abc\n",
        "server:\n  pid_file: ${NOPE}\n",
        "server:\n  pid_file: \"/x/${NOPE}\"\n",
    ];
    for c in cases {
        println!("---\n{c}=>");
        show(c);
    }
}
