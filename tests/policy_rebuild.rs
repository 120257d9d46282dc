//! Policy state outlives a rebuild: an admin change (which recompiles the
//! snapshot) does not hand a rate-limited client a fresh budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[test]
fn an_admin_change_does_not_reset_a_local_rate_limit() {
    let a = TestBackend::start("a");
    let (listen, admin) = (free_addr(), free_addr());
    let token = "0123456789abcdef0123";
    let cfg = format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
admin: {{ listen: "{admin}", token: "{token}" }}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - {{ name: limited, upstream: u, rate_limit: {{ requests_per_second: 3 }} }}
upstreams:
  u: {{ backends: ["{a}"] }}
"#,
        a = a.addr()
    );
    let _w = WeirProcess::start(&cfg, listen);
    assert!(wait_port(admin, START_TIMEOUT));
    let auth = format!("Bearer {token}");
    let host = admin.to_string();
    for attempt in 0..3 {
        // Start early in a wall-clock second, well inside one limiter window.
        poll_until(Duration::from_secs(2), || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_millis()
                < 100
        });
        let statuses: Vec<u16> = (0..3).map(|_| get(listen, "/").status).collect();
        if statuses != [200, 200, 200] {
            assert!(attempt < 2, "the budget was never fresh: {statuses:?}");
            std::thread::sleep(Duration::from_millis(1100));
            continue;
        }
        // A weight change recompiles the snapshot (routes included).
        let body = format!("{{\"weight\":{}}}", attempt + 2);
        let path = format!("/upstreams/u/backends/{}", a.addr());
        let r = request_with_body(
            admin,
            "PATCH",
            &path,
            &[("host", host.as_str()), ("authorization", auth.as_str())],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let after = get(listen, "/");
        if after.status == 200 && attempt < 2 {
            // The window may have turned over during the admin call; retry.
            std::thread::sleep(Duration::from_millis(1100));
            continue;
        }
        assert_eq!(after.status, 429, "the rebuild handed out a new budget");
        return;
    }
}
