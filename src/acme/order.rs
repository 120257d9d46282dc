//! One conversation with the CA (RFC 8555, through instant-acme): the
//! account (restored from storage, else created and stored), then an order
//! for a set of names: each pending authorization's challenge is published
//! (an http-01 token in storage and in memory, or a tls-alpn-01 challenge
//! certificate), the CA is told it is ready, and once the order is ready a
//! CSR with a fresh key is sent and the chain collected.

use super::keys;
use super::state;
use super::storage::Storage;
use crate::config::model::AcmeChallenge;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use std::path::PathBuf;
use std::time::Duration;

/// The CA and account settings of the `acme` section, paths resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Ca {
    /// Directory URL.
    pub directory: String,
    /// Contact address.
    pub email: Option<String>,
    /// Trust anchor for the directory's TLS.
    pub ca: Option<PathBuf>,
    /// The challenge type.
    pub challenge: AcmeChallenge,
    /// External account binding: key id and decoded HMAC key.
    pub eab: Option<(String, Vec<u8>)>,
}

/// How long a whole order may take before it counts as failed.
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// How long other instances sharing storage get to see a new http-01
/// token before the CA is told to validate it.
const TOKEN_SPREAD: Duration = Duration::from_millis(1200);

/// An error with its causes (hyper hides the TLS reason in its source).
fn err(e: impl std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn builder(ca: &Ca) -> Result<instant_acme::AccountBuilder, String> {
    match &ca.ca {
        Some(p) => {
            Account::builder_with_root(p).map_err(|e| format!("acme.ca {}: {e}", p.display()))
        }
        None => Account::builder().map_err(err),
    }
}

/// The account: restored from storage, else created at the CA and stored.
/// Call it holding the storage lock.
pub async fn account(ca: &Ca, storage: &Storage) -> Result<Account, String> {
    let path = storage.account_path();
    if let Some(bytes) = storage.read(&path).map_err(err)? {
        let creds: AccountCredentials =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        return builder(ca)?.from_credentials(creds).await.map_err(err);
    }
    let contact = ca.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = ca
        .eab
        .as_ref()
        .map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
    let new = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, creds) = builder(ca)?
        .create(&new, ca.directory.clone(), eab.as_ref())
        .await
        .map_err(err)?;
    let json = serde_json::to_vec(&creds).map_err(err)?;
    storage
        .write(&path, &json)
        .map_err(|e| format!("cannot store the account in {}: {e}", path.display()))?;
    log::info!("acme: account created at {}", ca.directory);
    Ok(account)
}

/// Challenges published for one order; dropping it withdraws them.
struct Published {
    storage: Storage,
    tokens: Vec<String>,
    alpn: Vec<String>,
}

impl Published {
    fn token(&mut self, token: &str, key_authorization: &str) -> Result<(), String> {
        if !super::storage::is_token(token) {
            return Err(format!("the CA sent an unusable token {token:?}"));
        }
        let path = self.storage.token_path(token);
        self.storage
            .write(&path, key_authorization.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.tokens.push(token.to_string());
        super::refresh_tokens(&self.storage);
        Ok(())
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        for t in &self.tokens {
            let _ = std::fs::remove_file(self.storage.token_path(t));
        }
        if !self.tokens.is_empty() {
            super::refresh_tokens(&self.storage);
        }
        for name in &self.alpn {
            state::set_alpn_cert(name, None);
        }
    }
}

/// Orders one certificate for `names`; returns the PEM bundle (chain, then
/// key) to store.
pub async fn order(
    account: &Account,
    ca: &Ca,
    storage: &Storage,
    names: &[String],
) -> Result<String, String> {
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(err)?;
    let mut published = Published {
        storage: storage.clone(),
        tokens: Vec::new(),
        alpn: Vec::new(),
    };
    let kind = match ca.challenge {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(err)?;
            let name = a.identifier().to_string();
            match a.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                s => return Err(format!("the authorization for {name} is {s:?}")),
            }
            let mut ch = a
                .challenge(kind.clone())
                .ok_or_else(|| format!("the CA offers no {kind:?} challenge for {name}"))?;
            let ka = ch.key_authorization();
            if kind == ChallengeType::TlsAlpn01 {
                let cert = keys::alpn_challenge(&name, ka.digest().as_ref())?;
                state::set_alpn_cert(&name, Some(cert));
                published.alpn.push(name.clone());
            } else {
                published.token(&ch.token, ka.as_str())?;
                tokio::time::sleep(TOKEN_SPREAD).await;
            }
            ch.set_ready().await.map_err(err)?;
        }
    }
    finish(&mut order, names).await
}

/// Waits for the order to be ready, finalizes it and collects the chain.
async fn finish(order: &mut instant_acme::Order, names: &[String]) -> Result<String, String> {
    let poll = RetryPolicy::new()
        .initial_delay(Duration::from_millis(200))
        .backoff(1.5)
        .timeout(Duration::from_secs(60));
    let status = order.poll_ready(&poll).await.map_err(err)?;
    if status != OrderStatus::Ready {
        return Err(why_invalid(order).await);
    }
    let (csr, key_pem) = keys::csr(names)?;
    order.finalize_csr(&csr).await.map_err(err)?;
    let chain = order.poll_certificate(&poll).await.map_err(err)?;
    let mut bundle = chain;
    if !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(&key_pem);
    Ok(bundle)
}

/// The CA's reason for an invalid order: the first failed challenge's problem.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut authzs = order.authorizations();
    while let Some(Ok(a)) = authzs.next().await {
        for c in &a.challenges {
            if let Some(p) = &c.error {
                return format!("validation of {} failed: {p}", a.identifier());
            }
        }
    }
    "the order became invalid".to_string()
}
