//! Operations under load: graceful upgrade of a daemonized weir, live reload
//! with SIGHUP, a broken file on reload, `weir stop`, and `threads` from the
//! file. Every process started here is killed by the test, pass or fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(listen: SocketAddr, backend: SocketAddr, extra_server: &str) -> String {
    format!(
        r#"
server:
  threads: 2
  pid_file: weir.pid
  upgrade_sock: upgrade.sock
  error_log: error.log
  grace_period_seconds: 2
  graceful_shutdown_timeout_seconds: 2{extra_server}
listeners: [{{ name: web, address: "{listen}" }}]
routes: [{{ name: main, upstream: pool }}]
upstreams:
  pool: {{ backends: ["{backend}"] }}
"#
    )
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    errors: AtomicUsize,
    server_errors: AtomicUsize,
    reconnects: AtomicUsize,
}

/// Runs `keepalive` keep-alive clients and one new-connection-per-request
/// client until `stop` is raised (or 30 s pass, whichever is first).
fn load(
    listen: SocketAddr,
    keepalive: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut handles = Vec::new();
    for _ in 0..keepalive {
        let (stop, tally) = (stop.clone(), tally.clone());
        handles.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut client = KeepAliveClient::connect(listen).ok();
            while !stop.load(Relaxed) && Instant::now() < deadline {
                let Some(c) = client.as_mut() else {
                    tally.errors.fetch_add(1, Relaxed);
                    client = KeepAliveClient::connect(listen).ok();
                    continue;
                };
                match c.send("GET", "/", &[]) {
                    Ok(r) => {
                        if r.status >= 500 {
                            tally.server_errors.fetch_add(1, Relaxed);
                        } else {
                            tally.ok.fetch_add(1, Relaxed);
                        }
                        if c.is_closed_by_server(&r) {
                            tally.reconnects.fetch_add(1, Relaxed);
                            client = KeepAliveClient::connect(listen).ok();
                        }
                    }
                    Err(_) => {
                        tally.errors.fetch_add(1, Relaxed);
                        client = KeepAliveClient::connect(listen).ok();
                    }
                }
            }
        }));
    }
    let (stop, tally) = (stop.clone(), tally.clone());
    handles.push(std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stop.load(Relaxed) && Instant::now() < deadline {
            match request(listen, "GET", "/", &[]) {
                Ok(r) if r.status < 500 => tally.ok.fetch_add(1, Relaxed),
                Ok(_) => tally.server_errors.fetch_add(1, Relaxed),
                Err(_) => tally.errors.fetch_add(1, Relaxed),
            };
        }
    }));
    handles
}

