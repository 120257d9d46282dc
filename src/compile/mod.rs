//! The compiler: file model → [`Snapshot`] in one pass. Compiling *is*
//! validating: every rule is checked where the runtime structure is built,
//! and every problem is returned with its key path (positions are attached
//! by [`crate::config::Parsed::errors`]). `weir check`, start-up, a live
//! reload and an admin change all go through [`compile`], so they cannot
//! disagree about what a file means.

mod acme;
mod cache;
mod process;
mod route;
mod upstream;

use crate::config::{self, ConfigErrors, FileConfig, Issue};
use crate::snapshot::Snapshot;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::config::shadow::route_label;

/// A config file that compiled.
#[derive(Debug)]
pub struct Loaded {
    /// The file it came from (absolute when read from disk).
    pub file: PathBuf,
    /// The file model.
    pub config: FileConfig,
    /// What it compiled to.
    pub snapshot: Snapshot,
}

/// Compiles a parsed config. Upstream groups whose definition did not change
/// from `previous` are reused as they are (health, counters, rotation);
/// backends new to a group with health checks wait for one passing check
/// unless this is the first snapshot.
pub fn compile(cfg: &FileConfig, previous: Option<&Snapshot>) -> Result<Snapshot, Vec<Issue>> {
    let mut issues = Vec::new();
    process::check_process(cfg, &mut issues);
    acme::check(cfg, &mut issues);
    let listeners = process::listeners(cfg, &mut issues);
    let limits = process::limits(cfg, &mut issues);
    let cache_tiers = cache::section(cfg, &mut issues);
    // Certificates are read from disk for a new file (or a first build);
    // admin and DNS rebuilds keep the running ones, so an expiring or
    // half-rotated certificate never blocks them.
    let certs = match previous {
        Some(p) if p.config.listeners == cfg.listeners => p.certs.clone(),
        _ => process::certificates(cfg, &cfg.base_dir, &mut issues),
    };
    let trusted_proxies =
        crate::policy::ip_filter::cidr_list(&cfg.trusted_proxies, "trusted_proxies", &mut issues);
    let old: HashMap<&str, &Arc<crate::upstream::Group>> = previous
        .map(|p| p.groups.iter().map(|g| (&*g.name, g)).collect())
        .unwrap_or_default();
    let mut groups = Vec::new();
    let mut index = HashMap::new();
    for (name, ucfg) in &cfg.upstreams {
        let prev = old.get(name.as_str()).copied();
        let built = match prev {
            Some(g) if g.config == *ucfg => Some(Arc::clone(g)),
            _ => upstream::group(
                name,
                ucfg,
                prev.map(|g| &**g),
                previous.is_some(),
                &cfg.base_dir,
                &mut issues,
            )
            .map(Arc::new),
        };
        if let Some(g) = built {
            index.insert(name.as_str(), groups.len());
            groups.push(g);
        }
    }
    let tcp_upstreams = process::tcp_upstreams(cfg, &index, &mut issues);
    let ctx = route::Context {
        cfg,
        listeners: &listeners,
        groups: &groups,
        index: &index,
        previous,
        cache_tiers,
    };
    let mut names = std::collections::HashSet::new();
    let mut routes = Vec::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        if let Some(n) = &r.name {
            if !names.insert(n.as_str()) {
                issues.push(Issue::new(
                    format!("routes[{i}].name"),
                    format!("duplicate route name {n:?}"),
                ));
            }
        }
        if let Some(compiled) = route::compile(&ctx, r, i, &mut issues) {
            routes.push(compiled);
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    Ok(Snapshot {
        tcp_upstreams,
        ..Snapshot::new(
            routes,
            groups,
            listeners,
            limits,
            certs,
            trusted_proxies,
            cfg.clone(),
        )
    })
}

/// Parses and compiles `path` (with the process environment). Backend host
/// names are resolved here, once, and replaced by their address (the name
/// stays as the backend's label): later rebuilds (admin, DNS discovery)
/// never resolve, so they never block.
pub fn load_file(path: &Path, previous: Option<&Snapshot>) -> Result<Loaded, ConfigErrors> {
    let mut parsed = config::parse_file(path)?;
    let issues = upstream::resolve_names(&mut parsed.config);
    if !issues.is_empty() {
        return Err(parsed.errors(issues));
    }
    match compile(&parsed.config, previous) {
        Ok(snapshot) => Ok(Loaded {
            file: parsed.file.clone(),
            config: parsed.config,
            snapshot,
        }),
        Err(issues) => Err(parsed.errors(issues)),
    }
}

/// Parses and compiles config text; `env` looks up `${VAR}`s.
pub fn load_str(
    text: &str,
    label: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FileConfig, ConfigErrors> {
    let parsed = config::parse_str(text, label, env)?;
    match compile(&parsed.config, None) {
        Ok(_) => Ok(parsed.config),
        Err(issues) => Err(parsed.errors(issues)),
    }
}

/// Listener addresses by index, as compiled.
pub type Listeners = Vec<(Arc<str>, SocketAddr)>;

#[cfg(test)]
mod tests;
