//! The signals that stop weir, handed to Pingora as its
//! `ShutdownSignalWatch`: SIGTERM (graceful stop), SIGQUIT (upgrade
//! hand-over), SIGINT (fast stop). A graceful stop first raises the draining
//! flag, so `GET /ready` answers 503 while every listener still accepts, for
//! [`STOP_NOTICE`]; then Pingora stops accepting and in-flight requests get
//! `grace_period_seconds`. A hand-over raises the flag at once.

use async_trait::async_trait;
use log::{error, info};
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How long a graceful stop keeps accepting while `/ready` says 503, so a
/// balancer or probe in front sees the stop before connections are refused.
pub const STOP_NOTICE: Duration = Duration::from_secs(1);

/// weir's stop signals.
pub struct Signals {
    draining: Arc<AtomicBool>,
}

impl Signals {
    /// Signals that raise `draining` when a stop or hand-over begins.
    pub fn new(draining: Arc<AtomicBool>) -> Signals {
        Signals { draining }
    }
}

fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
    match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            error!("cannot listen for {name}: {e}");
            None
        }
    }
}

async fn next(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let mut quit = listen(SignalKind::quit(), "SIGQUIT");
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        tokio::select! {
            _ = next(&mut quit) => {
                self.draining.store(true, Ordering::Release);
                ShutdownSignal::GracefulUpgrade
            }
            _ = next(&mut int) => ShutdownSignal::FastShutdown,
            _ = next(&mut term) => {
                self.draining.store(true, Ordering::Release);
                info!("SIGTERM received: /ready answers 503; listeners close in {:?}", STOP_NOTICE);
                tokio::select! {
                    _ = tokio::time::sleep(STOP_NOTICE) => ShutdownSignal::GracefulTerminate,
                    _ = next(&mut int) => ShutdownSignal::FastShutdown,
                }
            }
        }
    }
}
