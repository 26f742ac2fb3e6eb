//! The eBPF programs on crafted packets, run in the kernel with
//! BPF_PROG_TEST_RUN (no interface, no namespace): DNAT, reverse NAT,
//! rejects, affinity, Maglev stability, NodePort SNAT/Local, source ranges,
//! malformed input, and flow events (new, rejected and masqueraded flows).
//! Needs root.

mod common;

use common::*;
use sluice_datapath::*;
use std::collections::HashMap;
use std::time::Duration;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

fn vip() -> std::net::Ipv4Addr {
    ip("198.19.0.10")
}
fn client() -> (std::net::Ipv4Addr, u16) {
    (ip("198.18.1.5"), 40000)
}
fn backends(n: u8) -> Vec<Backend> {
    (1..=n)
        .map(|i| Backend::new(ip(&format!("198.18.2.{i}")), 8080))
        .collect()
}

fn run(dp: &mut Datapath, kind: ProgramKind, p: &Pkt) -> (u32, Pkt) {
    let out = dp.test_run(kind, &p.build()).expect("test run");
    let parsed = Pkt::parse(&out.packet);
    (out.action, parsed)
}

#[test]
fn clusterip_tcp_is_dnated_and_replies_are_reverse_nated() {
    let mut dp = TestDatapath::new("dnat");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(1)))
        .unwrap();
    let syn = Pkt::tcp(client(), (vip(), 80), SYN);
    let (action, out) = run(&mut dp, ProgramKind::PodIngress, &syn);
    assert_eq!(action, TC_ACT_OK);
    assert_eq!((out.dst, out.dport), (ip("198.18.2.1"), 8080), "DNAT to the backend");
    assert_eq!((out.src, out.sport), client(), "source kept");
    assert_eq!(out.payload, syn.payload);

    // The backend's reply, seen leaving the backend pod (local backend) and
    // entering the client pod (reply not yet translated): the client sees the VIP.
    let reply = Pkt::tcp((ip("198.18.2.1"), 8080), client(), SYN | ACK);
    for hook in [ProgramKind::PodIngress, ProgramKind::PodEgress] {
        let (action, out) = run(&mut dp, hook, &reply);
        assert_eq!(action, TC_ACT_OK);
        assert_eq!((out.src, out.sport), (vip(), 80), "reverse NAT at {hook:?}");
        assert_eq!((out.dst, out.dport), client());
    }
    let c = dp.counters().unwrap();
    assert_eq!(c.event(Event::NewFlow), 1);
    assert_eq!(c.event(Event::ReverseNat), 2);
    assert_eq!(c.services[0].total.packets, 3);
    assert_eq!(c.services[0].backends[0].1.packets, 3);
}

#[test]
fn clusterip_udp_is_dnated() {
    let mut dp = TestDatapath::new("udp");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::udp(vip(), 53), backends(1)))
        .unwrap();
    let (action, out) = run(&mut dp, ProgramKind::PodIngress, &Pkt::udp(client(), (vip(), 53)));
    assert_eq!(action, TC_ACT_OK);
    assert_eq!((out.dst, out.dport), (ip("198.18.2.1"), 8080));
    // A TCP packet to the same VIP and port is not this service.
    let (_, out) = run(&mut dp, ProgramKind::PodIngress, &Pkt::tcp(client(), (vip(), 53), SYN));
    assert_eq!(out.dst, vip());
}

#[test]
fn udp_flows_of_a_removed_backend_are_dropped_at_once() {
    let mut dp = TestDatapath::new("udpgone");
    let all = backends(2);
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::udp(vip(), 53), all.clone()))
        .unwrap();
    let query = Pkt::udp(client(), (vip(), 53));
    let (_, out) = run(&mut dp, ProgramKind::PodIngress, &query);
    let first = out.dst;
    assert_eq!(dp.conntrack_len(), 2, "forward and reply entries");
    // The same client socket keeps going to the same backend while it lives...
    let (_, out) = run(&mut dp, ProgramKind::PodIngress, &query);
    assert_eq!(out.dst, first);
    // ...and to the other one as soon as that backend is gone.
    let rest: Vec<Backend> = all.iter().copied().filter(|b| b.ip != first).collect();
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::udp(vip(), 53), rest.clone()))
        .unwrap();
    assert_eq!(dp.conntrack_len(), 0, "the departed backend's entries are gone");
    let (_, out) = run(&mut dp, ProgramKind::PodIngress, &query);
    assert_eq!(out.dst, rest[0].ip, "the next datagram picks a live backend");
    // A terminating UDP backend loses its flows too; deleting the service drops the rest.
    let mut terminating = rest[0];
    terminating.terminating = true;
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::udp(vip(), 53), vec![terminating]))
        .unwrap();
    assert_eq!(dp.conntrack_len(), 0);
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::udp(vip(), 53), rest))
        .unwrap();
    run(&mut dp, ProgramKind::PodIngress, &query);
    assert_eq!(dp.conntrack_len(), 2);
    dp.delete_service(&Frontend::udp(vip(), 53)).unwrap();
    assert_eq!(dp.conntrack_len(), 0);
}

