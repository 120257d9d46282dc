//! TLS termination for `https` listeners: certificates loaded and checked
//! at compile time (chain and key match, not expired, names from the SAN),
//! a rustls certificate resolver that picks by SNI (exact names, then
//! wildcards; the first certificate when nothing matches or no name is
//! sent), and whose set is swapped in place by a live reload, so new
//! connections get the re-read certificates on the same listener.

use arc_swap::ArcSwap;
use pingora_rustls::sign::CertifiedKey;
use pingora_rustls::{ClientHello, CryptoProvider, ResolvesServerCert};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `check` warns about a certificate that expires sooner than this.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// One certificate with its key and the names it serves.
#[derive(Debug)]
pub struct Cert {
    /// Lower-case DNS names from the SAN (`*.example.com` kept as written).
    pub names: Vec<String>,
    /// The name used in metrics and messages (first SAN, else the file).
    pub label: String,
    /// Unix time of `notAfter`.
    pub not_after: i64,
    key: Arc<CertifiedKey>,
}

/// A listener's certificates; the first is the default.
#[derive(Debug, Default)]
pub struct CertSet {
    /// In file order.
    pub certs: Vec<Cert>,
    /// Names whose certificate comes from ACME (`tls.acme`, normalized):
    /// served from [`crate::acme::state`] once obtained.
    pub acme: Vec<String>,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Loads a PEM chain and key; an unreadable file, a key that does not match
/// its certificate, or an expired certificate is an error.
pub fn load(cert_path: &str, key_path: &str) -> Result<Cert, String> {
    let (chain, key) = match pingora_rustls::load_certs_and_key_files(cert_path, key_path) {
        Ok(Some(pair)) => pair,
        Ok(None) => {
            return Err(format!(
                "{cert_path} / {key_path}: no certificate or no private key found in PEM"
            ))
        }
        Err(e) => return Err(format!("cannot read {cert_path} / {key_path}: {e}")),
    };
    pingora_rustls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default().ok_or("no TLS crypto provider")?;
    let first = chain.first().ok_or("empty certificate chain")?.clone();
    let key = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| format!("{key_path} does not fit {cert_path}: {e}"))?;
    let (_, x509) = x509_parser::parse_x509_certificate(first.as_ref())
        .map_err(|e| format!("{cert_path}: not an X.509 certificate ({e})"))?;
    let not_after = x509.validity().not_after.timestamp();
    if not_after < now_unix() {
        return Err(format!(
            "{cert_path} expired at {}",
            x509.validity().not_after
        ));
    }
    let mut names: Vec<String> = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        Some(d.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        if let Some(cn) = x509
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
        {
            names.push(cn.to_ascii_lowercase());
        }
    }
    Ok(Cert {
        label: names
            .first()
            .cloned()
            .unwrap_or_else(|| cert_path.to_string()),
        names,
        not_after,
        key: Arc::new(key),
    })
}

impl Cert {
    /// Whether this certificate serves `host` (lower-case).
    pub fn serves(&self, host: &str) -> bool {
        self.names.iter().any(|n| match n.strip_prefix("*.") {
            // One label deep, as TLS wildcards are.
            Some(suffix) => host
                .strip_suffix(suffix)
                .and_then(|h| h.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            None => n == host,
        })
    }

    /// Whether it expires within [`EXPIRY_WARNING`].
    pub fn expires_soon(&self) -> bool {
        self.not_after - now_unix() < EXPIRY_WARNING.as_secs() as i64
    }
}

impl CertSet {
    /// The certificate for an SNI name (exact before wildcard), else the first.
    pub fn pick(&self, sni: Option<&str>) -> Option<&Cert> {
        let by_name = sni.and_then(|n| {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            self.certs
                .iter()
                .find(|c| c.names.contains(&n))
                .or_else(|| self.certs.iter().find(|c| c.serves(&n)))
        });
        by_name.or_else(|| self.certs.first())
    }

    /// The key to serve for an SNI name: a file certificate naming it
    /// exactly, else its ACME certificate, else a file wildcard, else the
    /// first file certificate (else the first ACME one).
    pub fn pick_key(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if self.acme.is_empty() {
            return self.pick(sni).map(|c| c.key.clone());
        }
        if let Some(n) = sni.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) {
            if let Some(c) = self.certs.iter().find(|c| c.names.contains(&n)) {
                return Some(c.key.clone());
            }
            if self.acme.contains(&n) {
                match crate::acme::state::issued(&n) {
                    Some(k) => return Some(k),
                    None => not_yet(&n, self.certs.is_empty()),
                }
            }
            if let Some(c) = self.certs.iter().find(|c| c.serves(&n)) {
                return Some(c.key.clone());
            }
        }
        match self.certs.first() {
            Some(c) => Some(c.key.clone()),
            None => self.acme.iter().find_map(|n| crate::acme::state::issued(n)),
        }
    }
}

/// Logs, once per name, a handshake for an ACME name whose certificate is
/// not obtained yet.
fn not_yet(name: &str, refused: bool) {
    static LOGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut logged = LOGGED.lock().unwrap_or_else(|p| p.into_inner());
    if logged.iter().any(|n| n == name) || logged.len() > 1000 {
        return;
    }
    logged.push(name.to_string());
    if refused {
        log::warn!("tls: no certificate for {name} yet (ACME order pending): handshake refused");
    } else {
        log::warn!("tls: no certificate for {name} yet (ACME order pending): serving the listener's first certificate");
    }
}

/// The ALPN protocol of tls-alpn-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate resolver of one https listener; a reload swaps its set.
#[derive(Debug, Default)]
pub struct SniResolver {
    set: ArcSwap<CertSet>,
}

impl SniResolver {
    /// A resolver serving `set`.
    pub fn new(set: Arc<CertSet>) -> SniResolver {
        SniResolver {
            set: ArcSwap::new(set),
        }
    }

    /// Serves `set` from the next handshake on.
    pub fn replace(&self, set: Arc<CertSet>) {
        self.set.store(set);
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.set.load();
        if !set.acme.is_empty() {
            let validation = hello
                .alpn()
                .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
            if validation {
                // Only for a name being validated; anything else is refused.
                let name = hello
                    .server_name()?
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                return crate::acme::state::alpn_cert(&name);
            }
        }
        set.pick_key(hello.server_name())
    }
}
