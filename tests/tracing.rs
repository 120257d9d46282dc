//! OpenTelemetry tracing (SPEC §1.4) against a real OTLP/HTTP receiver that
//! decodes the protobuf export with the official `opentelemetry-proto`
//! definitions: spans arrive with their parent/child links and attributes, a
//! retried request shows two client spans, a trusted peer's context is
//! continued and an untrusted one's is not, `traceparent` reaches the backend,
//! the access log carries `trace_id`, and an absent collector costs requests
//! nothing while its drops are counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use prost::Message;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A span as received, with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    span: Span,
}

impl Got {
    fn attr(&self, key: &str) -> Option<String> {
        let kv = self.span.attributes.iter().find(|kv| kv.key == key)?;
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            Value::DoubleValue(d) => Some(d.to_string()),
            Value::BoolValue(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A small OTLP/HTTP receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, answered 200 with an empty response message.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Got>>>,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        rt.spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move { serve(s, sink).await });
            }
        });
        Receiver {
            addr,
            spans,
            _rt: rt,
        }
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until spans of `trace` (32 hex digits) number at least `n`.
    fn wait_trace(&self, trace: &str, n: usize) -> Vec<Got> {
        let found = poll_until(Duration::from_secs(10), || {
            self.spans()
                .iter()
                .filter(|g| g.trace_id() == trace)
                .count()
                >= n
        });
        let all = self.spans();
        assert!(found, "trace {trace}: fewer than {n} spans in {all:#?}");
        all.into_iter().filter(|g| g.trace_id() == trace).collect()
    }
}

