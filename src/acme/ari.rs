//! ACME renewal information (ARI, RFC 9773): when the CA offers it, the
//! window it suggests for renewing a certificate, a uniformly random moment
//! of which replaces `renew_before` when it is earlier. A CA without ARI
//! is asked once per account; a failed query is asked again after an hour.

use super::keys::Issued;
use instant_acme::{Account, CertificateIdentifier};
use rustls_pki_types::Der;
use std::time::{Duration, SystemTime};

/// How long before asking again after a failed query.
const RETRY: Duration = Duration::from_secs(3600);
/// The longest time between two queries for one certificate.
const MAX_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// What is known of one certificate's renewal window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// The chosen renewal time (Unix seconds), if the CA suggested one.
    pub renew_at: Option<i64>,
    /// When to ask next.
    pub next_query: Option<SystemTime>,
    /// The CA has no ARI: never ask.
    pub unsupported: bool,
}

impl Window {
    /// Whether it is time to ask the CA.
    pub fn wants_query(&self) -> bool {
        !self.unsupported && self.next_query.is_none_or(|t| SystemTime::now() >= t)
    }

    /// Asks the CA about `cert` and records the answer.
    pub async fn query(&mut self, account: &Account, cert: &Issued) {
        let Some((aki, serial)) = &cert.ari_id else {
            self.unsupported = true;
            return;
        };
        let id = CertificateIdentifier::new(Der::from_slice(aki), Der::from_slice(serial));
        match account.renewal_info(&id).await {
            Ok((info, retry_after)) => {
                let start = info.suggested_window.start.unix_timestamp();
                let end = info.suggested_window.end.unix_timestamp().max(start);
                self.renew_at = Some(start + random_below((end - start) as u64 + 1) as i64);
                self.next_query = Some(SystemTime::now() + retry_after.clamp(RETRY, MAX_INTERVAL));
            }
            Err(instant_acme::Error::Unsupported(_)) => self.unsupported = true,
            Err(e) => {
                log::debug!("acme: renewal information unavailable: {e}");
                self.next_query = Some(SystemTime::now() + RETRY);
            }
        }
    }
}

/// A uniformly random number below `n` (0 when `n` is 0).
fn random_below(n: u64) -> u64 {
    let mut bytes = [0u8; 8];
    if n == 0
        || ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err()
    {
        return n / 2;
    }
    u64::from_le_bytes(bytes) % n
}
