//! Certificates from a real ACME CA: Debian's Pebble (with
//! pebble-challtestsrv as its DNS) on loopback ports, its validation ports
//! mapped to weir's listeners. Each certificate weir obtains is checked by
//! a TLS client against Pebble's issuing root; renewal runs under a loop of
//! handshakes; a CA that is down or refuses leaves the current certificate
//! in service; stored certificates are served without the CA; two
//! instances sharing storage order once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::pebble::Pebble;
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an order may take in these tests.
const ORDER: Duration = Duration::from_secs(30);

struct Setup {
    http: SocketAddr,
    https: SocketAddr,
    admin: SocketAddr,
    storage: String,
}

/// weir's config: an http and an https listener (`names` under tls.acme,
/// plus `files` certificates), the acme section pointing at `p`.
fn config(
    p: &Pebble,
    s: &Setup,
    challenge: &str,
    names: &str,
    files: &str,
    backend: SocketAddr,
) -> String {
    format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
admin: {{ listen: "{admin}" }}
acme:
  directory: {dir}
  email: ops@example.com
  storage: {storage}
  ca: {ca}
  challenge: {challenge}
listeners:
  - {{ name: web, address: "{http}", protocol: http }}
  - name: websecure
    address: "{https}"
    protocol: https
    tls: {{ acme: [{names}], certificates: [{files}] }}
routes:
  - {{ name: back, match: {{ path_prefix: / }}, upstream: b }}
upstreams:
  b: {{ backends: ["{backend}"] }}
"#,
        admin = s.admin,
        dir = p.directory,
        storage = s.storage,
        ca = p.ca_file.display(),
        http = s.http,
        https = s.https,
    )
}

/// Ports for weir: http-01 is validated on Pebble's http port,
/// tls-alpn-01 on its tls port.
fn setup(p: &Pebble, challenge: &str, storage: &Path) -> Setup {
    let (http, https) = match challenge {
        "http-01" => (p.http_port, free_port()),
        _ => (free_port(), p.tls_port),
    };
    Setup {
        http: format!("127.0.0.1:{http}").parse().unwrap(),
        https: format!("127.0.0.1:{https}").parse().unwrap(),
        admin: free_addr(),
        storage: storage.display().to_string(),
    }
}

/// `GET /certificates`.
fn rows(admin: SocketAddr) -> Vec<Value> {
    let r = get_host(admin, &admin.to_string(), "/certificates");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    v["certificates"].as_array().cloned().unwrap_or_default()
}

fn acme_row(admin: SocketAddr) -> Option<Value> {
    rows(admin).into_iter().find(|r| r["source"] == "acme")
}

/// Waits until the ACME row has a certificate whose not_after differs from `not`.
fn wait_cert(w: &WeirProcess, admin: SocketAddr, not: Option<&Value>, timeout: Duration) -> Value {
    let mut last = None;
    let ok = poll_until(timeout, || {
        last = acme_row(admin);
        last.as_ref()
            .is_some_and(|r| !r["not_after"].is_null() && Some(&r["not_after"]) != not)
    });
    assert!(ok, "no (new) certificate: {last:?}\n{}", w.logs());
    last.unwrap()
}

