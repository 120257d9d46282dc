//! Command line: `weir [-c FILE] [-d] [-u] [-t]` runs the proxy (Pingora's
//! own flags keep their meaning); subcommands check and explain a config.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Default config path.
pub const DEFAULT_CONFIG: &str = "/etc/weir/weir.yaml";

/// weir: a load balancer and reverse proxy built on Pingora.
#[derive(Parser, Debug)]
#[command(name = "weir", version, about, long_about = None)]
pub struct Cli {
    /// Config file.
    #[arg(short = 'c', long = "conf", global = true, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Run flags (used when no subcommand is given).
    #[command(flatten)]
    pub run: RunFlags,
    /// What to do; default: run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Pingora's process flags.
#[derive(Args, Debug, Clone, Default)]
pub struct RunFlags {
    /// Run in the background (daemon).
    #[arg(short = 'd', long)]
    pub daemon: bool,
    /// Take over the listening sockets of a running weir (graceful upgrade).
    #[arg(short = 'u', long)]
    pub upgrade: bool,
    /// Test the config and exit.
    #[arg(short = 't', long)]
    pub test: bool,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a config; errors name file:line:col; warns on shadowed routes.
    Check {
        /// Config file (same as -c).
        file: Option<PathBuf>,
    },
    /// Show which route, upstream and upstream path a request would get.
    Explain(ExplainArgs),
    /// Live reload of the running process (SIGHUP via the pid file); prints what changed.
    Reload,
    /// Zero-downtime process swap: a new process takes the sockets, the old one drains.
    Upgrade,
    /// Stop the running process: graceful (SIGTERM) or --fast (SIGINT).
    Stop {
        /// Stop at once instead of draining.
        #[arg(long)]
        fast: bool,
    },
    /// Upstreams and backends of the running process, as a table.
    Status {
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the JSON of GET /status instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change backends at run time through the admin API (persisted in state_file).
    Backends {
        /// What to do.
        #[arg(value_enum)]
        action: BackendAction,
        /// Upstream name.
        upstream: String,
        /// Backend address (ip:port).
        address: String,
        /// Weight (add; also with enable/drain/disable).
        #[arg(long)]
        weight: Option<u32>,
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Drop stored cache entries through the admin API.
    Cache {
        /// What to do.
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Every certificate (file and ACME): listener, names, expiry, next renewal, last error.
    Certs {
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the JSON of GET /certificates instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script to stdout (bash, zsh or fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// `weir cache` actions.
#[derive(Subcommand, Debug)]
pub enum CacheAction {
    /// Drop the entries of a URL (http://HOST/PATH, or /PATH for any host).
    Purge {
        /// The URL.
        url: String,
        /// Every path under it too (segment-aware, as path_prefix).
        #[arg(long)]
        prefix: bool,
        /// How to reach the admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Shells `weir completions` writes for.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum Shell {
    /// bash (bash-completion).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// `weir backends` actions.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum BackendAction {
    /// Add a backend.
    Add,
    /// Remove a backend (in-flight requests finish).
    Remove,
    /// No new requests; in-flight ones finish.
    Drain,
    /// Take traffic again.
    Enable,
    /// No traffic.
    Disable,
}

impl BackendAction {
    /// The action's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendAction::Add => "add",
            BackendAction::Remove => "remove",
            BackendAction::Drain => "drain",
            BackendAction::Enable => "enable",
            BackendAction::Disable => "disable",
        }
    }
}

/// Admin API address and token for the client commands.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// Admin address (ip:port or unix:/path); default: the config file's admin.listen.
    #[arg(long)]
    pub admin: Option<String>,
    /// Bearer token; default: WEIR_ADMIN_TOKEN, then the config file's admin.token.
    #[arg(long)]
    pub token: Option<String>,
}

/// `weir explain` arguments.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Host header of the request.
    #[arg(long, default_value = "localhost")]
    pub host: String,
    /// Path (and query) of the request.
    #[arg(long)]
    pub path: String,
    /// Method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Header as `name:value`; repeatable.
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// Listener the request arrives on (default: the first).
    #[arg(long)]
    pub listener: Option<String>,
}
