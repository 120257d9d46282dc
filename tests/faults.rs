//! Faults under load: a backend killed mid-load, a backend that hangs, a
//! live reload every 100 ms, and admin changes carried across a reload and
//! an upgrade, each while several clients keep sending requests. Every
//! load loop is bounded in time; every process started here is killed by
//! the test, pass or fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// No load loop runs longer than this, whatever happens to the test.
const LOAD_CAP: Duration = Duration::from_secs(30);

/// One request as a load client saw it.
#[derive(Debug, Clone)]
struct Outcome {
    /// Which client thread sent it.
    client: usize,
    /// When it was sent, from the start of the load.
    sent: Duration,
    /// How long the answer took.
    took: Duration,
    /// Status, `x-backend` and the header the test watches; or the I/O error.
    answer: Result<(u16, String, Option<String>), String>,
}

impl Outcome {
    fn status(&self) -> Option<u16> {
        self.answer.as_ref().ok().map(|a| a.0)
    }

    fn backend(&self) -> Option<&str> {
        self.answer.as_ref().ok().map(|a| a.1.as_str())
    }

    fn done(&self) -> Duration {
        self.sent + self.took
    }
}

/// Client threads sending `GET /` until stopped (or [`LOAD_CAP`] passes).
struct Load {
    start: Instant,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Load {
    /// `keepalive` clients on persistent connections (reconnecting after an
    /// error or `Connection: close`) and `fresh` clients opening a new
    /// connection per request. `watch` names a response header to record.
    fn start(listen: SocketAddr, keepalive: usize, fresh: usize, watch: &'static str) -> Load {
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for client in 0..keepalive + fresh {
            let stop = stop.clone();
            let persistent = client < keepalive;
            threads.push(std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut conn: Option<KeepAliveClient> = None;
                while !stop.load(Relaxed) && start.elapsed() < LOAD_CAP {
                    let sent = start.elapsed();
                    let t = Instant::now();
                    let result = if persistent {
                        let c = match conn.take() {
                            Some(c) => Ok(c),
                            None => KeepAliveClient::connect(listen),
                        };
                        c.and_then(|mut c| {
                            let r = c.send("GET", "/", &[])?;
                            if !c.is_closed_by_server(&r) {
                                conn = Some(c);
                            }
                            Ok(r)
                        })
                    } else {
                        request(listen, "GET", "/", &[])
                    };
                    let answer = result
                        .map(|r| (r.status, r.backend(), r.header(watch).map(str::to_string)))
                        .map_err(|e| e.to_string());
                    out.push(Outcome {
                        client,
                        sent,
                        took: t.elapsed(),
                        answer,
                    });
                }
                out
            }));
        }
        Load {
            start,
            stop,
            threads,
        }
    }

    /// Time since the load started.
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Stops the clients and returns every outcome, ordered by send time.
    fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Relaxed);
        let mut all: Vec<Outcome> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().expect("load thread panicked"))
            .collect();
        all.sort_by_key(|o| o.sent);
        all
    }
}

/// The failed requests (I/O errors and statuses other than `ok`), for messages.
fn bad(outcomes: &[Outcome], ok: &[u16]) -> Vec<Outcome> {
    outcomes
        .iter()
        .filter(|o| !o.status().is_some_and(|s| ok.contains(&s)))
        .cloned()
        .collect()
}

#[test]
fn a_backend_killed_mid_load_costs_no_client_errors() {
    let mut a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let listen = free_addr();
    // no health check: after the kill every other pick is the dead backend,
    // and each such connect failure must be retried on b
    let _w = WeirProcess::start(
        &pool_config(listen, &[a.addr(), b.addr()], "", "\n    retries: 1"),
        listen,
    );
    let load = Load::start(listen, 4, 1, "x-backend");
    std::thread::sleep(Duration::from_millis(1000));
    let kill_at = load.now();
    a.stop();
    let killed_at = load.now();
    std::thread::sleep(Duration::from_millis(1500));
    let outcomes = load.finish();

    let failed = bad(&outcomes, &[200]);
    assert!(
        failed.is_empty(),
        "{} of {} GETs failed around the kill (at {kill_at:?}..{killed_at:?}): {:#?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(10)]
    );
    let before: Vec<&Outcome> = outcomes.iter().filter(|o| o.done() < kill_at).collect();
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.sent > killed_at).collect();
    assert!(
        before.iter().any(|o| o.backend() == Some("a"))
            && before.iter().any(|o| o.backend() == Some("b")),
        "both backends took load before the kill"
    );
    assert!(
        after.len() >= 100,
        "the load really ran after the kill: {} requests",
        after.len()
    );
    assert!(
        after.iter().all(|o| o.backend() == Some("b")),
        "only b answers once a is gone"
    );
}

