//! Prometheus metrics (SPEC §6). Handles for the request path are resolved
//! when a snapshot is built (per route, per backend), so recording a request
//! is an atomic add on a counter and a histogram — no label hashing and no
//! lock. Gauges that mirror live state (in flight, up) are filled in at
//! scrape time from the current snapshot.

use crate::values::METHODS;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use std::sync::{LazyLock, OnceLock};

/// Request duration buckets: 5 ms … 60 s.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Status codes with a preallocated counter slot per route and method.
const CODES: &[u16] = &[
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 413, 429, 431, 499, 500, 502,
    503, 504,
];

/// All of weir's metrics, in their own registry.
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttfb: HistogramVec,
    in_flight: IntGaugeVec,
    backend_up: IntGaugeVec,
    health_failed: IntCounterVec,
    retries: IntCounterVec,
    rate_limited: IntCounterVec,
    shared_errors: IntCounterVec,
    circuit_open: IntGaugeVec,
    panic: IntGaugeVec,
    effective_weight: prometheus::GaugeVec,
    budget_exhausted: IntCounterVec,
    log_dropped: IntCounter,
    spans_dropped: IntCounter,
    tls_expiry: IntGaugeVec,
    reloads: IntCounterVec,
    last_reload: Gauge,
    connections_active: IntGaugeVec,
    tcp_active: IntGaugeVec,
    tcp_total: IntCounterVec,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "weir_requests_total",
            "Requests answered, by route, upstream, method and status",
        ),
        &["route", "upstream", "method", "code"],
    )?;
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "weir_request_duration_seconds",
            "Time from request to the end of the answer",
        )
        .buckets(BUCKETS.to_vec()),
        &["route", "upstream"],
    )?;
    let ttfb = HistogramVec::new(
        HistogramOpts::new(
            "weir_upstream_ttfb_seconds",
            "Time to the first response byte from a backend",
        )
        .buckets(BUCKETS.to_vec()),
        &["upstream", "backend"],
    )?;
    let in_flight = IntGaugeVec::new(
        Opts::new(
            "weir_upstream_requests_in_flight",
            "Requests in flight per backend",
        ),
        &["upstream", "backend"],
    )?;
    let backend_up = IntGaugeVec::new(
        Opts::new("weir_backend_up", "1 when a backend is healthy and enabled"),
        &["upstream", "backend"],
    )?;
    let health_failed = IntCounterVec::new(
        Opts::new(
            "weir_health_checks_failed_total",
            "Failed active health checks",
        ),
        &["upstream", "backend"],
    )?;
    let retries = IntCounterVec::new(
        Opts::new("weir_retries_total", "Retries on another backend"),
        &["upstream"],
    )?;
    let reloads = IntCounterVec::new(
        Opts::new("weir_config_reloads_total", "Config reloads"),
        &["result"],
    )?;
    let rate_limited = IntCounterVec::new(
        Opts::new(
            "weir_rate_limited_total",
            "Requests answered 429 by a rate limit",
        ),
        &["route"],
    )?;
    let shared_errors = IntCounterVec::new(
        Opts::new(
            "weir_shared_limit_errors_total",
            "Shared rate-limit checks that Redis did not answer in time",
        ),
        &["route"],
    )?;
    let log_dropped = IntCounter::new(
        "weir_access_log_dropped_total",
        "Access log lines dropped because the writer fell behind",
    )?;
    registry.register(Box::new(log_dropped.clone()))?;
    let spans_dropped = IntCounter::new(
        "weir_tracing_spans_dropped_total",
        "Trace spans dropped: the export queue was full or the collector did not take them",
    )?;
    registry.register(Box::new(spans_dropped.clone()))?;
    let tls_expiry = IntGaugeVec::new(
        Opts::new(
            "weir_tls_certificate_expiry_timestamp_seconds",
            "notAfter of each certificate an https listener serves",
        ),
        &["listener", "name"],
    )?;
    registry.register(Box::new(tls_expiry.clone()))?;
    let circuit_open = IntGaugeVec::new(
        Opts::new(
            "weir_circuit_open",
            "1 when a backend's circuit breaker is open",
        ),
        &["upstream", "backend"],
    )?;
    let panic = IntGaugeVec::new(
        Opts::new(
            "weir_upstream_panic",
            "1 while an upstream is in panic mode",
        ),
        &["upstream"],
    )?;
    let effective_weight = prometheus::GaugeVec::new(
        Opts::new(
            "weir_backend_effective_weight",
            "The weight a backend takes traffic with now (0 out of service; slow start ramps it)",
        ),
        &["upstream", "backend"],
    )?;
    registry.register(Box::new(effective_weight.clone()))?;
    let budget_exhausted = IntCounterVec::new(
        Opts::new(
            "weir_retry_budget_exhausted_total",
            "Retries not made because the upstream's retry budget was spent",
        ),
        &["upstream"],
    )?;
    let connections_active = IntGaugeVec::new(
        Opts::new(
            "weir_connections_active",
            "Client connections being served by an http or https listener",
        ),
        &["listener"],
    )?;
    registry.register(Box::new(connections_active.clone()))?;
    let last_reload = Gauge::new(
        "weir_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful config load",
    )?;
    let tcp_active = IntGaugeVec::new(
        Opts::new(
            "weir_tcp_connections_active",
            "Connections open on a tcp listener",
        ),
        &["listener"],
    )?;
    let tcp_total = IntCounterVec::new(
        Opts::new(
            "weir_tcp_connections_total",
            "Connections accepted by a tcp listener",
        ),
        &["listener"],
    )?;
    registry.register(Box::new(tcp_active.clone()))?;
    registry.register(Box::new(tcp_total.clone()))?;
    let build_info = IntGaugeVec::new(
        Opts::new("weir_build_info", "Build information"),
        &["version"],
    )?;
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    for c in [
        &requests,
        &health_failed,
        &retries,
        &reloads,
        &rate_limited,
        &shared_errors,
        &budget_exhausted,
    ] {
        registry.register(Box::new(c.clone()))?;
    }
    for h in [&duration, &ttfb] {
        registry.register(Box::new(h.clone()))?;
    }
    for g in [&in_flight, &backend_up, &circuit_open, &panic, &build_info] {
        registry.register(Box::new(g.clone()))?;
    }
    registry.register(Box::new(last_reload.clone()))?;
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    for r in ["success", "failure"] {
        reloads.with_label_values(&[r]);
    }
    Ok(Metrics {
        registry,
        requests,
        duration,
        ttfb,
        in_flight,
        backend_up,
        health_failed,
        retries,
        rate_limited,
        shared_errors,
        circuit_open,
        panic,
        effective_weight,
        budget_exhausted,
        log_dropped,
        spans_dropped,
        tls_expiry,
        reloads,
        last_reload,
        connections_active,
        tcp_active,
        tcp_total,
    })
}

