//! `weir status` and `weir backends …`: small clients of the admin API.
//! The address and token come from the config file's `admin` section, or
//! from `--admin` / `--token` / `WEIR_ADMIN_TOKEN`.

use crate::config;
use crate::values::{parse_admin_listen, AdminListen};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// Where and how to reach the admin API.
#[derive(Debug, Clone)]
pub struct Target {
    listen: AdminListen,
    token: Option<String>,
}

impl Target {
    /// From `--admin`/`--token`, else the config file.
    pub fn resolve(
        config: &Path,
        admin: Option<&str>,
        token: Option<&str>,
    ) -> Result<Target, String> {
        let env_token = std::env::var("WEIR_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        if let Some(a) = admin {
            let listen = parse_admin_listen(a)
                .ok_or_else(|| format!("invalid --admin {a:?}; write ip:port or unix:/path"))?;
            return Ok(Target {
                listen,
                token: token.map(str::to_string).or(env_token),
            });
        }
        let loaded = config::parse_file(config).map_err(|e| e.to_string())?;
        let section = loaded.config.admin.ok_or_else(|| {
            format!(
                "{} has no admin section; pass --admin ADDR",
                config.display()
            )
        })?;
        let listen = match parse_admin_listen(&section.listen) {
            Some(AdminListen::Unix(p)) => {
                let dir = loaded.file.parent().unwrap_or(Path::new("/"));
                AdminListen::Unix(dir.join(p).display().to_string())
            }
            Some(l) => l,
            None => return Err("invalid admin.listen".into()),
        };
        Ok(Target {
            listen,
            token: token.map(str::to_string).or(env_token).or(section.token),
        })
    }

    /// Sends one request; returns status and parsed JSON body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let host = match &self.listen {
            AdminListen::Tcp(a) => a.to_string(),
            AdminListen::Unix(_) => "localhost".into(),
        };
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        let raw = match &self.listen {
            AdminListen::Tcp(a) => {
                let mut s = std::net::TcpStream::connect_timeout(a, Duration::from_secs(5))
                    .map_err(|e| format!("cannot reach the admin API at {a}: {e}"))?;
                exchange(&mut s, req.as_bytes())?
            }
            AdminListen::Unix(p) => {
                let mut s = std::os::unix::net::UnixStream::connect(p)
                    .map_err(|e| format!("cannot reach the admin API at {p}: {e}"))?;
                exchange(&mut s, req.as_bytes())?
            }
        };
        parse_response(&raw)
    }
}

fn exchange<S: Read + Write>(s: &mut S, req: &[u8]) -> Result<Vec<u8>, String> {
    s.write_all(req).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn parse_response(raw: &[u8]) -> Result<(u16, Value), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed answer from the admin API")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed status line")?;
    let value = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body.trim()).unwrap_or(Value::String(body.to_string()))
    };
    Ok((status, value))
}

fn error_text(status: u16, v: &Value) -> String {
    match v.get("error").and_then(Value::as_str) {
        Some(e) => format!("{status}: {e}"),
        None => format!("admin API answered {status}"),
    }
}

/// `weir certs`: `GET /certificates` as a table (or its JSON).
pub fn certs(target: &Target, json: bool) -> Result<String, String> {
    let (code, v) = target.call("GET", "/certificates", None)?;
    if code != 200 {
        return Err(error_text(code, &v));
    }
    if json {
        return Ok(serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    let rows: Vec<crate::acme::status::Row> =
        serde_json::from_value(v["certificates"].clone()).map_err(|e| e.to_string())?;
    Ok(crate::acme::status::table(&rows).trim_end().to_string())
}

/// `weir status`.
pub fn status(target: &Target, json: bool) -> Result<String, String> {
    let (code, v) = target.call("GET", "/status", None)?;
    if code != 200 {
        return Err(error_text(code, &v));
    }
    if json {
        return Ok(serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    let mut rows = vec![[
        "UPSTREAM",
        "BACKEND",
        "NAME",
        "WEIGHT",
        "STATE",
        "HEALTHY",
        "IN_FLIGHT",
        "REQUESTS",
        "FAILURES",
        "SOURCE",
    ]
    .map(String::from)];
    for u in v["upstreams"].as_array().into_iter().flatten() {
        for b in u["backends"].as_array().into_iter().flatten() {
            let s = |k: &str| match &b[k] {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            rows.push([
                u["name"].as_str().unwrap_or("").to_string(),
                s("address"),
                s("name"),
                s("weight"),
                s("state"),
                if b["healthy"].as_bool() == Some(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
                s("in_flight"),
                s("requests"),
                s("failures"),
                s("source"),
            ]);
        }
    }
    let widths: Vec<usize> = (0..10)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    Ok(rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Everything but RFC 3986's unreserved characters is escaped, so any
/// upstream name or address is one path segment that the server decodes
/// back to itself (`/`, `%`, `?`, `#` and spaces included).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

/// The admin API path of one backend of an upstream (public for the fuzz
/// targets in `fuzz/`).
#[doc(hidden)]
pub fn item_path(upstream: &str, addr: &str) -> String {
    format!("/upstreams/{}/backends/{}", encode(upstream), encode(addr))
}

/// The admin API path of an upstream's backend list (public for the fuzz
/// targets in `fuzz/`).
#[doc(hidden)]
pub fn list_path(upstream: &str) -> String {
    format!("/upstreams/{}/backends", encode(upstream))
}

/// `weir backends ACTION UPSTREAM ADDR [--weight N]`.
pub fn backends(
    target: &Target,
    action: &str,
    upstream: &str,
    addr: &str,
    weight: Option<u32>,
) -> Result<String, String> {
    let item = item_path(upstream, addr);
    let (code, v) = match action {
        "add" => target.call(
            "POST",
            &list_path(upstream),
            Some(&serde_json::json!({ "address": addr, "weight": weight.unwrap_or(1) })),
        )?,
        "remove" => target.call("DELETE", &item, None)?,
        "drain" | "enable" | "disable" => {
            let state = match action {
                "drain" => "draining",
                "enable" => "enabled",
                _ => "disabled",
            };
            let mut body = serde_json::json!({ "state": state });
            if let Some(w) = weight {
                body["weight"] = w.into();
            }
            target.call("PATCH", &item, Some(&body))?
        }
        other => return Err(format!("unknown action {other:?}")),
    };
    if (200..300).contains(&code) {
        Ok(format!("{action} {addr} in {upstream}: ok"))
    } else {
        Err(error_text(code, &v))
    }
}

/// `weir cache purge URL [--prefix]`: `DELETE /cache` for the URL's host
/// and path (a URL without a scheme is a path on any host).
pub fn cache_purge(target: &Target, url: &str, prefix: bool) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let (host, path) = match rest {
        Some(r) => match r.find('/') {
            Some(i) => (&r[..i], &r[i..]),
            None => (r, "/"),
        },
        None => ("", url),
    };
    if !path.starts_with('/') {
        return Err(format!("{url:?}: give http://HOST/PATH or /PATH"));
    }
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let body = serde_json::json!({ "host": host, "path": path, "prefix": prefix });
    let (code, v) = target.call("DELETE", "/cache", Some(&body))?;
    if (200..300).contains(&code) {
        Ok(format!("purged {}", v["purged"].as_u64().unwrap_or(0)))
    } else {
        Err(error_text(code, &v))
    }
}
