//! North-south frontends on crafted packets (BPF_PROG_TEST_RUN, no
//! interface): LoadBalancer/external IPs from outside and from pods, source
//! ranges on them, hostPorts, a pod reaching its own node's NodePort, and
//! ARP replies for announced LoadBalancer IPs. Needs root.

mod common;

use common::*;
use sluice_datapath::*;

const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

fn run(dp: &mut Datapath, kind: ProgramKind, p: &Pkt) -> (u32, Pkt) {
    let out = dp.test_run(kind, &p.build()).expect("test run");
    let parsed = Pkt::parse(&out.packet);
    (out.action, parsed)
}

/// An ARP request "who has `tpa`? tell `spa`" from `sha`.
fn arp_request(sha: [u8; 6], spa: std::net::Ipv4Addr, tpa: std::net::Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

#[test]
fn load_balancer_ip_is_balanced_from_outside_and_from_pods() {
    let mut dp = TestDatapath::new("lbip");
    let node = ip("198.18.0.1");
    dp.add_node_address(node, 1).unwrap();
    dp.set_routing(&RoutingSettings {
        cluster_cidr: (ip("198.18.0.0"), 16),
        masquerade: Some(node),
    })
    .unwrap();
    let lb = ip("203.0.113.10");
    let remote = Backend::new(ip("198.18.2.7"), 8080);
    dp.upsert_service(&ServiceSpec::cluster_ip(
        Frontend::external(lb, 80, Protocol::Tcp),
        vec![remote],
    ))
    .unwrap();
    let outside = (ip("198.51.100.5"), 41000);
    for (kind, pass, port) in [
        (ProgramKind::NodePortXdp, XDP_PASS, 41000),
        (ProgramKind::NodePortTc, TC_ACT_OK, 41001),
    ] {
        let client = (outside.0, port);
        let (action, out) = run(&mut dp, kind, &Pkt::tcp(client, (lb, 80), SYN));
        assert_eq!(action, pass);
        assert_eq!(
            (out.dst, out.dport),
            (remote.ip, 8080),
            "DNAT to the backend ({kind:?})"
        );
        assert_eq!(
            out.src, node,
            "remote backend: source NAT to the node address, not the LB IP"
        );
        let (_, back) = run(
            &mut dp,
            kind,
            &Pkt::tcp((remote.ip, 8080), (node, out.sport), SYN | ACK),
        );
        assert_eq!((back.src, back.sport), (lb, 80), "the client sees the LoadBalancer IP");
        assert_eq!((back.dst, back.dport), client);
    }
    // From a pod: translated on the way out of the pod, pod address kept.
    let pod = (ip("198.18.3.4"), 42000);
    let (action, out) = run(&mut dp, ProgramKind::PodIngress, &Pkt::tcp(pod, (lb, 80), SYN));
    assert_eq!(action, TC_ACT_OK);
    assert_eq!((out.dst, out.dport), (remote.ip, 8080));
    assert_eq!((out.src, out.sport), pod, "no source NAT for pods");
    // Another port of the LoadBalancer IP is not served: passed (not announced here).
    let p = Pkt::tcp(outside, (lb, 81), SYN);
    assert_eq!(
        dp.test_run(ProgramKind::NodePortXdp, &p.build()).unwrap().packet,
        p.build()
    );
}

#[test]
fn source_ranges_and_policy_local_apply_to_load_balancer_ips() {
    let mut dp = TestDatapath::new("lbranges");
    dp.add_node_address(ip("198.18.0.1"), 1).unwrap();
    let lb = ip("203.0.113.11");
    let local = Backend::new(ip("198.18.1.9"), 9090).local();
    let mut spec = ServiceSpec::cluster_ip(Frontend::external(lb, 80, Protocol::Tcp), vec![local]);
    spec.source_ranges = vec![(ip("198.51.100.0"), 24)];
    spec.external_traffic_local = true;
    dp.upsert_service(&spec).unwrap();
    let (action, out) = run(
        &mut dp,
        ProgramKind::NodePortXdp,
        &Pkt::tcp((ip("198.51.100.9"), 1234), (lb, 80), SYN),
    );
    assert_eq!(action, XDP_PASS);
    assert_eq!(
        (out.dst, out.src),
        (local.ip, ip("198.51.100.9")),
        "policy Local keeps the client"
    );
    let refused = dp
        .test_run(
            ProgramKind::NodePortXdp,
            &Pkt::tcp((ip("192.0.2.9"), 1234), (lb, 80), SYN).build(),
        )
        .unwrap();
    assert_eq!(refused.action, XDP_DROP, "outside loadBalancerSourceRanges");
    assert_eq!(dp.counters().unwrap().event(Event::SourceDenied), 1);
}

#[test]
fn host_ports_and_a_pods_own_node_port() {
    let mut dp = TestDatapath::new("hostport");
    let node = ip("198.18.0.1");
    dp.add_node_address(node, 1).unwrap();
    let pod = Backend::new(ip("198.18.1.20"), 80).local();
    dp.upsert_service(&ServiceSpec::cluster_ip(
        Frontend::host_port(8081, Protocol::Tcp),
        vec![pod],
    ))
    .unwrap();
    let remote = Backend::new(ip("198.18.2.7"), 8080);
    dp.upsert_service(&ServiceSpec::node_port(30090, Protocol::Tcp, vec![remote]))
        .unwrap();
    // hostPort from outside: DNAT to the pod, client kept (local backend).
    let outside = (ip("198.51.100.5"), 43000);
    let (action, out) = run(&mut dp, ProgramKind::NodePortXdp, &Pkt::tcp(outside, (node, 8081), SYN));
    assert_eq!(action, XDP_PASS);
    assert_eq!((out.dst, out.dport, out.src), (pod.ip, 80, outside.0));
    // A pod reaches its own node's hostPort and NodePort.
    let client = (ip("198.18.1.30"), 44000);
    for (port, to) in [(8081, (pod.ip, 80)), (30090, (remote.ip, 8080))] {
        let (action, out) = run(&mut dp, ProgramKind::PodIngress, &Pkt::tcp(client, (node, port), SYN));
        assert_eq!(action, TC_ACT_OK);
        assert_eq!((out.dst, out.dport), to, "pod → own node:{port}");
        assert_eq!(out.src, client.0);
        let (_, back) = run(&mut dp, ProgramKind::PodEgress, &Pkt::tcp(to, client, SYN | ACK));
        assert_eq!((back.src, back.sport), (node, port), "the reply comes from node:{port}");
    }
    assert_eq!(dp.frontends().len(), 2);
}

#[test]
fn arp_requests_for_announced_ips_are_answered_others_pass() {
    let mut dp = TestDatapath::new("arp");
    let ours: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    let asker: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    dp.set_announce_interface(1, Mac(ours));
    let lb = ip("203.0.113.12");
    dp.set_announced(&[lb]).unwrap();
    assert_eq!(dp.announced(), vec![lb]);
    let req = arp_request(asker, ip("198.51.100.5"), lb);
    for (kind, answered) in [
        (ProgramKind::NodePortXdp, XDP_TX),
        (ProgramKind::NodePortTc, TC_ACT_REDIRECT),
    ] {
        let out = dp.test_run(kind, &req).unwrap();
        assert_eq!(out.action, answered, "{kind:?}");
        let r = &out.packet;
        assert_eq!(&r[0..6], &asker, "to the asker");
        assert_eq!(&r[6..12], &ours, "from our interface");
        assert_eq!(&r[12..14], &[0x08, 0x06]);
        assert_eq!(&r[20..22], &[0, 2], "an ARP reply");
        assert_eq!(&r[22..28], &ours, "sender MAC");
        assert_eq!(&r[28..32], &lb.octets(), "sender IP: the LoadBalancer IP");
        assert_eq!(&r[32..38], &asker);
        assert_eq!(&r[38..42], &ip("198.51.100.5").octets());
    }
    assert_eq!(dp.counters().unwrap().event(Event::ArpReply), 2);
    // Another address, or an IP no longer announced: passed untouched.
    let other = arp_request(asker, ip("198.51.100.5"), ip("203.0.113.99"));
    let out = dp.test_run(ProgramKind::NodePortXdp, &other).unwrap();
    assert_eq!((out.action, out.packet), (XDP_PASS, other));
    dp.set_announced(&[]).unwrap();
    let out = dp.test_run(ProgramKind::NodePortXdp, &req).unwrap();
    assert_eq!(out.action, XDP_PASS);
    assert!(dp.announced().is_empty());
}
