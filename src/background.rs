//! The health service: one Pingora background service that runs the health
//! checks of whatever groups the current snapshot holds, so reloaded groups
//! are checked without registering new services, and stops on shutdown.

use crate::snapshot::SharedSnapshot;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// The background service that runs health checks for the live snapshot.
pub struct HealthService {
    snapshot: SharedSnapshot,
}

impl HealthService {
    /// A service following `snapshot`.
    pub fn new(snapshot: SharedSnapshot) -> HealthService {
        HealthService { snapshot }
    }
}

const TICK: Duration = Duration::from_millis(100);

#[async_trait]
impl BackgroundService for HealthService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let snap = self.snapshot.load_full();
            for group in snap.groups.iter() {
                let Some(schedule) = &group.health else {
                    continue;
                };
                if !schedule.claim() {
                    continue;
                }
                let group = group.clone();
                let running = schedule.running.clone();
                tokio::spawn(async move {
                    group.registry.run_health_check(true).await;
                    running.store(false, Relaxed);
                });
            }
        }
    }
}
