//! Span export. A request hands its finished spans to a bounded queue and
//! never waits: a full queue (a slow or absent collector) drops them, counted
//! in `weir_tracing_spans_dropped_total`. One background service takes them
//! off the queue and sends batches to the collector named by the live
//! snapshot's `tracing.otlp` with opentelemetry-otlp's OTLP/HTTP (protobuf)
//! exporter; spans it could not deliver are counted as dropped too.

use crate::snapshot::SharedSnapshot;
use async_trait::async_trait;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Requests whose spans may wait for the exporter (each 1 + attempts spans).
const QUEUE: usize = 4096;
/// Spans per export call.
const BATCH: usize = 512;
/// Longest a span waits in a partial batch.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Longest one export may take (retries included).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

static QUEUE_TX: OnceLock<mpsc::Sender<Vec<SpanData>>> = OnceLock::new();

/// The `/v1/traces` URL of a collector base URL (`http://host:port`), or
/// `None` when it is not one.
pub fn traces_endpoint(base: &str) -> Option<String> {
    let uri: http::Uri = base.parse().ok()?;
    if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
        return None;
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return None;
    }
    Some(format!("{}/v1/traces", base.trim_end_matches('/')))
}

/// Whether the queue has room for one more request's spans (an exporter
/// that runs and keeps up).
pub fn has_room() -> bool {
    QUEUE_TX.get().is_some_and(|tx| tx.capacity() > 0)
}

/// Queues a request's spans for export; drops and counts them when the
/// queue is full or no exporter runs.
pub fn submit(spans: Vec<SpanData>) {
    let n = spans.len();
    let sent = match QUEUE_TX.get() {
        Some(tx) => tx.try_send(spans).is_ok(),
        None => false,
    };
    if !sent {
        crate::metrics::tracing_spans_dropped(n as u64);
    }
}

/// The background service that sends queued spans to the collector.
pub struct TraceExporter {
    snapshot: SharedSnapshot,
    rx: Mutex<Option<mpsc::Receiver<Vec<SpanData>>>>,
}

impl TraceExporter {
    /// The exporter for the process (the queue is created here, once).
    pub fn new(snapshot: SharedSnapshot) -> TraceExporter {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = match QUEUE_TX.set(tx) {
            Ok(()) => Some(rx),
            Err(_) => None,
        };
        TraceExporter {
            snapshot,
            rx: Mutex::new(rx),
        }
    }
}

/// The exporter built for one collector and service name.
struct Target {
    key: (String, String),
    exporter: opentelemetry_otlp::SpanExporter,
}

#[async_trait]
impl BackgroundService for TraceExporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let rx = self.rx.lock().ok().and_then(|mut r| r.take());
        let Some(mut rx) = rx else { return };
        let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
        let mut target: Option<Target> = None;
        let mut due = Instant::now() + FLUSH_EVERY;
        loop {
            let full = tokio::select! {
                _ = shutdown.changed() => {
                    self.flush(&mut batch, &mut target).await;
                    return;
                }
                got = rx.recv() => match got {
                    Some(spans) => { batch.extend(spans); batch.len() >= BATCH }
                    None => return,
                },
                _ = tokio::time::sleep_until(due.into()) => true,
            };
            if full {
                self.flush(&mut batch, &mut target).await;
                due = Instant::now() + FLUSH_EVERY;
            }
        }
    }
}

impl TraceExporter {
    /// Sends `batch` to the live config's collector (empty afterwards).
    async fn flush(&self, batch: &mut Vec<SpanData>, target: &mut Option<Target>) {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::take(batch);
        let n = spans.len() as u64;
        let snap = self.snapshot.load();
        let Some(cfg) = snap.config.tracing.as_ref() else {
            return; // tracing was turned off by a reload
        };
        let key = (cfg.otlp.clone(), cfg.service_name.clone());
        if target.as_ref().is_none_or(|t| t.key != key) {
            *target = build(&key).map(|exporter| Target { key, exporter });
        }
        let Some(t) = target.as_ref() else {
            crate::metrics::tracing_spans_dropped(n);
            return;
        };
        match tokio::time::timeout(EXPORT_TIMEOUT, t.exporter.export(spans)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed(n, &e.to_string()),
            Err(_) => failed(n, "timed out"),
        }
    }
}

/// Counts an undelivered batch; logs at most one warning a minute.
fn failed(n: u64, why: &str) {
    crate::metrics::tracing_spans_dropped(n);
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    if let Ok(mut last) = LAST.lock() {
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            log::warn!("tracing: {n} spans not delivered to the collector: {why}");
        }
    }
}

fn build((otlp, service): &(String, String)) -> Option<opentelemetry_otlp::SpanExporter> {
    let endpoint = traces_endpoint(otlp)?;
    let built = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build();
    match built {
        Ok(mut e) => {
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(service.clone())
                .build();
            e.set_resource(&resource);
            Some(e)
        }
        Err(err) => {
            log::warn!("tracing: cannot build the OTLP exporter for {otlp}: {err}");
            None
        }
    }
}