#[test]
fn a_hanging_backend_costs_only_the_requests_in_flight_on_it() {
    const CLIENTS: usize = 4;
    const THRESHOLD: usize = 2;
    let good = TestBackend::start("good");
    let hang = TestBackend::start("hang");
    let listen = free_addr();
    let upstream = format!(
        "\n    timeouts: {{ read: 500ms }}\n    circuit_breaker: {{ consecutive_failures: {THRESHOLD}, open_for: 30s }}"
    );
    let _w = WeirProcess::start(
        &pool_config(listen, &[good.addr(), hang.addr()], &upstream, ""),
        listen,
    );
    let load = Load::start(listen, CLIENTS, 0, "x-backend");
    std::thread::sleep(Duration::from_millis(800));
    // from now on hang reads each request and never answers it
    let hang_at = load.now();
    hang.set_delay(Duration::from_secs(3600));
    std::thread::sleep(Duration::from_millis(2500));
    let quiet_from = load.now();
    let received_quiet = hang.received();
    std::thread::sleep(Duration::from_millis(700));
    let outcomes = load.finish();

    let failed = bad(&outcomes, &[200, 504]);
    assert!(
        failed.is_empty(),
        "only 200 and 504 answers, no I/O errors: {:#?}",
        &failed[..failed.len().min(10)]
    );
    assert!(
        outcomes
            .iter()
            .any(|o| o.done() < hang_at && o.backend() == Some("hang")),
        "hang took load before it hung"
    );
    let timeouts: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.status() == Some(504))
        .collect();
    assert!(!timeouts.is_empty(), "requests sent to hang time out");
    for t in &timeouts {
        assert!(
            t.took >= Duration::from_millis(400) && t.took < Duration::from_millis(1200),
            "a 504 comes from the 500 ms read timeout: {t:?}"
        );
        assert!(t.done() > hang_at, "no 504 before the hang: {t:?}");
    }
    // Each client has at most one request in flight: until the breaker has
    // seen THRESHOLD failures, at most CLIENTS requests wait on hang at
    // once, plus what a client that already got its 504 sends there before
    // the THRESHOLD-th failure lands.
    assert!(
        timeouts.len() < CLIENTS + THRESHOLD,
        "{} requests timed out, more than were in flight on hang when the breaker opened: {timeouts:#?}",
        timeouts.len()
    );
    let last_timeout = timeouts.iter().map(|t| t.done()).max().unwrap();
    assert!(
        last_timeout < hang_at + Duration::from_millis(1500),
        "no 504 after the first round of timeouts opened the breaker (hang at {hang_at:?}): {timeouts:#?}"
    );
    let later: Vec<&Outcome> = outcomes.iter().filter(|o| o.sent > last_timeout).collect();
    assert!(
        later.len() >= 100 && later.iter().all(|o| o.backend() == Some("good")),
        "after the breaker opened good answers everything: {} requests, backends {:?}",
        later.len(),
        later
            .iter()
            .filter_map(|o| o.backend())
            .filter(|b| *b != "good")
            .collect::<Vec<_>>()
    );
    assert_eq!(
        hang.received(),
        received_quiet,
        "no request reached hang from {quiet_from:?} on: the open circuit keeps it out"
    );
    // weir gave up on every request it left on hang (and closed the connection)
    assert!(
        poll_until(Duration::from_secs(3), || hang.cancelled()
            == timeouts.len()),
        "hang saw {} requests abandoned, clients saw {} 504s",
        hang.cancelled(),
        timeouts.len()
    );
}

fn header_cfg(listen: SocketAddr, backend: SocketAddr, value: &str) -> String {
    pool_config(
        listen,
        &[backend],
        "",
        &format!("\n    response_headers: {{ set: {{ x-config: \"{value}\" }} }}"),
    )
}

