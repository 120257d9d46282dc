//! TLS and HTTP/2 towards backends: an HTTP/1.1 backend behind TLS (with
//! the upstream's `sni`, `ca` and `verify`), an h2 backend over TLS, and
//! gRPC (unary and server streaming) through an https+h2 listener to an h2c
//! backend, with many calls multiplexed on one upstream connection. The
//! backends are small tokio servers (rustls, the h2 crate) in this file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::{Buf, Bytes};
use common::*;
use pingora_rustls::{ClientConfig, RootCertStore, ServerConfig, TlsAcceptor, TlsConnector};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn server_config(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    pingora_rustls::install_default_crypto_provider();
    let (certs, key) =
        pingora_rustls::load_certs_and_key_files(cert.to_str().unwrap(), key.to_str().unwrap())
            .unwrap()
            .unwrap();
    let mut cfg = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An HTTP/1.1 server over TLS answering `sni=<name it saw>`.
fn tls_h1_backend(rt: &tokio::runtime::Runtime, cfg: Arc<ServerConfig>) -> SocketAddr {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(cfg);
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    let body = format!("sni={sni}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// gRPC over h2 (cleartext or TLS): `/t.E/Unary` echoes the message,
/// `/t.E/Stream` answers it three times; both end with `grpc-status: 0`.
/// Counts connections.
fn h2_backend(
    rt: &tokio::runtime::Runtime,
    tls: Option<Arc<ServerConfig>>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Relaxed);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(cfg) => {
                        if let Ok(s) = TlsAcceptor::from(cfg).accept(tcp).await {
                            serve_h2(s).await;
                        }
                    }
                    None => serve_h2(tcp).await,
                }
            });
        }
    });
    (addr, conns)
}

async fn serve_h2<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(io: T) {
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        tokio::spawn(async move {
            let path = req.uri().path().to_string();
            let mut body = req.into_body();
            let mut data = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            let resp = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let Ok(mut send) = respond.send_response(resp, false) else {
                return;
            };
            if path.ends_with("/Slow") {
                // Keeps the stream open, so later calls overlap with it.
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            let times = if path.ends_with("/Stream") { 3 } else { 1 };
            for _ in 0..times {
                let _ = send.send_data(Bytes::from(data.clone()), false);
            }
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let _ = send.send_trailers(trailers);
        });
    }
}

/// A gRPC message frame: uncompressed, 4-byte big-endian length.
fn frame(msg: &[u8]) -> Bytes {
    let mut v = vec![0u8];
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    Bytes::from(v)
}

fn weir_config(listen: SocketAddr, tls_listener: &str, upstream: &str) -> String {
    format!(
        r#"
server: {{ threads: 2, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
listeners:
  - name: edge
    address: "{listen}"
    {tls_listener}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: u }}
upstreams:
  u:
{upstream}
"#
    )
}

#[test]
fn http1_over_tls_with_sni_ca_and_verify() {
    let dir = TestDir::create();
    let ca = ca();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    let (c, k) = leaf(dir.path(), "backend", &ca, &["backend.test"], None);
    let rt = runtime();
    let backend = tls_h1_backend(&rt, server_config(&c, &k, &[b"http/1.1"]));
    let run = |tls: &str| {
        let listen = free_addr();
        let up = format!("    backends: [\"{backend}\"]\n    tls: {tls}");
        let w = WeirProcess::start(&weir_config(listen, "protocol: http", &up), listen);
        let r = get(listen, "/");
        drop(w);
        r
    };
    let r = run(&format!(
        "{{ sni: backend.test, ca: \"{}\" }}",
        ca_path.display()
    ));
    assert_eq!((r.status, r.body.as_str()), (200, "sni=backend.test"));
    // A certificate the configured CA did not sign: refused (502).
    let other = self::ca();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, other.cert.pem()).unwrap();
    let r = run(&format!(
        "{{ sni: backend.test, ca: \"{}\" }}",
        other_path.display()
    ));
    assert_eq!(r.status, 502);
    // The right CA but the wrong name: refused too.
    let r = run(&format!(
        "{{ sni: wrong.test, ca: \"{}\" }}",
        ca_path.display()
    ));
    assert_eq!(r.status, 502);
    // Health checks speak the upstream's TLS: a plaintext check would fail
    // against this backend and take it DOWN (503).
    let listen = free_addr();
    let up = format!(
        "    backends: [\"{backend}\"]\n    tls: {{ sni: backend.test, ca: \"{}\" }}\n    health_check: {{ type: http, interval: 200ms, timeout: 150ms, unhealthy_threshold: 1, healthy_threshold: 1 }}",
        ca_path.display()
    );
    let w = WeirProcess::start(&weir_config(listen, "protocol: http", &up), listen);
    std::thread::sleep(Duration::from_millis(800)); // four check rounds
    assert_eq!(get(listen, "/").status, 200, "{}", w.logs());
    assert!(!w.logs().contains("is DOWN"), "{}", w.logs());
    drop(w);
    // verify: false accepts it (for lab backends), and still sends the SNI.
    let r = run(&format!(
        "{{ sni: backend.test, verify: false, ca: \"{}\" }}",
        other_path.display()
    ));
    assert_eq!((r.status, r.body.as_str()), (200, "sni=backend.test"));
}