#[test]
fn tcp_flows_of_a_removed_backend_stay() {
    let mut dp = TestDatapath::new("tcpstay");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(2)))
        .unwrap();
    let (_, out) = run(&mut dp, ProgramKind::PodIngress, &Pkt::tcp(client(), (vip(), 80), SYN));
    let rest: Vec<Backend> = backends(2).into_iter().filter(|b| b.ip != out.dst).collect();
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), rest))
        .unwrap();
    assert_eq!(dp.conntrack_len(), 2, "established TCP connections keep their backend");
}

#[test]
fn other_traffic_passes_untouched() {
    let mut dp = TestDatapath::new("other");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(2)))
        .unwrap();
    let p = Pkt::tcp(client(), (ip("198.18.9.9"), 80), SYN);
    let out = dp.test_run(ProgramKind::PodIngress, &p.build()).unwrap();
    assert_eq!(out.action, TC_ACT_OK);
    assert_eq!(out.packet, p.build());
}

#[test]
fn service_without_backends_rejects_tcp_with_rst_and_udp_with_icmp() {
    let mut dp = TestDatapath::new("reject");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), vec![]))
        .unwrap();
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::udp(vip(), 53), vec![]))
        .unwrap();
    let mut syn = Pkt::tcp(client(), (vip(), 80), SYN);
    syn.payload.clear();
    let (action, rst) = run(&mut dp, ProgramKind::PodIngress, &syn);
    assert_eq!(action, TC_ACT_REDIRECT, "sent back to the pod");
    assert_eq!((rst.src, rst.sport), (vip(), 80));
    assert_eq!((rst.dst, rst.dport), client());
    assert_eq!(rst.flags, RST | ACK);
    assert_eq!(rst.ack, syn.seq + 1);

    let out = dp
        .test_run(ProgramKind::PodIngress, &Pkt::udp(client(), (vip(), 53)).build())
        .unwrap();
    assert_eq!(out.action, TC_ACT_REDIRECT);
    let icmp = Pkt::parse(&out.packet);
    assert_eq!(icmp.proto, 1);
    assert_eq!((icmp.src, icmp.dst), (vip(), client().0));
    assert_eq!(&icmp.payload[..2], &[3, 3], "destination unreachable, port unreachable");
    // The quote carries the original destination (the VIP and port).
    assert_eq!(&icmp.payload[8 + 16..8 + 20], &vip().octets());
    assert_eq!(u16::from_be_bytes([icmp.payload[30], icmp.payload[31]]), 53);
    assert_eq!(dp.counters().unwrap().event(Event::NoBackendReject), 2);
}

fn backend_of(dp: &mut Datapath, kind: ProgramKind, p: &Pkt) -> std::net::Ipv4Addr {
    let (action, out) = run(dp, kind, p);
    assert!(action == TC_ACT_OK || action == XDP_PASS, "action {action}");
    out.dst
}

#[test]
fn flows_spread_over_backends_and_affinity_pins_a_client() {
    let mut dp = TestDatapath::new("affinity");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(3)))
        .unwrap();
    let mut seen: HashMap<_, usize> = HashMap::new();
    for port in 0..300u16 {
        let b = backend_of(
            &mut dp,
            ProgramKind::PodIngress,
            &Pkt::tcp((client().0, 20000 + port), (vip(), 80), SYN),
        );
        *seen.entry(b).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| (60..=140).contains(&n)), "{seen:?}");

    let mut spec = ServiceSpec::cluster_ip(Frontend::tcp(vip(), 81), backends(3));
    spec.affinity_timeout = Some(Duration::from_secs(60));
    dp.upsert_service(&spec).unwrap();
    let first = backend_of(
        &mut dp,
        ProgramKind::PodIngress,
        &Pkt::tcp((client().0, 30000), (vip(), 81), SYN),
    );
    for port in 1..50u16 {
        let b = backend_of(
            &mut dp,
            ProgramKind::PodIngress,
            &Pkt::tcp((client().0, 30000 + port), (vip(), 81), SYN),
        );
        assert_eq!(b, first, "affinity keeps the client on one backend");
    }
    // Another client may land elsewhere but is pinned too.
    let other = (ip("198.18.1.6"), 30000);
    let b2 = backend_of(&mut dp, ProgramKind::PodIngress, &Pkt::tcp(other, (vip(), 81), SYN));
    let b2b = backend_of(
        &mut dp,
        ProgramKind::PodIngress,
        &Pkt::tcp((other.0, 30001), (vip(), 81), SYN),
    );
    assert_eq!(b2, b2b);
}

#[test]
fn maglev_choice_is_stable_and_adding_a_backend_moves_few_flows() {
    let mut dp = TestDatapath::new("maglev");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(4)))
        .unwrap();
    let flows: Vec<Pkt> = (0..400u16)
        .map(|p| Pkt::tcp((client().0, 10000 + p), (vip(), 80), SYN))
        .collect();
    let before: Vec<_> = flows
        .iter()
        .map(|f| backend_of(&mut dp, ProgramKind::PodIngress, f))
        .collect();
    // Without conntrack the same flows hash to the same backends.
    dp.flush_conntrack().unwrap();
    let again: Vec<_> = flows
        .iter()
        .map(|f| backend_of(&mut dp, ProgramKind::PodIngress, f))
        .collect();
    assert_eq!(before, again);
    // A fifth backend takes about 1/5 of new flows from the others.
    dp.flush_conntrack().unwrap();
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(5)))
        .unwrap();
    let after: Vec<_> = flows
        .iter()
        .map(|f| backend_of(&mut dp, ProgramKind::PodIngress, f))
        .collect();
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!((40..=130).contains(&moved), "moved {moved} of 400");
    // Maglev keeps disruption near-minimal, not zero: most moved flows go to the new backend.
    let to_new = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b && **b == ip("198.18.2.5"))
        .count();
    assert!(
        to_new * 10 >= moved * 8,
        "{to_new} of {moved} moved flows went to the new backend"
    );
}