static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| match build() {
    Ok(m) => Some(m),
    Err(e) => {
        log::error!("metrics disabled: {e}");
        None
    }
});

/// The process's metrics (`None` only if the registry could not be built).
pub fn get() -> Option<&'static Metrics> {
    METRICS.as_ref()
}

fn method_index(m: &http::Method) -> usize {
    METHODS
        .iter()
        .position(|x| *x == m.as_str())
        .unwrap_or(METHODS.len())
}

fn method_label(i: usize) -> &'static str {
    METHODS.get(i).copied().unwrap_or("OTHER")
}

/// Per-route handles: the duration histogram and lazily created counters
/// per (method, common status code).
#[derive(Debug)]
pub struct RouteMetrics {
    route: String,
    upstream: String,
    duration: Option<Histogram>,
    counters: Box<[OnceLock<IntCounter>]>,
}

impl RouteMetrics {
    /// Handles for a route serving `upstream` ("-" for weir's own answers).
    pub fn new(route: &str, upstream: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.into(),
            upstream: upstream.into(),
            duration: get().map(|m| m.duration.with_label_values(&[route, upstream])),
            counters: (0..(METHODS.len() + 1) * CODES.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    /// Records one answered request.
    pub fn record(&self, method: &http::Method, code: u16, seconds: f64) {
        let Some(m) = get() else { return };
        if let Some(h) = &self.duration {
            h.observe(seconds);
        }
        let mi = method_index(method);
        match CODES.iter().position(|c| *c == code) {
            Some(ci) => {
                let slot = &self.counters[mi * CODES.len() + ci];
                slot.get_or_init(|| {
                    m.requests.with_label_values(&[
                        &self.route,
                        &self.upstream,
                        method_label(mi),
                        &code.to_string(),
                    ])
                })
                .inc();
            }
            None => m
                .requests
                .with_label_values(&[
                    &self.route,
                    &self.upstream,
                    method_label(mi),
                    &code.to_string(),
                ])
                .inc(),
        }
    }
}

/// Requests no route matched (404/405/400) are counted under route "-".
pub fn unmatched() -> &'static RouteMetrics {
    static UNMATCHED: LazyLock<RouteMetrics> = LazyLock::new(|| RouteMetrics::new("-", "-"));
    &UNMATCHED
}

/// The TTFB histogram of a backend.
pub fn ttfb(upstream: &str, backend: &str) -> Option<Histogram> {
    get().map(|m| m.ttfb.with_label_values(&[upstream, backend]))
}

/// The retry counter of an upstream.
pub fn retries(upstream: &str) -> Option<IntCounter> {
    get().map(|m| m.retries.with_label_values(&[upstream]))
}

/// The retry-budget refusal counter of an upstream.
pub fn retry_budget_exhausted(upstream: &str) -> Option<IntCounter> {
    get().map(|m| m.budget_exhausted.with_label_values(&[upstream]))
}

/// Counts a failed health check.
pub fn health_check_failed(upstream: &str, backend: &str) {
    if let Some(m) = get() {
        m.health_failed
            .with_label_values(&[upstream, backend])
            .inc();
    }
}

/// Counts a config load (start-up or reload).
pub fn config_loaded(ok: bool) {
    if let Some(m) = get() {
        m.reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            m.last_reload.set(now);
        }
    }
}

