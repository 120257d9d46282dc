//! Unit tests of the PROXY protocol framing and encoding.

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

#[test]
fn v1_round_trip() {
    let h = encode(
        ProxyProtocolVersion::V1,
        addr("192.0.2.7:5555"),
        addr("10.0.0.1:80"),
    );
    assert_eq!(h, b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\n");
    let mut with_data = h.clone();
    with_data.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(
        parse(&with_data),
        Parsed::Complete(Header {
            len: h.len(),
            source: Some(addr("192.0.2.7:5555")),
            destination: Some(addr("10.0.0.1:80")),
        })
    );
}

#[test]
fn v2_round_trip_both_families() {
    for (s, d) in [
        ("192.0.2.7:5555", "10.0.0.1:80"),
        ("[2001:db8::7]:5555", "[2001:db8::1]:443"),
    ] {
        let h = encode(ProxyProtocolVersion::V2, addr(s), addr(d));
        let Parsed::Complete(p) = parse(&h) else {
            panic!("{h:?} did not parse")
        };
        assert_eq!(
            (p.len, p.source, p.destination),
            (h.len(), Some(addr(s)), Some(addr(d)))
        );
    }
}

#[test]
fn mixed_families_are_mapped() {
    let h = encode(
        ProxyProtocolVersion::V1,
        addr("192.0.2.7:5555"),
        addr("[::1]:80"),
    );
    assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.7 ::1 5555 80\r\n");
    let h = encode(
        ProxyProtocolVersion::V1,
        addr("[::ffff:192.0.2.7]:5555"),
        addr("10.0.0.1:80"),
    );
    assert_eq!(h, b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\n");
}

#[test]
fn local_headers_name_no_client() {
    for v in [ProxyProtocolVersion::V1, ProxyProtocolVersion::V2] {
        let h = encode_local(v);
        assert_eq!(
            parse(&h),
            Parsed::Complete(Header {
                len: h.len(),
                source: None,
                destination: None
            })
        );
    }
}

#[test]
fn prefixes_are_incomplete_and_garbage_is_invalid() {
    let h = encode(
        ProxyProtocolVersion::V2,
        addr("192.0.2.7:5555"),
        addr("10.0.0.1:80"),
    );
    for n in 0..h.len() {
        assert_eq!(parse(&h[..n]), Parsed::Incomplete, "v2 prefix of {n}");
    }
    let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\n";
    for n in 0..v1.len() {
        assert_eq!(parse(&v1[..n]), Parsed::Incomplete, "v1 prefix of {n}");
    }
    for bad in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
        b"\r\n\r\nX",
    ] {
        assert!(matches!(parse(bad), Parsed::Invalid(_)), "{bad:?}");
    }
    let long = [b"PROXY ".as_slice(), &[b'A'; 200]].concat();
    assert!(matches!(parse(&long), Parsed::Invalid(_)));
}

#[tokio::test]
async fn read_returns_the_bytes_past_the_header() {
    let mut input = encode(
        ProxyProtocolVersion::V2,
        addr("192.0.2.7:5555"),
        addr("10.0.0.1:80"),
    );
    let len = input.len();
    input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    let mut r = &input[..];
    let (h, rest) = read(&mut r).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.len, len);
    assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
    let mut short = &b"PROXY TCP4 1.2"[..];
    let e = read(&mut short).await.err().map(|e| e.kind());
    assert_eq!(e, Some(io::ErrorKind::UnexpectedEof));
}
