//! What the config asks of the ACME service: the CA settings and one
//! certificate per distinct `tls.acme` name list, with the listeners that
//! serve it. Read from the live file config on every pass, so a reload
//! that adds or removes names takes effect by itself.

use super::order::Ca;
use crate::config::model::FileConfig;
use base64::Engine;
use std::path::PathBuf;
use std::time::Duration;

/// Default `renew_before`.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// One certificate to obtain and keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Its names (lower-case, in file order, no repeats); the first names the file.
    pub names: Vec<String>,
    /// The https listeners that serve it.
    pub listeners: Vec<String>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// CA and account.
    pub ca: Ca,
    /// The `storage` folder (resolved).
    pub storage: PathBuf,
    /// `renew_before`.
    pub renew_before: Duration,
    /// Certificates, in listener order.
    pub wanted: Vec<Wanted>,
}

/// The names of one listener's `tls.acme`, normalized.
pub fn normalize(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let n = n.trim().trim_end_matches('.').to_ascii_lowercase();
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// The plan of `cfg`, or `None` without an `acme` section.
pub fn plan(cfg: &FileConfig) -> Option<Plan> {
    let a = cfg.acme.as_ref()?;
    let mut wanted: Vec<Wanted> = Vec::new();
    for l in &cfg.listeners {
        let Some(tls) = &l.tls else { continue };
        if tls.acme.is_empty() {
            continue;
        }
        let names = normalize(&tls.acme);
        match wanted.iter_mut().find(|w| w.names == names) {
            Some(w) => w.listeners.push(l.name.clone()),
            None => wanted.push(Wanted {
                names,
                listeners: vec![l.name.clone()],
            }),
        }
    }
    let eab = a.external_account.as_ref().map(|e| {
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(e.hmac_key.trim().trim_end_matches('='))
            .unwrap_or_default();
        (e.kid.clone(), key)
    });
    Some(Plan {
        ca: Ca {
            directory: a.directory.clone(),
            email: a.email.clone(),
            ca: a.ca.as_ref().map(|p| cfg.base_dir.join(p)),
            challenge: a.challenge,
            eab,
        },
        storage: cfg.base_dir.join(&a.storage),
        renew_before: a.renew_before.map_or(RENEW_BEFORE, |d| d.0),
        wanted,
    })
}

/// When a certificate valid from `not_before` to `not_after` (Unix
/// seconds) is due for renewal: `renew_before` ahead of expiry, or at two
/// thirds of its life when it is shorter than `renew_before`.
pub fn renew_at(not_before: i64, not_after: i64, renew_before: Duration) -> i64 {
    let life = (not_after - not_before).max(0);
    let before = renew_before.as_secs().min(i64::MAX as u64) as i64;
    if before >= life {
        not_before + life * 2 / 3
    } else {
        not_after - before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_renew_before_ahead_or_at_two_thirds_of_a_short_life() {
        let day = 24 * 3600;
        assert_eq!(renew_at(0, 90 * day, RENEW_BEFORE), 60 * day);
        assert_eq!(renew_at(0, 90, RENEW_BEFORE), 60);
        assert_eq!(renew_at(0, 100, Duration::from_secs(10)), 90);
    }

    #[test]
    fn names_are_lower_cased_without_repeats() {
        let n = normalize(&["A.test.".into(), "a.test".into(), "b.test".into()]);
        assert_eq!(n, vec!["a.test".to_string(), "b.test".to_string()]);
    }
}