/// Sets the expiry gauge of every certificate, by listener and name.
pub fn tls_expiry<'a>(certs: impl IntoIterator<Item = (&'a str, &'a str, i64)>) {
    let Some(m) = get() else { return };
    m.tls_expiry.reset();
    for (listener, name, not_after) in certs {
        m.tls_expiry
            .with_label_values(&[listener, name])
            .set(not_after);
    }
}

/// Sets the expiry gauge of one certificate (an ACME one), or removes it
/// with `None`.
pub fn tls_expiry_one(listener: &str, name: &str, not_after: Option<i64>) {
    let Some(m) = get() else { return };
    match not_after {
        Some(t) => m.tls_expiry.with_label_values(&[listener, name]).set(t),
        None => {
            let _ = m.tls_expiry.remove_label_values(&[listener, name]);
        }
    }
}

/// The active-connections gauge and the accepted-connections counter of a
/// tcp listener.
pub fn tcp_connections(listener: &str) -> Option<(prometheus::IntGauge, IntCounter)> {
    get().map(|m| {
        (
            m.tcp_active.with_label_values(&[listener]),
            m.tcp_total.with_label_values(&[listener]),
        )
    })
}

/// The `weir_connections_active` gauge of an http or https listener.
pub fn connections_active(listener: &str) -> Option<prometheus::IntGauge> {
    get().map(|m| m.connections_active.with_label_values(&[listener]))
}

/// Counts `n` trace spans dropped (queue full, or not delivered).
pub fn tracing_spans_dropped(n: u64) {
    if let Some(m) = get() {
        m.spans_dropped.inc_by(n);
    }
}

/// Counts an access log line dropped because the writer fell behind.
pub fn access_log_dropped() {
    if let Some(m) = get() {
        m.log_dropped.inc();
    }
}

/// The 429 counter of a rate-limited route.
pub fn rate_limited(route: &str) -> Option<IntCounter> {
    get().map(|m| m.rate_limited.with_label_values(&[route]))
}

/// The counter of a route's shared-limit checks that Redis did not answer.
pub fn shared_limit_errors(route: &str) -> Option<IntCounter> {
    get().map(|m| m.shared_errors.with_label_values(&[route]))
}

/// Drops the series of backends that are gone (upstream, backend label).
pub fn forget_removed<'a>(gone: impl Iterator<Item = (&'a str, &'a str)>) {
    let Some(m) = get() else { return };
    for (upstream, backend) in gone {
        let labels = [upstream, backend];
        let _ = m.ttfb.remove_label_values(&labels);
        let _ = m.health_failed.remove_label_values(&labels);
    }
}

/// One backend's live state at scrape time.
pub struct BackendSample<'a> {
    /// Upstream name.
    pub upstream: &'a str,
    /// Backend label.
    pub backend: &'a str,
    /// Requests in flight.
    pub in_flight: usize,
    /// Takes traffic.
    pub up: bool,
    /// Circuit open (or half-open).
    pub circuit_open: bool,
    /// Its upstream is in panic mode.
    pub panic: bool,
    /// The weight it takes traffic with now.
    pub effective_weight: f64,
}

/// Renders the Prometheus text format, with the live gauges set from
/// `backends`.
pub fn render<'a>(backends: impl Iterator<Item = BackendSample<'a>>) -> String {
    let Some(m) = get() else {
        return String::new();
    };
    // The live gauges are reset and refilled: two scrapes at once must not
    // see each other's half-filled state.
    static RENDER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = RENDER.lock().unwrap_or_else(|p| p.into_inner());
    m.in_flight.reset();
    m.backend_up.reset();
    m.circuit_open.reset();
    m.panic.reset();
    m.effective_weight.reset();
    for b in backends {
        m.panic
            .with_label_values(&[b.upstream])
            .set(i64::from(b.panic));
        let labels = [b.upstream, b.backend];
        m.in_flight
            .with_label_values(&labels)
            .set(b.in_flight as i64);
        m.backend_up.with_label_values(&labels).set(i64::from(b.up));
        m.circuit_open
            .with_label_values(&labels)
            .set(i64::from(b.circuit_open));
        m.effective_weight
            .with_label_values(&labels)
            .set(b.effective_weight);
    }
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&m.registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}
