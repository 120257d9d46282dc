//! Unit tests of `admin`.

use super::*;

#[test]
fn constant_time_compare() {
    assert!(ct_eq(b"secret", b"secret"));
    assert!(!ct_eq(b"secret", b"secreT"));
    assert!(!ct_eq(b"secret", b"secret2"));
    assert!(!ct_eq(b"", b"x"));
}

#[test]
fn decodes_percent_escapes() {
    assert_eq!(percent_decode("%5B%3A%3A1%5D%3A80"), "[::1]:80");
    assert_eq!(percent_decode("127.0.0.1:80"), "127.0.0.1:80");
    assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
    // Odd UTF-8 right after '%' must not panic.
    assert_eq!(percent_decode("%é1"), "%é1");
    assert_eq!(percent_decode("%ff"), "\u{fffd}");
}

#[test]
fn config_hides_secrets_and_substituted_values() {
    let yaml = "\
admin: { listen: 127.0.0.1:9901, token: \"${TOKEN}\" }
listeners: [{ name: web, address: 127.0.0.1:8080 }]
routes:
  - upstream: api
    request_headers: { set: { authorization: \"Bearer ${UPSTREAM_KEY}\" } }
    auth: { api_keys: [literal-key-1], basic: { users: { al: \"$$2b$$04$$/q3k53qwFcxa4MukAekUt./UICJ8rjItI7mm/T14Cs2zAyK4nWJF.\" } } }
    rate_limit: { requests_per_second: 5, shared: { redis: \"redis://u:pw@127.0.0.1:6379\" } }
upstreams:
  api: { backends: [127.0.0.1:9000] }
";
    let env = |n: &str| match n {
        "TOKEN" => Some("tok-0123456789abcdef".to_string()),
        "UPSTREAM_KEY" => Some("sekrit".to_string()),
        _ => None,
    };
    let cfg = crate::compile::load_str(yaml, "t.yaml", &env).unwrap();
    let text = redacted_config(&cfg).to_string();
    for secret in [
        "tok-0123456789abcdef",
        "sekrit",
        "literal-key-1",
        "$2b$04",
        ":pw@",
    ] {
        assert!(!text.contains(secret), "{secret} shown in {text}");
    }
    assert!(
        text.contains("redis://u:<redacted>@127.0.0.1:6379"),
        "{text}"
    );
}
