//! SIGHUP: live reload of the file the process was started with (see
//! [`crate::live::Live::reload`]); SIGUSR1: reopen the access log (logrotate). weir ignores SIGHUP until this service
//! runs, since its default action would kill the process.

use crate::live::Live;
use async_trait::async_trait;
use log::{error, info};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;

/// Background service that reloads on SIGHUP.
pub struct Reloader {
    live: Arc<Live>,
}

impl Reloader {
    /// A reloader for the live state.
    pub fn new(live: Arc<Live>) -> Reloader {
        Reloader { live }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                error!("cannot listen for SIGHUP, live reload is off: {e}");
                return;
            }
        };
        let mut usr1 = signal(SignalKind::user_defined1()).ok();
        loop {
            let reopen = async {
                match usr1.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = reopen => {
                    info!("SIGUSR1 received, reopening the access log");
                    crate::access_log::reopen();
                }
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    info!("SIGHUP received, reloading {}", self.live.file.display());
                    let _ = self.live.reload_off_runtime().await;
                }
            }
        }
    }
}
