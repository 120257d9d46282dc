//! DNS discovery through hickory-resolver against a real DNS server on
//! 127.0.0.1 (a small responder built from hickory-proto messages): SRV
//! records give each backend its port and weight, an answer truncated over
//! UDP is fetched again over TCP, and the SRV name of the Kubernetes kit's
//! headless Service (`_http._tcp.app.weir.svc.cluster.local`, read from
//! deploy/kubernetes/configmap.yaml) is asked as written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// SRV targets: (target name, port, weight).
type Targets = Vec<(String, u16, u16)>;

/// Answers SRV queries for any name with `targets`, and A queries for the
/// targets with 127.0.0.1. With `truncate_udp`, UDP answers to SRV carry
/// only the TC bit, so the resolver must ask again over TCP.
struct Dns {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tcp_queries: Arc<AtomicUsize>,
}

fn answer(query: &[u8], targets: &Targets, truncate: bool, only: Option<&Name>) -> Vec<u8> {
    let q = Message::from_vec(query).unwrap();
    let mut m = Message::new();
    m.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_op_code(q.op_code())
        .set_recursion_desired(q.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::NoError);
    for query in q.queries() {
        m.add_query(query.clone());
        let name = query.name().clone();
        match query.query_type() {
            RecordType::SRV if only.is_some_and(|o| *o != name) => {
                m.set_response_code(ResponseCode::NXDomain);
            }
            RecordType::SRV if truncate => {
                m.set_truncated(true);
            }
            RecordType::SRV => {
                for (t, port, weight) in targets {
                    let rd = SRV::new(0, *weight, *port, Name::from_str(t).unwrap());
                    m.add_answer(Record::from_rdata(name.clone(), 5, RData::SRV(rd)));
                }
            }
            RecordType::A
                if targets
                    .iter()
                    .any(|(t, _, _)| Name::from_str(t).unwrap() == name) =>
            {
                m.add_answer(Record::from_rdata(
                    name.clone(),
                    5,
                    RData::A(A(Ipv4Addr::LOCALHOST)),
                ));
            }
            _ => {}
        }
    }
    m.to_vec().unwrap()
}

impl Dns {
    fn start(targets: Targets, truncate_udp: bool) -> Dns {
        Self::start_for(None, targets, truncate_udp)
    }

