//! `${NAME}` / `${NAME:-default}` / `$$` substitution in scalar values, done
//! after YAML parsing so a variable can never inject YAML structure.
//! Anything else with `$` (`$1`, `${1}`, `$path`) is left for request time.

use super::load::Issue;
use super::spans::join_key;
use serde_yaml::Value;

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Expands one string; `Err` names the unset variable.
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
            continue;
        }
        if let Some(body) = tail.strip_prefix("${") {
            if let Some(end) = body.find('}') {
                let inner = &body[..end];
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner, None),
                };
                if is_var_name(name) {
                    match (env(name), default) {
                        (Some(v), _) => out.push_str(&v),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => {
                            return Err(format!(
                                "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                            ))
                        }
                    }
                    rest = &body[end + 1..];
                    continue;
                }
            }
        }
        out.push('$');
        rest = &tail[1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitutes in every string scalar below `value`. A string that was one
/// whole `${VAR}` is re-read as a YAML scalar so numbers and booleans keep
/// their type (`port: ${PORT}`). Every resulting value that took a
/// variable's text is pushed to `secrets` (so `GET /config` can hide it).
pub fn substitute(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
    secrets: &mut Vec<String>,
) {
    match value {
        Value::String(s) if s.contains('$') => match expand(s, env) {
            Ok(new) => {
                if s.replace("$$", "").contains("${") && !new.is_empty() {
                    secrets.push(new.clone());
                }
                let whole = s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
                *value = match serde_yaml::from_str::<Value>(&new) {
                    Ok(v @ (Value::Number(_) | Value::Bool(_))) if whole => v,
                    _ => Value::String(new),
                };
            }
            Err(message) => issues.push(Issue::new(path, message)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, &format!("{path}[{i}]"), env, issues, secrets);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().unwrap_or_default().to_string();
                substitute(v, &join_key(path, &key), env, issues, secrets);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PORT").then(|| "8080".to_string())
    }

    #[test]
    fn expands_variables_defaults_and_dollars() {
        assert_eq!(expand("a${PORT}b", &env).as_deref(), Ok("a8080b"));
        assert_eq!(expand("${NOPE:-x}", &env).as_deref(), Ok("x"));
        assert_eq!(
            expand("$$1 $1 ${1} $path", &env).as_deref(),
            Ok("$1 $1 ${1} $path")
        );
        assert!(expand("${NOPE}", &env)
            .unwrap_err()
            .contains("NOPE is not set"));
    }

    #[test]
    fn whole_variable_keeps_number_type() {
        let mut v: Value = serde_yaml::from_str("p: ${PORT}\nq: x${PORT}").unwrap();
        let mut secrets = Vec::new();
        substitute(&mut v, "", &env, &mut Vec::new(), &mut secrets);
        assert_eq!(secrets, ["8080", "x8080"]);
        assert_eq!(v["p"], Value::Number(8080.into()));
        assert_eq!(v["q"], Value::String("x8080".into()));
    }
}
