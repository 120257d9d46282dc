//! Regression tests on raw sockets for what happens between weir and a
//! backend, modelled on HAProxy's reg-tests: `Expect: 100-continue`, bodies
//! a backend must not send (HEAD, 204, 304), an `Upgrade` the backend
//! declines, a backend that closes short of its Content-Length, and a client
//! that goes away mid-body.
//!
//! Every test checks what the client received, what the backend received
//! (a [`RawBackend`] records every byte and request), and that weir still
//! serves a normal GET afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};

/// How long a single response may take.
const RESP: Duration = Duration::from_secs(5);
/// How long a client waits for `100 Continue` (curl waits 1 s) before it
/// would send the body anyway; weir must answer within it.
const EXPECT_WAIT: Duration = Duration::from_secs(3);

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Sends an `Expect: 100-continue` POST of `hello` the way a client does:
/// head first, the body after `100 Continue` (or after [`EXPECT_WAIT`]),
/// then the final answer. Returns (interim statuses, final response, whether
/// anything arrived before the body was sent).
fn expect_continue_post(c: &mut RawConn, path: &str) -> (Vec<u16>, RawResponse, bool) {
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut interim = Vec::new();
    let answered_early = match c.read_response(false, EXPECT_WAIT) {
        Ok(r) if r.status == 100 => {
            interim.push(100);
            true
        }
        Ok(r) => return (interim, r, true),
        Err(_) => false,
    };
    c.send(b"hello").unwrap();
    let (more, last) = c.read_final(false, RESP).expect("final answer");
    interim.extend(more);
    (interim, last, answered_early)
}

#[test]
fn expect_100_continue_body_reaches_the_backend_once() {
    let rig = rig(echo_line);
    let mut c = RawConn::connect(rig.listen).unwrap();
    let (interim, last, early) = expect_continue_post(&mut c, "/expect");
    assert!(
        early,
        "no 100 Continue (nor any answer) within {EXPECT_WAIT:?} of an Expect: 100-continue head"
    );
    assert_eq!(interim.first(), Some(&100), "interim answers: {interim:?}");
    assert_eq!(
        (last.status, last.text()),
        (200, "POST /expect 5\n".to_string())
    );
    // The connection goes on (as nginx keeps it: curl sends this header on
    // every POST over 1 KiB), with no stray interim answer left over.
    assert!(
        !last.has_token("connection", "close"),
        "Expect: 100-continue cost the connection: {:?}",
        String::from_utf8_lossy(&last.head)
    );
    c.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let r = c
        .read_response(false, RESP)
        .expect("next answer on the same connection");
    assert_eq!((r.status, r.text()), (200, "GET /next 0\n".to_string()));
    let want = 2;
    drop(c);
    let reqs = rig.backend.requests();
    assert_eq!(reqs.len(), want, "requests upstream: {reqs:?}");
    assert_eq!(
        (reqs[0].target.as_str(), reqs[0].body.as_slice()),
        ("/expect", b"hello".as_slice())
    );
    assert_eq!(
        count(&rig.backend.received_bytes(), b"hello"),
        1,
        "the body went upstream exactly once"
    );
    rig.still_serves();
}

#[test]
fn expect_100_continue_with_a_backend_that_ignores_expect() {
    let rig = rig_with(RawBackend::start_ignoring_expect(echo_line));
    let mut c = RawConn::connect(rig.listen).unwrap();
    let started = Instant::now();
    let (interim, last, early) = expect_continue_post(&mut c, "/expect");
    assert!(
        early,
        "no 100 Continue within {EXPECT_WAIT:?} when the backend does not send one \
         (a client without a fallback timer would wait forever); final {} after {:?}",
        last.status,
        started.elapsed()
    );
    assert_eq!(
        (last.status, last.text()),
        (200, "POST /expect 5\n".to_string()),
        "interim answers: {interim:?}"
    );
    drop(c);
    let reqs = rig.backend.requests();
    assert_eq!(reqs.len(), 1, "requests upstream: {reqs:?}");
    assert_eq!(reqs[0].body, b"hello");
    rig.still_serves();
}

