//! Seeing and steering a running weir: metrics, access log, admin API,
//! persisted backend changes, DNS discovery and the status/backends CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A tiny DNS server on 127.0.0.1 answering A queries from a shared list
/// (an empty list answers SERVFAIL).
struct DnsResponder {
    addr: SocketAddr,
    answers: Arc<Mutex<Vec<Ipv4Addr>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl DnsResponder {
    fn start(answers: Vec<Ipv4Addr>) -> DnsResponder {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let answers = Arc::new(Mutex::new(answers));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, s) = (answers.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let q = &buf[..n];
                // question ends after the name + 4 bytes
                let mut i = 12;
                while i < n && q[i] != 0 {
                    i += 1 + q[i] as usize;
                }
                let qend = i + 5;
                let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
                let ips = a.lock().unwrap().clone();
                let mut r = q[..qend].to_vec();
                r[2] = 0x81;
                r[3] = if ips.is_empty() { 0x82 } else { 0x80 };
                let count = if qtype == 1 { ips.len() } else { 0 };
                r[6] = 0;
                r[7] = count as u8;
                if qtype == 1 {
                    for ip in &ips {
                        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
                        r.extend_from_slice(&ip.octets());
                    }
                }
                let _ = sock.send_to(&r, from);
            }
        });
        DnsResponder {
            addr,
            answers,
            stop,
        }
    }

    fn set(&self, ips: Vec<Ipv4Addr>) {
        *self.answers.lock().unwrap() = ips;
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn base(listen: SocketAddr, admin: SocketAddr, upstream: &str, extra: &str) -> String {
    format!(
        r#"
server: {{ threads: 2, pid_file: weir.pid, upgrade_sock: up.sock }}
admin: {{ listen: "{admin}", token: s3cret, state_file: state.json }}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - {{ name: main, match: {{ path_prefix: /app }}, upstream: pool }}
  - {{ name: ping, match: {{ path_prefix: /ping }}, respond: {{ status: 200, body: "pong" }} }}
upstreams:
  pool:
{upstream}
{extra}"#
    )
}

fn admin(addr: SocketAddr, method: &str, path: &str, body: &str, token: Option<&str>) -> Response {
    // The admin API is its own service: it may start listening a moment
    // after the proxy listener the process was waited for.
    assert!(wait_port(addr, START_TIMEOUT), "admin never listened");
    let auth = token.map(|t| format!("Bearer {t}"));
    let host = addr.to_string();
    let mut headers: Vec<(&str, &str)> = vec![
        ("host", host.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    request_with_body(addr, method, path, &headers, body.as_bytes()).unwrap()
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_with_traffic() {
    let mut a = TestBackend::start("a");
    let (listen, adm) = (free_addr(), free_addr());
    let up = format!("    backends: [\"{}\"]\n    health_check: {{ type: tcp, interval: 100ms, timeout: 50ms, unhealthy_threshold: 1 }}", a.addr());
    let w = WeirProcess::start(&base(listen, adm, &up, ""), listen);
    for _ in 0..5 {
        assert_eq!(get(listen, "/app/x").status, 200);
    }
    assert_eq!(get(listen, "/nothing").status, 404);
    assert_eq!(get(listen, "/ping").status, 200);
    // the logging phase runs just after the answer is sent: let it land
    let mut m = admin(adm, "GET", "/metrics", "", Some("s3cret"));
    assert_eq!(m.status, 200);
    let landed = poll_until(Duration::from_secs(3), || {
        m = admin(adm, "GET", "/metrics", "", Some("s3cret"));
        metric(
            &m.body,
            r#"weir_requests_total{code="200",method="GET",route="ping",upstream="-"}"#,
        ) == 1.0
            && metric(
                &m.body,
                r#"weir_request_duration_seconds_count{route="main",upstream="pool"}"#,
            ) == 5.0
    });
    assert!(
        landed,
        "the 5 proxied requests and the ping never all showed up in /metrics:\n{}",
        m.body
    );
    let t = &m.body;
    assert_eq!(
        metric(
            t,
            r#"weir_requests_total{code="200",method="GET",route="main",upstream="pool"}"#
        ),
        5.0,
        "{t}"
    );
    assert_eq!(
        metric(
            t,
            r#"weir_requests_total{code="404",method="GET",route="-",upstream="-"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            t,
            r#"weir_requests_total{code="200",method="GET",route="ping",upstream="-"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            t,
            r#"weir_request_duration_seconds_count{route="main",upstream="pool"}"#
        ),
        5.0
    );
    assert_eq!(
        metric(
            t,
            r#"weir_request_duration_seconds_bucket{route="main",upstream="pool",le="60"}"#
        ),
        5.0
    );
    assert!(
        metric(
            t,
            &format!(
                r#"weir_upstream_ttfb_seconds_count{{backend="{}",upstream="pool"}}"#,
                a.addr()
            )
        ) >= 5.0
    );
    assert_eq!(
        metric(
            t,
            &format!(
                r#"weir_backend_up{{backend="{}",upstream="pool"}}"#,
                a.addr()
            )
        ),
        1.0
    );
    assert_eq!(metric(t, r#"weir_build_info{version=""#) + 1.0, 2.0);
    assert!(
        t.contains("process_resident_memory_bytes"),
        "process metrics are exported"
    );
    a.stop();
    assert!(w.wait_for_log("is DOWN", Duration::from_secs(5)));
    let t = admin(adm, "GET", "/metrics", "", Some("s3cret")).body;
    assert_eq!(
        metric(
            &t,
            &format!(
                r#"weir_backend_up{{backend="{}",upstream="pool"}}"#,
                a.addr()
            )
        ),
        0.0,
        "{t}"
    );
    assert!(
        metric(
            &t,
            &format!(
                r#"weir_health_checks_failed_total{{backend="{}",upstream="pool"}}"#,
                a.addr()
            )
        ) >= 1.0
    );
    assert!(!t.contains("/app/x"), "no raw paths in labels");
}

#[test]
fn access_log_lines_are_json_with_the_request_facts() {
    let a = TestBackend::start("a");
    let (listen, adm) = (free_addr(), free_addr());
    let up = format!("    backends: [\"{}\"]", a.addr());
    let cfg = base(
        listen,
        adm,
        &up,
        "log: { access_log: { path: access.log, format: json } }\n",
    );
    let w = WeirProcess::start(&cfg, listen);
    let r = request(
        listen,
        "GET",
        "/app/users?token=secret",
        &[("user-agent", "tester/1"), ("x-request-id", "req-42")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(get(listen, "/missing").status, 404);
    let path = w.dir().join("access.log");
    assert!(poll_until(
        Duration::from_secs(5),
        || std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    ));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Lines are written when each request's logging phase ends, which under
    // load need not be in request order: find each by what it was.
    let l = lines
        .iter()
        .find(|l| l["status"] == 200)
        .unwrap_or_else(|| panic!("{text}"));
    let missing = lines
        .iter()
        .find(|l| l["status"] == 404)
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(l["method"], "GET");
    assert_eq!(l["path"], "/app/users", "query left out by default");
    assert_eq!(l["status"], 200);
    assert_eq!(l["upstream_status"], 200);
    assert_eq!(l["route"], "main");
    assert_eq!(l["upstream"], "pool");
    assert_eq!(l["backend"], a.addr().to_string());
    assert_eq!(l["attempts"], 1);
    assert_eq!(l["request_id"], "req-42");
    assert_eq!(l["user_agent"], "tester/1");
    assert_eq!(l["client"], "127.0.0.1");
    assert_eq!(l["bytes"].as_u64().unwrap() as usize, r.body.len());
    assert!(l["ts"].as_str().unwrap().ends_with('Z'));
    assert!(l["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(missing["path"], "/missing");
    assert_eq!(missing["route"], "-");

    // logrotate: move the file away, SIGUSR1, and new lines go to a new file
    std::fs::rename(&path, w.dir().join("access.log.1")).unwrap();
    w.signal("USR1");
    assert!(w.wait_for_log("reopening the access log", Duration::from_secs(5)));
    assert_eq!(get(listen, "/app/after-rotate").status, 200);
    assert!(poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("/app/after-rotate")
    }));
    assert!(!std::fs::read_to_string(w.dir().join("access.log.1"))
        .unwrap()
        .contains("after-rotate"));
}

#[test]
fn combined_access_log_to_stdout() {
    let a = TestBackend::start("a");
    let (listen, adm) = (free_addr(), free_addr());
    let up = format!("    backends: [\"{}\"]", a.addr());
    let cfg = base(
        listen,
        adm,
        &up,
        "log: { access_log: { path: stdout, format: combined } }\n",
    );
    let w = WeirProcess::start(&cfg, listen);
    let r = request(
        listen,
        "GET",
        "/app/z",
        &[("user-agent", "ua-x"), ("referer", "http://r/")],
    )
    .unwrap();
    assert_eq!((r.status, r.backend()), (200, "a".to_string()), "{r:?}");
    assert!(
        poll_until(Duration::from_secs(5), || w
            .stdout()
            .contains("\"GET /app/z HTTP/1.1\" 200")),
        "{}",
        w.stdout()
    );
    assert!(w.stdout().contains("\"http://r/\" \"ua-x\""));
}

#[test]
fn admin_api_calls_auth_and_effects() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let (listen, adm) = (free_addr(), free_addr());
    let up = format!("    backends: [\"{}\"]", a.addr());
    let w = WeirProcess::start(&base(listen, adm, &up, ""), listen);

    let h = admin(adm, "GET", "/health", "", None);
    assert_eq!(h.status, 200, "health needs no token");
    let v: serde_json::Value = serde_json::from_str(&h.body).unwrap();
    assert_eq!(v["status"], "UP");
    assert_eq!(admin(adm, "GET", "/status", "", None).status, 401);
    assert_eq!(admin(adm, "GET", "/status", "", Some("wrong")).status, 401);
    let add = format!(r#"{{"address":"{}","weight":1}}"#, b.addr());
    assert_eq!(
        admin(adm, "POST", "/upstreams/pool/backends", &add, None).status,
        401
    );
    let r = admin(
        adm,
        "POST",
        "/upstreams/pool/backends",
        &add,
        Some("s3cret"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        admin(
            adm,
            "POST",
            "/upstreams/pool/backends",
            &add,
            Some("s3cret")
        )
        .status,
        409
    );
    assert_eq!(
        admin(
            adm,
            "POST",
            "/upstreams/nope/backends",
            &add,
            Some("s3cret")
        )
        .status,
        404
    );
    let bad = admin(
        adm,
        "POST",
        "/upstreams/pool/backends",
        r#"{"address":"not-an-address"}"#,
        Some("s3cret"),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("\"error\""));
    assert_eq!(
        admin(
            adm,
            "POST",
            "/upstreams/pool/backends",
            r#"{"address":"127.0.0.1:1","weight":0}"#,
            Some("s3cret")
        )
        .status,
        400
    );

    // the added backend takes traffic
    let seen: Vec<String> = (0..6).map(|_| get(listen, "/app").backend()).collect();
    assert!(
        seen.contains(&"b".to_string()) && seen.contains(&"a".to_string()),
        "{seen:?}"
    );
    let st: serde_json::Value =
        serde_json::from_str(&admin(adm, "GET", "/status", "", Some("s3cret")).body).unwrap();
    let backends = st["upstreams"][0]["backends"].as_array().unwrap();
    let bb = backends
        .iter()
        .find(|x| x["address"] == b.addr().to_string())
        .unwrap();
    assert_eq!(bb["source"], "admin");
    assert_eq!(bb["healthy"], true);
    assert!(bb["requests"].as_u64().unwrap() >= 1);

    // drain a: no new requests
    let item = format!(
        "/upstreams/pool/backends/{}",
        a.addr().to_string().replace(':', "%3A")
    );
    assert_eq!(
        admin(
            adm,
            "PATCH",
            &item,
            r#"{"state":"draining"}"#,
            Some("s3cret")
        )
        .status,
        200
    );
    assert_eq!(
        admin(
            adm,
            "PATCH",
            &item,
            r#"{"state":"sideways"}"#,
            Some("s3cret")
        )
        .status,
        400
    );
    assert_eq!(
        admin(
            adm,
            "PATCH",
            "/upstreams/pool/backends/127.0.0.1:9",
            r#"{"state":"enabled"}"#,
            Some("s3cret")
        )
        .status,
        404
    );
    a.reset_counts();
    for _ in 0..4 {
        assert_eq!(get(listen, "/app").backend(), "b");
    }
    assert_eq!(a.requests(), 0);
    // remove b: traffic goes back to a once it is enabled again
    assert_eq!(
        admin(
            adm,
            "PATCH",
            &item,
            r#"{"state":"enabled"}"#,
            Some("s3cret")
        )
        .status,
        200
    );
    let bitem = format!("/upstreams/pool/backends/{}", b.addr());
    assert_eq!(admin(adm, "DELETE", &bitem, "", Some("s3cret")).status, 204);
    assert_eq!(admin(adm, "DELETE", &bitem, "", Some("s3cret")).status, 404);
    b.reset_counts();
    for _ in 0..4 {
        assert_eq!(get(listen, "/app").backend(), "a");
    }
    assert_eq!(b.requests(), 0);

    // reload through the API, good and bad
    let r = admin(adm, "POST", "/reload", "", Some("s3cret"));
    assert_eq!(r.status, 200, "{}", r.body);
    let good = std::fs::read_to_string(w.config_path()).unwrap();
    w.write_config(&good.replace("upstream: pool }", "upstream: poool }"));
    let r = admin(adm, "POST", "/reload", "", Some("s3cret"));
    assert_eq!(r.status, 400);
    assert!(r.body.contains("unknown upstream"), "{}", r.body);
    assert_eq!(get(listen, "/app").status, 200, "old config still serves");

    // config is redacted; a foreign Host is refused
    let c = admin(adm, "GET", "/config", "", Some("s3cret"));
    assert!(
        c.body.contains("<redacted>") && !c.body.contains("s3cret"),
        "{}",
        c.body
    );
    let evil = request(
        adm,
        "GET",
        "/status",
        &[("host", "evil.example"), ("authorization", "Bearer s3cret")],
    )
    .unwrap();
    assert_eq!(evil.status, 403);
    assert_eq!(admin(adm, "GET", "/nope", "", Some("s3cret")).status, 404);
}

#[test]
fn read_only_without_token_and_refused_on_public_address() {
    let a = TestBackend::start("a");
    let (listen, adm) = (free_addr(), free_addr());
    let up = format!("    backends: [\"{}\"]", a.addr());
    let cfg = base(listen, adm, &up, "").replace(" token: s3cret,", "");
    let _w = WeirProcess::start(&cfg, listen);
    assert_eq!(admin(adm, "GET", "/status", "", None).status, 200);
    let add = r#"{"address":"127.0.0.1:5"}"#;
    assert_eq!(
        admin(adm, "POST", "/upstreams/pool/backends", add, None).status,
        403
    );

    let dir = TestDir::create();
    let public = cfg.replace(&adm.to_string(), "0.0.0.0:19999");
    let path = dir.write("weir.yaml", &public);
    let out = run_weir(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("admin.listen: 0.0.0.0:19999 is not a loopback address"));
}

/// A weir child process run from a given directory's weir.yaml; killed on drop.
struct Proc(std::process::Child);

impl Proc {
    fn start(cfg: &std::path::Path, listen: SocketAddr) -> Proc {
        let child = std::process::Command::new(WEIR_BIN)
            .args(["-c", cfg.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let p = Proc(child);
        assert!(wait_port(listen, Duration::from_secs(10)));
        p
    }

    fn hup(&self) {
        std::process::Command::new("kill")
            .args(["-HUP", &self.0.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn admin_changes_persist_across_reload_and_restart() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let (listen, adm) = (free_addr(), free_addr());
    let up = format!("    backends: [\"{}\"]", a.addr());
    let dir = TestDir::create();
    let cfg = dir.write("weir.yaml", &base(listen, adm, &up, ""));
    let state = dir.path().join("state.json");
    let uses_b = || {
        (0..4)
            .map(|_| get(listen, "/app").backend())
            .any(|x| x == "b")
    };

    let p1 = Proc::start(&cfg, listen);
    let add = format!(r#"{{"address":"{}","weight":1}}"#, b.addr());
    assert_eq!(
        admin(
            adm,
            "POST",
            "/upstreams/pool/backends",
            &add,
            Some("s3cret")
        )
        .status,
        201
    );
    assert!(std::fs::read_to_string(&state)
        .unwrap()
        .contains(&b.addr().to_string()));
    // live reload keeps it
    p1.hup();
    assert!(poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(dir.path().join("weir.pid.reload"))
            .is_ok_and(|s| s.contains(" ok "))
    }));
    assert!(uses_b(), "after reload");
    drop(p1);

    // a restart on the same file and state file has it too; check warns about the overlay
    let out = run_weir(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds admin changes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p2 = Proc::start(&cfg, listen);
    assert!(uses_b(), "after restart");
    drop(p2);

    // a corrupt state file is reported and ignored, never fatal
    std::fs::write(&state, "{broken").unwrap();
    let out = run_weir(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreadable"));
    let _p3 = Proc::start(&cfg, listen);
    assert_eq!(get(listen, "/app").backend(), "a");
    assert!(!uses_b());
}

/// The `state` and `in_flight` of `address` in `pool` from `GET /status`,
/// or None when it is not listed.
fn backend_status(adm: SocketAddr, address: SocketAddr) -> Option<(String, u64)> {
    let r = admin(adm, "GET", "/status", "", Some("s3cret"));
    assert_eq!(r.status, 200, "{}", r.body);
    let b = status_backend(&r.body, "pool", address)?;
    Some((b["state"].as_str()?.to_string(), b["in_flight"].as_u64()?))
}

#[test]
fn a_deleted_backend_drains_its_requests_in_flight_before_it_leaves() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    b.set_delay(Duration::from_millis(1500));
    let (listen, adm) = (free_addr(), free_addr());
    let up = format!(
        "    algorithm: round_robin\n    backends: [\"{}\", \"{}\"]",
        a.addr(),
        b.addr()
    );
    let dir = TestDir::create();
    let cfg = dir.write("weir.yaml", &base(listen, adm, &up, ""));
    let _p = Proc::start(&cfg, listen);

    // Two requests at once: round robin gives b one, which b holds.
    let slow: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || get(listen, "/app")))
        .collect();
    assert!(
        poll_until(Duration::from_secs(5), || b.in_flight() == 1),
        "a request is in flight on b"
    );
    let item = format!("/upstreams/pool/backends/{}", b.addr());
    assert_eq!(admin(adm, "DELETE", &item, "", Some("s3cret")).status, 204);
    // Deleted for the API and the state file at once...
    assert_eq!(admin(adm, "DELETE", &item, "", Some("s3cret")).status, 404);
    let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    assert!(
        state.contains(&b.addr().to_string()) && state.contains("removed"),
        "{state}"
    );
    // ...but listed as draining while its request runs, and given nothing new.
    assert_eq!(
        backend_status(adm, b.addr()),
        Some(("draining".to_string(), 1))
    );
    let received = b.received();
    for _ in 0..4 {
        assert_eq!(get(listen, "/app").backend(), "a");
    }
    assert_eq!(b.received(), received, "b got a request after its delete");
    let answers: Vec<String> = slow
        .into_iter()
        .map(|t| t.join().unwrap())
        .map(|r| format!("{} {}", r.status, r.backend()))
        .collect();
    assert!(answers.contains(&"200 b".to_string()), "{answers:?}");
    // Its last request done, it leaves.
    assert!(
        poll_until(Duration::from_secs(5), || backend_status(adm, b.addr())
            .is_none()),
        "b still listed: {:?}",
        backend_status(adm, b.addr())
    );
    assert_eq!(
        backend_status(adm, a.addr()),
        Some(("enabled".to_string(), 0))
    );
}

#[test]
fn dns_discovery_follows_the_resolver() {
    let a = TestBackend::start("a");
    let dns = DnsResponder::start(vec![Ipv4Addr::LOCALHOST]);
    let (listen, adm) = (free_addr(), free_addr());
    let up = format!(
        "    backends: []\n    discovery: {{ dns: {{ name: app.test, port: {}, refresh: 200ms, resolver: \"{}\" }} }}",
        a.port(),
        dns.addr
    );
    let w = WeirProcess::start(&base(listen, adm, &up, ""), listen);
    assert!(
        poll_until(Duration::from_secs(5), || get(listen, "/app").backend()
            == "a"),
        "{}",
        w.stderr()
    );
    let st = admin(adm, "GET", "/status", "", Some("s3cret")).body;
    assert!(st.contains("\"source\":\"dns\""), "{st}");
    // a failing resolver keeps the last good set
    dns.set(vec![]);
    assert!(w.wait_for_log("keeping the last set", Duration::from_secs(5)));
    assert_eq!(get(listen, "/app").backend(), "a");
    // an address DNS stops returning leaves the pool
    dns.set(vec![Ipv4Addr::new(127, 0, 0, 2)]);
    assert!(poll_until(Duration::from_secs(5), || admin(
        adm,
        "GET",
        "/status",
        "",
        Some("s3cret")
    )
    .body
    .contains("127.0.0.2")));
    a.reset_counts();
    let r = get(listen, "/app");
    assert_eq!(
        (r.status, r.body.as_str()),
        (502, "bad gateway\n"),
        "only 127.0.0.2 is left and nothing listens there: {r:?}"
    );
    assert_eq!(a.received(), 0, "the dropped address got no request");
}

#[test]
fn status_and_backends_commands() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let (listen, adm) = (free_addr(), free_addr());
    let up = format!("    backends: [\"{}\"]", a.addr());
    let w = WeirProcess::start(&base(listen, adm, &up, ""), listen);
    let cfg = w.config_path().to_str().unwrap().to_string();
    let out = run_weir(&["status", "-c", &cfg]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("UPSTREAM"), "{text}");
    assert!(
        text.contains(&a.addr().to_string()) && text.contains("enabled") && text.contains("file")
    );

    let out = run_weir(&["reload", "-c", &cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("reloaded: no changes"),
        "through POST /reload"
    );

    let ba = b.addr().to_string();
    let out = run_weir(&["backends", "add", "pool", &ba, "--weight", "2", "-c", &cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_weir(&["backends", "add", "pool", &ba, "-c", &cfg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"));
    let out = run_weir(&[
        "status",
        "--admin",
        &adm.to_string(),
        "--token",
        "s3cret",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["upstreams"][0]["backends"].as_array().unwrap().len(), 2);
    let out = run_weir(&["backends", "drain", "pool", &ba, "-c", &cfg]);
    assert!(out.status.success());
    let out = run_weir(&["status", "-c", &cfg]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("draining"));
    let out = run_weir(&[
        "backends",
        "remove",
        "pool",
        &ba,
        "--admin",
        &adm.to_string(),
        "--token",
        "bad",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[test]
fn process_log_can_be_json() {
    let a = TestBackend::start("a");
    let (listen, adm) = (free_addr(), free_addr());
    let up = format!("    backends: [\"{}\"]", a.addr());
    let cfg = base(listen, adm, &up, "log: { level: info, format: json }\n");
    let w = WeirProcess::start(&cfg, listen);
    assert!(w.wait_for_log("starting with", Duration::from_secs(5)));
    let line = w
        .stderr()
        .lines()
        .find(|l| l.contains("starting with"))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["target"], "weir::server");
    assert!(v["message"].as_str().unwrap().starts_with("weir "));
}

#[test]
fn admin_on_a_wildcard_address_answers_the_address_it_was_reached_at() {
    let a = TestBackend::start("a");
    let listen = free_addr();
    let port = free_port();
    let token = "0123456789abcdef0123";
    let cfg = format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
admin: {{ listen: "0.0.0.0:{port}", token: "{token}" }}
listeners: [{{ name: web, address: "{listen}" }}]
routes: [{{ upstream: u }}]
upstreams:
  u: {{ backends: ["{a}"] }}
"#,
        a = a.addr()
    );
    let _w = WeirProcess::start(&cfg, listen);
    let adm: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(wait_port(adm, START_TIMEOUT));
    assert_eq!(admin(adm, "GET", "/status", "", Some(token)).status, 200);
    // A name (DNS rebinding) is still refused.
    let auth = format!("Bearer {token}");
    let r = request(
        adm,
        "GET",
        "/status",
        &[("host", "evil.example"), ("authorization", auth.as_str())],
    )
    .unwrap();
    assert_eq!(r.status, 403);
}

/// An admin section without a token makes the API read-only (its
/// `POST /reload` answers 403): `weir reload` signals the process instead,
/// and the new file takes effect.
#[test]
fn reload_with_a_read_only_admin_api_signals_the_process() {
    let a = TestBackend::start("a");
    let (listen, adm) = (free_addr(), free_addr());
    let up = format!("    backends: [\"{}\"]", a.addr());
    let cfg = base(listen, adm, &up, "").replace("token: s3cret, ", "");
    let w = WeirProcess::start(&cfg, listen);
    assert!(wait_port(adm, START_TIMEOUT), "admin never listened");
    assert_eq!(get(listen, "/pong").status, 404);
    w.write_config(&cfg.replace("path_prefix: /ping", "path_prefix: /pong"));
    let path = w.config_path().to_str().unwrap().to_string();
    let out = run_weir(&["reload", "-c", &path]);
    assert!(
        out.status.success(),
        "weir reload with a read-only admin API: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("reloaded (pid"),
        "through SIGHUP: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(get(listen, "/pong").status, 200, "the new route answers");
}
