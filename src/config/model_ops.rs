//! The file model's process sections: `log` (process and access log) and
//! `admin`. Re-exported from [`super::model`].

use serde::{Deserialize, Serialize};

/// The `log` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Minimum level of the process log. Default: info.
    pub level: Option<LogLevel>,
    /// Format of the process log. Default: text.
    pub format: Option<LogFormat>,
    /// One line per request. Default: off.
    pub access_log: Option<AccessLogConfig>,
}

/// `log.access_log`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `stdout`, `off`, or a file path. Default: stdout.
    #[serde(default = "default_access_path")]
    pub path: String,
    /// `json` (default) or `combined` (nginx's).
    #[serde(default)]
    pub format: AccessLogFormat,
    /// Keep the query string in `path` (queries often carry secrets). Default: false.
    #[serde(default)]
    pub log_query: bool,
}

fn default_access_path() -> String {
    "stdout".into()
}

/// Access log line formats.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// nginx's `combined`.
    Combined,
}

/// The `admin` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// `ip:port` (default `127.0.0.1:9901`) or `unix:/path`.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// Bearer token for changing calls; without one the API is read-only.
    pub token: Option<String>,
    /// Where admin-made backend changes persist.
    pub state_file: Option<String>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:9901".into()
}

/// A process log level.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Verbose.
    Debug,
    /// Very verbose.
    Trace,
}

/// How process log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z INFO target: message`
    Text,
    /// One JSON object per line.
    Json,
}

/// The `tracing` section: OpenTelemetry spans exported over OTLP/HTTP.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    /// The collector's base URL (`http://host:port`); spans go to `/v1/traces`.
    pub otlp: String,
    /// Share of requests traced when they arrive without a sampled trace
    /// context from a trusted peer (0 to 1). Default: 0.01.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// `service.name` of the spans. Default: weir.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_sample_ratio() -> f64 {
    0.01
}

fn default_service_name() -> String {
    "weir".into()
}
