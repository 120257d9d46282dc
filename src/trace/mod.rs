//! OpenTelemetry tracing of proxied requests (SPEC §1.4). Each request gets a
//! W3C trace context: continued from a `traceparent` sent by a peer in
//! `trusted_proxies`, otherwise started by weir. The sampling decision is
//! the OpenTelemetry SDK's parent-based, trace-id-ratio sampler
//! (`sample_ratio`). Every request carries its context upstream and its
//! trace id into the access log; a sampled one also records a server span and
//! one client span per upstream attempt, handed to [`export`] when it ends.

pub mod export;
mod spans;

use crate::config::model::TracingSection;
use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, ShouldSample};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

pub use spans::Finished;

/// One upstream attempt of a sampled request: a client span.
#[derive(Debug)]
struct Attempt {
    span_id: SpanId,
    backend: SocketAddr,
    start: SystemTime,
    started: Instant,
    /// Time to the answer's head, once it arrived.
    ttfb: Option<Duration>,
    status: u16,
    error: Option<String>,
    end: Option<SystemTime>,
}

/// A request's trace context and, when sampled, its spans so far.
#[derive(Debug)]
pub struct RequestTrace {
    /// Trace id, weir's server span id and the sampled flag.
    context: SpanContext,
    /// The trusted peer's span (invalid when weir started the trace).
    parent: SpanId,
    start: SystemTime,
    attempts: Vec<Attempt>,
    /// The trace id in lower-case hex, for the access log.
    hex: [u8; 32],
}

/// Reads `traceparent` / `tracestate` from request headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The remote span context a trusted peer sent, if valid.
fn remote_context(headers: &HeaderMap) -> Option<opentelemetry::Context> {
    headers.get(TRACEPARENT)?;
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// Header names of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// See [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// Starts a request's trace when tracing is configured: the context of a
/// trusted peer is continued (its sampled flag decides), anyone else's is
/// ignored and a new trace starts, sampled by `sample_ratio`.
pub fn begin(
    cfg: Option<&TracingSection>,
    headers: &HeaderMap,
    trusted_peer: bool,
) -> Option<Box<RequestTrace>> {
    let cfg = cfg?;
    let ids = RandomIdGenerator::default();
    let parent_cx = if trusted_peer {
        remote_context(headers)
    } else {
        None
    };
    let (trace_id, parent, state) = match &parent_cx {
        Some(cx) => {
            let sc = cx.span().span_context().clone();
            (sc.trace_id(), sc.span_id(), sc.trace_state().clone())
        }
        None => (ids.new_trace_id(), SpanId::INVALID, TraceState::default()),
    };
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio)));
    let decision = sampler.should_sample(
        parent_cx.as_ref(),
        trace_id,
        "",
        &SpanKind::Server,
        &[],
        &[],
    );
    let sampled = matches!(
        decision.decision,
        opentelemetry_sdk::trace::SamplingDecision::RecordAndSample
    );
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let context = SpanContext::new(trace_id, ids.new_span_id(), flags, false, state);
    Some(Box::new(RequestTrace {
        hex: hex32(trace_id),
        context,
        parent,
        start: SystemTime::now(),
        attempts: Vec::new(),
    }))
}

fn hex32(id: TraceId) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in id.to_bytes().iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
    out
}

impl RequestTrace {
    /// Whether this request records and exports spans.
    pub fn sampled(&self) -> bool {
        self.context.is_sampled()
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.hex).unwrap_or("")
    }

    /// The trace id's hex digits, to outlive the trace.
    pub fn trace_id_hex(&self) -> [u8; 32] {
        self.hex
    }

    /// An upstream attempt to `backend` begins (a client span when sampled).
    pub fn attempt(&mut self, backend: SocketAddr) {
        if !self.sampled() {
            return;
        }
        self.close_attempt(Some("abandoned for another attempt"));
        self.attempts.push(Attempt {
            span_id: RandomIdGenerator::default().new_span_id(),
            backend,
            start: SystemTime::now(),
            started: Instant::now(),
            ttfb: None,
            status: 0,
            error: None,
            end: None,
        });
    }

    /// The current attempt's backend answered with `status`.
    pub fn answered(&mut self, status: u16) {
        if let Some(a) = self.attempts.last_mut() {
            a.status = status;
            a.ttfb = Some(a.started.elapsed());
        }
    }

    /// The current attempt failed (connect, read, timeout, or a 5xx retried).
    pub fn failed(&mut self, error: &str) {
        if let Some(a) = self.attempts.last_mut() {
            if a.end.is_none() {
                a.error = Some(error.to_string());
                a.end = Some(SystemTime::now());
            }
        }
    }

    fn close_attempt(&mut self, error: Option<&str>) {
        if let Some(a) = self.attempts.last_mut() {
            if a.end.is_none() {
                a.end = Some(SystemTime::now());
                if a.status == 0 && a.error.is_none() {
                    a.error = error.map(str::to_string);
                }
            }
        }
    }

    /// The `traceparent` for the backend: the current attempt's client span
    /// as parent when sampled, weir's server span otherwise.
    pub fn upstream_traceparent(&self) -> Option<HeaderValue> {
        let span = match self.attempts.last() {
            Some(a) => a.span_id,
            None => self.context.span_id(),
        };
        let flags = self.context.trace_flags().to_u8() & 1;
        let text = format!("00-{}-{span}-{flags:02x}", self.trace_id());
        HeaderValue::from_str(&text).ok()
    }

    /// Sets `traceparent` on the request to the backend; a `tracestate`
    /// goes on only with a continued context (one from an untrusted peer
    /// belongs to a trace weir did not continue).
    pub fn set_upstream_headers(
        &self,
        upstream: &mut pingora_http::RequestHeader,
    ) -> pingora_error::Result<()> {
        if let Some(v) = self.upstream_traceparent() {
            upstream.insert_header(TRACEPARENT, v)?;
        }
        if !self.continued() {
            upstream.remove_header(TRACESTATE);
        }
        Ok(())
    }

    /// Whether the context was continued from a trusted peer (its
    /// `tracestate` then goes upstream as it came).
    pub fn continued(&self) -> bool {
        self.parent != SpanId::INVALID
    }
}
