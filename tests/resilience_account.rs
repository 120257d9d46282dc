//! Every reload and upgrade leaves an account: `weir upgrade` waits for the
//! old process to exit and prints how many requests it finished after the
//! hand-over, how many it cut at the end of its shutdown timeout, and how
//! long it took; a reload reports what changed; both are in `GET /events`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

fn config(
    listen: SocketAddr,
    adm: SocketAddr,
    mid: SocketAddr,
    slow: SocketAddr,
    weight: u32,
) -> String {
    format!(
        r#"
server:
  threads: 2
  pid_file: weir.pid
  upgrade_sock: upgrade.sock
  error_log: error.log
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 1
admin: {{ listen: "{adm}" }}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - {{ name: slow, match: {{ path_prefix: /slow }}, upstream: slow }}
  - {{ name: mid, upstream: mid }}
upstreams:
  mid: {{ backends: [{{ address: "{mid}", weight: {weight} }}] }}
  slow: {{ backends: ["{slow}"] }}
"#
    )
}

fn events(adm: SocketAddr) -> String {
    get_host(adm, &adm.to_string(), "/events").body
}

#[test]
fn upgrade_prints_the_old_process_account_and_reload_what_changed() {
    let delay = |d| BackendOpts {
        delay: Duration::from_millis(d),
        ..Default::default()
    };
    let mid = TestBackend::start_with("mid", delay(2000));
    let slow = TestBackend::start_with("slow", delay(15000));
    let (listen, adm) = (free_addr(), free_addr());
    let dir = TestDir::create();
    let cfg = dir.write(
        "weir.yaml",
        &config(listen, adm, mid.addr(), slow.addr(), 1),
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let mut daemons = Daemons::new(dir.path().join("weir.pid"));
    let out = run_weir(&["-c", &cfg, "-d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_port(listen, START_TIMEOUT) && wait_port(adm, START_TIMEOUT));
    assert!(poll_until(START_TIMEOUT, || read_pid(&daemons.pid_file) > 0));
    let old = daemons.remember();

    // A reload reports what changed, on stdout and in /events.
    dir.write(
        "weir.yaml",
        &config(listen, adm, mid.addr(), slow.addr(), 2),
    );
    let out = run_weir(&["reload", "-c", &cfg]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(adm);
    assert!(
        ev.contains("\"kind\":\"reload\"") && ev.contains("reloaded: "),
        "{ev}"
    );
    println!("reload: {said}");

    // One request that ends after the hand-over, one that outlives
    // the hand-over: Pingora waits 5 s, then the grace period (1 s), then
    // the shutdown timeout (1 s); 15 s is longer.
    let requests: Vec<_> = ["/mid", "/slow"]
        .into_iter()
        .map(|p| std::thread::spawn(move || request(listen, "GET", p, &[]).map(|r| r.status)))
        .collect();
    assert!(poll_until(Duration::from_secs(5), || mid.in_flight() == 1
        && slow.in_flight() == 1));
    let out = run_weir(&["upgrade", "-c", &cfg]);
    let new = daemons.remember();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    println!("upgrade: {said}");
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(new, old);
    assert!(
        !alive(old),
        "weir upgrade returned before the old process exited"
    );
    assert!(
        said.contains(&format!("pid {old} finished 1 requests after the hand-over, cut 1 at the end of its shutdown timeout")),
        "{said}"
    );
    let results: Vec<_> = requests.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results[0].as_ref().ok(), Some(&200), "{results:?}");
    assert!(
        results[1].is_err(),
        "the cut request got no answer: {results:?}"
    );
    // The new process keeps the account in its events.
    assert!(
        poll_until(Duration::from_secs(5), || events(adm)
            .contains("\"kind\":\"upgrade\"")),
        "{}",
        events(adm)
    );
    assert!(events(adm).contains("cut 1 at the end of its shutdown timeout"));
}
