//! PROXY protocol (SPEC §1 `listeners[].proxy_protocol`, upstream
//! `send_proxy_protocol`; §4 "Client address"): v1 and v2 headers in on
//! http and https listeners (the source is the client: X-Forwarded-For,
//! trusted proxies), connections without a valid header closed, and v1/v2
//! headers out to backends, never shared between clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn server() -> &'static str {
    r#"server: { threads: 2, pid_file: "{{DIR}}/weir.pid", upgrade_sock: "{{DIR}}/up.sock" }"#
}

/// An http listener with `proxy_protocol: true` in front of `backend`.
fn config_in(listen: SocketAddr, backend: SocketAddr, top: &str) -> String {
    format!(
        r#"
{server}
{top}
listeners:
  - {{ name: web, address: "{listen}", proxy_protocol: true, timeouts: {{ header: 1s }} }}
routes:
  - {{ name: back, match: {{ path_prefix: / }}, upstream: b }}
upstreams:
  b: {{ backends: ["{backend}"] }}
"#,
        server = server()
    )
}

/// A v2 header for TCP from `src` to `dst` (built here byte by byte, not
/// with weir's encoder).
fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21);
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.extend_from_slice(&[0x11, 0, 12]);
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            h.extend_from_slice(&[0x21, 0, 36]);
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
        }
        _ => panic!("mixed families"),
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n";