/// The generation and outcome the process reported for its last reload.
fn reload_report(pid_file: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(pid_file.with_extension("pid.reload")).ok()?;
    let mut parts = text.trim_end().splitn(3, ' ');
    let generation = parts.next()?.parse().ok()?;
    Some((generation, parts.next()?.to_string()))
}

#[test]
fn a_reload_every_100ms_under_load_costs_nothing() {
    const RELOADS: u64 = 20;
    let a = TestBackend::start("a");
    let listen = free_addr();
    let value = |g: u64| format!("{}-{g}", if g.is_multiple_of(2) { "even" } else { "odd" });
    let w = WeirProcess::start(&header_cfg(listen, a.addr(), &value(0)), listen);
    let pid_file = w.dir().join("weir.pid");
    assert_eq!(get(listen, "/").header("x-config"), Some("even-0"));

    let load = Load::start(listen, 4, 1, "x-config");
    std::thread::sleep(Duration::from_millis(300));
    for g in 1..=RELOADS {
        let tick = Instant::now();
        w.write_config(&header_cfg(listen, a.addr(), &value(g)));
        w.signal("HUP");
        let mut last = None;
        let reported = poll_until(Duration::from_secs(5), || {
            last = reload_report(&pid_file);
            last.as_ref().is_some_and(|(n, _)| *n >= g)
        });
        assert!(
            reported,
            "reload {g} was not reported (last report {last:?})\n{}",
            w.logs()
        );
        assert_eq!(
            last,
            Some((g, "ok".to_string())),
            "reload {g}\n{}",
            w.logs()
        );
        std::thread::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed()));
    }
    std::thread::sleep(Duration::from_millis(300));
    let outcomes = load.finish();

    let failed = bad(&outcomes, &[200]);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during {RELOADS} reloads: {:#?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(
        outcomes.len() >= 200,
        "the load really ran: {} requests",
        outcomes.len()
    );
    // every answer carries the value of one whole config, and a client never
    // goes back to an older config once it has seen a newer one
    let generation = |o: &Outcome| -> u64 {
        let v = o.answer.as_ref().ok().and_then(|a| a.2.clone());
        let g = v
            .as_deref()
            .and_then(|v| v.rsplit_once('-'))
            .and_then(|(_, g)| g.parse::<u64>().ok());
        let g = g.unwrap_or_else(|| panic!("x-config missing or malformed: {o:?}"));
        assert_eq!(v, Some(value(g)), "{o:?}");
        g
    };
    let mut seen = std::collections::BTreeSet::new();
    for client in 0..5 {
        let mine: Vec<u64> = outcomes
            .iter()
            .filter(|o| o.client == client)
            .map(generation)
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0] <= w[1]),
            "client {client} went back to an older config: {mine:?}"
        );
        seen.extend(mine);
    }
    assert!(
        seen.len() >= RELOADS as usize / 2,
        "clients saw the reloads take effect: only {seen:?}"
    );
    let last = outcomes.last().unwrap();
    assert_eq!(generation(last), RELOADS, "the last config serves");
    assert_eq!(w.log_count("config reloaded"), RELOADS as usize);
    assert!(w.is_running());
}

fn admin_call(adm: SocketAddr, method: &str, path: &str, body: &str) -> Response {
    // The admin API may start listening a moment after the proxy listener.
    assert!(wait_port(adm, START_TIMEOUT), "admin never listened");
    let host = adm.to_string();
    let headers = [
        ("host", host.as_str()),
        ("authorization", "Bearer t0k"),
        ("content-type", "application/json"),
    ];
    request_with_body(adm, method, path, &headers, body.as_bytes())
        .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"))
}

/// `(state, source)` of `addr` in upstream `pool` per `GET /status`.
fn backend_state(adm: SocketAddr, addr: SocketAddr) -> Option<(String, String)> {
    let st = admin_call(adm, "GET", "/status", "");
    assert_eq!(st.status, 200, "{}", st.body);
    let b = status_backend(&st.body, "pool", addr)?;
    Some((
        b["state"].as_str()?.to_string(),
        b["source"].as_str()?.to_string(),
    ))
}

