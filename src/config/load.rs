//! Reading a config file: YAML syntax, `${VAR}` substitution and typed
//! deserialization section by section. Every problem found is reported at
//! once, each with `file:line:col` and its key path. The rules beyond types
//! are checked by the compiler (`crate::compile`), which reports through
//! [`Parsed::errors`] so its problems get positions too.

use super::env::substitute;
use super::model::*;
use super::spans::{join_key, Pos, SpanIndex};
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path, e.g. `routes[2].upstream` (empty for the whole file).
    pub path: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
    /// Where it is.
    pub pos: Pos,
}

/// Every problem found in one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    /// The file as named by the user.
    pub file: String,
    /// At least one error, in file order.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: ", self.file, e.pos.line, e.pos.col)?;
            if !e.path.is_empty() {
                write!(f, "{}: ", e.path)?;
            }
            write!(f, "{}", e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A problem found by validation, before positions are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Key path.
    pub path: String,
    /// Message.
    pub message: String,
    /// Point at the key rather than its value.
    pub at_key: bool,
}

impl Issue {
    /// An issue about the value at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            path: path.into(),
            message: message.into(),
            at_key: false,
        }
    }

    /// An issue about the key at `path` itself (e.g. a key that is not allowed there).
    pub fn at_key(path: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            path: path.into(),
            message: message.into(),
            at_key: true,
        }
    }
}

/// A file that parsed into the model, with what is needed to point at
/// its keys later.
#[derive(Debug)]
pub struct Parsed {
    /// The file as named by the user.
    pub label: String,
    /// The file it came from (absolute when read from disk).
    pub file: PathBuf,
    /// The model.
    pub config: FileConfig,
    /// Key positions.
    pub spans: SpanIndex,
}

impl Parsed {
    /// Attaches positions to problems found after parsing.
    pub fn errors(&self, issues: Vec<Issue>) -> ConfigErrors {
        located(&self.label, &self.spans, Vec::new(), issues)
    }
}

/// Reads and parses `path` with the process environment.
pub fn parse_file(path: &Path) -> Result<Parsed, ConfigErrors> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        file: label.clone(),
        errors: vec![ConfigError {
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
            pos: Pos { line: 1, col: 1 },
        }],
    })?;
    let mut parsed = parse_str(&text, &label, &|name| std::env::var(name).ok())?;
    parsed.file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    parsed.config.base_dir = parsed
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Ok(parsed)
}

const TOP_KEYS: &[&str] = &[
    "server",
    "log",
    "admin",
    "trusted_proxies",
    "listeners",
    "routes",
    "upstreams",
    "watch",
    "acme",
    "tracing",
    "cache",
];

/// Parses config text; `env` looks up `${VAR}`s.
pub fn parse_str(
    text: &str,
    label: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, ConfigErrors> {
    let spans = SpanIndex::build(text);
    let fail = |errors: Vec<ConfigError>| ConfigErrors {
        file: label.to_string(),
        errors,
    };
    // Reported at the repeat, which serde_yaml (and a key path) cannot tell
    // from the first occurrence.
    let duplicates: Vec<ConfigError> = spans
        .duplicates
        .iter()
        .map(|(p, pos)| ConfigError {
            path: p.clone(),
            message: "key is written twice".into(),
            pos: *pos,
        })
        .collect();
    let mut root: Value = match serde_yaml::from_str(text) {
        Ok(Value::Null) => Value::Mapping(Default::default()),
        Ok(v) => v,
        Err(e) if !duplicates.is_empty() && e.to_string().contains("duplicate entry") => {
            return Err(fail(duplicates));
        }
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    col: l.column(),
                })
                .unwrap_or(Pos { line: 1, col: 1 });
            let message = strip_location(&e.to_string());
            return Err(fail(vec![ConfigError {
                path: String::new(),
                message: format!("invalid YAML: {message}"),
                pos,
            }]));
        }
    };
    let mut issues: Vec<Issue> = Vec::new();
    let mut secrets = Vec::new();
    substitute(&mut root, "", env, &mut issues, &mut secrets);
    let config = if issues.is_empty() && duplicates.is_empty() {
        deserialize_sections(root, &mut issues).map(|mut c| {
            c.substituted = secrets;
            c
        })
    } else {
        None
    };
    match config {
        Some(config) if issues.is_empty() && duplicates.is_empty() => Ok(Parsed {
            label: label.to_string(),
            file: PathBuf::from(label),
            config,
            spans,
        }),
        _ => Err(located(label, &spans, duplicates, issues)),
    }
}

