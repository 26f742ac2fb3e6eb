//! Pod routing on the real kernel, in network namespaces: pods of one node
//! reach each other veth-to-veth through eBPF (no bridge, no kernel route),
//! pods of two nodes reach each other by native routes Sluice programs (no
//! NAT), and pods reach a host outside the cluster with their flows
//! masqueraded to the node's address. Needs root.

mod common;

use common::netns::*;
use common::*;
use sluice_datapath::routes::{self, NodeRoute};
use sluice_datapath::*;
use std::net::Ipv4Addr;
use std::process::Command;

const NODE1: &str = "198.18.0.1";
const NODE2: &str = "198.18.0.2";
const OUTSIDE: &str = "198.18.0.100";
/// The cluster's pod CIDR; node 1 has 198.19.1.0/24, node 2 198.19.2.0/24.
const CLUSTER: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 19, 0, 0), 17);
const A: &str = "198.19.1.10";
const B: &str = "198.19.1.11";
const C: &str = "198.19.2.10";
const VIP: &str = "198.19.200.10";

/// Can `from` ping `to` (one ICMP echo, one second; busybox's ping)?
fn pings(topo: &Topology, from: &str, to: &str) -> bool {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.ns(from),
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            to,
        ])
        .output()
        .expect("run busybox ping");
    out.status.success()
}

/// Does a TCP connection from `from` to `to`:8080 complete within a second?
fn connects(topo: &Topology, from: &str, to: &str) -> bool {
    in_ns(&topo.ns(from), || {
        std::net::TcpStream::connect_timeout(&addr(to, 8080).into(), std::time::Duration::from_secs(1)).is_ok()
    })
}