/// `weir_acme_orders_total{result}`.
fn orders(admin: SocketAddr, result: &str) -> u64 {
    let needle = format!("weir_acme_orders_total{{result=\"{result}\"}} ");
    get_host(admin, &admin.to_string(), "/metrics")
        .body
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `curl https://NAME:PORT/` verifying against `root`: its HTTP status
/// ("000" when the handshake or verification fails).
fn curl_verified(name: &str, port: u16, root: &Path) -> String {
    let resolve = format!("{name}:{port}:127.0.0.1");
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--resolve", &resolve, "--cacert", root.to_str().unwrap()])
        .arg(format!("https://{name}:{port}/"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TLS client trusting `root` (PEM), with optional ALPN protocols.
fn tls_client(
    root: &Path,
    alpn: &[&[u8]],
) -> (tokio::runtime::Runtime, pingora_rustls::TlsConnector) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    pingora_rustls::install_default_crypto_provider();
    let mut roots = pingora_rustls::RootCertStore::empty();
    pingora_rustls::load_ca_file_into_store(root, &mut roots).unwrap();
    let mut config = pingora_rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (rt, pingora_rustls::TlsConnector::from(Arc::new(config)))
}

/// One verified handshake for `name`: the leaf certificate served.
async fn handshake(
    tls: &pingora_rustls::TlsConnector,
    addr: SocketAddr,
    name: &str,
) -> Result<Vec<u8>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let sn = pingora_rustls::ServerName::try_from(name.to_string()).unwrap();
    let s = tokio::time::timeout(Duration::from_secs(5), tls.connect(sn, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (_, conn) = s.get_ref();
    Ok(conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default())
}

#[test]
fn http01_obtains_a_certificate_that_verifies_against_the_ca_root() {
    let p = Pebble::start(3600, &[]);
    let b = TestBackend::start("b");
    let dir = TestDir::create();
    let s = setup(&p, "http-01", &dir.path().join("acme"));
    // A file certificate beside the ACME names: SNI picks among all.
    let file_ca = ca();
    let (c, k) = leaf(dir.path(), "files", &file_ca, &["files.test"], None);
    let ca_file = write_ca(dir.path(), &file_ca);
    let files = format!("{{ cert: \"{}\", key: \"{}\" }}", c.display(), k.display());
    let w = WeirProcess::start(
        &config(&p, &s, "http-01", "a.test, b.test", &files, b.addr()),
        s.https,
    );
    let row = wait_cert(&w, s.admin, None, ORDER);
    let root = p.root();
    for name in ["a.test", "b.test"] {
        assert_eq!(
            curl_verified(name, s.https.port(), &root),
            "200",
            "{name}\n{}",
            w.logs()
        );
    }
    assert_eq!(curl_verified("files.test", s.https.port(), &ca_file), "200");
    let file_row = rows(s.admin)
        .into_iter()
        .find(|r| r["source"] == "file")
        .unwrap();
    assert_eq!(file_row["names"], serde_json::json!(["files.test"]));
    assert_eq!(file_row["listener"], "websecure");
    assert!(file_row["days_left"].as_i64().is_some_and(|d| d > 300));
    assert_eq!(row["listener"], "websecure");
    assert_eq!(row["names"], serde_json::json!(["a.test", "b.test"]));
    assert!(row["days_left"].as_i64().is_some() && !row["next_renewal"].is_null());
    assert!(row["last_error"].is_null());
    assert_eq!(orders(s.admin, "success"), 1);
    assert_eq!(orders(s.admin, "failure"), 0);
    let metrics = get_host(s.admin, &s.admin.to_string(), "/metrics").body;
    let gauge =
        "weir_tls_certificate_expiry_timestamp_seconds{listener=\"websecure\",name=\"a.test\"}";
    assert!(metrics.contains(gauge), "{metrics}");
    // The status page lists it beside the file certificate.
    let status = get_host(s.admin, &s.admin.to_string(), "/status");
    let status: Value = serde_json::from_str(&status.body).unwrap();
    let page_names: Vec<&Value> = status["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["names"])
        .collect();
    assert_eq!(
        page_names,
        [
            &serde_json::json!(["files.test"]),
            &serde_json::json!(["a.test", "b.test"])
        ]
    );
    // Only pending tokens are answered: anything else under the challenge
    // path is routed as usual (the backend answers).
    let r = get(s.http, "/.well-known/acme-challenge/not-a-pending-token");
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "b");
    // `weir certs` shows the same, as a table.
    let out = run_weir(&["certs", "--admin", &s.admin.to_string()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("websecure") && table.contains("acme") && table.contains("a.test,b.test"),
        "{table}"
    );
    let json = run_weir(&["certs", "--admin", &s.admin.to_string(), "--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    let sources: Vec<&Value> = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["source"])
        .collect();
    assert_eq!(sources, ["file", "acme"]);
    // Storage: account and certificate, 0600.
    use std::os::unix::fs::PermissionsExt;
    let files: Vec<_> = walk(&dir.path().join("acme"));
    assert!(
        files.iter().any(|f| f.ends_with("account.json")),
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.ends_with("a.test.pem")), "{files:?}");
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "pem" || e == "json"))
    {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
}

fn walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn tls_alpn01_obtains_a_certificate_and_answers_acme_tls_only_while_validating() {
    let p = Pebble::start(3600, &[]);
    let b = TestBackend::start("b");
    let dir = TestDir::create();
    let s = setup(&p, "tls-alpn-01", &dir.path().join("acme"));
    let w = WeirProcess::start(
        &config(&p, &s, "tls-alpn-01", "a.test", "", b.addr()),
        s.https,
    );
    wait_cert(&w, s.admin, None, ORDER);
    let root = p.root();
    assert_eq!(
        curl_verified("a.test", s.https.port(), &root),
        "200",
        "{}",
        w.logs()
    );
    // weir's http listener is not on Pebble's http-01 port: the name was
    // validated by tls-alpn-01 only.
    assert!(!p.log().contains("validate w/ HTTP"), "{}", p.log());
    // Nothing is being validated now: acme-tls/1 is refused.
    let (rt, acme_only) = tls_client(&root, &[b"acme-tls/1"]);
    let r = rt.block_on(handshake(&acme_only, s.https, "a.test"));
    assert!(r.is_err(), "acme-tls/1 answered outside validation");
    let (_, normal) = tls_client(&root, &[b"h2", b"http/1.1"]);
    assert!(rt.block_on(handshake(&normal, s.https, "a.test")).is_ok());
}

#[test]
fn a_stored_certificate_is_served_with_the_ca_down_and_a_restart_reuses_the_account() {
    let mut p = Pebble::start(3600, &[]);
    let b = TestBackend::start("b");
    let dir = TestDir::create();
    let s = setup(&p, "http-01", &dir.path().join("acme"));
    let cfg = config(&p, &s, "http-01", "a.test", "", b.addr());
    let root = p.root();
    {
        let w = WeirProcess::start(&cfg, s.https);
        wait_cert(&w, s.admin, None, ORDER);
    }
    let account = walk(&dir.path().join("acme"))
        .into_iter()
        .find(|f| f.ends_with("account.json"))
        .unwrap();
    let before = std::fs::read(&account).unwrap();
    p.stop();
    let w = WeirProcess::start(&cfg, s.https);
    // Served from the first handshake, without the CA.
    assert_eq!(
        curl_verified("a.test", s.https.port(), &root),
        "200",
        "{}",
        w.logs()
    );
    assert!(acme_row(s.admin).is_some_and(|r| !r["not_after"].is_null()));
    assert_eq!(
        orders(s.admin, "success") + orders(s.admin, "failure"),
        0,
        "{}",
        w.logs()
    );
    assert!(
        !w.stderr().contains("ordering a certificate"),
        "{}",
        w.logs()
    );
    assert_eq!(
        std::fs::read(&account).unwrap(),
        before,
        "the account was kept"
    );
}

#[test]
fn a_refusing_ca_is_an_error_in_certs_and_weir_serves_its_other_listeners_meanwhile() {
    // Pebble validates http-01 on a port where nothing listens: it refuses.
    let p = Pebble::start(3600, &[]);
    let b = TestBackend::start("b");
    let dir = TestDir::create();
    let mut s = setup(&p, "http-01", &dir.path().join("acme"));
    s.http = free_addr();
    let w = WeirProcess::start(&config(&p, &s, "http-01", "a.test", "", b.addr()), s.https);
    // The other listener serves while the order is pending or failing.
    assert_eq!(get(s.http, "/").status, 200);
    let mut row = None;
    let failed = poll_until(ORDER, || {
        row = acme_row(s.admin);
        row.as_ref().is_some_and(|r| !r["last_error"].is_null())
    });
    assert!(failed, "{row:?}\n{}", w.logs());
    let row = row.unwrap();
    assert!(row["not_after"].is_null());
    assert_eq!(orders(s.admin, "failure"), 1);
    assert_eq!(orders(s.admin, "success"), 0);
    // The next attempt waits at least a minute.
    let next = row["next_renewal"].as_str().unwrap();
    let next = humantime::parse_rfc3339(next).unwrap();
    let wait = next
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(wait > Duration::from_secs(45), "retry in {wait:?}");
    // No certificate and no file fallback: handshakes fail, logged once.
    let root = p.root();
    for _ in 0..3 {
        assert_eq!(curl_verified("a.test", s.https.port(), &root), "000");
    }
    assert!(w.wait_for_log("no certificate for a.test yet", Duration::from_secs(5)));
    assert_eq!(
        w.log_count("no certificate for a.test yet"),
        1,
        "{}",
        w.logs()
    );
}

/// The DNS names of the certificate served for SNI `name`.
fn served_names(addr: SocketAddr, name: &str) -> String {
    let s = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            name,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut x = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    x.stdin.take().unwrap().write_all(&s.stdout).unwrap();
    String::from_utf8_lossy(&x.wait_with_output().unwrap().stdout).into_owned()
}

#[test]
fn until_its_certificate_exists_a_name_gets_the_listeners_first_file_certificate() {
    let mut p = Pebble::start(3600, &[]);
    p.stop(); // the CA is down from the start
    let b = TestBackend::start("b");
    let dir = TestDir::create();
    let s = setup(&p, "http-01", &dir.path().join("acme"));
    let file_ca = ca();
    let (c, k) = leaf(dir.path(), "files", &file_ca, &["files.test"], None);
    let files = format!("{{ cert: \"{}\", key: \"{}\" }}", c.display(), k.display());
    let w = WeirProcess::start(
        &config(&p, &s, "http-01", "a.test", &files, b.addr()),
        s.https,
    );
    let names = served_names(s.https, "a.test");
    assert!(names.contains("files.test"), "{names}");
    assert!(
        w.wait_for_log(
            "serving the listener's first certificate",
            Duration::from_secs(5)
        ),
        "{}",
        w.logs()
    );
}

#[test]
fn renewal_under_a_handshake_loop_drops_no_handshake_and_serves_the_new_certificate() {
    // 30 s certificates: renewed at two thirds of their life.
    let p = Pebble::start(30, &[]);
    let b = TestBackend::start("b");
    let dir = TestDir::create();
    let s = setup(&p, "tls-alpn-01", &dir.path().join("acme"));
    let w = WeirProcess::start(
        &config(&p, &s, "tls-alpn-01", "a.test", "", b.addr()),
        s.https,
    );
    let first = wait_cert(&w, s.admin, None, ORDER);
    let root = p.root();
    let (rt, tls) = tls_client(&root, &[b"http/1.1"]);
    let (mut ok, mut failed, mut leaves) = (0usize, Vec::new(), Vec::<Vec<u8>>::new());
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut renewed_at = None;
    for _ in 0..20_000 {
        if Instant::now() > deadline {
            break;
        }
        match rt.block_on(handshake(&tls, s.https, "a.test")) {
            Ok(leaf) => {
                ok += 1;
                if leaves.last() != Some(&leaf) {
                    leaves.push(leaf);
                }
            }
            Err(e) => failed.push(e),
        }
        if leaves.len() >= 2 && renewed_at.is_none() {
            renewed_at = Some(Instant::now());
        }
        // A little past the swap, then stop.
        if renewed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        failed.is_empty(),
        "{} of {} handshakes failed: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(
        leaves.len() >= 2,
        "no renewal within the loop ({ok} handshakes)\n{}",
        w.logs()
    );
    assert!(ok > 100, "{ok} handshakes");
    eprintln!(
        "{ok} handshakes, {} certificates served, 0 failed",
        leaves.len()
    );
    let now = acme_row(s.admin).unwrap();
    assert_ne!(now["not_after"], first["not_after"]);
    assert!(orders(s.admin, "success") >= 2);
}

#[test]
fn a_ca_that_goes_down_keeps_the_current_certificate_and_is_retried_with_growing_waits() {
    // 40 s certificates (renewal due after about 27 s); the CA is killed first.
    let mut p = Pebble::start(40, &[]);
    let b = TestBackend::start("b");
    let dir = TestDir::create();
    let s = setup(&p, "http-01", &dir.path().join("acme"));
    let w = WeirProcess::start(&config(&p, &s, "http-01", "a.test", "", b.addr()), s.https);
    wait_cert(&w, s.admin, None, ORDER);
    let root = p.root();
    p.stop();
    let mut row = None;
    let failed = poll_until(Duration::from_secs(40), || {
        row = acme_row(s.admin);
        row.as_ref().is_some_and(|r| !r["last_error"].is_null())
    });
    assert!(failed, "{row:?}\n{}", w.logs());
    // Still served (valid for a few more seconds), the error shown.
    assert_eq!(curl_verified("a.test", s.https.port(), &root), "200");
    assert_eq!(orders(s.admin, "failure"), 1);
    let out = run_weir(&["certs", "--admin", &s.admin.to_string()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Connect") || table.contains("connect"),
        "{table}"
    );
    assert!(
        w.wait_for_log("retrying in 1m", Duration::from_secs(1)),
        "{}",
        w.logs()
    );
    // The second attempt a minute later, then a two-minute wait.
    assert!(
        w.wait_for_log("retrying in 2m", Duration::from_secs(75)),
        "{}",
        w.logs()
    );
    assert_eq!(orders(s.admin, "failure"), 2);
}

#[test]
fn two_instances_sharing_storage_order_once_and_both_serve() {
    let p = Pebble::start(3600, &[]);
    let b = TestBackend::start("b");
    let dir = TestDir::create();
    let storage = dir.path().join("acme");
    // Pebble validates on the first instance's http port; a token of either
    // instance is in storage, so the first answers it in any case.
    let s1 = setup(&p, "http-01", &storage);
    let mut s2 = setup(&p, "http-01", &storage);
    s2.http = free_addr();
    let w1 = WeirProcess::spawn(
        &config(&p, &s1, "http-01", "a.test", "", b.addr()),
        &[],
        &[],
    );
    let w2 = WeirProcess::spawn(
        &config(&p, &s2, "http-01", "a.test", "", b.addr()),
        &[],
        &[],
    );
    w1.wait_ready(s1.admin, START_TIMEOUT);
    w2.wait_ready(s2.admin, START_TIMEOUT);
    let c1 = wait_cert(&w1, s1.admin, None, ORDER);
    let c2 = wait_cert(&w2, s2.admin, None, ORDER);
    assert_eq!(c1["not_after"], c2["not_after"]);
    let root = p.root();
    assert_eq!(curl_verified("a.test", s1.https.port(), &root), "200");
    assert_eq!(curl_verified("a.test", s2.https.port(), &root), "200");
    assert_eq!(orders(s1.admin, "success") + orders(s2.admin, "success"), 1);
    assert_eq!(p.finalized_orders(), 1, "{}", p.log());
}

#[test]
fn a_reload_that_adds_a_name_orders_it_and_one_that_removes_it_stops_renewing_it() {
    let p = Pebble::start(3600, &[]);
    let b = TestBackend::start("b");
    let dir = TestDir::create();
    let s = setup(&p, "http-01", &dir.path().join("acme"));
    let w = WeirProcess::start(&config(&p, &s, "http-01", "a.test", "", b.addr()), s.https);
    let first = wait_cert(&w, s.admin, None, ORDER);
    let root = p.root();
    assert_eq!(curl_verified("c.test", s.https.port(), &root), "000");
    w.write_config(&config(&p, &s, "http-01", "a.test, c.test", "", b.addr()));
    let out = run_weir(&["reload", "-c", w.config_path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = wait_cert(&w, s.admin, Some(&first["not_after"]), ORDER);
    assert_eq!(row["names"], serde_json::json!(["a.test", "c.test"]));
    assert_eq!(curl_verified("c.test", s.https.port(), &root), "200");
    // Removed: no longer renewed (the certificate in service still names
    // it until its renewal, which is for the remaining names only).
    w.write_config(&config(&p, &s, "http-01", "a.test", "", b.addr()));
    let out = run_weir(&["reload", "-c", w.config_path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        w.wait_for_log("no longer renewing c.test", Duration::from_secs(5)),
        "{}",
        w.logs()
    );
    let ok = poll_until(Duration::from_secs(5), || {
        acme_row(s.admin).is_some_and(|r| r["names"] == serde_json::json!(["a.test"]))
    });
    assert!(ok, "{:?}", acme_row(s.admin));
    assert_eq!(curl_verified("a.test", s.https.port(), &root), "200");
}

#[test]
fn check_names_the_line_of_each_acme_mistake() {
    let dir = TestDir::create();
    let path = dir.write(
        "weir.yaml",
        r#"listeners:
  - name: websecure
    address: "127.0.0.1:8443"
    protocol: https
    tls: { acme: ["*.example.com"] }
routes:
  - { name: r, match: { path_prefix: / }, respond: { status: 200 } }
"#,
    );
    let (ok, text) = check(&path);
    assert!(!ok, "{text}");
    assert!(text.contains("weir.yaml:5:"), "{text}");
    assert!(text.contains("needs the top-level acme section"), "{text}");
    assert!(text.contains("wildcard"), "{text}");
    let path = dir.write(
        "bad.yaml",
        r#"acme:
  directory: http://insecure.example/dir
  storage: /var/lib/weir/acme
  challenge: dns-01
listeners:
  - { name: web, address: "127.0.0.1:8080" }
"#,
    );
    let (ok, text) = check(&path);
    assert!(!ok, "{text}");
    assert!(text.contains("bad.yaml:4:"), "challenge: {text}");
}

/// `weir check -c path`: whether it passed, and everything it printed.
fn check(path: &std::path::Path) -> (bool, String) {
    let out = run_weir(&["check", "-c", path.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_daemonized_weir_orders_and_an_upgrade_reuses_the_stored_certificate_and_account() {
    let p = Pebble::start(3600, &[]);
    let b = TestBackend::start("b");
    let dir = TestDir::create();
    let s = setup(&p, "http-01", &dir.path().join("acme"));
    let text = dir
        .expand(&config(&p, &s, "http-01", "a.test", "", b.addr()))
        .replace(
            "upgrade_sock:",
            &format!(
                "error_log: \"{}/error.log\", upgrade_sock:",
                dir.path().display()
            ),
        );
    let cfg = dir.write("weir.yaml", &text);
    let mut daemons = Daemons::new(dir.path().join("weir.pid"));
    let out = run_weir(&["-c", cfg.to_str().unwrap(), "-d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_port(s.admin, Duration::from_secs(10)));
    assert!(poll_until(Duration::from_secs(5), || read_pid(
        &daemons.pid_file
    ) > 0));
    let old = daemons.remember();
    // The background service runs in the daemon (it was not a thread
    // started before the fork).
    let log = || std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
    let ok = poll_until(ORDER, || {
        acme_row(s.admin).is_some_and(|r| !r["not_after"].is_null())
    });
    assert!(ok, "{}", log());
    let first = acme_row(s.admin).unwrap();
    let root = p.root();
    assert_eq!(curl_verified("a.test", s.https.port(), &root), "200");
    let account = walk(&dir.path().join("acme"))
        .into_iter()
        .find(|f| f.ends_with("account.json"))
        .unwrap();
    let account_before = std::fs::read(&account).unwrap();
    let out = run_weir(&["upgrade", "-c", cfg.to_str().unwrap()]);
    let new = daemons.remember();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    assert_ne!(new, old);
    assert!(
        poll_until(Duration::from_secs(20), || !alive(old)),
        "{}",
        log()
    );
    assert!(wait_port(s.admin, Duration::from_secs(10)));
    // The new process serves the stored certificate and ordered nothing.
    assert_eq!(curl_verified("a.test", s.https.port(), &root), "200");
    assert_eq!(acme_row(s.admin).unwrap()["not_after"], first["not_after"]);
    assert_eq!(
        orders(s.admin, "success") + orders(s.admin, "failure"),
        0,
        "{}",
        log()
    );
    assert_eq!(std::fs::read(&account).unwrap(), account_before);
    assert_eq!(p.finalized_orders(), 1);
}

#[test]
fn a_reload_to_another_ca_obtains_the_certificates_there() {
    // Staging → production, played by two Pebbles (two directories).
    let staging = Pebble::start(3600, &[]);
    let b = TestBackend::start("b");
    let dir = TestDir::create();
    let s = setup(&staging, "http-01", &dir.path().join("acme"));
    // Both CAs validate on weir's one http port.
    let ports = Some((staging.http_port, staging.tls_port));
    let production = Pebble::start_with_ports(3600, &[], ports);
    let cfg = |p: &Pebble| config(p, &s, "http-01", "a.test", "", b.addr());
    let w = WeirProcess::start(&cfg(&staging), s.https);
    wait_cert(&w, s.admin, None, ORDER);
    let production_root = production.root();
    assert_eq!(
        curl_verified("a.test", s.https.port(), &production_root),
        "000"
    );
    w.write_config(&cfg(&production));
    let out = run_weir(&["reload", "-c", w.config_path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = poll_until(ORDER, || {
        curl_verified("a.test", s.https.port(), &production_root) == "200"
    });
    assert!(ok, "{}\n{}", w.logs(), production.log());
}
