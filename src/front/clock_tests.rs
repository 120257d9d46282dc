//! Unit tests of `clock`.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn pair(limit: Duration) -> (HeadClock, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let stream: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(server));
    (HeadClock::new(stream, limit, Some(60), None), client)
}

#[tokio::test]
async fn a_trickled_head_times_out_and_a_disarmed_one_does_not() {
    let (mut clock, mut client) = pair(Duration::from_millis(300)).await;
    let mut buf = [0u8; 16];
    client.write_all(b"G").await.unwrap();
    assert_eq!(clock.read(&mut buf).await.unwrap(), 1);
    // Nothing more arrives: the read fails at the deadline.
    let e = clock.read(&mut buf).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    // Disarmed, reads wait as long as it takes.
    clock.disarm();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.write_all(b"x").await.unwrap();
        client
    });
    assert_eq!(clock.read(&mut buf).await.unwrap(), 1);
    // Armed again, the clock starts at the next byte, not before.
    clock.arm();
    let mut client = writer.await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.write_all(b"y").await.unwrap();
    assert_eq!(clock.read(&mut buf).await.unwrap(), 1);
}

#[tokio::test]
async fn first_bytes_are_read_again_in_order_and_start_the_clock() {
    let (mut clock, mut client) = pair(Duration::from_millis(300)).await;
    client.write_all(b"GET / HT").await.unwrap();
    let n = std::future::poll_fn(|cx| clock.poll_first_bytes(cx))
        .await
        .unwrap();
    assert_eq!(n, 8);
    // Waiting again does not read again.
    let again = std::future::poll_fn(|cx| clock.poll_first_bytes(cx))
        .await
        .unwrap();
    assert_eq!(again, 8);
    client.write_all(b"TP/1.1\r\n").await.unwrap();
    // A small reader gets the kept bytes first, then the socket's.
    let mut small = [0u8; 5];
    assert_eq!(clock.read(&mut small).await.unwrap(), 5);
    assert_eq!(&small, b"GET /");
    let mut rest = Vec::new();
    let mut buf = [0u8; 64];
    while rest.len() < 11 {
        let n = clock.read(&mut buf).await.unwrap();
        rest.extend_from_slice(&buf[..n]);
    }
    assert_eq!(rest, b" HTTP/1.1\r\n");
    // The clock started with the first bytes: the head is late now.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let e = clock.read(&mut buf).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
}

#[tokio::test]
async fn the_h2_preface_is_told_from_http1_methods() {
    for (bytes, h2) in [
        (&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"[..], true),
        (b"PRI * HT", true),
        (b"PRI", true),
        (b"PR", false),
        (b"P", false),
        (b"PUT / HTTP/1.1\r\n", false),
        (b"PROPFIND / HTTP/1.1\r\n", false),
        (b"GET / HTTP/1.1\r\n", false),
    ] {
        let (mut clock, mut client) = pair(Duration::from_secs(1)).await;
        client.write_all(bytes).await.unwrap();
        std::future::poll_fn(|cx| clock.poll_first_bytes(cx))
            .await
            .unwrap();
        assert_eq!(clock.starts_with_h2_preface(), h2, "{bytes:?}");
    }
}

#[test]
fn found_through_a_stream() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (clock, _client) = pair(Duration::from_secs(1)).await;
        let stream: Stream = Box::new(clock);
        assert!(clock_of(&stream).is_some());
    });
}
