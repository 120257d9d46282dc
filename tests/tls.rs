//! https listeners against real TLS clients (curl and openssl s_client from
//! Debian): SNI choice and the default certificate, HTTP/2 by ALPN, mTLS,
//! `X-Forwarded-Proto: https`, certificates re-read by a live reload,
//! `min_version`, and `weir check` on bad or expiring certificates.
//! Certificates are made in the test with rcgen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs")
}

/// `curl https://NAME:PORT/` with NAME resolved to 127.0.0.1 (so SNI is NAME).
fn curl_name(name: &str, port: u16, ca: &Path, extra: &[&str]) -> Output {
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}/");
    let mut args = vec!["--resolve", &resolve, "--cacert", ca.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// The subjectAltName of the certificate served without SNI.
fn default_cert_names(addr: SocketAddr) -> String {
    let s = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-noservername"])
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

fn config(listen: SocketAddr, backend: SocketAddr, tls: &str) -> String {
    format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
listeners:
  - name: websecure
    address: "{listen}"
    protocol: https
    tls: {tls}
routes:
  - {{ name: back, match: {{ path_prefix: / }}, upstream: b }}
upstreams:
  b: {{ backends: ["{backend}"] }}
"#
    )
}

#[test]
fn sni_picks_the_certificate_and_the_first_is_the_default() {
    let dir = TestDir::create();
    let ca = ca();
    let ca_path = write_ca(dir.path(), &ca);
    let (a_c, a_k) = leaf(dir.path(), "a", &ca, &["a.test"], None);
    let (w_c, w_k) = leaf(dir.path(), "w", &ca, &["*.b.test"], None);
    let b = TestBackend::start("b");
    let listen = free_addr();
    let tls =
        format!(
        "{{ certificates: [{{ cert: \"{}\", key: \"{}\" }}, {{ cert: \"{}\", key: \"{}\" }}] }}",
        a_c.display(), a_k.display(), w_c.display(), w_k.display()
    );
    let _w = WeirProcess::start(&config(listen, b.addr(), &tls), listen);
    // Verified against the CA with the SNI name: the right certificate.
    let o = curl_name("a.test", listen.port(), &ca_path, &["-D", "-"]);
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("x-forwarded-proto") && text.contains("https"),
        "{text}"
    );
    let o = curl_name("x.b.test", listen.port(), &ca_path, &[]);
    assert!(o.status.success(), "wildcard: {o:?}");
    // A wildcard covers one label only: deep.x.b.test gets the default (a.test) and fails verification.
    let o = curl_name("deep.x.b.test", listen.port(), &ca_path, &[]);
    assert!(!o.status.success(), "{o:?}");
    // No SNI at all: the first certificate.
    assert!(default_cert_names(listen).contains("a.test"));
}

#[test]
fn certificate_expiry_is_a_metric() {
    let dir = TestDir::create();
    let ca = ca();
    let (c, k) = leaf(dir.path(), "a", &ca, &["a.test"], Some(time_in_days(40)));
    let b = TestBackend::start("b");
    let (listen, admin) = (free_addr(), free_addr());
    let tls = one_certificate(&c, &k, "");
    let cfg = format!(
        "admin: {{ listen: \"{admin}\" }}\n{}",
        config(listen, b.addr(), &tls)
    );
    let _w = WeirProcess::start(&cfg, listen);
    assert!(wait_port(admin, START_TIMEOUT));
    let m = get_host(admin, &admin.to_string(), "/metrics").body;
    let line = m
        .lines()
        .find(|l| l.starts_with("weir_tls_certificate_expiry_timestamp_seconds{listener=\"websecure\",name=\"a.test\"}"))
        .unwrap_or_else(|| panic!("{m}"));
    let ts: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = (ts - now) / 86_400;
    assert!((38..=40).contains(&days), "{days} days: {line}");
}