#[test]
fn expect_100_continue_on_weirs_own_answer() {
    let rig = rig(echo_line);
    let mut c = RawConn::connect(rig.listen).unwrap();
    // A respond route does not need the body: the final answer comes without
    // waiting for it, and the connection is closed (the body stays unread).
    c.send(b"POST /fixed HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let (interim, last) = c
        .read_final(false, EXPECT_WAIT)
        .expect("final answer without sending the body");
    assert_eq!(
        (last.status, last.text()),
        (200, "fixed\n".to_string()),
        "interim answers: {interim:?}"
    );
    assert!(
        last.has_token("connection", "close"),
        "answer with the body unread carries Connection: close: {:?}",
        String::from_utf8_lossy(&last.head)
    );
    assert_eq!(rig.backend.heads(), 0, "nothing upstream");
    drop(c);
    rig.still_serves();
}

/// Answers HEAD, /204 and /304 with bytes that must not reach the client.
fn stray_body_script(req: &RawRequest) -> Reply {
    if req.method == "HEAD" {
        Reply::raw("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nSTRAY-HEAD!")
    } else if req.target == "/204" {
        Reply::raw("HTTP/1.1 204 No Content\r\n\r\nSTRAY-204")
    } else if req.target == "/304" {
        Reply::raw("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\nSTRAY-304")
    } else {
        echo_line(req)
    }
}

/// On one keep-alive connection: each bodyless answer, then a GET whose
/// answer must start right after it (stray bytes would break its parse).
fn check_no_stray_bytes(rig: &Rig, first: &str, is_head: bool, want_status: u16) {
    let mut c = RawConn::connect(rig.listen).unwrap();
    for round in 0..2 {
        c.send(first.as_bytes()).unwrap();
        let r = c
            .read_response(is_head, RESP)
            .unwrap_or_else(|e| panic!("round {round}: answer to {first:?}: {e}"));
        assert_eq!(r.status, want_status, "round {round}: {first:?}");
        c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = c.read_response(false, RESP).unwrap_or_else(|e| {
            panic!("round {round}: the answer after {first:?} does not parse (stray bytes?): {e}")
        });
        assert_eq!(
            (r.status, r.text()),
            (200, "GET /after 0\n".to_string()),
            "round {round}: answer after {first:?}"
        );
        assert!(
            c.buffered().is_empty(),
            "round {round}: stray bytes: {:?}",
            String::from_utf8_lossy(c.buffered())
        );
    }
}

#[test]
fn body_on_a_head_answer_is_not_relayed() {
    let rig = rig(stray_body_script);
    check_no_stray_bytes(&rig, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n", true, 200);
    rig.still_serves();
}

#[test]
fn body_on_204_and_304_answers_is_not_relayed() {
    let rig = rig(stray_body_script);
    check_no_stray_bytes(&rig, "GET /204 HTTP/1.1\r\nHost: x\r\n\r\n", false, 204);
    check_no_stray_bytes(&rig, "GET /304 HTTP/1.1\r\nHost: x\r\n\r\n", false, 304);
    rig.still_serves();
}

const UPGRADE: &str =
    "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[test]
fn declined_upgrade_relays_no_tunnel_bytes() {
    let rig = rig(echo_line);
    let mut c = RawConn::connect(rig.listen).unwrap();
    // A WebSocket frame right behind the upgrade request, as an eager client
    // sends it; the backend answers 200, not 101.
    let mut bytes = UPGRADE.as_bytes().to_vec();
    bytes.extend_from_slice(b"\x81\x8bTUNNELBYTES\r\n\r\n");
    c.send(&bytes).unwrap();
    let r = c.read_response(false, RESP).expect("answer to the upgrade");
    assert_eq!((r.status, r.text()), (200, "GET /ws 0\n".to_string()));
    // Whatever weir makes of the frame (a 400, a close), nothing of it goes upstream.
    let (rest, _closed) = c.read_to_close(Duration::from_secs(3));
    let (more, _) = parse_responses(&rest);
    assert!(
        more.iter().all(|r| r.status >= 400),
        "after a declined upgrade the frame is not answered as a request: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        !rig.backend.received_contains(b"TUNNELBYTES"),
        "frame bytes were relayed upstream: {:?}",
        String::from_utf8_lossy(&rig.backend.received_bytes())
    );
    let reqs = rig.backend.requests();
    assert_eq!(reqs.len(), 1, "requests upstream: {reqs:?}");
    rig.still_serves();
}

#[test]
fn declined_upgrade_then_pipelined_request_is_parsed_as_http() {
    let rig = rig(echo_line);
    let mut c = RawConn::connect(rig.listen).unwrap();
    let mut bytes = UPGRADE.as_bytes().to_vec();
    bytes.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n");
    c.send(&bytes).unwrap();
    let r = c.read_response(false, RESP).expect("answer to the upgrade");
    assert_eq!((r.status, r.text()), (200, "GET /ws 0\n".to_string()));
    // SPEC §4: pipelined requests are answered in order, none dropped.
    let r = c
        .read_response(false, RESP)
        .expect("answer to the request pipelined behind the declined upgrade");
    assert_eq!((r.status, r.text()), (200, "GET /after 0\n".to_string()));
    drop(c);
    let after: Vec<RawRequest> = rig
        .backend
        .requests()
        .into_iter()
        .filter(|r| r.target == "/after")
        .collect();
    assert_eq!(after.len(), 1, "requests upstream: {after:?}");
    // Parsed and rebuilt by weir, not relayed raw through a tunnel.
    assert_eq!(
        after[0].header_all("x-forwarded-for"),
        ["127.0.0.1"],
        "/after went upstream as raw tunnel bytes: {:?}",
        String::from_utf8_lossy(&after[0].head)
    );
    rig.still_serves();
}

#[test]
fn backend_closing_short_of_content_length_is_not_a_hang() {
    let rig = rig(|req| {
        if req.target == "/truncated" {
            Reply::raw("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort").then_close()
        } else {
            echo_line(req)
        }
    });
    let mut c = RawConn::connect(rig.listen).unwrap();
    c.send(b"GET /truncated HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let (bytes, closed) = c.read_to_close(RESP);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(
        closed,
        "weir kept the connection open {:?} after the backend closed mid-body: {text:?}",
        started.elapsed()
    );
    // Either a 502 (nothing sent yet) or the 200 head with fewer bytes than
    // announced, then close: never a complete-looking or padded answer.
    let (resps, rest) = parse_responses(&bytes);
    match resps.first() {
        Some(r) => assert_eq!(r.status, 502, "a complete answer was relayed: {text:?}"),
        None => {
            assert!(text.starts_with("HTTP/1.1 200"), "answer: {text:?}");
            let head_end = text.find("\r\n\r\n").map_or(0, |p| p + 4);
            assert!(
                bytes.len() - head_end < 100,
                "more body than the backend sent: {text:?}"
            );
            assert_eq!(rest, bytes, "one truncated answer only");
        }
    }
    drop(c);
    rig.still_serves();
}

#[test]
fn client_abort_mid_body_cancels_the_backend_request() {
    let rig = rig(echo_line);
    let mut c = RawConn::connect(rig.listen).unwrap();
    c.send(b"POST /abort HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789")
        .unwrap();
    assert!(
        poll_until(RESP, || rig.backend.heads() == 1),
        "the request head went upstream"
    );
    drop(c);
    assert!(
        poll_until(RESP, || rig
            .backend
            .requests()
            .iter()
            .any(|r| r.target == "/abort" && !r.complete)),
        "the backend's connection was closed mid-body when the client left; recorded: {:?}; \
         open backend connections: {}",
        rig.backend.requests(),
        rig.backend.open_connections()
    );
    assert_eq!(rig.backend.answered(), 0, "no complete request upstream");
    rig.still_serves();
}