/// Attach a pod's host veth and program its endpoint, as noded does on AddPod.
fn add_endpoint(topo: &Topology, dp: &mut Datapath, node: &str, pod: &str, ip: &str, host_if: &str) {
    let pod_mac = in_ns(&topo.ns(pod), || interface_mac("eth0").expect("pod MAC"));
    let host_mac = in_ns(&topo.ns(node), || {
        dp.attach_pod_interface(host_if).expect("attach pod interface");
        let ep = PodEndpoint::on_interface(ip.parse().unwrap(), host_if, pod_mac).expect("endpoint");
        dp.upsert_endpoint(&ep).expect("upsert endpoint");
        ep.host_mac
    });
    // As the CNI plugin does: the pod never ARPs for its gateway.
    sh(&[
        "ip",
        "-n",
        &topo.ns(pod),
        "neigh",
        "replace",
        "169.254.1.1",
        "lladdr",
        &host_mac.to_string(),
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
}

#[test]
fn pods_on_one_node_reach_each_other_veth_to_veth_without_kernel_routes() {
    let mut topo = Topology::new();
    let n1 = topo.add_host("n1", NODE1, true);
    let (_, a_if) = topo.add_pod("a", "n1", A);
    let (_, b_if) = topo.add_pod("b", "n1", B);
    // No kernel route to either pod: only the eBPF path can deliver.
    sh(&["ip", "-n", &n1, "route", "del", &format!("{A}/32")]);
    sh(&["ip", "-n", &n1, "route", "del", &format!("{B}/32")]);
    topo.tcp_server("b", 8080, "b");
    let mut dp = TestDatapath::in_ns("veth2veth", &n1);
    for host_if in [&a_if, &b_if] {
        in_ns(&n1, || dp.attach_pod_interface(host_if).expect("attach"));
    }
    assert!(
        !connects(&topo, "a", B),
        "without endpoints and routes, B is unreachable"
    );

    add_endpoint(&topo, &mut dp, "n1", "a", A, &a_if);
    add_endpoint(&topo, &mut dp, "n1", "b", B, &b_if);
    assert_eq!(
        dp.endpoints()
            .unwrap()
            .iter()
            .map(|e| e.ip.to_string())
            .collect::<Vec<_>>(),
        [A, B]
    );
    assert!(pings(&topo, "a", B), "ICMP goes veth to veth");
    let before = dp.counters().unwrap().event(Event::RedirectPeer);
    let (name, peer, mut s) = in_ns(&topo.ns("a"), || greet(addr(B, 8080))).expect("TCP from A to B");
    assert_eq!((name.as_str(), peer.as_str()), ("b", A), "B sees A's own address");
    in_ns(&topo.ns("a"), || echo(&mut s, "veth to veth")).unwrap();
    let after = dp.counters().unwrap().event(Event::RedirectPeer);
    assert!(
        after >= before + 6,
        "both directions redirected by eBPF: {before} -> {after}"
    );

    // A ClusterIP is translated first, then delivered the same way.
    dp.upsert_service(&ServiceSpec::cluster_ip(
        Frontend::tcp(VIP.parse().unwrap(), 80),
        vec![Backend::new(B.parse().unwrap(), 8080).local()],
    ))
    .unwrap();
    let (name, peer, _) = in_ns(&topo.ns("a"), || greet(addr(VIP, 80))).expect("ClusterIP from A");
    assert_eq!((name.as_str(), peer.as_str()), ("b", A));

    // A deleted endpoint is no longer delivered.
    assert!(dp.delete_endpoint(B.parse().unwrap()).unwrap());
    assert!(!connects(&topo, "a", B), "deleted endpoint: no delivery");
    assert!(!dp.delete_endpoint(B.parse().unwrap()).unwrap());
}

/// Two nodes, a pod on each, an outside host; both datapaths set up as noded does.
struct TwoNodes {
    n1: TestDatapath,
    n2: TestDatapath,
    topo: Topology,
}

impl TwoNodes {
    fn new(tag: &str, hook: ExternalHook) -> Self {
        let mut topo = Topology::new();
        topo.add_host("out", OUTSIDE, false);
        topo.add_host("n1", NODE1, true);
        topo.add_host("n2", NODE2, true);
        let (_, a_if) = topo.add_pod("a", "n1", A);
        let (_, c_if) = topo.add_pod("c", "n2", C);
        for (pod, name) in [("a", "a"), ("c", "c"), ("out", "out")] {
            topo.tcp_server(pod, 8080, name);
            topo.udp_server(pod, 8053, name);
        }
        let config = DatapathConfig {
            external_hook: hook,
            ..DatapathConfig::default()
        };
        let mut n1 = TestDatapath::in_ns_with(&format!("{tag}-n1"), &topo.ns("n1"), config.clone());
        let mut n2 = TestDatapath::in_ns_with(&format!("{tag}-n2"), &topo.ns("n2"), config);
        add_endpoint(&topo, &mut n1, "n1", "a", A, &a_if);
        add_endpoint(&topo, &mut n2, "n2", "c", C, &c_if);
        for (node, dp, ip) in [("n1", &mut n1, NODE1), ("n2", &mut n2, NODE2)] {
            attach_node_to_wire(&mut topo, node, dp, ip);
            in_ns(&topo.ns(node), || {
                dp.set_routing(&RoutingSettings {
                    cluster_cidr: CLUSTER,
                    masquerade: Some(ip.parse().unwrap()),
                })
                .expect("routing");
            });
        }
        Self { n1, n2, topo }
    }

    /// Program node routes in `node`'s namespace, as noded does from the Node objects.
    fn sync_routes(&self, node: &str, routes: &[NodeRoute]) -> routes::RouteChanges {
        in_ns(&self.topo.ns(node), || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(routes::sync_node_routes(routes)).expect("sync node routes")
        })
    }

    fn owned_routes(&self, node: &str) -> Vec<NodeRoute> {
        in_ns(&self.topo.ns(node), || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(routes::node_routes()).expect("list node routes")
        })
    }
}

fn route(cidr: &str, via: &str) -> NodeRoute {
    NodeRoute {
        pod_cidr: (cidr.parse().unwrap(), 24),
        via: via.parse().unwrap(),
    }
}