#[test]
fn http2_by_alpn_only_when_enabled() {
    let dir = TestDir::create();
    let ca = ca();
    let ca_path = write_ca(dir.path(), &ca);
    let (c, k) = leaf(dir.path(), "a", &ca, &["a.test"], None);
    let b = TestBackend::start("b");
    for (http2, want) in [(true, "2"), (false, "1.1")] {
        let listen = free_addr();
        let tls = format!(
            "{{ certificates: [{{ cert: \"{}\", key: \"{}\" }}], http2: {http2} }}",
            c.display(),
            k.display()
        );
        let _w = WeirProcess::start(&config(listen, b.addr(), &tls), listen);
        let o = curl_name(
            "a.test",
            listen.port(),
            &ca_path,
            &[
                "--http2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("{want} 200"),
            "{o:?}"
        );
    }
}

#[test]
fn client_certificates_are_required_with_client_ca() {
    let dir = TestDir::create();
    let ca = ca();
    let ca_path = write_ca(dir.path(), &ca);
    let (c, k) = leaf(dir.path(), "a", &ca, &["a.test"], None);
    let (cc, ck) = leaf(dir.path(), "client", &ca, &["client.test"], None);
    let stranger = self::ca();
    let (sc, sk) = leaf(dir.path(), "stranger", &stranger, &["client.test"], None);
    let b = TestBackend::start("b");
    let listen = free_addr();
    let tls = format!(
        "{{ certificates: [{{ cert: \"{}\", key: \"{}\" }}], client_ca: \"{}\" }}",
        c.display(),
        k.display(),
        ca_path.display()
    );
    let _w = WeirProcess::start(&config(listen, b.addr(), &tls), listen);
    let code = |extra: &[&str]| {
        let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        args.extend_from_slice(extra);
        String::from_utf8_lossy(&curl_name("a.test", listen.port(), &ca_path, &args).stdout)
            .into_owned()
    };
    assert_eq!(code(&[]), "000", "no client certificate must be refused");
    assert_eq!(
        code(&[
            "--cert",
            sc.to_str().unwrap(),
            "--key",
            sk.to_str().unwrap()
        ]),
        "000"
    );
    assert_eq!(
        code(&[
            "--cert",
            cc.to_str().unwrap(),
            "--key",
            ck.to_str().unwrap()
        ]),
        "200"
    );
    assert_eq!(b.requests(), 1);
}

#[test]
fn a_live_reload_rereads_the_certificates() {
    let dir = TestDir::create();
    let ca = ca();
    let ca_path = write_ca(dir.path(), &ca);
    let (c, k) = leaf(dir.path(), "a", &ca, &["a.test"], None);
    let b = TestBackend::start("b");
    let listen = free_addr();
    let tls = one_certificate(&c, &k, "");
    let w = WeirProcess::start(&config(listen, b.addr(), &tls), listen);
    assert!(curl_name("a.test", listen.port(), &ca_path, &[])
        .status
        .success());
    assert!(!curl_name("new.test", listen.port(), &ca_path, &[])
        .status
        .success());
    // A bad key at the same path: the reload fails and the old certificate stays.
    std::fs::write(&k, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    w.signal("HUP");
    assert!(
        w.wait_for_log("config reload failed", Duration::from_secs(10)),
        "{}",
        w.logs()
    );
    assert!(curl_name("a.test", listen.port(), &ca_path, &[])
        .status
        .success());
    // New files at the same paths: served after the reload, same listener, no restart.
    leaf(dir.path(), "a", &ca, &["new.test"], None);
    w.signal("HUP");
    assert!(
        poll_until(Duration::from_secs(10), || curl_name(
            "new.test",
            listen.port(),
            &ca_path,
            &[]
        )
        .status
        .success()),
        "{}",
        w.logs()
    );
    assert!(w.is_running());
}

#[test]
fn min_version_13_refuses_tls12_sessions() {
    let dir = TestDir::create();
    let ca = ca();
    let ca_path = write_ca(dir.path(), &ca);
    let (c, k) = leaf(dir.path(), "a", &ca, &["a.test"], None);
    let b = TestBackend::start("b");
    let listen = free_addr();
    let tls = format!(
        "{{ certificates: [{{ cert: \"{}\", key: \"{}\" }}], min_version: \"1.3\" }}",
        c.display(),
        k.display()
    );
    let _w = WeirProcess::start(&config(listen, b.addr(), &tls), listen);
    let code = |extra: &[&str]| {
        let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        args.extend_from_slice(extra);
        String::from_utf8_lossy(&curl_name("a.test", listen.port(), &ca_path, &args).stdout)
            .into_owned()
    };
    assert_eq!(code(&["--tlsv1.3"]), "200");
    assert_eq!(code(&["--tls-max", "1.2"]), "000");
    assert_eq!(b.requests(), 1, "the TLS 1.2 request reached no backend");
    // Refused in the handshake itself (a scanner sees TLS 1.2 not offered),
    // not completed and closed afterwards.
    let (rt, tls12) = tls_client_only(&ca, false);
    let (_, tls13) = tls_client_only(&ca, true);
    let name = || pingora_rustls::ServerName::try_from("a.test").unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
        let r = tls12.connect(name(), tcp).await;
        assert!(r.is_err(), "a TLS 1.2 handshake completed");
        let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
        assert!(
            tls13.connect(name(), tcp).await.is_ok(),
            "TLS 1.3 handshake"
        );
    });
    let s = Command::new("openssl")
        .args(["s_client", "-connect", &listen.to_string(), "-tls1_2"])
        .args(["-servername", "a.test"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&s.stdout);
    assert!(
        !s.status.success() && !out.contains("BEGIN CERTIFICATE"),
        "openssl -tls1_2 got a certificate: {out}"
    );
}

/// Like [`tls_client`], speaking only TLS 1.3 (`tls13`) or only TLS 1.2.
fn tls_client_only(
    ca: &Ca,
    tls13: bool,
) -> (tokio::runtime::Runtime, pingora_rustls::TlsConnector) {
    let (rt, _) = tls_client(ca);
    let versions = match tls13 {
        true => &[&pingora_rustls::version::TLS13][..],
        false => &[&pingora_rustls::version::TLS12][..],
    };
    let mut roots = pingora_rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let config = pingora_rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots)
        .with_no_client_auth();
    (rt, pingora_rustls::TlsConnector::from(Arc::new(config)))
}

