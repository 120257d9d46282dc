//! `weir check` and `weir explain`: offline tools over a config file.

use crate::cli::ExplainArgs;
use crate::compile;
use crate::config;
use crate::router::{allow_header, normalize_host, Match};
use crate::snapshot::Action;
use std::path::Path;

/// Validates `path`; prints errors (exit 1) or warnings and "ok" (exit 0).
pub fn check(path: &Path) -> i32 {
    let loaded = match compile::load_file(path, None) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} error(s) in {}", e.errors.len(), path.display());
            return 1;
        }
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let spans = config::spans::SpanIndex::build(&text);
    let mut warnings = config::shadow::warnings(&loaded.config);
    for (i, set) in loaded.snapshot.certs.iter().enumerate() {
        for (j, c) in set.iter().flat_map(|s| s.certs.iter()).enumerate() {
            if c.expires_soon() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                warnings.push(config::Issue::new(
                    format!("listeners[{i}].tls.certificates[{j}]"),
                    format!(
                        "certificate {} expires in {} days",
                        c.label,
                        (c.not_after - now) / 86_400
                    ),
                ));
            }
        }
    }
    let dir = loaded.file.parent().unwrap_or(Path::new("/"));
    if let Some(state) = crate::live::state_file_path(&loaded.config, dir) {
        match crate::overlay::Overlay::read(&state) {
            Ok(Some(o)) if !o.is_empty() => warnings.push(config::Issue::new(
                "admin.state_file",
                format!(
                    "{} holds admin changes that are applied on top of this file ({} upstreams)",
                    state.display(),
                    o.upstreams.len()
                ),
            )),
            Err(e) => warnings.push(config::Issue::new("admin.state_file", e)),
            _ => {}
        }
    }
    for w in &warnings {
        let pos = spans.locate(&w.path);
        eprintln!(
            "{}:{}:{}: warning: {}: {}",
            path.display(),
            pos.line,
            pos.col,
            w.path,
            w.message
        );
    }
    println!(
        "{}: ok ({} listeners, {} routes, {} upstreams{})",
        path.display(),
        loaded.config.listeners.len(),
        loaded.config.routes.len(),
        loaded.config.upstreams.len(),
        if warnings.is_empty() {
            String::new()
        } else {
            format!(", {} warnings", warnings.len())
        }
    );
    0
}

/// Prints which route a described request matches.
pub fn explain(path: &Path, args: &ExplainArgs) -> i32 {
    let snap = match compile::load_file(path, None) {
        Ok(l) => l.snapshot,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let Ok(method) = args.method.to_ascii_uppercase().parse::<http::Method>() else {
        eprintln!("invalid method {:?}", args.method);
        return 2;
    };
    let mut headers = http::HeaderMap::new();
    for h in &args.headers {
        let Some((k, v)) = h.split_once(':') else {
            eprintln!("--header wants NAME:VALUE, got {h:?}");
            return 2;
        };
        match (
            http::HeaderName::from_bytes(k.trim().as_bytes()),
            http::HeaderValue::from_str(v.trim()),
        ) {
            (Ok(k), Ok(v)) => {
                headers.append(k, v);
            }
            _ => {
                eprintln!("invalid header {h:?}");
                return 2;
            }
        }
    }
    let listener = match &args.listener {
        // The first listener routes apply to (not a tcp one).
        None => (0..snap.listeners.len())
            .find(|&i| snap.tcp_group(i).is_none())
            .unwrap_or(0),
        Some(name) => match snap.listeners.iter().position(|(n, _)| **n == **name) {
            Some(i) => i,
            None => {
                eprintln!("unknown listener {name:?}");
                return 2;
            }
        },
    };
    let (raw_path, query) = match args.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (args.path.as_str(), None),
    };
    let norm = match crate::path::normalize(raw_path) {
        Ok(p) => p,
        Err(e) => {
            println!("400 Bad Request: the path cannot be normalized ({e:?})");
            return 0;
        }
    };
    let mut buf = [0u8; 256];
    let host = normalize_host(args.host.as_bytes(), &mut buf);
    match snap.router.find(
        listener,
        host,
        &crate::path::match_form(&norm),
        &method,
        &headers,
    ) {
        Match::Found(i) => {
            let Some(r) = snap.routes.get(i) else {
                return 1;
            };
            println!("route:    {}", r.name);
            match &r.action {
                Action::Upstream(g) => {
                    let group = &snap.groups[*g];
                    let up = match r.policies.rewrite() {
                        Some(rw) => rw.apply(&norm),
                        None => std::borrow::Cow::Borrowed(&*norm),
                    };
                    println!(
                        "upstream: {} ({})",
                        group.name,
                        group.config.algorithm.as_str()
                    );
                    let backends: Vec<String> = group.order.iter().map(|a| a.to_string()).collect();
                    println!("backends: {}", backends.join(", "));
                    match query {
                        Some(q) => println!("path:     {up}?{q}"),
                        None => println!("path:     {up}"),
                    }
                    if norm != raw_path {
                        println!(
                            "note:     the request path was normalized from {raw_path} to {norm}"
                        );
                    }
                }
                Action::Respond { status, body, .. } => {
                    println!("respond:  {status} ({} bytes)", body.len());
                }
                Action::Redirect(rd) => {
                    println!("redirect: {}", rd.status);
                }
            }
        }
        Match::MethodNotAllowed(mask) => {
            println!(
                "405 Method Not Allowed: routes match but not for {method}; Allow: {}",
                allow_header(mask)
            );
        }
        Match::NotFound => {
            println!(
                "404 Not Found: no route matches host {host:?} path {norm:?} on listener {}",
                snap.listeners.get(listener).map_or("?", |(n, _)| n)
            );
        }
    }
    0
}
