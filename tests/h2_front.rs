//! HTTP/2 clients at weir's front, with the `h2` crate as the client: h2c
//! with prior knowledge on an `http` listener with `http2: true` (gRPC
//! clients without TLS), and the HTTP/2 → HTTP/1.1 translation a backend
//! sees (`X-Forwarded-Host` from `:authority`, one `Cookie` line, a
//! `content-length` that disagrees with the DATA never reaching a backend,
//! a client's cancel kept out of the process log's errors).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

/// weir with an h2c-capable http listener (and the access log on stdout)
/// in front of `backend`.
fn start(backend: SocketAddr, http2: bool) -> (WeirProcess, SocketAddr) {
    let listen = free_addr();
    let cfg = format!(
        r#"
server: {{ threads: 2, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
log: {{ access_log: {{ path: stdout, format: json }} }}
listeners: [{{ name: web, address: "{listen}", http2: {http2} }}]
routes:
  - name: main
    upstream: pool
upstreams:
  pool: {{ backends: ["{backend}"] }}
"#
    );
    (WeirProcess::start(&cfg, listen), listen)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An h2c (prior knowledge) client connection to `addr`.
async fn connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The answer to `req` with `body` (none when empty): status and body, or
/// the h2 error (a reset stream).
async fn send(
    client: &h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    body: &[u8],
) -> Result<(u16, String), h2::Error> {
    let mut client = client.clone().ready().await?;
    let (resp, mut stream) = client.send_request(req, body.is_empty())?;
    if !body.is_empty() {
        stream.send_data(Bytes::copy_from_slice(body), true)?;
    }
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("an answer within 5 s")?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok((status, String::from_utf8_lossy(&data).into_owned()))
}

fn get(uri: &str) -> http::request::Builder {
    http::Request::builder().method("GET").uri(uri)
}

/// `POST /upload` announcing `content-length: 5`.
fn upload_of_five() -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri("http://h2c.test/upload")
        .header("content-length", "5")
        .body(())
        .unwrap()
}

#[test]
fn h2c_with_prior_knowledge_and_http1_share_an_http2_listener() {
    let backend = RawBackend::start(echo_line);
    let (_w, listen) = start(backend.addr(), true);
    let rt = runtime();
    rt.block_on(async {
        let client = connect(listen).await;
        for i in 0..3 {
            let r = send(
                &client,
                get("http://h2c.test/grpc/x").body(()).unwrap(),
                b"",
            )
            .await
            .unwrap();
            assert_eq!(r, (200, "GET /grpc/x 0\n".to_string()), "request {i}");
        }
        // A body too, as a gRPC call sends.
        let post = http::Request::builder()
            .method("POST")
            .uri("http://h2c.test/svc/Call")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let r = send(&client, post, b"\0\0\0\0\x02hi").await.unwrap();
        assert_eq!(r, (200, "POST /svc/Call 7\n".to_string()));
    });
    // HTTP/1.1 on the same port.
    let r = request(listen, "GET", "/h1", &[]).unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "GET /h1 0\n"));
    assert_eq!(backend.answered(), 5);
}

#[test]
fn without_http2_an_h2c_preface_is_refused() {
    let backend = RawBackend::start(echo_line);
    let (_w, listen) = start(backend.addr(), false);
    let rt = runtime();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
        let handshake = async {
            let (client, conn) = h2::client::handshake(tcp).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            send(&client, get("http://h2c.test/").body(()).unwrap(), b"").await
        };
        let r = tokio::time::timeout(Duration::from_secs(5), handshake).await;
        assert!(
            matches!(r, Ok(Err(_))),
            "h2c on an HTTP/1-only listener: {r:?}"
        );
    });
    assert_eq!(backend.heads(), 0);
}

#[test]
fn http2_requests_get_x_forwarded_host_one_cookie_line_and_a_logged_host() {
    let backend = RawBackend::start(echo_line);
    let (w, listen) = start(backend.addr(), true);
    let rt = runtime();
    rt.block_on(async {
        let client = connect(listen).await;
        let req = get("http://shop.test:8080/cart")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("cookie", "c=3")
            .body(())
            .unwrap();
        let r = send(&client, req, b"").await.unwrap();
        assert_eq!(r.0, 200);
    });
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    let head = String::from_utf8_lossy(&r.head);
    let mut fails = Vec::new();
    if r.header("x-forwarded-host") != Some("shop.test:8080") {
        fails.push(format!("X-Forwarded-Host is not the :authority: {head:?}"));
    }
    if r.header("host") != Some("shop.test:8080") {
        fails.push(format!("Host is not the :authority: {head:?}"));
    }
    if r.header_all("cookie") != ["a=1; b=2; c=3"] {
        fails.push(format!("not one Cookie line (RFC 9113 §8.2.3): {head:?}"));
    }
    let logged = poll_until(Duration::from_secs(5), || {
        w.stdout().contains(r#""host":"shop.test:8080""#)
    });
    if !logged {
        fails.push(format!(
            "the access log lacks the :authority: {}",
            w.stdout()
        ));
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

#[test]
fn a_content_length_that_disagrees_with_the_data_never_reaches_a_backend() {
    let backend = RawBackend::start(echo_line);
    let (w, listen) = start(backend.addr(), true);
    let rt = runtime();
    rt.block_on(async {
        let client = connect(listen).await;
        for (label, body) in [("longer", &b"0123456789"[..]), ("shorter", &b"012"[..])] {
            let req = upload_of_five();
            let r = send(&client, req, body).await;
            assert!(
                !matches!(r, Ok((200, _))),
                "{label} DATA than content-length: {r:?}"
            );
        }
        // The connection (and a well-formed request on it) still works.
        let req = upload_of_five();
        let r = send(&client, req, b"hello").await.unwrap();
        assert_eq!(r, (200, "POST /upload 5\n".to_string()));
    });
    assert_eq!(
        backend.heads(),
        1,
        "only the well-formed request: {:?}",
        backend.requests()
    );
    assert!(w.is_running());
}

#[test]
fn a_client_cancel_is_no_error_in_the_process_log() {
    let backend = RawBackend::start(|req| {
        if req.target == "/slow" {
            std::thread::sleep(Duration::from_millis(1500));
        }
        echo_line(req)
    });
    let (w, listen) = start(backend.addr(), true);
    let rt = runtime();
    rt.block_on(async {
        let client = connect(listen).await;
        let mut c = client.clone().ready().await.unwrap();
        let (resp, mut stream) = c
            .send_request(get("http://h2c.test/slow").body(()).unwrap(), true)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // What a gRPC client's cancel sends.
        stream.send_reset(h2::Reason::CANCEL);
        drop(resp);
        let r = send(&client, get("http://h2c.test/after").body(()).unwrap(), b"")
            .await
            .unwrap();
        assert_eq!(r.0, 200);
    });
    assert!(
        poll_until(Duration::from_secs(5), || w
            .stdout()
            .contains(r#""status":499"#)),
        "the cancel is in the access log: {}",
        w.stdout()
    );
    let err = w.stderr();
    assert!(
        !err.contains("ERROR"),
        "a client's cancel logged as an error: {err}"
    );
}