/// weir with one https listener (certificate for `a.test`) that also has
/// `listener_keys`, in front of backend `b`.
fn https_with(listener_keys: &str) -> (TestDir, Ca, TestBackend, SocketAddr, WeirProcess) {
    let dir = TestDir::create();
    let ca = ca();
    let (c, k) = leaf(dir.path(), "a", &ca, &["a.test"], None);
    let b = TestBackend::start("b");
    let listen = free_addr();
    let tls = one_certificate(&c, &k, listener_keys);
    let w = WeirProcess::start(&config(listen, b.addr(), &tls), listen);
    (dir, ca, b, listen, w)
}

/// The `tls:` of a listener with one certificate (`cert`, `key`), then
/// `listener_keys` (more keys of the listener, on their own line).
fn one_certificate(cert: &Path, key: &Path, listener_keys: &str) -> String {
    let tls = format!(
        "{{ certificates: [{{ cert: \"{}\", key: \"{}\" }}] }}",
        cert.display(),
        key.display()
    );
    match listener_keys {
        "" => tls,
        keys => format!("{tls}\n    {keys}"),
    }
}

/// A tokio runtime and a TLS client trusting `ca`, for raw handshakes.
fn tls_client(ca: &Ca) -> (tokio::runtime::Runtime, pingora_rustls::TlsConnector) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    pingora_rustls::install_default_crypto_provider();
    let mut roots = pingora_rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let config = pingora_rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (rt, pingora_rustls::TlsConnector::from(Arc::new(config)))
}

#[test]
fn past_max_connections_https_clients_wait_in_the_backlog_before_their_handshake() {
    let (_dir, ca, _b, listen, _w) = https_with("max_connections: 1");
    let (rt, connector) = tls_client(&ca);
    let name = || pingora_rustls::ServerName::try_from("a.test").unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
        let served = connector.connect(name(), tcp).await.unwrap();
        // The kernel completes the TCP handshake; weir does not accept, so
        // nobody answers the ClientHello while the slot is taken.
        let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
        let waiting = connector.connect(name(), tcp);
        tokio::pin!(waiting);
        let early = tokio::time::timeout(Duration::from_millis(500), &mut waiting).await;
        assert!(early.is_err(), "TLS handshake done past max_connections");
        drop(served);
        let late = tokio::time::timeout(Duration::from_secs(5), &mut waiting).await;
        assert!(
            matches!(late, Ok(Ok(_))),
            "handshake once the slot is free: {late:?}"
        );
    });
}