#[test]
fn pods_on_two_nodes_reach_each_other_by_native_routes_without_nat() {
    let c = TwoNodes::new("native", ExternalHook::Xdp);
    assert!(!connects(&c.topo, "a", C), "no route to node 2's pods yet");
    let to_n2 = route("198.19.2.0", NODE2);
    let to_n1 = route("198.19.1.0", NODE1);
    // A foreign route in the same table must survive Sluice's syncs.
    sh(&[
        "ip",
        "-n",
        &c.topo.ns("n1"),
        "route",
        "add",
        "198.18.77.0/24",
        "via",
        NODE2,
    ]);
    assert_eq!(c.sync_routes("n1", &[to_n2]).set, [to_n2]);
    assert_eq!(c.sync_routes("n2", &[to_n1]).set, [to_n1]);
    assert_eq!(
        c.sync_routes("n1", &[to_n2]),
        routes::RouteChanges::default(),
        "idempotent"
    );
    assert_eq!(c.owned_routes("n1"), [to_n2]);
    let shown = sh(&["ip", "-n", &c.topo.ns("n1"), "route", "show", "proto", "201"]);
    assert!(shown.contains("198.19.2.0/24 via 198.18.0.2"), "{shown}");

    let (name, peer, mut s) = in_ns(&c.topo.ns("a"), || greet(addr(C, 8080))).expect("A on node 1 reaches C on node 2");
    assert_eq!(
        (name.as_str(), peer.as_str()),
        ("c", A),
        "C sees A's pod address: no NAT inside the cluster"
    );
    in_ns(&c.topo.ns("a"), || echo(&mut s, "across nodes")).unwrap();
    let (name, peer) = in_ns(&c.topo.ns("c"), || udp_ask(addr(A, 8053))).expect("UDP from C to A");
    assert_eq!((name.as_str(), peer.as_str()), ("a", C));
    assert!(pings(&c.topo, "c", A));
    assert_eq!(
        c.n1.counters().unwrap().event(Event::Masquerade),
        0,
        "pod-to-pod is never masqueraded"
    );

    // Node 2 goes away: its route goes, foreign routes stay.
    let gone = c.sync_routes("n1", &[]);
    assert_eq!(gone.deleted, [to_n2]);
    assert!(!connects(&c.topo, "a", C), "route removed with its node");
    let left = sh(&["ip", "-n", &c.topo.ns("n1"), "route"]);
    assert!(
        left.contains("198.18.77.0/24") && !left.contains("198.19.2.0/24"),
        "{left}"
    );
    drop(c.n2);
}

#[test]
fn pods_reach_outside_the_cluster_masqueraded_to_the_node_address() {
    masquerade_scenario(TwoNodes::new("masq", ExternalHook::Xdp));
}

#[test]
fn masquerade_replies_are_translated_on_the_tc_hook_too() {
    masquerade_scenario(TwoNodes::new("masqtc", ExternalHook::Tc));
}

/// Node `dp`'s flow reader, emptied of what the ring held before.
fn emptied_flow_reader(dp: &Datapath) -> flows::FlowReader {
    let mut reader = flows::FlowReader::open(dp.pin_root()).expect("the flows ring buffer is pinned");
    reader.drain(&mut Vec::new());
    reader
}