/// Sends `header` and a request in one write (so weir reads past the
/// header) and returns what the backend saw as X-Forwarded-For.
fn xff_via(listen: SocketAddr, header: &[u8], extra: &str) -> Option<String> {
    let mut c = KeepAliveClient::connect(listen).unwrap();
    let req = format!("GET /x HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
    let bytes = [header, req.as_bytes()].concat();
    let r = c.send_raw(&bytes, false).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // The same connection goes on without another header.
    let again = c.send_raw(req.as_bytes(), false).unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(
        again.echoed_header("x-forwarded-for"),
        r.echoed_header("x-forwarded-for")
    );
    r.echoed_header("x-forwarded-for")
}

#[test]
fn v1_and_v2_sources_become_the_client_address() {
    let backend = TestBackend::start("b");
    let listen = free_addr();
    let _weir = WeirProcess::start(&config_in(listen, backend.addr(), ""), listen);
    let client: SocketAddr = "203.0.113.9:4444".parse().unwrap();
    assert_eq!(
        xff_via(listen, &v1(client, listen), "").as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(
        xff_via(listen, &v2(client, listen), "").as_deref(),
        Some("203.0.113.9")
    );
    let six: SocketAddr = "[2001:db8::9]:4444".parse().unwrap();
    let dst6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
    assert_eq!(
        xff_via(listen, &v2(six, dst6), "").as_deref(),
        Some("2001:db8::9")
    );
    assert_eq!(
        xff_via(listen, &v1(six, dst6), "").as_deref(),
        Some("2001:db8::9")
    );
    // From an untrusted source, a client's own X-Forwarded-For is dropped.
    assert_eq!(
        xff_via(
            listen,
            &v1(client, listen),
            "X-Forwarded-For: 198.51.100.1\r\n"
        )
        .as_deref(),
        Some("203.0.113.9")
    );
    // LOCAL (the balancer's own check): the socket peer stands.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    assert_eq!(xff_via(listen, local, "").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        xff_via(listen, b"PROXY UNKNOWN\r\n", "").as_deref(),
        Some("127.0.0.1")
    );
}

#[test]
fn trusted_proxies_apply_to_the_proxy_source() {
    let backend = TestBackend::start("b");
    let listen = free_addr();
    let cfg = config_in(listen, backend.addr(), "trusted_proxies: [203.0.113.0/24]");
    let _weir = WeirProcess::start(&cfg, listen);
    let proxy: SocketAddr = "203.0.113.9:4444".parse().unwrap();
    // The PROXY source is a trusted proxy: its X-Forwarded-For is believed.
    assert_eq!(
        xff_via(
            listen,
            &v2(proxy, listen),
            "X-Forwarded-For: 198.51.100.1\r\n"
        )
        .as_deref(),
        Some("198.51.100.1, 203.0.113.9")
    );
    // The socket peer (127.0.0.1) is not trusted: with a source outside the
    // list, the header is dropped.
    let other: SocketAddr = "192.0.2.1:4444".parse().unwrap();
    assert_eq!(
        xff_via(
            listen,
            &v2(other, listen),
            "X-Forwarded-For: 198.51.100.1\r\n"
        )
        .as_deref(),
        Some("192.0.2.1")
    );
}

/// What arrives on a fresh connection that sends `bytes`: (bytes, closed).
fn answer_to(listen: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let (got, closed) = exchange(listen, bytes, Duration::from_secs(4)).unwrap();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[test]
fn connections_without_a_valid_header_are_closed() {
    let backend = TestBackend::start("b");
    let listen = free_addr();
    let _weir = WeirProcess::start(&config_in(listen, backend.addr(), ""), listen);
    let src: SocketAddr = "203.0.113.9:4444".parse().unwrap();
    let mut bad_version = v2(src, listen);
    bad_version[12] = 0x31;
    for bytes in [
        GET.to_vec(),
        [
            b"PROXY TCP4 999.0.113.9 127.0.0.1 4444 80\r\n".as_slice(),
            GET,
        ]
        .concat(),
        [b"PROXY TCP4 203.0.113.9 127.0.0.1 4444\r\n".as_slice(), GET].concat(),
        [
            b"PROXY TCP4 203.0.113.9 127.0.0.1 4444 80\n".as_slice(),
            GET,
        ]
        .concat(),
        [bad_version.as_slice(), GET].concat(),
        [
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04\x01\x02\x03\x04".as_slice(),
            GET,
        ]
        .concat(),
        vec![0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5],
    ] {
        let (got, closed) = answer_to(listen, &bytes);
        assert!(closed, "{bytes:?} left the connection open");
        assert!(got.is_empty(), "{bytes:?} was answered: {got:?}");
    }
    // A header that never ends is closed at the header deadline (1 s).
    let t = Instant::now();
    let (got, closed) = answer_to(listen, b"PROXY TCP4 203.0");
    assert!(closed && got.is_empty());
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(backend.requests(), 0, "a request reached the backend");
    // The listener still serves good connections.
    assert_eq!(
        xff_via(listen, &v1(src, listen), "").as_deref(),
        Some("203.0.113.9")
    );
}

/// A stand-in for an L4 balancer: accepts on a free port and relays each
/// connection to `to`, first sending `header(client address)`.
fn balancer(to: SocketAddr, header: fn(SocketAddr) -> Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let Ok(mut up) = TcpStream::connect(to) else {
                continue;
            };
            let peer = c.peer_addr().unwrap();
            if up.write_all(&header(peer)).is_err() {
                continue;
            }
            let (mut c2, mut up2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut up2);
                let _ = up2.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let (mut c, mut up) = (c, up);
                let _ = std::io::copy(&mut up, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn https_listeners_read_the_header_before_tls() {
    use rcgen::{CertificateParams, KeyPair};
    let dir = TestDir::create();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["a.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = dir.write("a.pem", &cert.pem());
    dir.write("a.key", &key.serialize_pem());
    let backend = TestBackend::start("b");
    let listen = free_addr();
    let plain = free_addr();
    let cfg = format!(
        r#"
{server}
listeners:
  - name: websecure
    address: "{listen}"
    protocol: https
    proxy_protocol: true
    tls: {{ certificates: [{{ cert: "{dir}/a.pem", key: "{dir}/a.key" }}] }}
  - {{ name: web, address: "{plain}" }}
routes:
  - {{ name: back, match: {{ path_prefix: / }}, upstream: b }}
upstreams:
  b: {{ backends: ["{backend}"] }}
"#,
        server = server(),
        dir = dir.path().display(),
        backend = backend.addr()
    );
    let _weir = WeirProcess::start(&cfg, plain);
    assert!(wait_port(listen, START_TIMEOUT));
    fn hdr(_: SocketAddr) -> Vec<u8> {
        b"PROXY TCP4 203.0.113.77 127.0.0.1 5555 443\r\n".to_vec()
    }
    let lb = balancer(listen, hdr);
    let curl = |port: u16, extra: &[&str]| {
        let resolve = format!("a.test:{port}:127.0.0.1");
        let url = format!("https://a.test:{port}/");
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "5", "--resolve", &resolve, "--cacert"])
            .arg(&pem)
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for alpn in [&["--http1.1"][..], &["--http2"][..]] {
        let body = curl(lb.port(), alpn);
        let echo = Echo::parse(&body).unwrap_or_else(|| panic!("{alpn:?}: {body:?}"));
        let xff = echo
            .headers
            .iter()
            .find(|(k, _)| k == "x-forwarded-for")
            .map(|(_, v)| v.as_str());
        assert_eq!(xff, Some("203.0.113.77"), "{alpn:?}");
    }
    // Straight to the https listener, without a header: refused.
    assert_eq!(curl(listen.port(), &[]), "");
    // The plain listener without proxy_protocol is unaffected.
    assert_eq!(get(plain, "/").status, 200);
}

/// A backend that wants a PROXY header: per connection it records the
/// header, then answers every request (no bodies) with 200 "ok".
struct PpBackend {
    addr: SocketAddr,
    headers: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn read_header(c: &mut TcpStream) -> Option<Vec<u8>> {
    let mut h = vec![0u8; 16];
    c.read_exact(&mut h[..5]).ok()?;
    if h.starts_with(b"PROXY") {
        h.truncate(5);
        while !h.ends_with(b"\r\n") && h.len() < 107 {
            let mut b = [0u8];
            c.read_exact(&mut b).ok()?;
            h.push(b[0]);
        }
        return Some(h);
    }
    c.read_exact(&mut h[5..16]).ok()?;
    let len = u16::from_be_bytes([h[14], h[15]]) as usize;
    let mut rest = vec![0u8; len];
    c.read_exact(&mut rest).ok()?;
    h.extend(rest);
    Some(h)
}

impl PpBackend {
    fn start() -> PpBackend {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let headers = Arc::new(Mutex::new(Vec::new()));
        let seen = headers.clone();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let Some(h) = read_header(&mut c) else { return };
                    seen.lock().unwrap().push(h);
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
                            if c.write_all(ok).is_err() {
                                return;
                            }
                        }
                        match c.read(&mut tmp) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                });
            }
        });
        PpBackend { addr, headers }
    }

    fn headers(&self) -> Vec<Vec<u8>> {
        self.headers.lock().unwrap().clone()
    }
}