#[test]
fn a_client_that_never_starts_its_handshake_is_closed_at_the_header_timeout() {
    let (_dir, ca, _b, listen, _w) = https_with("timeouts: { header: 1s }");
    let mut silent = std::net::TcpStream::connect(listen).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let read = std::io::Read::read(&mut silent, &mut buf);
    let waited = started.elapsed();
    let closed = match &read {
        Ok(n) => *n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(closed, "expected a close, got {read:?} after {waited:?}");
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(4),
        "closed after {waited:?}, not at the 1 s header timeout"
    );
    // A client that does its handshake is still served.
    let (rt, connector) = tls_client(&ca);
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
        let name = pingora_rustls::ServerName::try_from("a.test").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    });
}

fn check(dir: &TestDir, tls: &str) -> Output {
    let cfg = dir.write(
        "weir.yaml",
        &format!(
            "listeners:\n  - name: s\n    address: 127.0.0.1:1\n    protocol: https\n    tls: {tls}\nroutes:\n  - respond: {{ status: 200 }}\n"
        ),
    );
    run_weir(&["check", "-c", cfg.to_str().unwrap()])
}

#[test]
fn check_refuses_bad_certificates_and_warns_about_expiring_ones() {
    let dir = TestDir::create();
    let ca = ca();
    let (c, k) = leaf(dir.path(), "a", &ca, &["a.test"], None);
    let (_, other_key) = leaf(dir.path(), "b", &ca, &["b.test"], None);
    let (old_c, old_k) = leaf(dir.path(), "old", &ca, &["old.test"], Some((2021, 1, 1)));
    let soon = time_in_days(5);
    let (soon_c, soon_k) = leaf(dir.path(), "soon", &ca, &["soon.test"], Some(soon));
    let pair = |c: &Path, k: &Path| one_certificate(c, k, "");
    for (label, tls, needle) in [
        (
            "missing file",
            pair(&dir.path().join("nope.pem"), &k),
            "cannot read",
        ),
        ("key mismatch", pair(&c, &other_key), "does not fit"),
        ("expired", pair(&old_c, &old_k), "expired"),
    ] {
        let o = check(&dir, &tls);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{label}: {err}");
        assert!(
            err.contains("weir.yaml:5:")
                && err.contains("listeners[0].tls.certificates[0]")
                && err.contains(needle),
            "{label}: {err}"
        );
    }
    let o = check(&dir, &pair(&soon_c, &soon_k));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: listeners[0].tls.certificates[0]: certificate soon.test expires in"),
        "{err}"
    );
}

/// (year, month, day) `days` from now (UTC).
fn time_in_days(days: i64) -> (i32, u8, u8) {
    let t = rcgen::date_time_ymd(1970, 1, 1)
        + Duration::from_secs(
            (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
                + days * 86_400) as u64,
        );
    (t.year(), t.month() as u8, t.day())
}

/// A sticky cookie set over https carries `Secure` (and `SameSite=Lax`).
#[test]
fn a_sticky_cookie_over_https_is_secure() {
    let dir = TestDir::create();
    let ca = ca();
    let ca_path = write_ca(dir.path(), &ca);
    let (c, k) = leaf(dir.path(), "a", &ca, &["a.test"], None);
    let b = TestBackend::start("b");
    let listen = free_addr();
    let tls = one_certificate(&c, &k, "");
    let cfg = config(listen, b.addr(), &tls).replace(
        "b: { backends: [",
        "b: { sticky: { cookie: sid, secret: s3cret-sticky }, backends: [",
    );
    let _w = WeirProcess::start(&cfg, listen);
    let out = curl_name(
        "a.test",
        listen.port(),
        &ca_path,
        &["-sS", "-D", "-", "-o", "/dev/null"],
    );
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let line = head
        .lines()
        .find(|l| l.starts_with("set-cookie: sid="))
        .unwrap_or_else(|| panic!("no sticky cookie: {head}"));
    assert!(line.contains("; secure"), "{line}");
    assert!(line.contains("samesite=lax"), "{line}");
}