fn masquerade_scenario(mut c: TwoNodes) {
    let mut reader = emptied_flow_reader(&c.n1);
    let mut seen = Vec::new();
    // The outside host has no route to the pods: only a masqueraded flow gets answers.
    for _ in 0..5 {
        let (name, peer, mut s) =
            in_ns(&c.topo.ns("a"), || greet(addr(OUTSIDE, 8080))).expect("A reaches the outside host");
        assert_eq!(
            (name.as_str(), peer.as_str()),
            ("out", NODE1),
            "the outside sees node 1's address"
        );
        in_ns(&c.topo.ns("a"), || echo(&mut s, "masqueraded")).unwrap();
    }
    // One flow event per connection (not per packet), each naming node 1's
    // address as the pod's new source.
    reader.drain(&mut seen);
    assert_eq!(seen.len(), 5, "{seen:#?}");
    for f in &seen {
        assert_eq!(
            (f.verdict, f.reason),
            (flows::FlowVerdict::Forwarded, Event::Masquerade)
        );
        assert_eq!(
            (f.source.ip().to_string(), f.destination),
            (A.to_string(), addr(OUTSIDE, 8080))
        );
        assert_eq!(f.masquerade.map(|m| m.ip().to_string()), Some(NODE1.to_string()));
        assert_eq!((f.frontend, f.backend), (None, None));
    }
    seen.clear();
    let (name, peer) = in_ns(&c.topo.ns("c"), || udp_ask(addr(OUTSIDE, 8053))).expect("UDP from C to the outside");
    assert_eq!((name.as_str(), peer.as_str()), ("out", NODE2));
    assert!(c.n1.counters().unwrap().event(Event::Masquerade) >= 5);
    // A ClusterIP whose backend is outside the cluster (as the `kubernetes`
    // Service's API servers are): balanced, then masqueraded, and the pod's
    // conversation with the VIP goes both ways.
    c.n1.upsert_service(&ServiceSpec::cluster_ip(
        Frontend::tcp(VIP.parse().unwrap(), 443),
        vec![Backend::new(OUTSIDE.parse().unwrap(), 8080)],
    ))
    .unwrap();
    let masqueraded = c.n1.counters().unwrap().event(Event::NewFlow);
    let (name, peer, mut s) =
        in_ns(&c.topo.ns("a"), || greet(addr(VIP, 443))).expect("A reaches an outside backend through a ClusterIP");
    assert_eq!(
        (name.as_str(), peer.as_str()),
        ("out", NODE1),
        "the outside backend sees node 1's address"
    );
    in_ns(&c.topo.ns("a"), || echo(&mut s, "through the VIP")).unwrap();
    assert!(c.n1.counters().unwrap().event(Event::NewFlow) > masqueraded);
    // Its flow event names the Service's backend and the masquerade too.
    reader.drain(&mut seen);
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        (seen[0].reason, seen[0].frontend),
        (Event::NewFlow, Some(Frontend::tcp(VIP.parse().unwrap(), 443)))
    );
    assert_eq!(seen[0].backend, Some(addr(OUTSIDE, 8080)));
    assert_eq!(seen[0].masquerade.map(|m| m.ip().to_string()), Some(NODE1.to_string()));
    // The node's own address is not masqueraded (the node sees the pod).
    let (_, peer, _) = in_ns(&c.topo.ns("a"), || {
        c.topo.tcp_server("n1", 9090, "n1");
        greet(addr(NODE1, 9090))
    })
    .expect("A reaches its node");
    assert_eq!(peer, A);
    // Outside → pod without a published service stays unreachable.
    assert!(in_ns(&c.topo.ns("out"), || greet(addr(A, 8080))).is_err());
}

#[test]
fn nodeport_reaches_a_pod_on_another_node_with_masquerade_on() {
    let mut c = TwoNodes::new("npremote", ExternalHook::Tc);
    c.sync_routes("n1", &[route("198.19.2.0", NODE2)]);
    c.sync_routes("n2", &[route("198.19.1.0", NODE1)]);
    for (dp, local) in [(&mut c.n1, false), (&mut c.n2, true)] {
        let b = Backend::new(C.parse().unwrap(), 8080);
        dp.upsert_service(&ServiceSpec::node_port(
            30004,
            Protocol::Tcp,
            vec![if local { b.local() } else { b }],
        ))
        .unwrap();
    }
    // Without knowing the nodes, node 2 masquerades C's replies to node 1's
    // NodePort source NAT, and node 1 cannot match them.
    assert!(
        in_ns(&c.topo.ns("out"), || greet(addr(NODE1, 30004))).is_err(),
        "replies to another node are masqueraded"
    );
    let nodes: Vec<Ipv4Addr> = [NODE1, NODE2].iter().map(|n| n.parse().unwrap()).collect();
    for dp in [&mut c.n1, &mut c.n2] {
        dp.set_cluster_nodes(&nodes).unwrap();
        assert_eq!(dp.cluster_nodes(), nodes);
    }
    for _ in 0..5 {
        let (name, peer, mut s) =
            in_ns(&c.topo.ns("out"), || greet(addr(NODE1, 30004))).expect("NodePort on node 1 reaches C on node 2");
        assert_eq!(
            (name.as_str(), peer.as_str()),
            ("c", NODE1),
            "C sees node 1 (NodePort source NAT), not node 2"
        );
        in_ns(&c.topo.ns("out"), || echo(&mut s, "nodeport across nodes")).unwrap();
    }
    // Pods still reach the outside masqueraded.
    let (_, peer, _) = in_ns(&c.topo.ns("c"), || greet(addr(OUTSIDE, 8080))).expect("C reaches the outside");
    assert_eq!(peer, NODE2);
}
