//! A finished, sampled request as OpenTelemetry span data: one server span
//! (route, upstream, status, client, attempts) and one client span per
//! upstream attempt (backend, status, time to first byte, error).

use super::{export, Attempt, RequestTrace};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::SystemTime;

/// What the server span says about a request that ended.
#[derive(Debug, Default)]
pub struct Finished<'a> {
    /// Request method.
    pub method: &'a str,
    /// Route name (`-` when none matched).
    pub route: &'a str,
    /// Upstream name (`-`).
    pub upstream: &'a str,
    /// Host as routing saw it.
    pub host: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Status sent to the client (499: it left first).
    pub status: u16,
    /// Derived client address.
    pub client: Option<IpAddr>,
}

static SCOPE: LazyLock<InstrumentationScope> = LazyLock::new(|| {
    InstrumentationScope::builder("weir")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
});

impl RequestTrace {
    /// Ends the request's spans and queues them for export (sampled only).
    pub fn finish(mut self, f: &Finished<'_>) {
        if !self.sampled() {
            return;
        }
        if !export::has_room() {
            // Counted without being built: a collector that is down costs
            // requests as little as it can.
            crate::metrics::tracing_spans_dropped(1 + self.attempts.len() as u64);
            return;
        }
        self.close_attempt(None);
        let end = SystemTime::now();
        let mut spans = Vec::with_capacity(1 + self.attempts.len());
        spans.push(self.server_span(f, end));
        for a in &self.attempts {
            spans.push(self.client_span(a, f.method, end));
        }

        export::submit(spans);
    }

    fn context_for(&self, span: SpanId) -> SpanContext {
        SpanContext::new(
            self.context.trace_id(),
            span,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    }

    fn server_span(&self, f: &Finished<'_>, end: SystemTime) -> SpanData {
        let mut attributes = vec![
            KeyValue::new("http.request.method", f.method.to_string()),
            KeyValue::new("url.path", f.path.to_string()),
            KeyValue::new("server.address", f.host.to_string()),
            KeyValue::new("http.route", f.route.to_string()),
            KeyValue::new("http.response.status_code", i64::from(f.status)),
            KeyValue::new("weir.upstream", f.upstream.to_string()),
            KeyValue::new("weir.attempts", self.attempts.len() as i64),
        ];
        if let Some(c) = f.client {
            attributes.push(KeyValue::new("client.address", c.to_string()));
        }
        let status = if f.status >= 500 {
            Status::error(format!("answered {}", f.status))
        } else {
            Status::Unset
        };
        self.span(
            (self.context.span_id(), self.parent),
            SpanKind::Server,
            format!("{} {}", f.method, f.route),
            (self.start, end),
            attributes,
            status,
        )
    }

    fn client_span(&self, a: &Attempt, method: &str, end: SystemTime) -> SpanData {
        let mut attributes = vec![
            KeyValue::new("server.address", a.backend.ip().to_string()),
            KeyValue::new("server.port", i64::from(a.backend.port())),
        ];
        if a.status > 0 {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(a.status),
            ));
        }
        if let Some(t) = a.ttfb {
            attributes.push(KeyValue::new("weir.ttfb_ms", t.as_secs_f64() * 1000.0));
        }
        let status = match (&a.error, a.status) {
            (Some(e), _) => {
                attributes.push(KeyValue::new("error.type", e.clone()));
                Status::error(e.clone())
            }
            (None, s) if s >= 500 => Status::error(format!("answered {s}")),
            _ => Status::Unset,
        };
        self.span(
            (a.span_id, self.context.span_id()),
            SpanKind::Client,
            method.to_string(),
            (a.start, a.end.unwrap_or(end)),
            attributes,
            status,
        )
    }

    fn span(
        &self,
        (id, parent): (SpanId, SpanId),
        kind: SpanKind,
        name: String,
        (start, end): (SystemTime, SystemTime),
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> SpanData {
        SpanData {
            span_context: self.context_for(id),
            parent_span_id: parent,
            parent_span_is_remote: kind == SpanKind::Server && self.continued(),
            span_kind: kind,
            name: Cow::Owned(name),
            start_time: start,
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: SCOPE.clone(),
        }
    }
}
