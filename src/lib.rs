//! weir: a load balancer and reverse proxy built on Cloudflare's Pingora.
//!
//! The pipeline is `config` (file model, parsed with positions) → `compile`
//! (one pass that validates and builds) → `snapshot` (router, routes with
//! their policy chains, upstream groups; swapped whole) → `proxy` (the
//! Pingora `ProxyHttp` phases). `values` is the shared vocabulary at the
//! bottom of the import graph.

pub mod access_log;
pub mod acme;
pub mod admin;
pub mod admin_client;
pub mod admin_page;
pub mod background;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod compile;
pub mod config;
pub mod control;
pub mod dns;
pub mod files;
pub mod forward;
pub mod front;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod overlay;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod proxy_protocol;
pub mod readiness;
pub mod reload;
pub mod router;
pub mod server;
pub mod shell;
pub mod shutdown;
pub mod snapshot;
pub mod tcp;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod values;
pub mod watch;