fn located(
    label: &str,
    spans: &SpanIndex,
    mut errors: Vec<ConfigError>,
    issues: Vec<Issue>,
) -> ConfigErrors {
    errors.extend(issues.into_iter().map(|i| ConfigError {
        pos: if i.at_key {
            spans.locate_key(&i.path)
        } else {
            spans.locate(&i.path)
        },
        path: i.path,
        message: i.message,
    }));
    errors.sort_by_key(|e| (e.pos.line, e.pos.col));
    errors.dedup();
    ConfigErrors {
        file: label.to_string(),
        errors,
    }
}

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn deserialize_sections(root: Value, issues: &mut Vec<Issue>) -> Option<FileConfig> {
    let Value::Mapping(map) = root else {
        issues.push(Issue::new("", "the file must be a mapping of sections"));
        return None;
    };
    let before = issues.len();
    let mut cfg = FileConfig::default();
    for (key, value) in map {
        let Some(key) = key.as_str().map(str::to_string) else {
            issues.push(Issue::new("", "section names must be strings"));
            continue;
        };
        match key.as_str() {
            "server" => cfg.server = de(value, &key, issues).unwrap_or_default(),
            "log" => cfg.log = de(value, &key, issues).unwrap_or_default(),
            "admin" => cfg.admin = de(value, &key, issues),
            "trusted_proxies" => cfg.trusted_proxies = de(value, &key, issues).unwrap_or_default(),
            "listeners" => cfg.listeners = de_list(value, &key, issues),
            "routes" => cfg.routes = de_list(value, &key, issues),
            "watch" => cfg.watch = de(value, &key, issues).unwrap_or_default(),
            "acme" => cfg.acme = de(value, &key, issues),
            "tracing" => cfg.tracing = de(value, &key, issues),
            "cache" => cfg.cache = de(value, &key, issues),
            "upstreams" => match value {
                Value::Mapping(m) => {
                    for (name, u) in m {
                        let name = name.as_str().unwrap_or_default().to_string();
                        if let Some(u) = de(u, &join_key("upstreams", &name), issues) {
                            cfg.upstreams.insert(name, u);
                        }
                    }
                }
                Value::Null => {}
                _ => issues.push(Issue::new(
                    "upstreams",
                    "expected a mapping of upstream names",
                )),
            },
            other => issues.push(Issue {
                path: other.to_string(),
                message: format!(
                    "unknown section{}; sections are {}",
                    super::suggest::did_you_mean(other, TOP_KEYS.iter().copied()),
                    TOP_KEYS.join(", ")
                ),
                at_key: true,
            }),
        }
    }
    (issues.len() == before).then_some(cfg)
}

fn de_list<T: DeserializeOwned>(value: Value, base: &str, issues: &mut Vec<Issue>) -> Vec<T> {
    match value {
        Value::Sequence(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| de(v, &format!("{base}[{i}]"), issues))
            .collect(),
        Value::Null => Vec::new(),
        _ => {
            issues.push(Issue::new(base, "expected a list"));
            Vec::new()
        }
    }
}

fn de<T: DeserializeOwned>(value: Value, base: &str, issues: &mut Vec<Issue>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let mut path = base.to_string();
            if inner != "." && !inner.is_empty() {
                path = if inner.starts_with('[') {
                    format!("{base}{inner}")
                } else {
                    join_key(base, &inner)
                };
            }
            let message = strip_location(&e.inner().to_string());
            let mut at_key = false;
            if let Some(field) = unknown_field(&message) {
                if !path.ends_with(&field) {
                    path = join_key(&path, &field);
                }
                at_key = true;
            }
            issues.push(Issue {
                path,
                message: tidy(&message),
                at_key,
            });
            None
        }
    }
}

fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn tidy(msg: &str) -> String {
    if let Some(field) = unknown_field(msg) {
        let expected = msg
            .split_once("expected ")
            .map(|(_, e)| e.replace('`', ""))
            .unwrap_or_default();
        let names: Vec<&str> = expected.trim_start_matches("one of ").split(", ").collect();
        return format!(
            "unknown key{}; expected {}",
            super::suggest::did_you_mean(&field, names.iter().copied()),
            expected
        );
    }
    msg.replace('`', "\"")
}