#[test]
fn established_flows_keep_a_removed_or_terminating_backend() {
    let mut dp = TestDatapath::new("keep");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(3)))
        .unwrap();
    let flows: Vec<Pkt> = (0..60u16)
        .map(|p| Pkt::tcp((client().0, 10000 + p), (vip(), 80), SYN))
        .collect();
    let before: Vec<_> = flows
        .iter()
        .map(|f| backend_of(&mut dp, ProgramKind::PodIngress, f))
        .collect();
    let gone = ip("198.18.2.2");
    assert!(before.contains(&gone));
    let mut bs = backends(3);
    bs[1].terminating = true;
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), bs))
        .unwrap();
    for (f, b) in flows.iter().zip(&before) {
        let mut data = f.clone();
        data.flags = ACK;
        assert_eq!(
            backend_of(&mut dp, ProgramKind::PodIngress, &data),
            *b,
            "tracked flow keeps its backend"
        );
    }
    for p in 0..100u16 {
        let b = backend_of(
            &mut dp,
            ProgramKind::PodIngress,
            &Pkt::tcp((client().0, 50000 + p), (vip(), 80), SYN),
        );
        assert_ne!(b, gone, "terminating backend gets no new flow");
    }
    dp.upsert_service(&ServiceSpec::cluster_ip(
        Frontend::tcp(vip(), 80),
        vec![backends(3)[0], backends(3)[2]],
    ))
    .unwrap();
    for (f, b) in flows.iter().zip(&before) {
        let mut data = f.clone();
        data.flags = ACK;
        assert_eq!(
            backend_of(&mut dp, ProgramKind::PodIngress, &data),
            *b,
            "removed backend keeps its flows"
        );
    }
}

#[test]
fn a_syn_for_a_departed_backend_or_a_closed_flow_is_balanced_again() {
    let mut dp = TestDatapath::new("rebal");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(2)))
        .unwrap();
    let syn = Pkt::tcp(client(), (vip(), 80), SYN);
    let first = backend_of(&mut dp, ProgramKind::PodIngress, &syn);
    let other = backends(2).into_iter().find(|b| b.ip != first).unwrap();

    // A retransmitted SYN while the backend is still there keeps it, even
    // when it has begun terminating (the first SYN may have reached it).
    let mut bs = backends(2);
    bs.iter_mut()
        .filter(|b| b.ip == first)
        .for_each(|b| b.terminating = true);
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), bs))
        .unwrap();
    assert_eq!(backend_of(&mut dp, ProgramKind::PodIngress, &syn), first);
    assert_eq!(dp.counters().unwrap().event(Event::Rebalanced), 0);

    // Once the backend has left, a SYN on that flow goes to a live backend,
    // and the reply comes back from the VIP.
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), vec![other]))
        .unwrap();
    assert_eq!(backend_of(&mut dp, ProgramKind::PodIngress, &syn), other.ip);
    assert_eq!(dp.counters().unwrap().event(Event::Rebalanced), 1);
    let reply = Pkt::tcp((other.ip, 8080), client(), SYN | ACK);
    let (_, out) = run(&mut dp, ProgramKind::PodEgress, &reply);
    assert_eq!(
        (out.src, out.sport),
        (vip(), 80),
        "the new backend's reply is reverse-NATed"
    );
    let mut data = syn.clone();
    data.flags = ACK;
    assert_eq!(backend_of(&mut dp, ProgramKind::PodIngress, &data), other.ip);

    // A client reusing the port of a connection that ended (FIN seen) opens
    // a new connection: it is balanced again, to a serving backend.
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(2)))
        .unwrap();
    let mut fin = syn.clone();
    fin.flags = FIN | ACK;
    run(&mut dp, ProgramKind::PodIngress, &fin);
    let mut bs = backends(2);
    bs.iter_mut()
        .filter(|b| b.ip == other.ip)
        .for_each(|b| b.terminating = true);
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), bs))
        .unwrap();
    assert_eq!(backend_of(&mut dp, ProgramKind::PodIngress, &syn), first);
    assert_eq!(dp.counters().unwrap().event(Event::Rebalanced), 2);
}