#[test]
fn graceful_upgrade_under_load_loses_nothing() {
    let backend = TestBackend::start("a");
    let second = TestBackend::start("b");
    let (listen, adm) = (free_addr(), free_addr());
    let dir = TestDir::create();
    let text = config(listen, backend.addr(), "").replace(
        "listeners:",
        &format!("admin: {{ listen: \"{adm}\", token: t0k, state_file: state.json }}\nlisteners:"),
    );
    let cfg = dir.write("weir.yaml", &text);
    let mut daemons = Daemons::new(dir.path().join("weir.pid"));
    let out = run_weir(&["-c", cfg.to_str().unwrap(), "-d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_port(listen, Duration::from_secs(10)));
    // The admin API is a service of its own and may listen a moment later.
    assert!(wait_port(adm, Duration::from_secs(10)));
    assert!(poll_until(Duration::from_secs(5), || read_pid(
        &daemons.pid_file
    ) > 0));
    let old = daemons.remember();
    // an admin change made before the upgrade must survive it
    let host = adm.to_string();
    let add = format!(r#"{{"address":"{}"}}"#, second.addr());
    let auth = [("host", host.as_str()), ("authorization", "Bearer t0k")];
    let r = request_with_body(
        adm,
        "POST",
        "/upstreams/pool/backends",
        &auth,
        add.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let handles = load(listen, 8, stop.clone(), tally.clone());
    std::thread::sleep(Duration::from_millis(1500)); // load running before the upgrade

    let out = run_weir(&["upgrade", "-c", cfg.to_str().unwrap()]);
    let new = daemons.remember();
    assert!(
        out.status.success(),
        "upgrade failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(new, old, "pid file names the new process");
    assert!(alive(new));

    // keep the load on while the old process drains and exits
    let exited = poll_until(Duration::from_secs(20), || !alive(old));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
    assert!(exited, "old process {old} exits after draining\n{log}");
    let (ok, errors, fivexx) = (
        tally.ok.load(Relaxed),
        tally.errors.load(Relaxed),
        tally.server_errors.load(Relaxed),
    );
    assert!(ok > 200, "load really ran: {ok} requests");
    assert_eq!(
        (errors, fivexx),
        (0, 0),
        "{ok} ok, {} reconnects after Connection: close\n{log}",
        tally.reconnects.load(Relaxed)
    );
    assert!(
        tally.reconnects.load(Relaxed) >= 8,
        "draining process answered with Connection: close"
    );
    assert_eq!(get(listen, "/").status, 200, "the new process serves");
    // the admin socket was handed over too, and the new process re-applied the state file
    let st = request(adm, "GET", "/status", &auth).unwrap();
    assert_eq!(st.status, 200);
    assert!(
        st.body.contains(&second.addr().to_string()) && st.body.contains("\"source\":\"admin\""),
        "{}",
        st.body
    );
}

#[test]
fn sighup_switches_backends_under_load_and_a_bad_file_changes_nothing() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let listen = free_addr();
    let weir = WeirProcess::start(&config(listen, a.addr(), ""), listen);
    assert_eq!(get(listen, "/").backend(), "a");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let handles = load(listen, 4, stop.clone(), tally.clone());
    std::thread::sleep(Duration::from_millis(500));
    weir.write_config(&config(listen, b.addr(), ""));
    weir.signal("HUP");
    assert!(
        poll_until(Duration::from_secs(5), || get(listen, "/").backend() == "b"),
        "{}",
        weir.stderr()
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        (
            tally.errors.load(Relaxed),
            tally.server_errors.load(Relaxed)
        ),
        (0, 0)
    );
    assert!(weir.wait_for_log("config reloaded", Duration::from_secs(2)));
    assert!(weir.is_running());

    // A broken file: `weir reload` prints the error with its position, exits 1,
    // and the process keeps serving the config it had.
    let cfg = weir.config_path().to_str().unwrap().to_string();
    weir.write_config(&config(listen, b.addr(), "").replace(
        "routes: [{ name: main, upstream: pool }]",
        "routes: [{ name: main, upstream: pol }]",
    ));
    let out = run_weir(&["reload", "-c", &cfg]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":10:34: routes[0].upstream: unknown upstream \"pol\""),
        "{err}"
    );
    // the same file sent by signal: logged at error level, nothing changes
    weir.signal("HUP");
    assert!(weir.wait_for_log(
        "config reload failed, keeping the running config",
        Duration::from_secs(5)
    ));
    assert_eq!(get(listen, "/").backend(), "b");
    // listener changes need an upgrade
    weir.write_config(&config(free_addr(), a.addr(), ""));
    weir.signal("HUP");
    assert!(weir.wait_for_log("needs `weir upgrade`", Duration::from_secs(5)));
    assert_eq!(get(listen, "/").backend(), "b");
    // a good file through `weir reload` prints what changed
    weir.write_config(&config(listen, a.addr(), ""));
    let out = run_weir(&["reload", "-c", &cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("upstreams changed: pool"));
    assert_eq!(get(listen, "/").backend(), "a");
}

#[test]
fn weir_stop_waits_for_the_process_to_exit() {
    let a = TestBackend::start("a");
    let listen = free_addr();
    let weir = WeirProcess::start(&config(listen, a.addr(), ""), listen);
    let cfg = weir.config_path().to_str().unwrap().to_string();
    // a file broken since start-up does not prevent a stop
    weir.write_config(&config(listen, a.addr(), "").replace("upstream: pool", "upstream: nope"));
    let started = Instant::now();
    let out = run_weir(&["stop", "-c", &cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        weir.wait_exit(Duration::from_secs(1)).is_some(),
        "gone when stop returns"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "default-ish grace makes stop quick"
    );

    let listen = free_addr();
    let weir = WeirProcess::start(&config(listen, a.addr(), ""), listen);
    let cfg = weir.config_path().to_str().unwrap().to_string();
    let started = Instant::now();
    let out = run_weir(&["stop", "--fast", "-c", &cfg]);
    assert!(out.status.success());
    assert!(started.elapsed() < Duration::from_secs(3));
    let out = run_weir(&["stop", "-c", &cfg]);
    assert_eq!(out.status.code(), Some(1), "nothing left to stop");
}

fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn threads_from_the_file_set_the_worker_count() {
    let a = TestBackend::start("a");
    let counts: Vec<usize> = [1, 5]
        .iter()
        .map(|t| {
            let listen = free_addr();
            let cfg = config(listen, a.addr(), "").replace("threads: 2", &format!("threads: {t}"));
            let weir = WeirProcess::start(&cfg, listen);
            assert_eq!(get(listen, "/").status, 200);
            let mut n = 0;
            // runtimes start their workers right away; wait until the count settles
            let settled = poll_until(Duration::from_secs(3), || {
                let now = thread_count(weir.pid());
                let settled = now == n;
                n = now;
                settled
            });
            assert!(
                settled && n > 0,
                "threads: {t}: the thread count of pid {} never settled (last seen {n})",
                weir.pid()
            );
            n
        })
        .collect();
    assert_eq!(
        counts[1] - counts[0],
        4,
        "threads 1 → 5 adds four workers: {counts:?}"
    );
}

#[test]
fn reload_keeps_health_state_of_unchanged_upstreams() {
    let mut dead = TestBackend::start("dead");
    let good = TestBackend::start("good");
    let listen = free_addr();
    let (dead_addr, good_addr) = (dead.addr(), good.addr());
    let cfg = |route_name: &str| {
        format!(
            r#"
server: {{ threads: 2, pid_file: weir.pid, upgrade_sock: up.sock }}
listeners: [{{ name: web, address: "{listen}" }}]
routes: [{{ name: {route_name}, upstream: pool, retries: 0 }}]
upstreams:
  pool:
    backends: ["{}", "{}"]
    health_check: {{ type: tcp, interval: 1s, timeout: 200ms, unhealthy_threshold: 1, healthy_threshold: 1 }}
"#,
            dead_addr, good_addr
        )
    };
    let w = WeirProcess::start(&cfg("before"), listen);
    dead.stop();
    assert!(w.wait_for_log("is DOWN", Duration::from_secs(5)));
    w.write_config(&cfg("after"));
    w.signal("HUP");
    assert!(w.wait_for_log("config reloaded", Duration::from_secs(5)));
    // Right after the reload (well within one check interval) the dead backend
    // is still known to be down: no request is sent to it (retries: 0 would show 502s).
    let codes: Vec<u16> = (0..10).map(|_| get(listen, "/").status).collect();
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
}