fn config_out(
    listen: SocketAddr,
    backend: SocketAddr,
    version: &str,
    listener_extra: &str,
) -> String {
    format!(
        r#"
{server}
listeners:
  - {{ name: web, address: "{listen}"{listener_extra} }}
routes:
  - {{ name: back, match: {{ path_prefix: / }}, upstream: b }}
upstreams:
  b: {{ backends: ["{backend}"], send_proxy_protocol: {version} }}
"#,
        server = server()
    )
}

#[test]
fn headers_out_name_each_client_and_connections_are_not_shared() {
    for (version, encode) in [
        ("v1", v1 as fn(SocketAddr, SocketAddr) -> Vec<u8>),
        ("v2", v2),
    ] {
        let backend = PpBackend::start();
        let listen = free_addr();
        let _weir = WeirProcess::start(&config_out(listen, backend.addr, version, ""), listen);
        let mut a = KeepAliveClient::connect(listen).unwrap();
        let mut b = KeepAliveClient::connect(listen).unwrap();
        for i in 0..5 {
            let c = if i % 2 == 0 { &mut a } else { &mut b };
            let r = c.send("GET", "/", &[("host", "t")]).unwrap();
            assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{version}");
        }
        let mut seen = backend.headers();
        let mut want = vec![
            encode(a.local_addr(), listen),
            encode(b.local_addr(), listen),
        ];
        seen.sort();
        want.sort();
        // One backend connection per client, each naming its own client:
        // neither client's requests went over the other's connection.
        assert_eq!(seen, want, "{version}");
    }
}

#[test]
fn a_proxy_header_in_is_the_source_of_the_header_out() {
    let backend = PpBackend::start();
    let listen = free_addr();
    let cfg = config_out(listen, backend.addr, "v1", ", proxy_protocol: true");
    let _weir = WeirProcess::start(&cfg, listen);
    let client: SocketAddr = "203.0.113.9:4444".parse().unwrap();
    let mut c = KeepAliveClient::connect(listen).unwrap();
    let r = c
        .send_raw(&[v2(client, listen).as_slice(), GET].concat(), false)
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(backend.headers(), vec![v1(client, listen)]);
}

#[test]
fn health_checks_send_a_local_header() {
    for (version, local) in [
        ("v1", b"PROXY UNKNOWN\r\n".to_vec()),
        ("v2", b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec()),
    ] {
        let backend = PpBackend::start();
        let listen = free_addr();
        let cfg = config_out(listen, backend.addr, version, "").replace(
            &format!("send_proxy_protocol: {version} }}"),
            &format!(
                "send_proxy_protocol: {version}, health_check: {{ type: http, interval: 200ms, \
                 timeout: 150ms, unhealthy_threshold: 2 }} }}"
            ),
        );
        assert!(cfg.contains("health_check"), "{cfg}");
        let _weir = WeirProcess::start(&cfg, listen);
        assert!(
            poll_until(Duration::from_secs(5), || backend.headers().len() >= 3),
            "{version}: checks never reached the backend"
        );
        // A backend that gets no header answers nothing, so passing checks
        // (the backend is still up) mean each check sent one.
        std::thread::sleep(Duration::from_millis(600));
        assert!(backend.headers().iter().all(|h| *h == local), "{version}");
        assert_eq!(get(listen, "/").status, 200, "{version}: backend taken out");
    }
}