#[test]
fn a_client_reusing_its_port_through_a_source_nat_gets_the_same_port_back() {
    let mut dp = TestDatapath::new("snatreuse");
    let node = ip("198.18.0.1");
    dp.add_node_address(node, 1).unwrap();
    let remote = Backend::new(ip("198.18.2.7"), 8080);
    dp.upsert_service(&ServiceSpec::node_port(30080, Protocol::Tcp, vec![remote]))
        .unwrap();
    let client = (ip("198.18.0.100"), 45000);
    let syn = Pkt::tcp(client, (node, 30080), SYN);
    let (_, out) = run(&mut dp, ProgramKind::NodePortTc, &syn);
    assert_eq!((out.src, out.sport), (node, 45000), "the client's port when free");
    let mut fin = syn.clone();
    fin.flags = FIN | ACK;
    run(&mut dp, ProgramKind::NodePortTc, &fin);
    // The client opens a new connection from the same port: its own old
    // flow's NAT port is reclaimed (the backend sees one tuple whose
    // sequence numbers only grow), not a random one, and nothing is dropped.
    let (_, out) = run(&mut dp, ProgramKind::NodePortTc, &syn);
    assert_eq!((out.dst, out.src, out.sport), (remote.ip, node, 45000));
    let (_, back) = run(
        &mut dp,
        ProgramKind::NodePortTc,
        &Pkt::tcp((remote.ip, 8080), (node, 45000), SYN | ACK),
    );
    assert_eq!(
        ((back.src, back.sport), (back.dst, back.dport)),
        ((node, 30080), client)
    );
    // Another client's flow on that port is never taken.
    let other = (ip("198.18.0.101"), 45000);
    let (_, out) = run(&mut dp, ProgramKind::NodePortTc, &Pkt::tcp(other, (node, 30080), SYN));
    assert_ne!(out.sport, 45000, "a live flow keeps its NAT port");
    let c = dp.counters().unwrap();
    assert_eq!(c.event(Event::Rebalanced), 1);
    assert_eq!(c.event(Event::SnatExhausted), 0);
}

#[test]
fn nodeport_snats_to_remote_backends_and_keeps_client_ip_with_policy_local() {
    let mut dp = TestDatapath::new("nodeport");
    let node = ip("198.18.0.1");
    dp.add_node_address(node, 1).unwrap();
    let ext_client = (ip("198.18.0.100"), 45000);
    let remote = Backend::new(ip("198.18.2.7"), 8080);
    dp.upsert_service(&ServiceSpec::node_port(30080, Protocol::Tcp, vec![remote]))
        .unwrap();
    for (kind, pass, port) in [
        (ProgramKind::NodePortXdp, XDP_PASS, 45000),
        (ProgramKind::NodePortTc, TC_ACT_OK, 45001),
    ] {
        let ext_client = (ext_client.0, port);
        let (action, out) = run(&mut dp, kind, &Pkt::tcp(ext_client, (node, 30080), SYN));
        assert_eq!(action, pass);
        assert_eq!((out.dst, out.dport), (remote.ip, 8080));
        assert_eq!(out.src, node, "remote backend: source NAT to the node ({kind:?})");
        let snat_port = out.sport;
        let (action, back) = run(
            &mut dp,
            kind,
            &Pkt::tcp((remote.ip, 8080), (node, snat_port), SYN | ACK),
        );
        assert_eq!(action, pass);
        assert_eq!((back.src, back.sport), (node, 30080));
        assert_eq!((back.dst, back.dport), ext_client);
    }

    // Not a node address: not a NodePort.
    let p = Pkt::tcp(ext_client, (ip("198.18.0.2"), 30080), SYN);
    assert_eq!(
        dp.test_run(ProgramKind::NodePortXdp, &p.build()).unwrap().packet,
        p.build()
    );

    // externalTrafficPolicy Local: only the local backend, client IP kept.
    let local = Backend::new(ip("198.18.1.9"), 9090).local();
    let mut spec = ServiceSpec::node_port(30081, Protocol::Tcp, vec![remote, local]);
    spec.external_traffic_local = true;
    dp.upsert_service(&spec).unwrap();
    for port in 0..20 {
        let (action, out) = run(
            &mut dp,
            ProgramKind::NodePortXdp,
            &Pkt::tcp((ext_client.0, 1000 + port), (node, 30081), SYN),
        );
        assert_eq!(action, XDP_PASS);
        assert_eq!((out.dst, out.dport), (local.ip, 9090));
        assert_eq!((out.src, out.sport), (ext_client.0, 1000 + port));
    }
    // Policy Local without a local backend drops.
    let mut spec = ServiceSpec::node_port(30082, Protocol::Tcp, vec![remote]);
    spec.external_traffic_local = true;
    dp.upsert_service(&spec).unwrap();
    let out = dp
        .test_run(
            ProgramKind::NodePortXdp,
            &Pkt::tcp(ext_client, (node, 30082), SYN).build(),
        )
        .unwrap();
    assert_eq!(out.action, XDP_DROP);
}

