//! Running weir: Pingora's `ServerConf` from the `server` section, one
//! accepting service for every http and https listener (`crate::front`),
//! one service per tcp listener, and background services (health checks,
//! the shutdown watcher).

use crate::access_log;
use crate::admin::AdminApi;
use crate::background::HealthService;
use crate::cli::RunFlags;
use crate::compile::Loaded;
use crate::config::model::{ListenerProtocol, ServerSection};
use crate::dns::DnsService;
use crate::front::listen::{HttpListener, HttpService};
use crate::live::Live;
use crate::proxy::Proxy;
use crate::readiness::Readiness;
use crate::reload::Reloader;
use crate::shutdown::Signals;
use crate::tcp::{TcpApp, TcpService};
use crate::values::{parse_admin_listen, AdminListen};
use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{ExecutionPhase, RunArgs, Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Default `grace_period_seconds` (Pingora's is 300).
pub const DEFAULT_GRACE_PERIOD: u64 = 5;
/// Default `graceful_shutdown_timeout_seconds`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 5;

fn resolve_path(base: &Path, p: &str) -> String {
    let path = Path::new(p);
    if path.is_absolute() {
        p.to_string()
    } else {
        base.join(path).display().to_string()
    }
}

/// Pingora's `ServerConf` from the file's `server` section; relative paths
/// resolve against the config file's folder.
pub fn server_conf(s: &ServerSection, config_dir: &Path) -> ServerConf {
    let threads = s
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    ServerConf {
        threads,
        daemon: s.daemon.unwrap_or(false),
        pid_file: resolve_path(config_dir, s.pid_file.as_deref().unwrap_or("/tmp/weir.pid")),
        upgrade_sock: resolve_path(
            config_dir,
            s.upgrade_sock
                .as_deref()
                .unwrap_or("/tmp/weir_upgrade.sock"),
        ),
        error_log: s.error_log.as_deref().map(|p| resolve_path(config_dir, p)),
        user: s.user.clone(),
        group: s.group.clone(),
        grace_period_seconds: Some(s.grace_period_seconds.unwrap_or(DEFAULT_GRACE_PERIOD)),
        graceful_shutdown_timeout_seconds: Some(
            s.graceful_shutdown_timeout_seconds
                .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        ),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size.unwrap_or(128),
        // With one thread there is nothing to steal from, and Pingora's
        // non-stealing runtime is cheaper (measured in benches/README.md).
        work_stealing: s.work_stealing.unwrap_or(threads > 1),
        ..ServerConf::default()
    }
}

/// Raises the draining flag when Pingora starts a graceful stop or upgrade.
/// No TLS callbacks: certificates come from the resolver.
struct NoCallbacks;

#[async_trait]
impl pingora_core::listeners::TlsAccept for NoCallbacks {}

/// The TLS acceptor of an https listener: SNI through `resolver`, ALPN h2
/// when `http2`, client certificates checked against `client_ca`, and only
/// the TLS versions `min_version` allows.
///
/// Pingora's `TlsSettings::build` always offers TLS 1.2 and 1.3, so weir
/// builds the rustls config itself and puts it into the acceptor Pingora
/// built (its `acceptor` field is public): with `min_version: "1.3"` a
/// TLS 1.2 ClientHello is refused in the handshake, and a scanner sees TLS
/// 1.2 not offered. With `acme` (an `acme` section at start-up) the
/// `acme-tls/1` ALPN is offered too, last.
fn tls_acceptor(
    tls: &crate::config::model::ListenerTls,
    resolver: Arc<crate::tls::SniResolver>,
    dir: &Path,
    acme: bool,
) -> Result<pingora_core::listeners::tls::Acceptor, String> {
    use pingora_rustls::{version, ServerConfig, TlsAcceptor};
    let mut settings =
        pingora_core::listeners::tls::TlsSettings::with_callbacks(Box::new(NoCallbacks))
            .map_err(|e| e.to_string())?;
    settings.set_cert_resolver(resolver.clone());
    if tls.http2 {
        settings.enable_h2();
    }
    let mut acceptor = settings.build();
    let versions = match tls.min_version.as_deref() {
        Some("1.3") => &[&version::TLS13][..],
        _ => &[&version::TLS12, &version::TLS13][..],
    };
    let builder = ServerConfig::builder_with_protocol_versions(versions);
    let builder = match client_verifier(tls, dir)? {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = acceptor.acceptor.config().alpn_protocols.clone();
    if acme {
        // tls-alpn-01 validation (the resolver answers it only for names
        // being validated); ordinary clients still get h2 / http/1.1.
        if config.alpn_protocols.is_empty() {
            config.alpn_protocols.push(b"http/1.1".to_vec());
        }
        config
            .alpn_protocols
            .push(crate::tls::ACME_TLS_ALPN.to_vec());
    }
    acceptor.acceptor = TlsAcceptor::from(Arc::new(config));
    Ok(acceptor)
}

/// The verifier of client certificates for `client_ca`, if set.
fn client_verifier(
    tls: &crate::config::model::ListenerTls,
    dir: &Path,
) -> Result<Option<Arc<dyn pingora_rustls::ClientCertVerifier>>, String> {
    let Some(ca) = &tls.client_ca else {
        return Ok(None);
    };
    let mut roots = pingora_rustls::RootCertStore::empty();
    pingora_rustls::load_ca_file_into_store(dir.join(ca), &mut roots).map_err(|e| e.to_string())?;
    let verifier = pingora_rustls::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| format!("client_ca {ca}: {e}"))?;
    Ok(Some(verifier))
}

struct DrainWatcher {
    phases: Mutex<Option<tokio::sync::broadcast::Receiver<ExecutionPhase>>>,
    draining: Arc<AtomicBool>,
}

#[async_trait]
impl BackgroundService for DrainWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let rx = self.phases.lock().ok().and_then(|mut g| g.take());
        let Some(mut rx) = rx else { return };
        loop {
            tokio::select! {
                phase = rx.recv() => match phase {
                    Ok(ExecutionPhase::GracefulUpgradeTransferringFds) => {
                        crate::observe::account::handover();
                        self.draining.store(true, Relaxed);
                    }
                    Ok(ExecutionPhase::GracefulUpgradeCloseTimeout
                        | ExecutionPhase::GracefulTerminate
                        | ExecutionPhase::ShutdownStarted) => {
                        self.draining.store(true, Relaxed);
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
                _ = shutdown.changed() => {
                    self.draining.store(true, Relaxed);
                    return;
                }
            }
        }
    }
}

/// Builds the server and runs it until it is stopped. Returns only on a
/// start-up error (with the message).
pub fn run(loaded: Loaded, flags: &RunFlags) -> Result<(), String> {
    let cfg = &loaded.config;
    let dir = loaded.file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let conf = server_conf(&cfg.server, &dir);
    let pid_file = conf.pid_file.clone();
    let live = Live::start(&loaded.file, cfg.clone(), &pid_file)?;

    let opt = Opt {
        upgrade: flags.upgrade,
        daemon: flags.daemon,
        nocapture: false,
        test: flags.test,
        conf: None,
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let draining = Arc::new(AtomicBool::new(false));
    let (access_log, writer) = match access_log::build(cfg.log.access_log.as_ref(), &dir) {
        Some((log, writer)) => (Some(Arc::new(log)), Some(writer)),
        None => (None, None),
    };
    // The proxy behind the connection front (per-listener limits, PROXY
    // protocol, head deadline): see `crate::front`.
    let front = crate::front::front(
        &server.configuration,
        Proxy::new(live.snapshot.clone(), draining.clone(), access_log.clone()),
        &live.snapshot.load(),
        access_log.clone(),
    );
    let mut tcp = Vec::new();
    let mut http = Vec::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        match l.protocol {
            ListenerProtocol::Tcp => {
                if let Some(f) = front.listener(i) {
                    tcp.push((i, l.name.as_str(), l.address.as_str(), f.addr));
                }
            }
            // http and https are accepted by weir itself (what an idle
            // connection costs, `max_connections`: see `crate::front::listen`).
            ListenerProtocol::Http | ListenerProtocol::Https => {
                let tls = match (&l.tls, live.tls.get(i).cloned().flatten()) {
                    (Some(tls), Some(resolver)) => {
                        let acme = cfg.acme.is_some();
                        Some(Arc::new(tls_acceptor(tls, resolver, &dir, acme)?))
                    }
                    _ => None,
                };
                if let Some(f) = front.listener(i) {
                    http.push(HttpListener::of(i, f, &l.address, tls));
                }
            }
        }
    }
    let ready = Readiness::new(http.len() + tcp.len(), draining.clone());
    if !http.is_empty() {
        server.add_service(HttpService::new(front, http, flags.upgrade).on_bound(ready.clone()));
    }
    // Each tcp listener is its own service (and so hands its socket over on
    // upgrade). Open tunnels get the grace period, less a margin so that
    // they are closed and logged before Pingora stops the runtime.
    let grace = std::time::Duration::from_secs(
        server
            .configuration
            .grace_period_seconds
            .unwrap_or(DEFAULT_GRACE_PERIOD),
    )
    .saturating_sub(std::time::Duration::from_millis(500));
    for (i, name, key, addr) in tcp {
        let app = TcpApp::new(name, i, live.snapshot.clone(), access_log.clone(), grace);
        server.add_service(TcpService::new(app, key, addr, flags.upgrade).on_bound(ready.clone()));
    }
    if let Some(admin) = &cfg.admin {
        let listen = parse_admin_listen(&admin.listen).ok_or("invalid admin.listen")?;
        let api = AdminApi::new(live.clone(), &listen, admin.token.clone(), ready.clone());
        let mut service = Service::new("weir admin".to_string(), api);
        match &listen {
            AdminListen::Tcp(a) => service.add_tcp(&a.to_string()),
            AdminListen::Unix(p) => {
                use std::os::unix::fs::PermissionsExt;
                let path = dir.join(p).display().to_string();
                service.add_uds(&path, Some(std::fs::Permissions::from_mode(0o600)));
            }
        }
        server.add_service(service);
    }
    if let Some(writer) = writer {
        server.add_service(background_service("access log", writer));
    }
    server.add_service(background_service(
        "health checks",
        HealthService::new(live.snapshot.clone()),
    ));
    server.add_service(background_service("reload", Reloader::new(live.clone())));
    // Always running (it idles when nothing is discovered), so a reload that
    // adds discovery to an upstream is resolved too.
    server.add_service(background_service(
        "dns discovery",
        DnsService::new(live.clone()),
    ));
    // Always running (it idles while `watch` is off), so a reload may turn it on.
    server.add_service(background_service(
        "config watch",
        crate::watch::WatchService::new(live.clone()),
    ));
    // Stored certificates serve from the first handshake; orders and
    // renewals run in the background and never hold up start-up.
    crate::acme::load_stored(cfg);
    let source = live.clone();
    server.add_service(background_service(
        "acme",
        crate::acme::AcmeService::new(Box::new(move || source.file_config())),
    ));
    // Always running (it idles without `tracing`), so a reload may turn it on.
    server.add_service(background_service(
        "trace export",
        crate::trace::export::TraceExporter::new(live.snapshot.clone()),
    ));
    let watcher = DrainWatcher {
        phases: Mutex::new(Some(server.watch_execution_phase())),
        draining: draining.clone(),
    };
    server.add_service(background_service("drain watcher", watcher));
    if flags.upgrade {
        let collector = crate::observe::account::Collector {
            pid_file: pid_file.clone(),
        };
        server.add_service(background_service("upgrade account", collector));
    }
    log::info!(
        "weir {} starting with {} ({} listeners, {} routes, {} upstreams)",
        env!("CARGO_PKG_VERSION"),
        loaded.file.display(),
        cfg.listeners.len(),
        cfg.routes.len(),
        cfg.upstreams.len()
    );
    if !server.configuration.daemon {
        // Pingora writes the pid file only when it daemonizes; stop/reload need it too.
        let pid = format!("{}\n", std::process::id());
        if let Err(e) = crate::files::write_atomic(Path::new(&pid_file), pid.as_bytes(), 0o644) {
            log::warn!("cannot write pid file {pid_file}: {e}");
        }
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals::new(draining)),
    });
    // After a hand-over, the account of what this process did since.
    crate::observe::account::finish(&pid_file);
    std::process::exit(0)
}
