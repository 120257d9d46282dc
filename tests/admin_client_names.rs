//! `weir backends` on upstreams whose names are not plain words (SPEC §3,
//! §5): a name with `/`, a space or a `%XX` sequence reaches the admin API
//! as that name (found by the `admin_path` fuzz target).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn backends_command_reaches_upstreams_with_any_name() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let (listen, adm) = (free_addr(), free_addr());
    let cfg = format!(
        r#"
server: {{ threads: 1, pid_file: weir.pid, upgrade_sock: up.sock }}
admin: {{ listen: "{adm}", token: s3cret }}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - {{ match: {{ path_prefix: /x }}, upstream: "a/b pool" }}
  - {{ upstream: "%41" }}
upstreams:
  "a/b pool": {{ backends: ["{a}"] }}
  "%41": {{ backends: ["{a}"] }}
  "A": {{ backends: ["{a}"] }}
"#,
        a = a.addr()
    );
    let w = WeirProcess::start(&cfg, listen);
    assert!(wait_port(adm, START_TIMEOUT), "admin never listened");
    let path = w.config_path().to_str().unwrap().to_string();
    let ba = b.addr().to_string();
    let count = |name: &str| {
        let out = run_weir(&["status", "-c", &path, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ups = v["upstreams"].as_array().unwrap();
        let u = ups.iter().find(|u| u["name"] == name).unwrap();
        u["backends"].as_array().unwrap().len()
    };
    for name in ["a/b pool", "%41"] {
        let out = run_weir(&["backends", "add", name, &ba, "-c", &path]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "add to {name:?}: {err}");
        assert_eq!(count(name), 2, "{name:?} got the backend");
        let out = run_weir(&["backends", "drain", name, &ba, "-c", &path]);
        assert!(out.status.success(), "drain in {name:?}");
    }
    // `%41` is a name of its own, not `A`.
    assert_eq!(count("A"), 1);
}