/// The frame `f` without its IPv4 options (header length, total length and
/// header checksum fixed), and the options' bytes.
fn without_ip_options(f: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let ihl = (f[14] & 0x0f) as usize * 4;
    let mut ip = f[14..34].to_vec();
    assert_eq!(
        fold(sum(&f[14..14 + ihl], 0)),
        0,
        "bad IP header checksum (with options)"
    );
    ip[0] = 0x45;
    let total = u16::from_be_bytes([ip[2], ip[3]]) - (ihl - 20) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = fold(sum(&ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut out = f[..14].to_vec();
    out.extend_from_slice(&ip);
    out.extend_from_slice(&f[14 + ihl..]);
    (out, f[34..14 + ihl].to_vec())
}

/// The frame `f` (a header without options) with `option` (4-byte
/// aligned) after its fixed IPv4 header: header length, total length and
/// header checksum fixed.
fn with_ip_option(f: &[u8], option: &[u8]) -> Vec<u8> {
    let mut out = f[..34].to_vec();
    out[14] = 0x45 + (option.len() / 4) as u8;
    let total = u16::from_be_bytes([out[16], out[17]]) + option.len() as u16;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out.extend_from_slice(option);
    out[24..26].copy_from_slice(&[0, 0]);
    let c = fold(sum(&out[14..34 + option.len()], 0));
    out[24..26].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&f[34..]);
    out
}

/// Direct server return on crafted packets. On the node the client reached
/// (either hook): the SYN gets destination NAT only and the frontend in an
/// 8-byte IPv4 option (type 158, port, address) with a valid header
/// checksum; the next segment carries no option; each UDP datagram does.
/// On the backend's node: the option is read for a pod of the node, the
/// packet passes untouched, and the pod's reply leaves with the frontend as
/// its source, to the client.
#[test]
fn direct_server_return_carries_the_frontend_in_an_ip_option() {
    let mut dp = TestDatapath::new("dsr");
    let node = ip("198.18.0.1");
    dp.add_node_address(node, 1).unwrap();
    let remote = Backend::new(ip("198.18.2.7"), 8080);
    dp.upsert_service(&ServiceSpec::node_port(30090, Protocol::Tcp, vec![remote]))
        .unwrap();
    let mut udp_spec = ServiceSpec::node_port(30091, Protocol::Udp, vec![remote]);
    udp_spec.backends[0].port = 8053;
    dp.upsert_service(&udp_spec).unwrap();
    dp.set_dsr(true).unwrap();
    let option = |port: u16| {
        let mut o = vec![158, 8];
        o.extend_from_slice(&port.to_be_bytes());
        o.extend_from_slice(&node.octets());
        o
    };
    for (kind, pass, port) in [
        (ProgramKind::NodePortXdp, XDP_PASS, 45000),
        (ProgramKind::NodePortTc, TC_ACT_OK, 45001),
    ] {
        let client = (ip("198.18.0.100"), port);
        let out = dp
            .test_run(kind, &Pkt::tcp(client, (node, 30090), SYN).build())
            .unwrap();
        assert_eq!(out.action, pass, "{kind:?}");
        assert_eq!(out.packet[14], 0x47, "{kind:?}: header of 7 words");
        let (plain, opts) = without_ip_options(&out.packet);
        assert_eq!(opts, option(30090), "{kind:?}: the frontend in the option");
        let syn = Pkt::parse(&plain);
        assert_eq!((syn.dst, syn.dport), (remote.ip, 8080), "{kind:?}");
        assert_eq!((syn.src, syn.sport), client, "{kind:?}: no source NAT");
        assert_eq!(syn.payload, b"hello", "{kind:?}");

        let (action, ack) = run(&mut dp, kind, &Pkt::tcp(client, (node, 30090), ACK));
        assert_eq!(action, pass);
        assert_eq!(
            (ack.dst, ack.dport, ack.src),
            (remote.ip, 8080, client.0),
            "{kind:?}: no option after the SYN"
        );

        for _ in 0..2 {
            let out = dp.test_run(kind, &Pkt::udp(client, (node, 30091)).build()).unwrap();
            let (plain, opts) = without_ip_options(&out.packet);
            assert_eq!(opts, option(30091), "{kind:?}: every datagram carries the frontend");
            let d = Pkt::parse(&plain);
            assert_eq!((d.dst, d.dport, d.src, d.sport), (remote.ip, 8053, client.0, client.1));
        }
    }
    assert_eq!(dp.counters().unwrap().event(Event::DsrForward), 6);

    // The same datapath as the backend's node: the backend is its pod.
    dp.upsert_endpoint(&PodEndpoint {
        ip: remote.ip,
        ifindex: 1,
        pod_mac: Mac([2, 0, 0, 0, 0, 7]),
        host_mac: Mac([2, 0, 0, 0, 0, 1]),
    })
    .unwrap();
    let client = (ip("198.18.0.100"), 46000);
    let syn = with_ip_option(&Pkt::tcp(client, (remote.ip, 8080), SYN).build(), &option(30090));
    for kind in [ProgramKind::NodePortXdp, ProgramKind::NodePortTc] {
        let out = dp.test_run(kind, &syn).unwrap();
        // (TC hands it to the pod itself, with the pod's Ethernet addresses.)
        assert_eq!(
            out.packet[14..],
            syn[14..],
            "{kind:?}: on to the pod untranslated, the option in place"
        );
    }
    assert_eq!(
        dp.counters().unwrap().event(Event::DsrRecorded),
        1,
        "recorded once (the second sight changes nothing)"
    );
    let (action, reply) = run(
        &mut dp,
        ProgramKind::PodIngress,
        &Pkt::tcp((remote.ip, 8080), client, SYN | ACK),
    );
    assert_eq!(action, TC_ACT_OK);
    assert_eq!(
        (reply.src, reply.sport),
        (node, 30090),
        "the reply comes from the frontend"
    );
    assert_eq!((reply.dst, reply.dport), client, "straight to the client");
    // The connection closes; the client opens a new one on the same port
    // (as it does under load): the reply entry is open again, not left to
    // expire with the old connection.
    let reply_entry_closing = |dp: &Datapath| {
        let snapshot = inspect::Inspector::open(dp.pin_root()).unwrap().snapshot().unwrap();
        snapshot
            .conntrack
            .iter()
            .find(|r| {
                r.source == std::net::SocketAddrV4::new(remote.ip, 8080) && r.direction == inspect::CtDirection::Reply
            })
            .expect("the DSR reply entry")
            .closing
    };
    run(
        &mut dp,
        ProgramKind::PodIngress,
        &Pkt::tcp((remote.ip, 8080), client, FIN | ACK),
    );
    assert!(reply_entry_closing(&dp), "the pod's FIN closes the entry");
    dp.test_run(ProgramKind::NodePortXdp, &syn).unwrap();
    assert!(!reply_entry_closing(&dp), "a new SYN on the same port opens it again");

    // A backend outside the pod network (a host of no node of ours, or a
    // node's own address) would never see the option read: source NAT.
    dp.set_routing(&RoutingSettings {
        cluster_cidr: (ip("198.18.2.0"), 24),
        masquerade: None,
    })
    .unwrap();
    let outside = Backend::new(ip("203.0.113.5"), 8080);
    dp.upsert_service(&ServiceSpec::node_port(30092, Protocol::Tcp, vec![outside]))
        .unwrap();
    let (action, out) = run(
        &mut dp,
        ProgramKind::NodePortXdp,
        &Pkt::tcp((ip("198.18.0.100"), 47000), (node, 30092), SYN),
    );
    assert_eq!(action, XDP_PASS);
    assert_eq!(out.dst, outside.ip);
    assert_eq!(
        out.src, node,
        "source NAT to the node, no option (Pkt::parse takes no options)"
    );

    // A packet to an address that is no pod of this node is not recorded.
    let other = with_ip_option(
        &Pkt::tcp(client, (ip("198.18.2.99"), 8080), SYN).build(),
        &option(30090),
    );
    dp.test_run(ProgramKind::NodePortXdp, &other).unwrap();
    assert_eq!(dp.counters().unwrap().event(Event::DsrRecorded), 1);
}

#[test]
fn source_ranges_filter_nodeport_clients() {
    let mut dp = TestDatapath::new("ranges");
    let node = ip("198.18.0.1");
    dp.add_node_address(node, 1).unwrap();
    let mut spec = ServiceSpec::node_port(30090, Protocol::Tcp, vec![Backend::new(ip("198.18.1.9"), 80).local()]);
    spec.source_ranges = vec![(ip("198.18.0.0"), 28)];
    dp.upsert_service(&spec).unwrap();
    let (action, out) = run(
        &mut dp,
        ProgramKind::NodePortXdp,
        &Pkt::tcp((ip("198.18.0.14"), 1234), (node, 30090), SYN),
    );
    assert_eq!(action, XDP_PASS);
    assert_eq!(out.dst, ip("198.18.1.9"));
    let out = dp
        .test_run(
            ProgramKind::NodePortXdp,
            &Pkt::tcp((ip("198.18.0.100"), 1234), (node, 30090), SYN).build(),
        )
        .unwrap();
    assert_eq!(out.action, XDP_DROP);
    assert_eq!(dp.counters().unwrap().event(Event::SourceDenied), 1);
    // Widening the ranges lets the client in.
    spec.source_ranges = vec![(ip("198.18.0.0"), 24)];
    dp.upsert_service(&spec).unwrap();
    let (action, _) = run(
        &mut dp,
        ProgramKind::NodePortXdp,
        &Pkt::tcp((ip("198.18.0.100"), 1234), (node, 30090), SYN),
    );
    assert_eq!(action, XDP_PASS);
}

#[test]
fn truncated_and_malformed_packets_pass_untouched() {
    let mut dp = TestDatapath::new("malformed");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(2)))
        .unwrap();
    dp.add_node_address(ip("198.18.0.1"), 1).unwrap();
    let good = Pkt::tcp(client(), (vip(), 80), SYN).build();
    let mut cases: Vec<Vec<u8>> = vec![
        good[..14].to_vec(), // Ethernet only
        good[..30].to_vec(), // IPv4 header cut
        good[..40].to_vec(), // TCP header cut
    ];
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x43; // IHL 3
    cases.push(bad_ihl);
    let mut bad_version = good.clone();
    bad_version[14] = 0x65;
    cases.push(bad_version);
    let mut bad_doff = good.clone();
    bad_doff[34 + 12] = 0x20;
    cases.push(bad_doff);
    let mut long_ihl = good.clone();
    long_ihl[14] = 0x4f; // options would run past the end
    cases.push(long_ihl);
    let mut garbage = vec![0xffu8; 60];
    garbage[12] = 0x08;
    garbage[13] = 0x00;
    cases.push(garbage);
    for (i, c) in cases.iter().enumerate() {
        for kind in [
            ProgramKind::PodIngress,
            ProgramKind::PodEgress,
            ProgramKind::NodePortXdp,
        ] {
            if kind != ProgramKind::NodePortXdp && c.len() < 34 {
                continue; // the kernel cannot even build an skb from a cut IPv4 header
            }
            let out = dp.test_run(kind, c).unwrap();
            let ok = if kind == ProgramKind::NodePortXdp {
                XDP_PASS
            } else {
                TC_ACT_OK
            };
            assert_eq!(out.action, ok, "case {i} at {kind:?}");
            assert_eq!(&out.packet, c, "case {i} at {kind:?} unchanged");
        }
    }
    assert!(dp.counters().unwrap().event(Event::Malformed) >= 6);
    // And nothing was tracked.
    assert_eq!(dp.conntrack_len(), 0);
}

