//! Checks of the `acme` section and of `listeners[].tls.acme`: a CA
//! directory over https, a storage folder, a readable `ca`, a decodable
//! EAB key, and names a CA can validate with http-01 or tls-alpn-01 (DNS
//! names, no wildcards, each in one certificate only).

use crate::config::model::{FileConfig, ListenerProtocol};
use crate::config::Issue;
use base64::Engine;

/// Adds an issue for every problem of the ACME settings.
pub(super) fn check(cfg: &FileConfig, issues: &mut Vec<Issue>) {
    let mut seen: Vec<(String, Vec<String>)> = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let Some(tls) = &l.tls else { continue };
        if tls.acme.is_empty() {
            continue;
        }
        let path = format!("listeners[{i}].tls.acme");
        if cfg.acme.is_none() {
            issues.push(Issue::new(
                &path,
                "needs the top-level acme section (directory, storage)",
            ));
        }
        if l.protocol != ListenerProtocol::Https {
            issues.push(Issue::new(&path, "only https listeners serve certificates"));
        }
        for (j, n) in tls.acme.iter().enumerate() {
            if let Err(e) = check_name(n) {
                issues.push(Issue::new(format!("{path}[{j}]"), e));
            }
        }
        let names = crate::acme::plan::normalize(&tls.acme);
        for n in &names {
            if let Some((other, _)) = seen
                .iter()
                .find(|(_, list)| list != &names && list.contains(n))
            {
                issues.push(Issue::new(
                    &path,
                    format!("{n} is also in another name list ({other}): list the same names on both listeners, or keep a name in one list"),
                ));
            }
        }
        seen.push((l.name.clone(), names));
    }
    if let Some(a) = &cfg.acme {
        section(cfg, a, issues);
    }
}

fn section(cfg: &FileConfig, a: &crate::config::model::AcmeSection, issues: &mut Vec<Issue>) {
    let dir = a.directory.trim();
    let valid = dir
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && http::Uri::try_from(dir).is_ok());
    if !valid {
        issues.push(Issue::new(
            "acme.directory",
            "must be the CA's https:// directory URL (e.g. https://acme-staging-v02.api.letsencrypt.org/directory)",
        ));
    }
    if a.storage.trim().is_empty() {
        issues.push(Issue::new("acme.storage", "must name a folder"));
    }
    if let Some(email) = &a.email {
        if !email.contains('@') || email.contains(char::is_whitespace) {
            issues.push(Issue::new("acme.email", "must be an email address"));
        }
    }
    if let Some(ca) = &a.ca {
        let path = cfg.base_dir.join(ca);
        let mut roots = pingora_rustls::RootCertStore::empty();
        if let Err(e) = pingora_rustls::load_ca_file_into_store(&path, &mut roots) {
            issues.push(Issue::new("acme.ca", format!("{}: {e}", path.display())));
        }
    }
    if a.renew_before.is_some_and(|d| d.0.is_zero()) {
        issues.push(Issue::new("acme.renew_before", "must be greater than 0"));
    }
    if let Some(e) = &a.external_account {
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(e.hmac_key.trim().trim_end_matches('='));
        if !key.is_ok_and(|k| !k.is_empty()) {
            issues.push(Issue::new(
                "acme.external_account.hmac_key",
                "must be the base64url HMAC key the CA gave",
            ));
        }
        if e.kid.trim().is_empty() {
            issues.push(Issue::new("acme.external_account.kid", "must not be empty"));
        }
    }
}

/// A DNS name a CA can validate by http-01 or tls-alpn-01.
fn check_name(name: &str) -> Result<(), String> {
    let n = name.trim_end_matches('.');
    if n.starts_with("*.") {
        return Err(format!(
            "{name}: wildcard names need the dns-01 challenge, which weir does not do"
        ));
    }
    if n.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("{name}: an IP address, not a DNS name"));
    }
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{name}: not a valid DNS name"))
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_must_be_plain_dns_names() {
        assert!(check_name("www.example.com").is_ok());
        assert!(check_name("*.example.com").is_err());
        assert!(check_name("127.0.0.1").is_err());
        assert!(check_name("bad_name.com").is_err());
        assert!(check_name("-a.com").is_err());
    }
}
