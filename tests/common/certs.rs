//! Test certificates made with rcgen: a CA and leaves it signs, written as
//! PEM files for weir's config and for TLS clients.

use rcgen::{BasicConstraints, Certificate, CertificateParams, IsCa, KeyPair};
use std::path::{Path, PathBuf};

/// A certificate authority for one test.
pub struct Ca {
    /// Its certificate.
    pub cert: Certificate,
    /// Its key.
    pub key: KeyPair,
}

/// A new self-signed CA.
pub fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "weir test CA");
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// Writes a leaf for `names`, signed by `ca`, as `<stem>.pem` / `<stem>.key`
/// in `dir`; `not_after` (year, month, day) makes it valid from 2020 until
/// then.
pub fn leaf(
    dir: &Path,
    stem: &str,
    ca: &Ca,
    names: &[&str],
    not_after: Option<(i32, u8, u8)>,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    if let Some((y, m, d)) = not_after {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(y, m, d);
    }
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// Writes the CA certificate as `ca.pem` in `dir`.
pub fn write_ca(dir: &Path, ca: &Ca) -> PathBuf {
    let p = dir.join("ca.pem");
    std::fs::write(&p, ca.cert.pem()).unwrap();
    p
}