#[test]
fn bad_specs_are_refused_without_changes() {
    let mut dp = TestDatapath::new("badspec");
    let mut spec = ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(1));
    spec.maglev_size = Some(1000);
    assert!(matches!(
        dp.upsert_service(&spec),
        Err(DatapathError::InvalidService { .. })
    ));
    let spec = ServiceSpec::cluster_ip(Frontend::tcp(vip(), 0), backends(1));
    assert!(dp.upsert_service(&spec).is_err());
    assert!(dp.frontends().is_empty());
    let _ = TC_ACT_SHOT;
}

#[test]
fn reopening_adopts_services_and_conntrack() {
    let root = format!("/sys/fs/bpf/sluice-test-adopt-{}", std::process::id());
    let mut dp = Datapath::open_or_adopt(DatapathConfig::with_pin_root(&root)).unwrap();
    let mut guard = TestDatapath(None);
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(3)))
        .unwrap();
    let flow = Pkt::tcp(client(), (vip(), 80), SYN);
    let b = backend_of(&mut dp, ProgramKind::PodIngress, &flow);
    drop(dp); // the "process" exits: only the pins remain
    let mut dp = Datapath::open_or_adopt(DatapathConfig::with_pin_root(&root)).unwrap();
    assert_eq!(dp.frontends(), vec![Frontend::tcp(vip(), 80)]);
    assert_eq!(dp.conntrack_len(), 2);
    // Reconcile to a different backend set: the tracked flow keeps its backend.
    dp.upsert_service(&ServiceSpec::cluster_ip(
        Frontend::tcp(vip(), 80),
        backends(3).into_iter().filter(|x| x.ip != b).collect(),
    ))
    .unwrap();
    let mut data = flow.clone();
    data.flags = ACK;
    assert_eq!(backend_of(&mut dp, ProgramKind::PodIngress, &data), b);
    let c = dp.counters().unwrap();
    assert_eq!(c.services[0].backends.len(), 2);
    guard.0 = Some(dp);
}

