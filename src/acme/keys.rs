//! Keys and certificates of ACME orders: the key pair and CSR of an order,
//! the stored PEM bundle (chain, then key) turned into what rustls serves,
//! and the tls-alpn-01 challenge certificate (RFC 8737: self-signed, one
//! name, the `acmeIdentifier` extension with the key authorization's
//! digest).

use pingora_rustls::sign::CertifiedKey;
use pingora_rustls::{CertificateDer, CryptoProvider, PrivateKeyDer};
use std::sync::Arc;

/// A certificate ready to serve, with what `weir certs` shows of it.
#[derive(Debug, Clone)]
pub struct Issued {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// Lower-case DNS names of the SAN.
    pub names: Vec<String>,
    /// Unix time of `notBefore`.
    pub not_before: i64,
    /// Unix time of `notAfter`.
    pub not_after: i64,
    /// What ACME renewal information (ARI) calls it: the authority key
    /// identifier and the DER serial (none without an AKI).
    pub ari_id: Option<(Vec<u8>, Vec<u8>)>,
}

fn provider() -> Result<Arc<CryptoProvider>, String> {
    pingora_rustls::install_default_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .ok_or_else(|| "no TLS crypto provider".to_string())
}

/// A fresh key pair (ECDSA P-256) and the DER CSR for `names`, with the
/// key as PKCS#8 PEM.
pub fn csr(names: &[String]) -> Result<(Vec<u8>, String), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let req = params.serialize_request(&key).map_err(|e| e.to_string())?;
    Ok((req.der().to_vec(), key.serialize_pem()))
}

/// Parses a stored bundle: PEM certificates (leaf first) then a PKCS#8 key.
pub fn parse_bundle(pem: &[u8]) -> Result<Issued, String> {
    let mut chain = Vec::new();
    let mut key = None;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| format!("bad PEM: {e}"))?;
        match block.label.as_str() {
            "CERTIFICATE" => chain.push(CertificateDer::from(block.contents)),
            "PRIVATE KEY" => key = Some(PrivateKeyDer::Pkcs8(block.contents.into())),
            _ => {}
        }
    }
    let key = key.ok_or("no private key in the bundle")?;
    let leaf = chain.first().ok_or("no certificate in the bundle")?.clone();
    let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    let names = san_names(&x509);
    let not_before = x509.validity().not_before.timestamp();
    let not_after = x509.validity().not_after.timestamp();
    let ari_id = x509
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => aki
                .key_identifier
                .as_ref()
                .map(|id| (id.0.to_vec(), x509.tbs_certificate.raw_serial().to_vec())),
            _ => None,
        });
    let certified = CertifiedKey::from_der(chain, key, &*provider()?)
        .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
    Ok(Issued {
        key: Arc::new(certified),
        names,
        not_before,
        not_after,
        ari_id,
    })
}

/// The lower-case DNS names of a certificate's SAN.
fn san_names(x509: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = x509.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The tls-alpn-01 challenge certificate for `name`.
pub fn alpn_challenge(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // Not `from_der`: its key check parses the certificate with webpki,
    // which refuses the critical acmeIdentifier extension.
    let signer = provider()?
        .key_provider
        .load_private_key(der)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_of_chain_and_key_parses_back() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        let issued = parse_bundle(pem.as_bytes()).unwrap();
        assert_eq!(issued.names, vec!["a.test".to_string()]);
        assert!(issued.not_after > issued.not_before);
        let other = rcgen::KeyPair::generate().unwrap();
        let wrong = format!("{}{}", cert.pem(), other.serialize_pem());
        assert!(parse_bundle(wrong.as_bytes()).is_err());
    }

    #[test]
    fn a_challenge_certificate_is_made_for_the_name() {
        assert!(alpn_challenge("a.test", &[0u8; 32]).is_ok());
    }
}