#[test]
fn admin_changes_under_load_survive_a_reload_and_an_upgrade() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let (listen, adm) = (free_addr(), free_addr());
    let dir = TestDir::create();
    let cfg = dir.write(
        "weir.yaml",
        &format!(
            r#"
server:
  threads: 2
  pid_file: weir.pid
  upgrade_sock: upgrade.sock
  error_log: error.log
  grace_period_seconds: 2
  graceful_shutdown_timeout_seconds: 2
admin: {{ listen: "{adm}", token: t0k, state_file: state.json }}
listeners: [{{ name: web, address: "{listen}" }}]
routes: [{{ name: main, upstream: pool }}]
upstreams:
  pool: {{ backends: ["{a}"] }}
"#,
            a = a.addr()
        ),
    );
    let cfg_arg = cfg.to_str().unwrap().to_string();
    let log = || std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
    let mut daemons = Daemons::new(dir.path().join("weir.pid"));
    let out = run_weir(&["-c", &cfg_arg, "-d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        poll_until(Duration::from_secs(10), || daemons.remember() > 0
            && port_open(listen)
            && port_open(adm)),
        "the daemon did not come up\n{}",
        log()
    );
    let old = daemons.remember();

    let load = Load::start(listen, 6, 1, "x-backend");
    std::thread::sleep(Duration::from_millis(500));
    let add = format!(r#"{{"address":"{}"}}"#, b.addr());
    let r = admin_call(adm, "POST", "/upstreams/pool/backends", &add);
    assert_eq!(r.status, 201, "{}", r.body);
    std::thread::sleep(Duration::from_millis(300));
    let r = admin_call(
        adm,
        "PATCH",
        &format!("/upstreams/pool/backends/{}", a.addr()),
        r#"{"state":"draining"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    std::thread::sleep(Duration::from_millis(300));
    let a_after_drain = a.received();

    // reload with SIGHUP, wait for the report, keep the load on
    let before = reload_report(&daemons.pid_file).map_or(0, |(g, _)| g);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &old.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut last = None;
    let reported = poll_until(Duration::from_secs(5), || {
        last = reload_report(&daemons.pid_file);
        last.as_ref().is_some_and(|(g, _)| *g > before)
    });
    assert!(
        reported && last.as_ref().is_some_and(|(_, r)| r == "ok"),
        "the reload was not reported ok: {last:?}\n{}",
        log()
    );
    assert_eq!(
        backend_state(adm, b.addr()),
        Some(("enabled".into(), "admin".into())),
        "after the reload"
    );
    assert_eq!(
        backend_state(adm, a.addr()),
        Some(("draining".into(), "file".into())),
        "after the reload"
    );
    std::thread::sleep(Duration::from_millis(300));

    // then an upgrade
    let out = run_weir(&["upgrade", "-c", &cfg_arg]);
    let new = daemons.remember();
    assert!(
        out.status.success(),
        "upgrade failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    assert_ne!(new, old, "the pid file names the new process");
    let exited = poll_until(Duration::from_secs(20), || !alive(old));
    std::thread::sleep(Duration::from_millis(500));
    let outcomes = load.finish();
    assert!(exited, "old process {old} exits after draining\n{}", log());
    assert!(alive(new), "the new process {new} runs\n{}", log());

    let failed = bad(&outcomes, &[200]);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed around the admin changes, reload and upgrade: {:#?}\n{}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(10)],
        log()
    );
    assert!(
        outcomes.len() >= 300,
        "the load really ran: {} requests",
        outcomes.len()
    );
    assert!(
        outcomes.iter().any(|o| o.backend() == Some("a")),
        "a took load before it was drained"
    );
    // the new process re-applied both changes from the state file
    assert_eq!(
        backend_state(adm, b.addr()),
        Some(("enabled".into(), "admin".into())),
        "after the upgrade\n{}",
        log()
    );
    assert_eq!(
        backend_state(adm, a.addr()),
        Some(("draining".into(), "file".into())),
        "after the upgrade\n{}",
        log()
    );
    let b_before = b.received();
    for _ in 0..10 {
        assert_eq!(get(listen, "/").backend(), "b", "the new process serves");
    }
    assert_eq!(b.received(), b_before + 10);
    assert_eq!(
        a.received(),
        a_after_drain,
        "the drained backend got no request through the reload and the upgrade"
    );
}