#[test]
fn hairpin_flow_to_itself_comes_from_the_vip() {
    let mut dp = TestDatapath::new("hairpin");
    let me = client();
    dp.upsert_service(&ServiceSpec::cluster_ip(
        Frontend::tcp(vip(), 80),
        vec![Backend::new(me.0, 8080).local()],
    ))
    .unwrap();
    let (action, out) = run(&mut dp, ProgramKind::PodIngress, &Pkt::tcp(me, (vip(), 80), SYN));
    assert_eq!(action, TC_ACT_OK);
    assert_eq!((out.dst, out.dport), (me.0, 8080), "lands on itself");
    assert_eq!(out.src, vip(), "and sees the VIP as the source, not its own address");
    let (_, back) = run(
        &mut dp,
        ProgramKind::PodIngress,
        &Pkt::tcp((me.0, 8080), (vip(), out.sport), SYN | ACK),
    );
    assert_eq!((back.src, back.sport), (vip(), 80));
    assert_eq!((back.dst, back.dport), me);
}

#[test]
fn a_pinned_map_with_an_old_layout_is_replaced_not_adopted() {
    let root = format!("/sys/fs/bpf/sluice-test-layout-{}", std::process::id());
    std::fs::create_dir_all(&root).unwrap();
    let pin = format!("{root}/backends");
    let out = std::process::Command::new("bpftool")
        .args([
            "map", "create", &pin, "type", "hash", "key", "4", "value", "8", "entries", "16", "name", "backends",
        ])
        .output()
        .expect("bpftool");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut dp = TestDatapath(Some(
        Datapath::open_or_adopt(DatapathConfig::with_pin_root(&root)).expect("open despite the old pin"),
    ));
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(2)))
        .unwrap();
    let b = backend_of(&mut dp, ProgramKind::PodIngress, &Pkt::tcp(client(), (vip(), 80), SYN));
    assert!(b == ip("198.18.2.1") || b == ip("198.18.2.2"));
}

/// The node's flow reader, with what the ring held before the test read away.
fn emptied_flow_reader(dp: &Datapath) -> (flows::FlowReader, Vec<flows::FlowRecord>) {
    let mut reader = flows::FlowReader::open(dp.pin_root()).expect("the flows ring buffer is pinned");
    let mut seen = Vec::new();
    reader.drain(&mut seen);
    seen.clear();
    (reader, seen)
}

