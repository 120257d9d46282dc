//! The process log: `log` + `env_logger`, level from `log.level` unless
//! `RUST_LOG` is set, as text or one JSON object per line.

use crate::config::model::{LogFormat, LogLevel, LogSection};
use std::io::Write;

fn level_name(l: Option<LogLevel>) -> &'static str {
    match l.unwrap_or(LogLevel::Info) {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Installs the logger. Safe to call once per process.
pub fn init(section: &LogSection) {
    // Without RUST_LOG the logger passes everything and `log::set_max_level`
    // decides, so a live reload can change the level.
    let rust_log = std::env::var_os("RUST_LOG").is_some();
    let default = if rust_log {
        level_name(section.level)
    } else {
        "trace"
    };
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    if section.format == Some(LogFormat::Json) {
        builder.format(|buf, record| {
            writeln!(
                buf,
                "{{\"ts\":\"{}\",\"level\":\"{}\",\"target\":\"{}\",\"message\":\"{}\"}}",
                buf.timestamp_millis(),
                record.level(),
                json_escape(record.target()),
                json_escape(&record.args().to_string())
            )
        });
    }
    let _ = builder.try_init();
    if !rust_log {
        set_level(section);
    }
}

fn to_filter(l: Option<LogLevel>) -> log::LevelFilter {
    match l.unwrap_or(LogLevel::Info) {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}

/// Applies a new `log.level` at run time (ignored when `RUST_LOG` is set).
pub fn set_level(section: &LogSection) {
    log::set_max_level(to_filter(section.level));
}
