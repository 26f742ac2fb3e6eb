//! The real server on loopback, queried over UDP and TCP with DNS messages:
//! cluster names, negative answers with the SOA, truncation and TCP retry,
//! and forwarding (with its cache) to an upstream resolver on loopback.

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::json;
use sluice_dns::{DnsConfig, Forwarder, Server, Snapshot, Zone};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn query(name: &str, rtype: RecordType, edns: bool) -> Message {
    let mut m = Message::new();
    m.set_id(fastid())
        .set_message_type(MessageType::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

fn fastid() -> u16 {
    static N: AtomicUsize = AtomicUsize::new(1);
    N.fetch_add(1, Ordering::Relaxed) as u16
}

async fn udp(server: SocketAddr, q: &Message) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("udp answer")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.id(), q.id());
    m
}

async fn tcp(server: SocketAddr, q: &Message) -> Message {
    let mut s = TcpStream::connect(server).await.unwrap();
    let b = q.to_vec().unwrap();
    s.write_all(&(b.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&b).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addrs(m: &Message) -> Vec<String> {
    m.answers()
        .iter()
        .map(|r| match r.data() {
            RData::A(a) => a.to_string(),
            RData::AAAA(a) => a.to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// A loopback upstream: `outside.test` A 192.0.2.10 (TTL 300), NXDOMAIN with
/// an SOA for anything else; counts the queries it gets.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_recursion_available(true)
                .add_queries(q.queries().to_vec());
            let qq = &q.queries()[0];
            if qq.name().to_ascii() == "outside.test." && qq.query_type() == RecordType::A {
                r.add_answer(Record::from_rdata(
                    qq.name().clone(),
                    300,
                    RData::A(A::new(192, 0, 2, 10)),
                ));
            } else {
                r.set_response_code(ResponseCode::NXDomain);
                let soa = SOA::new(
                    Name::from_ascii("ns.test.").unwrap(),
                    Name::from_ascii("h.test.").unwrap(),
                    1,
                    1,
                    1,
                    1,
                    30,
                );
                r.add_name_server(Record::from_rdata(
                    Name::from_ascii("test.").unwrap(),
                    30,
                    RData::SOA(soa),
                ));
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    (addr, count)
}

async fn start() -> (Server, Arc<AtomicUsize>) {
    let (up, count) = upstream().await;
    let zone = Zone::new("cluster.local", Forwarder::new(&[up]));
    let services: Vec<k8s_openapi::api::core::v1::Service> = vec![
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "prod"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}}))
        .unwrap(),
        serde_json::from_value(json!({"metadata": {"name": "big", "namespace": "prod"},
            "spec": {"clusterIP": "None"}}))
        .unwrap(),
        serde_json::from_value(json!({"metadata": {"name": "ext", "namespace": "prod"},
            "spec": {"type": "ExternalName", "externalName": "outside.test"}}))
        .unwrap(),
    ];
    let endpoints: Vec<_> = (0..100)
        .map(|i| json!({"addresses": [format!("10.244.0.{}", i + 1)], "conditions": {"ready": true}}))
        .collect();
    let slices: Vec<k8s_openapi::api::discovery::v1::EndpointSlice> = vec![serde_json::from_value(json!({
        "metadata": {"name": "big-1", "namespace": "prod", "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4", "endpoints": endpoints
    }))
    .unwrap()];
    let config = DnsConfig {
        domain: "cluster.local".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let server = Server::bind(&config, zone.clone()).await.unwrap();
    // Not ready yet: cluster names fail rather than being denied.
    let r = udp(
        server.local_addr(),
        &query("web.prod.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.response_code(), ResponseCode::ServFail);
    zone.set_snapshot(Snapshot::build(&services, &slices, &[]));
    (server, count)
}

#[tokio::test]
async fn answers_cluster_names_over_udp_and_tcp() {
    let (server, _) = start().await;
    let at = server.local_addr();
    let r = udp(at, &query("Web.Prod.svc.cluster.local.", RecordType::A, false)).await;
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(r.authoritative());
    assert_eq!(addrs(&r), ["10.96.0.20"]);
    assert_eq!(r.answers()[0].ttl(), 5);
    assert_eq!(r.answers()[0].name().to_ascii(), "Web.Prod.svc.cluster.local.");
    let r = tcp(at, &query("web.prod.svc.cluster.local.", RecordType::A, false)).await;
    assert_eq!(addrs(&r), ["10.96.0.20"]);

    let r = udp(
        at,
        &query("_http._tcp.web.prod.svc.cluster.local.", RecordType::SRV, true),
    )
    .await;
    assert_eq!(addrs(&r), ["0 100 80 web.prod.svc.cluster.local."]);
    assert_eq!(r.additionals().len(), 1);

    let r = udp(at, &query("20.0.96.10.in-addr.arpa.", RecordType::PTR, false)).await;
    assert_eq!(addrs(&r), ["web.prod.svc.cluster.local."]);
}

#[tokio::test]
async fn negative_answers_carry_the_soa() {
    let (server, _) = start().await;
    let at = server.local_addr();
    let r = udp(at, &query("nope.prod.svc.cluster.local.", RecordType::A, false)).await;
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
    assert!(r.answers().is_empty());
    let soa = &r.name_servers()[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name().to_ascii(), "cluster.local.");
    let RData::SOA(s) = soa.data() else { panic!() };
    assert_eq!(s.minimum(), 5);
    let r = udp(at, &query("web.prod.svc.cluster.local.", RecordType::AAAA, false)).await;
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(r.answers().is_empty());
    assert_eq!(r.name_servers()[0].record_type(), RecordType::SOA);
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let (server, _) = start().await;
    let at = server.local_addr();
    let r = udp(at, &query("big.prod.svc.cluster.local.", RecordType::A, false)).await;
    assert!(r.truncated(), "100 A records do not fit 512 bytes");
    assert!(r.answers().is_empty());
    let r = udp(at, &query("big.prod.svc.cluster.local.", RecordType::A, true)).await;
    assert!(r.truncated(), "nor 1232 bytes");
    let r = tcp(at, &query("big.prod.svc.cluster.local.", RecordType::A, false)).await;
    assert!(!r.truncated());
    assert_eq!(r.answers().len(), 100);
}

#[tokio::test]
async fn outside_names_are_forwarded_and_cached() {
    let (server, count) = start().await;
    let at = server.local_addr();
    let r = udp(at, &query("outside.test.", RecordType::A, false)).await;
    assert_eq!(addrs(&r), ["192.0.2.10"]);
    assert!(!r.authoritative());
    assert!(r.recursion_available());
    let before = count.load(Ordering::SeqCst);
    let r = udp(at, &query("outside.test.", RecordType::A, false)).await;
    assert_eq!(addrs(&r), ["192.0.2.10"]);
    assert_eq!(
        count.load(Ordering::SeqCst),
        before,
        "the second answer came from the cache"
    );

    let r = udp(at, &query("missing.test.", RecordType::A, false)).await;
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
    assert_eq!(r.name_servers()[0].record_type(), RecordType::SOA);

    // ExternalName: the CNAME plus the target's address from upstream.
    let r = udp(at, &query("ext.prod.svc.cluster.local.", RecordType::A, false)).await;
    assert_eq!(addrs(&r), ["outside.test.", "192.0.2.10"]);
}