#[test]
fn new_flows_and_rejects_are_flow_events_and_tracked_packets_are_not() {
    let mut dp = TestDatapath::new("flowev");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), backends(1)))
        .unwrap();
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 81), vec![]))
        .unwrap();
    let (mut reader, mut seen) = emptied_flow_reader(&dp);
    let syn = Pkt::tcp(client(), (vip(), 80), SYN);
    run(&mut dp, ProgramKind::PodIngress, &syn);
    // Packets of the established flow: no more events.
    for _ in 0..3 {
        run(&mut dp, ProgramKind::PodIngress, &Pkt::tcp(client(), (vip(), 80), ACK));
    }
    let mut to_empty = Pkt::tcp((client().0, 40001), (vip(), 81), SYN);
    to_empty.payload.clear();
    run(&mut dp, ProgramKind::PodIngress, &to_empty);
    reader.drain(&mut seen);
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (new, rejected) = (&seen[0], &seen[1]);
    assert_eq!(
        (new.verdict, new.reason, new.hook.as_str()),
        (flows::FlowVerdict::Forwarded, Event::NewFlow, "from-pod")
    );
    assert_eq!((new.source.ip(), new.source.port()), (&client().0, client().1));
    assert_eq!(new.frontend, Some(Frontend::tcp(vip(), 80)));
    assert_eq!(new.backend.map(|b| b.to_string()).as_deref(), Some("198.18.2.1:8080"));
    assert_eq!(
        (rejected.verdict, rejected.reason),
        (flows::FlowVerdict::Rejected, Event::NoBackendReject)
    );
    assert_eq!(rejected.backend, None);
    let c = dp.counters().unwrap();
    let svc = c.services.iter().find(|s| s.frontend.port == 80).unwrap();
    assert_eq!(
        (svc.total.packets, svc.total.flows),
        (4, 1),
        "packets and new flows per frontend"
    );
    assert_eq!(svc.backends[0].1.flows, 1);

    // Switched off (the overhead benchmark's baseline): no events.
    dp.set_flow_events(false).unwrap();
    run(
        &mut dp,
        ProgramKind::PodIngress,
        &Pkt::tcp((client().0, 40002), (vip(), 80), SYN),
    );
    run(&mut dp, ProgramKind::PodIngress, &to_empty);
    reader.drain(&mut seen);
    assert_eq!(seen.len(), 2, "no events while switched off: {seen:?}");
    assert_eq!(dp.counters().unwrap().event(Event::NewFlow), 2, "counted all the same");
}

#[test]
fn flow_events_that_do_not_fit_the_full_ring_buffer_are_counted_lost() {
    let mut dp = TestDatapath::new("flowlost");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 81), vec![]))
        .unwrap();
    let (mut reader, mut seen) = emptied_flow_reader(&dp);
    // Each SYN to a Service without endpoints is rejected and is one flow
    // event (nothing is tracked). More than the ring holds, read by nobody.
    let event_bytes = std::mem::size_of::<sluice_common::FlowEvent>() + 8;
    let sent = sluice_common::FLOWS_RING_BYTES as usize / event_bytes + 500;
    let mut syn = Pkt::tcp(client(), (vip(), 81), SYN);
    syn.payload.clear();
    let packet = syn.build();
    for _ in 0..sent {
        dp.test_run(ProgramKind::PodIngress, &packet).expect("test run");
    }
    reader.drain(&mut seen);
    let c = dp.counters().unwrap();
    let lost = c.event(Event::FlowEventLost);
    assert_eq!(c.event(Event::NoBackendReject), sent as u64, "every reject counted");
    assert!(lost >= 500, "{lost} events counted lost of {sent}");
    assert_eq!(
        seen.len() as u64 + lost,
        sent as u64,
        "each event was read or counted lost"
    );
    // Read again, the ring takes events again.
    run(&mut dp, ProgramKind::PodIngress, &syn);
    reader.drain(&mut seen);
    assert_eq!(seen.len() as u64 + lost, sent as u64 + 1);
    assert_eq!(dp.counters().unwrap().event(Event::FlowEventLost), lost);
}

#[test]
fn a_masqueraded_flow_is_one_flow_event_naming_the_node_address() {
    let mut dp = TestDatapath::new("flowmasq");
    let node = ip("198.19.9.1");
    // The client (198.18.1.5) is a pod of the cluster; 198.19.5.5 is outside it.
    dp.set_routing(&RoutingSettings {
        cluster_cidr: (ip("198.18.0.0"), 16),
        masquerade: Some(node),
    })
    .unwrap();
    let (mut reader, mut seen) = emptied_flow_reader(&dp);
    let outside = (ip("198.19.5.5"), 443);
    let (action, out) = run(&mut dp, ProgramKind::PodIngress, &Pkt::tcp(client(), outside, SYN));
    assert_eq!((action, out.src, out.dst), (TC_ACT_OK, node, outside.0), "masqueraded");
    reader.drain(&mut seen);
    assert_eq!(seen.len(), 1, "the new flow is one event: {seen:?}");
    // The same flow's next packets, a retransmitted SYN among them, are tracked: no event.
    for flags in [ACK, ACK, SYN, ACK] {
        let (_, again) = run(&mut dp, ProgramKind::PodIngress, &Pkt::tcp(client(), outside, flags));
        assert_eq!((again.src, again.sport), (node, out.sport), "same translation");
    }
    reader.drain(&mut seen);
    assert_eq!(seen.len(), 1, "no event for packets of the flow: {seen:?}");
    let m = &seen[0];
    assert_eq!(
        (m.verdict, m.reason, m.hook),
        (
            flows::FlowVerdict::Forwarded,
            Event::Masquerade,
            flows::FlowHook::FromPod
        )
    );
    assert_eq!(m.masquerade, Some(std::net::SocketAddrV4::new(node, out.sport)));
    assert_eq!(m.source, std::net::SocketAddrV4::new(client().0, client().1));
    assert_eq!(m.destination, std::net::SocketAddrV4::new(outside.0, outside.1));
    assert_eq!((m.frontend, m.backend, m.service_id), (None, None, 0), "no Service");
    let c = dp.counters().unwrap();
    assert_eq!((c.event(Event::Masquerade), c.event(Event::Rebalanced)), (1, 0));

    // Another flow of the pod is another event.
    run(
        &mut dp,
        ProgramKind::PodIngress,
        &Pkt::udp((client().0, 5353), (outside.0, 53)),
    );
    reader.drain(&mut seen);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[1].proto, seen[1].masquerade.map(|m| *m.ip())),
        (Protocol::Udp, Some(node))
    );
}