/// Reads HTTP/1.1 requests off one connection (content-length bodies).
async fn serve(s: tokio::net::TcpStream, sink: Arc<Mutex<Vec<Got>>>) {
    let mut s = BufReader::new(s);
    loop {
        let mut length = 0usize;
        let mut path = String::new();
        loop {
            let mut line = String::new();
            if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if path.is_empty() {
                path = line.split(' ').nth(1).unwrap_or("").to_string();
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if s.read_exact(&mut body).await.is_err() {
            return;
        }
        let decoded = ExportTraceServiceRequest::decode(body.as_slice());
        let status = match (&*path, decoded) {
            ("/v1/traces", Ok(req)) => {
                record(&sink, req);
                "200 OK"
            }
            _ => "400 Bad Request",
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        if s.get_mut().write_all(head.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn record(sink: &Mutex<Vec<Got>>, req: ExportTraceServiceRequest) {
    let mut out = sink.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                out.push(Got {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
}

fn config(listen: SocketAddr, admin: SocketAddr, otlp: &str, extra: &str) -> String {
    format!(
        r#"
server: {{ threads: 2, pid_file: weir.pid, upgrade_sock: up.sock }}
admin: {{ listen: "{admin}" }}
log: {{ access_log: {{ path: access.log, format: json }} }}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - name: api
    match: {{ path_prefix: / }}
    upstream: pool
    retries: 1
    retry_on: [5xx]
tracing: {{ otlp: "{otlp}", service_name: edge-test, {extra} }}
"#
    )
}

fn upstream(backends: &[&TestBackend]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr()))
        .collect();
    format!(
        "upstreams:\n  pool:\n    algorithm: round_robin\n    backends: [{}]\n",
        list.join(", ")
    )
}

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn traced_get(listen: SocketAddr, flags: &str) -> Response {
    let tp = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-{flags}");
    request(
        listen,
        "GET",
        "/orders",
        &[("traceparent", tp.as_str()), ("tracestate", "vendor=1")],
    )
    .unwrap()
}

/// The backend's view of `traceparent`: (trace id, parent span id, flags).
fn sent_upstream(r: &Response) -> (String, String, String) {
    let tp = r
        .echoed_header("traceparent")
        .expect("no traceparent upstream");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// A trusted peer's sampled context is continued: the server span is the
/// child of the peer's span, each upstream attempt is a client span under
/// it (a 502 retried elsewhere shows as two), the backend's `traceparent`
/// names the attempt's span, and the access log carries the trace id.
#[test]
fn a_retried_request_arrives_as_a_server_span_with_two_client_spans() {
    let receiver = Receiver::start();
    let bad = TestBackend::start("bad");
    bad.set_status(502);
    let good = TestBackend::start("good");
    let (listen, admin) = (free_addr(), free_addr());
    let otlp = format!("http://{}", receiver.addr);
    let yaml = format!(
        "{}trusted_proxies: [127.0.0.1]\n{}",
        config(listen, admin, &otlp, "sample_ratio: 0"),
        upstream(&[&bad, &good])
    );
    let w = WeirProcess::start(&yaml, listen);
    // Round robin: one of two consecutive requests goes to `bad` first.
    let mut retried = None;
    for _ in 0..2 {
        let r = traced_get(listen, "01");
        assert_eq!(r.status, 200, "{}", w.logs());
        if bad.requests() > 0 && retried.is_none() {
            retried = Some(r);
        }
    }
    let r = retried.expect("no request went to the failing backend first");
    let (trace, parent, flags) = sent_upstream(&r);
    assert_eq!(trace, PARENT_TRACE, "the peer's trace was not continued");
    assert_eq!(flags, "01");
    assert_eq!(r.echoed_header("tracestate").as_deref(), Some("vendor=1"));

    let spans = receiver.wait_trace(PARENT_TRACE, 4);
    let servers: Vec<&Got> = spans
        .iter()
        .filter(|g| g.kind() == SpanKind::Server)
        .collect();
    assert_eq!(servers.len(), 2, "one server span per request: {spans:#?}");
    let server = servers
        .iter()
        .find(|s| s.attr("weir.attempts").as_deref() == Some("2"))
        .unwrap_or_else(|| panic!("no server span with 2 attempts: {spans:#?}"));
    assert_eq!(server.parent_id(), PARENT_SPAN);
    assert_eq!(server.service, "edge-test");
    assert_eq!(server.attr("http.route").as_deref(), Some("api"));
    assert_eq!(server.attr("weir.upstream").as_deref(), Some("pool"));
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(server.attr("client.address").as_deref(), Some("127.0.0.1"));
    let mut clients: Vec<&Got> = spans
        .iter()
        .filter(|g| g.kind() == SpanKind::Client && g.parent_id() == server.span_id())
        .collect();
    clients.sort_by_key(|g| g.span.start_time_unix_nano);
    assert_eq!(
        clients.len(),
        2,
        "two attempts, two client spans: {spans:#?}"
    );
    let port = |b: &TestBackend| Some(b.port().to_string());
    assert_eq!(clients[0].attr("server.port"), port(&bad));
    assert_eq!(
        clients[0].attr("http.response.status_code").as_deref(),
        Some("502")
    );
    assert_eq!(clients[1].attr("server.port"), port(&good));
    assert_eq!(
        clients[1].attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(clients[1].attr("weir.ttfb_ms").is_some());
    assert_eq!(
        parent,
        clients[1].span_id(),
        "the backend's parent is its attempt's client span"
    );
    let log = w.dir().join("access.log");
    assert!(poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(&format!("\"trace_id\":\"{PARENT_TRACE}\""))
    }));
}

/// With `sample_ratio: 0` only a trusted peer's sampled context is traced:
/// its unsampled context and requests without one record nothing, though
/// they still carry a `traceparent` (flag 00) to the backend.
#[test]
fn only_sampled_requests_are_exported() {
    let receiver = Receiver::start();
    let b = TestBackend::start("b");
    let (listen, admin) = (free_addr(), free_addr());
    let otlp = format!("http://{}", receiver.addr);
    let yaml = format!(
        "{}trusted_proxies: [127.0.0.1]\n{}",
        config(listen, admin, &otlp, "sample_ratio: 0"),
        upstream(&[&b])
    );
    let _w = WeirProcess::start(&yaml, listen);
    let mut unsampled = Vec::new();
    for _ in 0..20 {
        let r = get(listen, "/plain");
        let (trace, _, flags) = sent_upstream(&r);
        assert_eq!(flags, "00");
        unsampled.push(trace);
    }
    let r = traced_get(listen, "00");
    assert_eq!(sent_upstream(&r).0, PARENT_TRACE);
    assert_eq!(sent_upstream(&r).2, "00", "the peer said: not sampled");
    // A sampled request after them: once its spans are in, anything queued
    // before it has been exported too (one queue, one exporter, in order).
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = request(listen, "GET", "/last", &[("traceparent", tp)]).unwrap();
    assert_eq!(r.status, 200);
    receiver.wait_trace("0af7651916cd43dd8448eb211c80319c", 2);
    let traces: std::collections::BTreeSet<String> =
        receiver.spans().iter().map(Got::trace_id).collect();
    assert_eq!(
        traces.into_iter().collect::<Vec<_>>(),
        vec!["0af7651916cd43dd8448eb211c80319c".to_string()],
        "only the sampled request was exported"
    );
    let distinct: std::collections::HashSet<&String> = unsampled.iter().collect();
    assert_eq!(
        distinct.len(),
        unsampled.len(),
        "each request its own trace"
    );
}

/// A context from a peer outside `trusted_proxies` is not continued: weir
/// starts a new trace (its own id upstream and in the spans), and the
/// peer's `tracestate` is not passed on.
#[test]
fn an_untrusted_peer_cannot_choose_the_trace() {
    let receiver = Receiver::start();
    let b = TestBackend::start("b");
    let (listen, admin) = (free_addr(), free_addr());
    let otlp = format!("http://{}", receiver.addr);
    let yaml = format!(
        "{}trusted_proxies: [10.0.0.0/8]\n{}",
        config(listen, admin, &otlp, "sample_ratio: 1"),
        upstream(&[&b])
    );
    let _w = WeirProcess::start(&yaml, listen);
    let r = traced_get(listen, "01");
    assert_eq!(r.status, 200);
    let (trace, parent, flags) = sent_upstream(&r);
    assert_ne!(trace, PARENT_TRACE, "an untrusted peer chose the trace id");
    assert_eq!(flags, "01", "sample_ratio 1 samples every new trace");
    assert_eq!(r.echoed_header("tracestate"), None);
    let spans = receiver.wait_trace(&trace, 2);
    let server = spans.iter().find(|g| g.kind() == SpanKind::Server).unwrap();
    assert!(
        server.span.parent_span_id.is_empty(),
        "a new trace's server span is a root: {server:#?}"
    );
    let client = spans.iter().find(|g| g.kind() == SpanKind::Client).unwrap();
    assert_eq!(client.span_id(), parent);
}

fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let host = admin.to_string();
    let r = request(admin, "GET", "/metrics", &[("host", host.as_str())]).ok()?;
    r.body.lines().find_map(|l| {
        l.strip_prefix(name)?
            .strip_prefix(' ')
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A collector that is down: every request is still answered, and the
/// spans that could not be delivered are counted as dropped.
#[test]
fn an_absent_collector_costs_requests_nothing_and_drops_are_counted() {
    let b = TestBackend::start("b");
    let (listen, admin) = (free_addr(), free_addr());
    let dead = free_addr(); // nothing listens there
    let yaml = format!(
        "{}{}",
        config(listen, admin, &format!("http://{dead}"), "sample_ratio: 1"),
        upstream(&[&b])
    );
    let w = WeirProcess::start(&yaml, listen);
    assert!(wait_port(admin, Duration::from_secs(10)));
    assert_eq!(metric(admin, "weir_tracing_spans_dropped_total"), Some(0.0));
    let mut client = KeepAliveClient::connect(listen).unwrap();
    for i in 0..200 {
        let r = client.send("GET", &format!("/n/{i}"), &[]).unwrap();
        assert_eq!(r.status, 200, "{}", w.logs());
    }
    // 200 requests, 2 spans each (server + one attempt), all undeliverable.
    assert!(
        poll_until(Duration::from_secs(15), || {
            metric(admin, "weir_tracing_spans_dropped_total") == Some(400.0)
        }),
        "dropped: {:?}\n{}",
        metric(admin, "weir_tracing_spans_dropped_total"),
        w.logs()
    );
}