/// gRPC calls over one TLS+h2 client connection to weir; returns each
/// call's messages and grpc-status.
async fn grpc_calls(
    listen: SocketAddr,
    ca: &Path,
    calls: &[(&str, &[u8])],
) -> Vec<(Vec<Vec<u8>>, String)> {
    grpc_calls_spaced(listen, ca, calls, Duration::ZERO).await
}

/// As [`grpc_calls`], starting one call every `gap`.
async fn grpc_calls_spaced(
    listen: SocketAddr,
    ca: &Path,
    calls: &[(&str, &[u8])],
    gap: Duration,
) -> Vec<(Vec<Vec<u8>>, String)> {
    let mut roots = RootCertStore::empty();
    pingora_rustls::load_ca_file_into_store(ca, &mut roots).unwrap();
    let mut cfg = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
    let name = pingora_rustls::ServerName::try_from("edge.test").unwrap();
    let tls = TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let mut pending = Vec::new();
    for (path, msg) in calls {
        let mut client = client.clone().ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("https://edge.test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, false).unwrap();
        send.send_data(frame(msg), true).unwrap();
        pending.push(resp);
        tokio::time::sleep(gap).await;
    }
    let mut out = Vec::new();
    for resp in pending {
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.unwrap().unwrap_or_default();
        let status = trailers
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let mut msgs = Vec::new();
        let mut buf = Bytes::from(data);
        while buf.remaining() >= 5 {
            buf.advance(1);
            let len = buf.get_u32() as usize;
            msgs.push(buf.split_to(len).to_vec());
        }
        out.push((msgs, status));
    }
    out
}

fn edge_listener(dir: &Path, ca: &Ca) -> String {
    let (c, k) = leaf(dir, "edge", ca, &["edge.test"], None);
    format!(
        "protocol: https\n    tls: {{ certificates: [{{ cert: \"{}\", key: \"{}\" }}], http2: true }}",
        c.display(),
        k.display()
    )
}

#[test]
fn grpc_unary_and_streaming_through_h2c_on_one_connection() {
    let dir = TestDir::create();
    let ca = ca();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    let rt = runtime();
    let (backend, conns) = h2_backend(&rt, None);
    let listen = free_addr();
    let up = format!("    protocol: h2c\n    backends: [\"{backend}\"]");
    let _w = WeirProcess::start(
        &weir_config(listen, &edge_listener(dir.path(), &ca), &up),
        listen,
    );
    // The first call opens the h2c connection. Then slow calls start 20 ms
    // apart, each open for 400 ms, so all of them are in flight at once:
    // they share that connection (with one stream per connection, Pingora's
    // default, each would need its own). Starting them spaced avoids
    // Pingora's race where requests arriving together each open a connection.
    let first = rt.block_on(grpc_calls(listen, &ca_path, &[("/t.E/Unary", b"warm")]));
    assert_eq!(first[0], (vec![b"warm".to_vec()], "0".to_string()));
    let mut calls: Vec<(&str, &[u8])> = vec![("/t.E/Unary", b"ping"), ("/t.E/Stream", b"tick")];
    calls.extend(std::iter::repeat_n(("/t.E/Slow", &b"many"[..]), 8));
    let results = rt.block_on(grpc_calls_spaced(
        listen,
        &ca_path,
        &calls,
        Duration::from_millis(20),
    ));
    assert_eq!(results[0], (vec![b"ping".to_vec()], "0".to_string()));
    assert_eq!(results[1], (vec![b"tick".to_vec(); 3], "0".to_string()));
    for r in &results[2..] {
        assert_eq!(r, &(vec![b"many".to_vec()], "0".to_string()));
    }
    // Eight slow calls overlap: with one stream per connection they would
    // need eight connections. Pingora can still open a second one when a
    // stream's release races the next stream's acquire (seen about once in
    // five runs), so the bound is two, not one.
    let n = conns.load(Relaxed);
    assert!(
        (1..=2).contains(&n),
        "eleven calls, {n} h2c connections to the backend (one, two at most)"
    );
}

#[test]
fn h2_over_tls_to_the_backend() {
    let dir = TestDir::create();
    let ca = ca();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    let (c, k) = leaf(dir.path(), "backend", &ca, &["backend.test"], None);
    let rt = runtime();
    let (backend, conns) = h2_backend(&rt, Some(server_config(&c, &k, &[b"h2"])));
    let listen = free_addr();
    let up = format!(
        "    protocol: h2\n    backends: [\"{backend}\"]\n    tls: {{ sni: backend.test, ca: \"{}\" }}",
        ca_path.display()
    );
    let _w = WeirProcess::start(
        &weir_config(listen, &edge_listener(dir.path(), &ca), &up),
        listen,
    );
    let results = rt.block_on(grpc_calls(listen, &ca_path, &[("/t.E/Unary", b"secure")]));
    assert_eq!(results[0], (vec![b"secure".to_vec()], "0".to_string()));
    assert_eq!(conns.load(Relaxed), 1);
}