    fn start_for(only: Option<&str>, targets: Targets, truncate_udp: bool) -> Dns {
        let srv_name = only.map(|n| Name::from_str(n).unwrap());
        let srv_name2 = srv_name.clone();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let udp = UdpSocket::bind(addr).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let tcp = TcpListener::bind(addr).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let (s1, t1) = (stop.clone(), targets.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s1.load(Relaxed) {
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let a = answer(&buf[..n], &t1, truncate_udp, srv_name.as_ref());
                    let _ = udp.send_to(&a, from);
                }
            }
        });
        let (s2, count) = (stop.clone(), tcp_queries.clone());
        std::thread::spawn(move || {
            while !s2.load(Relaxed) {
                let Ok((mut conn, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut len = [0u8; 2];
                while conn.read_exact(&mut len).is_ok() {
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if conn.read_exact(&mut q).is_err() {
                        break;
                    }
                    count.fetch_add(1, Relaxed);
                    let a = answer(&q, &targets, false, srv_name2.as_ref());
                    let _ = conn.write_all(&(a.len() as u16).to_be_bytes());
                    let _ = conn.write_all(&a);
                }
            }
        });
        Dns {
            addr,
            stop,
            tcp_queries,
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

fn config(listen: SocketAddr, admin: SocketAddr, dns: SocketAddr) -> String {
    format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
admin: {{ listen: "{admin}" }}
listeners: [{{ name: web, address: "{listen}" }}]
routes: [{{ upstream: app }}]
upstreams:
  app:
    algorithm: weighted
    backends: []
    discovery: {{ dns: {{ name: _http._tcp.app.test, type: srv, refresh: 300ms, resolver: "{dns}" }} }}
"#
    )
}

fn status(admin: SocketAddr) -> serde_json::Value {
    let r = get_host(admin, &admin.to_string(), "/status");
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn srv_records_give_port_and_weight() {
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let dns = Dns::start(
        vec![
            ("a.app.test.".into(), a.addr().port(), 3),
            ("b.app.test.".into(), b.addr().port(), 1),
        ],
        false,
    );
    let (listen, admin) = (free_addr(), free_addr());
    let _weir = WeirProcess::start(&config(listen, admin, dns.addr), listen);
    assert!(
        poll_until(Duration::from_secs(10), || {
            status(admin)["upstreams"][0]["backends"]
                .as_array()
                .is_some_and(|b| b.len() == 2)
        }),
        "SRV backends never appeared: {}",
        status(admin)
    );
    let st = status(admin);
    let backends = st["upstreams"][0]["backends"].as_array().unwrap();
    for (backend, weight) in [(&a, 3), (&b, 1)] {
        let entry = backends
            .iter()
            .find(|x| x["address"] == backend.addr().to_string())
            .unwrap_or_else(|| panic!("{} missing in {st}", backend.addr()));
        assert_eq!(entry["weight"], weight, "{st}");
        assert_eq!(entry["source"], "dns", "{st}");
    }
    // Weighted 3:1 over the SRV weights.
    let mut hits = [0usize; 2];
    for _ in 0..8 {
        match get(listen, "/").backend().as_str() {
            "a" => hits[0] += 1,
            "b" => hits[1] += 1,
            other => panic!("unexpected backend {other}"),
        }
    }
    assert_eq!(hits, [6, 2]);
}

#[test]
fn truncated_udp_answers_are_asked_again_over_tcp() {
    let a = TestBackend::start("a");
    let dns = Dns::start(vec![("a.app.test.".into(), a.addr().port(), 1)], true);
    let (listen, admin) = (free_addr(), free_addr());
    let _weir = WeirProcess::start(&config(listen, admin, dns.addr), listen);
    assert!(
        poll_until(Duration::from_secs(10), || get(listen, "/").status == 200),
        "the SRV answer over TCP was never used"
    );
    assert_eq!(get(listen, "/").backend(), "a");
    assert!(dns.tcp_queries.load(Relaxed) > 0);
}

/// The SRV name the Kubernetes kit's ConfigMap gives the `app` upstream.
fn kit_srv_name() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/configmap.yaml"
    );
    let cm: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let conf: serde_yaml::Value =
        serde_yaml::from_str(cm["data"]["weir.yaml"].as_str().unwrap()).unwrap();
    let dns = &conf["upstreams"]["app"]["discovery"]["dns"];
    assert_eq!(dns["type"].as_str(), Some("srv"));
    dns["name"].as_str().unwrap().to_string()
}

#[test]
fn the_kubernetes_kits_headless_service_srv_name_finds_the_pods() {
    let name = kit_srv_name();
    assert_eq!(name, "_http._tcp.app.weir.svc.cluster.local");
    let (a, b) = (TestBackend::start("pod-a"), TestBackend::start("pod-b"));
    // Pod records as cluster DNS gives them for a headless Service.
    let dns = Dns::start_for(
        Some(&format!("{name}.")),
        vec![
            (
                "10-244-1-7.app.weir.svc.cluster.local.".into(),
                a.addr().port(),
                50,
            ),
            (
                "10-244-2-9.app.weir.svc.cluster.local.".into(),
                b.addr().port(),
                50,
            ),
        ],
        false,
    );
    let (listen, admin) = (free_addr(), free_addr());
    let cfg = config(listen, admin, dns.addr).replace("_http._tcp.app.test", &name);
    let weir = WeirProcess::start(&cfg, listen);
    assert!(
        poll_until(Duration::from_secs(10), || {
            status(admin)["upstreams"][0]["backends"]
                .as_array()
                .is_some_and(|b| b.len() == 2)
        }),
        "the pods never appeared: {}\n{}",
        status(admin),
        weir.logs()
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(get(listen, "/").backend());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["pod-a", "pod-b"]);
}

#[test]
fn another_srv_name_finds_nothing() {
    // The server above answers only the name it is given: the kit test
    // would fail if weir asked for anything else.
    let a = TestBackend::start("a");
    let dns = Dns::start_for(
        Some("_http._tcp.app.weir.svc.cluster.local."),
        vec![("a.app.test.".into(), a.addr().port(), 1)],
        false,
    );
    let (listen, admin) = (free_addr(), free_addr());
    let _weir = WeirProcess::start(&config(listen, admin, dns.addr), listen);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        status(admin)["upstreams"][0]["backends"]
            .as_array()
            .map(|b| b.len()),
        Some(0)
    );
    assert_eq!(get(listen, "/").status, 503);
}
