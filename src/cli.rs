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
