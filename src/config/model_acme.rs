//! The file model of the top-level `acme` section: the CA, the account and
//! where its keys and certificates are kept. Re-exported from
//! [`super::model`]; the names each https listener wants are
//! `listeners[].tls.acme`.

use super::model::Dur;
use serde::{Deserialize, Serialize};

/// `acme`: certificates obtained and renewed from an RFC 8555 CA.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    /// The CA's directory URL (https).
    pub directory: String,
    /// Contact address given to the CA (`mailto:`). Default: none.
    pub email: Option<String>,
    /// Folder for the account key, the certificates and the lock file.
    pub storage: String,
    /// PEM trust anchor for the directory's own TLS (private CAs, Pebble).
    /// Default: the system's roots.
    pub ca: Option<String>,
    /// How the CA validates a name. Default: http-01.
    #[serde(default)]
    pub challenge: AcmeChallenge,
    /// Renew this long before expiry. Default: 30d.
    pub renew_before: Option<Dur>,
    /// External account binding (CAs that require it).
    pub external_account: Option<ExternalAccount>,
}

/// `acme.challenge`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// A token served on every http listener under `/.well-known/acme-challenge/`.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A challenge certificate served on https listeners for the `acme-tls/1` ALPN.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// `acme.external_account`: the key id and base64url HMAC key the CA gave.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalAccount {
    /// The key identifier.
    pub kid: String,
    /// The HMAC key, base64url as the CA shows it.
    pub hmac_key: String,
}
