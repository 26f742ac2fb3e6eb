//! The data plane on the real kernel, in network namespaces: a client host
//! and two nodes on a bridge, pods behind the nodes running TCP/UDP servers
//! that answer with their own name. Each node has its own datapath (own pin
//! root), attached to its pod veths and its external interface, as the node
//! daemon would do it. Needs root.

mod common;

use common::netns::*;
use common::*;
use sluice_datapath::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const VIP: &str = "198.19.0.10";
const NODE1: &str = "198.18.0.1";
const NODE2: &str = "198.18.0.2";
const CLIENT: &str = "198.18.0.100";
const POD: &str = "198.18.1.50";
/// Backend pods: (name, node, address).
const BACKENDS: [(&str, u8, &str); 3] = [
    ("b1", 1, "198.18.1.11"),
    ("b2", 2, "198.18.2.12"),
    ("b3", 2, "198.18.2.13"),
];

struct Cluster {
    // Field order = drop order: datapaths (unpinned) before the namespaces.
    node1: TestDatapath,
    node2: TestDatapath,
    topo: Topology,
}

impl Cluster {
    fn new(tag: &str) -> Self {
        Self::with_hook(tag, ExternalHook::Xdp)
    }

    fn with_hook(tag: &str, hook: ExternalHook) -> Self {
        let mut topo = Topology::new();
        topo.add_host("client", CLIENT, false);
        topo.add_host("n1", NODE1, true);
        topo.add_host("n2", NODE2, true);
        topo.route("n1", "198.18.2.0/24", NODE2);
        topo.route("n2", "198.18.1.0/24", NODE1);
        let mut pod_ifs: HashMap<u8, Vec<String>> = HashMap::new();
        let (_, pod_if) = topo.add_pod("pod", "n1", POD);
        pod_ifs.entry(1).or_default().push(pod_if);
        for (name, node, addr) in BACKENDS {
            let (_, host_if) = topo.add_pod(name, &format!("n{node}"), addr);
            pod_ifs.entry(node).or_default().push(host_if);
            topo.tcp_server(name, 8080, name);
            topo.udp_server(name, 8053, name);
        }
        let config = DatapathConfig {
            external_hook: hook,
            ..DatapathConfig::default()
        };
        let mut node1 = TestDatapath::in_ns_with(&format!("{tag}-n1"), &topo.ns("n1"), config.clone());
        let mut node2 = TestDatapath::in_ns_with(&format!("{tag}-n2"), &topo.ns("n2"), config);
        for (node, dp, ip) in [(1u8, &mut node1, NODE1), (2, &mut node2, NODE2)] {
            let ifs = pod_ifs[&node].clone();
            in_ns(&topo.ns(&format!("n{node}")), || {
                for i in &ifs {
                    dp.attach_pod_interface(i).expect("attach pod interface");
                }
            });
            attach_node_to_wire(&mut topo, &format!("n{node}"), dp, ip);
        }
        Self { node1, node2, topo }
    }

    /// Program a service on both nodes; `make` builds the spec from backends
    /// marked local for that node.
    fn program(&mut self, names: &[&str], make: impl Fn(Vec<Backend>) -> ServiceSpec) {
        for (node, dp) in [(1u8, &mut self.node1), (2, &mut self.node2)] {
            let backends = BACKENDS
                .iter()
                .filter(|(n, ..)| names.contains(n))
                .map(|(_, on, a)| {
                    let b = Backend::new(a.parse().unwrap(), 8080);
                    if *on == node {
                        b.local()
                    } else {
                        b
                    }
                })
                .collect();
            dp.upsert_service(&make(backends)).expect("upsert");
        }
    }
}

fn vip() -> Ipv4Addr {
    VIP.parse().unwrap()
}

fn udp(mut spec: ServiceSpec) -> ServiceSpec {
    for b in &mut spec.backends {
        b.port = 8053;
    }
    spec
}

#[test]
fn clusterip_spreads_3000_connections_evenly_and_serves_udp() {
    let mut c = Cluster::new("spread");
    c.program(&["b1", "b2", "b3"], |b| {
        ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), b)
    });
    c.program(&["b1", "b2", "b3"], |b| {
        udp(ServiceSpec::cluster_ip(Frontend::udp(vip(), 53), b))
    });
    let (counts, udp_names) = in_ns(&c.topo.ns("pod"), || {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..3000 {
            let (name, peer, _) = greet(addr(VIP, 80)).expect("connect to the ClusterIP");
            assert_eq!(peer, POD, "ClusterIP keeps the pod's address");
            *counts.entry(name).or_default() += 1;
        }
        let mut udp_names = std::collections::HashSet::new();
        for _ in 0..30 {
            udp_names.insert(udp_ask(addr(VIP, 53)).expect("UDP through the ClusterIP").0);
        }
        (counts, udp_names)
    });
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (name, n) in &counts {
        let share = *n as f64 / 3000.0;
        assert!((0.25..=0.40).contains(&share), "{name} got {n} of 3000: {counts:?}");
    }
    assert!(
        udp_names.iter().all(|n| ["b1", "b2", "b3"].contains(&n.as_str())),
        "{udp_names:?}"
    );
    let counters = c.node1.counters().unwrap();
    let tcp = counters
        .services
        .iter()
        .find(|s| s.frontend == Frontend::tcp(vip(), 80))
        .unwrap();
    assert!(
        tcp.total.packets >= 3000 * 4,
        "per-service counters count packets: {:?}",
        tcp.total
    );
    assert!(tcp.backends.iter().all(|(_, t)| t.packets > 0));
}

#[test]
fn nodeport_reaches_remote_backends_and_policy_local_keeps_client_ip() {
    let (tx, redirect, _) = nodeport_scenario_on_the_fast_path(Cluster::new("nodeport"));
    // Remote backends (XDP_TX to node 2) and replies back to the client
    // (XDP_TX again); the local backend of policy Local (redirect into its
    // veth): at least one frame per connection each way.
    assert!(tx >= 40, "frames sent back out from XDP: {tx}");
    assert!(
        redirect >= 20,
        "frames redirected from XDP into the local pod: {redirect}"
    );
}

#[test]
fn nodeport_with_xdp_forwarding_off_goes_through_the_kernel() {
    let mut c = Cluster::new("nodeportslow");
    c.node1.set_xdp_forward(false).unwrap();
    assert_eq!(
        nodeport_scenario_on_the_fast_path(c),
        (0, 0, 0),
        "no frame left from XDP"
    );
}

#[test]
fn nodeport_on_the_tc_hook_behaves_the_same() {
    let c = Cluster::with_hook("nodeporttc", ExternalHook::Tc);
    assert_eq!(
        nodeport_scenario_on_the_fast_path(c),
        (0, 0, 0),
        "TC has no XDP fast path"
    );
}

/// Run [`nodeport_scenario`]; returns how many frames node 1 forwarded
/// from XDP meanwhile: (XdpTx, XdpRedirect, XdpToKernel).
fn nodeport_scenario_on_the_fast_path(mut c: Cluster) -> (u64, u64, u64) {
    let counts = |dp: &Datapath| {
        let c = dp.counters().unwrap();
        [Event::XdpTx, Event::XdpRedirect, Event::XdpToKernel].map(|e| c.event(e))
    };
    let before = counts(&c.node1);
    nodeport_scenario(&mut c);
    let after = counts(&c.node1);
    (after[0] - before[0], after[1] - before[1], after[2] - before[2])
}

fn nodeport_scenario(c: &mut Cluster) {
    c.program(&["b2", "b3"], |b| ServiceSpec::node_port(30080, Protocol::Tcp, b));
    c.program(&["b1", "b2"], |b| {
        let mut s = ServiceSpec::node_port(30081, Protocol::Tcp, b);
        s.external_traffic_local = true;
        s
    });
    c.program(&[], |b| ServiceSpec::node_port(30082, Protocol::Tcp, b));
    c.program(&["b2", "b3"], |b| udp(ServiceSpec::node_port(30053, Protocol::Udp, b)));
    in_ns(&c.topo.ns("client"), || {
        for _ in 0..20 {
            let (name, peer, _) = greet(addr(NODE1, 30080)).expect("NodePort on node 1");
            assert!(name == "b2" || name == "b3", "landed on {name}");
            assert_eq!(peer, NODE1, "remote backend sees the node (SNAT)");
        }
        for _ in 0..20 {
            let (name, peer, _) = greet(addr(NODE1, 30081)).expect("NodePort, policy Local");
            assert_eq!(name, "b1", "policy Local uses the local backend only");
            assert_eq!(peer, CLIENT, "policy Local keeps the client's address");
        }
        let (name, peer) = udp_ask(addr(NODE1, 30053)).expect("UDP NodePort");
        assert!(name == "b2" || name == "b3");
        assert_eq!(peer, NODE1);
        let t = Instant::now();
        let err = greet(addr(NODE1, 30082)).expect_err("no backends");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        assert!(t.elapsed() < Duration::from_secs(1), "rejected, not dropped");
    });
}

/// Direct server return (noded `--nodeport-mode dsr`) switched on at node
/// 1: a NodePort flow to a backend on node 2 keeps the client's address,
/// and node 2 answers the client itself, so node 1 translates no reply.
/// TCP (greeting and an echo on the established connection, whose segments
/// after the SYN carry no option) and UDP, on both hooks. Switched off, the
/// same NodePort source-NATs again.
#[test]
fn nodeport_by_direct_server_return_keeps_the_client_address_and_replies_skip_the_node() {
    for (tag, hook) in [("dsrxdp", ExternalHook::Xdp), ("dsrtc", ExternalHook::Tc)] {
        let mut c = Cluster::with_hook(tag, hook);
        // As noded does for its pods: node 2 knows its pods' links (the
        // option is read only for a pod of the node).
        for (name, _, ip) in BACKENDS.iter().filter(|(_, node, _)| *node == 2) {
            let pod_mac = in_ns(&c.topo.ns(name), || interface_mac("eth0").expect("pod MAC"));
            let host_if = format!("v-{name}");
            let dp = &mut c.node2;
            in_ns(&c.topo.ns("n2"), || {
                let ep = PodEndpoint::on_interface(ip.parse().unwrap(), &host_if, pod_mac).expect("endpoint");
                dp.upsert_endpoint(&ep).expect("upsert endpoint");
            });
        }
        c.node1.set_dsr(true).unwrap();
        c.program(&["b2", "b3"], |b| ServiceSpec::node_port(30090, Protocol::Tcp, b));
        c.program(&["b2", "b3"], |b| udp(ServiceSpec::node_port(30091, Protocol::Udp, b)));
        let events = |dp: &Datapath| {
            let c = dp.counters().unwrap();
            [Event::ReverseNat, Event::DsrForward, Event::DsrRecorded].map(|e| c.event(e))
        };
        let (n1, n2) = (events(&c.node1), events(&c.node2));
        in_ns(&c.topo.ns("client"), || {
            for i in 0..20 {
                let (name, peer, mut s) = greet(addr(NODE1, 30090)).expect("NodePort by direct server return");
                assert!(name == "b2" || name == "b3", "landed on {name}");
                assert_eq!(peer, CLIENT, "{tag}: the remote backend sees the client, not node 1");
                echo(&mut s, &format!("still there {i}")).expect("the established connection carries on");
            }
            for _ in 0..10 {
                let (name, peer) = udp_ask(addr(NODE1, 30091)).expect("UDP NodePort by direct server return");
                assert!(name == "b2" || name == "b3", "landed on {name}");
                assert_eq!(peer, CLIENT, "{tag}: UDP keeps the client's address");
            }
        });
        let (n1_after, n2_after) = (events(&c.node1), events(&c.node2));
        let delta = |a: [u64; 3], b: [u64; 3]| [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
        let (n1, n2) = (delta(n1_after, n1), delta(n2_after, n2));
        assert_eq!(n1[0], 0, "{tag}: no reply came back through node 1: {n1:?}");
        assert_eq!(
            n1[1], 30,
            "{tag}: node 1 sent each SYN and datagram with the option: {n1:?}"
        );
        assert_eq!(n2[2], 30, "{tag}: node 2 recorded each flow once: {n2:?}");
        assert!(n2[0] >= 20 * 3 + 10, "{tag}: node 2 translated the replies: {n2:?}");

        c.node1.set_dsr(false).unwrap();
        in_ns(&c.topo.ns("client"), || {
            let (_, peer, _) = greet(addr(NODE1, 30090)).expect("NodePort with source NAT");
            assert_eq!(peer, NODE1, "{tag}: without DSR the backend sees node 1");
        });
    }
}

#[test]
fn pod_reaching_its_own_service_lands_on_itself_and_sees_the_vip() {
    let mut c = Cluster::new("hairpin");
    c.topo.tcp_server("pod", 8080, "pod");
    for dp in [&mut c.node1, &mut c.node2] {
        let me = Backend::new(POD.parse().unwrap(), 8080);
        dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip(), 81), vec![me.local()]))
            .unwrap();
    }
    in_ns(&c.topo.ns("pod"), || {
        for _ in 0..5 {
            let (name, peer, mut s) = greet(addr(VIP, 81)).expect("hairpin connection");
            assert_eq!(name, "pod");
            assert_eq!(peer, VIP, "the pod sees its service's VIP as the peer");
            echo(&mut s, "hairpin").unwrap();
        }
    });
}

#[test]
fn removed_backend_keeps_established_connections_and_gets_no_new_ones() {
    let mut c = Cluster::new("removal");
    c.program(&["b1", "b2", "b3"], |b| {
        ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), b)
    });
    let pod_ns = c.topo.ns("pod");
    // Open connections until one lands on b2.
    let mut conn = in_ns(&pod_ns, || {
        for _ in 0..200 {
            let (name, _, s) = greet(addr(VIP, 80)).unwrap();
            if name == "b2" {
                return s;
            }
        }
        panic!("no connection landed on b2");
    });
    c.program(&["b1", "b3"], |b| ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), b));
    in_ns(&pod_ns, || {
        echo(&mut conn, "still there after removal").expect("established connection survives");
        for _ in 0..300 {
            let (name, _, _) = greet(addr(VIP, 80)).unwrap();
            assert_ne!(name, "b2", "a removed backend gets no new connection");
        }
        echo(&mut conn, "still there at the end").unwrap();
    });
}

#[test]
fn restarting_userspace_keeps_long_lived_connections() {
    let mut c = Cluster::new("restart");
    c.program(&["b1", "b2", "b3"], |b| {
        ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), b)
    });
    c.program(&["b2", "b3"], |b| ServiceSpec::node_port(30080, Protocol::Tcp, b));
    let mut from_pod = in_ns(&c.topo.ns("pod"), || greet(addr(VIP, 80)).unwrap().2);
    let mut from_client = in_ns(&c.topo.ns("client"), || greet(addr(NODE1, 30080)).unwrap().2);

    // "Restart" both node daemons: drop every userspace handle, keep the pins.
    let root1 = c.node1.pin_root().to_string_lossy().into_owned();
    let root2 = c.node2.pin_root().to_string_lossy().into_owned();
    drop(c.node1.0.take());
    drop(c.node2.0.take());
    in_ns(&c.topo.ns("pod"), || {
        echo(&mut from_pod, "while down").expect("pod connection while userspace is down")
    });
    c.node1.0 = Some(open_in_ns(&root1, &c.topo.ns("n1")));
    c.node2.0 = Some(open_in_ns(&root2, &c.topo.ns("n2")));
    assert_eq!(c.node1.frontends().len(), 2, "services adopted");
    assert_eq!(
        c.node1.attachments().len(),
        5,
        "links adopted: 2 pod veths x (ingress, egress) + XDP"
    );
    // Re-attach as the node daemon does on start: the adopted links get this
    // process's programs, swapped atomically.
    let pod_link = std::fs::read_dir(format!("{root1}/links"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("v-pod_") && p.to_string_lossy().ends_with("_ingress")
        })
        .expect("pinned link of the pod veth");
    let prog_id = || {
        let out = sh(&["bpftool", "-j", "link", "show", "pinned", pod_link.to_str().unwrap()]);
        let at = out.find("\"prog_id\":").expect("prog_id in bpftool output") + 10;
        out[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>()
    };
    let before = prog_id();
    let n1 = c.topo.ns("n1");
    let dp1 = &mut c.node1;
    in_ns(&n1, || {
        for i in ["v-pod", "v-b1"] {
            dp1.attach_pod_interface(i).expect("re-attach pod interface");
        }
        dp1.attach_external_interface("eth0", NODE1.parse().unwrap())
            .expect("re-attach external");
    });
    assert_eq!(c.node1.attachments().len(), 5, "no duplicate attachments");
    assert_ne!(prog_id(), before, "the adopted link now runs this process's program");
    in_ns(&c.topo.ns("pod"), || {
        echo(&mut from_pod, "after re-attach").expect("pod connection survives the program swap")
    });
    // Reconcile (same services, as the node daemon would) and check traffic.
    c.program(&["b1", "b2", "b3"], |b| {
        ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), b)
    });
    c.program(&["b2", "b3"], |b| ServiceSpec::node_port(30080, Protocol::Tcp, b));
    in_ns(&c.topo.ns("pod"), || {
        echo(&mut from_pod, "after restart").expect("pod connection survives the restart");
        greet(addr(VIP, 80)).expect("new connection after restart");
    });
    in_ns(&c.topo.ns("client"), || {
        echo(&mut from_client, "after restart").expect("NodePort connection survives the restart");
        greet(addr(NODE1, 30080)).expect("new NodePort connection after restart");
    });
}

#[test]
fn sluice_installs_no_iptables_or_nftables_rules() {
    let mut c = Cluster::new("norules");
    c.program(&["b1", "b2", "b3"], |b| {
        ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), b)
    });
    c.program(&["b2", "b3"], |b| ServiceSpec::node_port(30080, Protocol::Tcp, b));
    in_ns(&c.topo.ns("pod"), || greet(addr(VIP, 80)).expect("service works"));
    for node in ["n1", "n2"] {
        let ns = c.topo.ns(node);
        let ipt = sh(&["ip", "netns", "exec", &ns, "iptables-save"]);
        assert!(
            !ipt.lines().any(|l| l.starts_with("-A")),
            "iptables rules in {node}: {ipt}"
        );
        assert!(!ipt.to_lowercase().contains("sluice"));
        let nft = sh(&["ip", "netns", "exec", &ns, "nft", "list", "ruleset"]);
        assert!(nft.trim().is_empty(), "nftables ruleset in {node}: {nft}");
    }
}

/// A cgroup v2 directory for one test, removed on drop.
struct TestCgroup(std::path::PathBuf);

impl TestCgroup {
    fn new(tag: &str) -> Self {
        let p = std::path::PathBuf::from(format!(
            "/sys/fs/cgroup/unified/sluice-test-{tag}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).expect("create cgroup");
        Self(p)
    }

    /// Run a shell command inside network namespace `ns` and this cgroup; its stdout.
    fn run(&self, ns: &str, script: &str) -> String {
        let procs = self.0.join("cgroup.procs");
        // Join the cgroup first: `ip netns exec` remounts /sys for the namespace.
        let full = format!("echo $$ > {} && exec ip netns exec {ns} {script}", procs.display());
        let out = std::process::Command::new("timeout")
            .args(["10", "sh", "-c", &full])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("spawn");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn node_local_clients_reach_clusterips_through_socket_level_balancing() {
    let mut c = Cluster::new("socklb");
    c.program(&["b1", "b2", "b3"], |b| {
        ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), b)
    });
    c.program(&["b1", "b2", "b3"], |b| {
        udp(ServiceSpec::cluster_ip(Frontend::udp(vip(), 53), b))
    });
    c.program(&[], |b| ServiceSpec::cluster_ip(Frontend::tcp(vip(), 82), b));
    let cg = TestCgroup::new("socklb");
    c.node1.attach_cgroup(&cg.0).expect("attach cgroup programs");
    let n1 = c.topo.ns("n1");
    let mut names = std::collections::HashSet::new();
    for _ in 0..12 {
        let out = cg.run(&n1, &format!("bash -c 'exec 3<>/dev/tcp/{VIP}/80; head -n1 <&3'"));
        let name = out.split_whitespace().next().unwrap_or_default().to_string();
        assert!(
            ["b1", "b2", "b3"].contains(&name.as_str()),
            "node-local TCP client got {out:?}"
        );
        names.insert(name);
    }
    assert!(names.len() >= 2, "connections are balanced: {names:?}");
    let out = cg.run(
        &n1,
        &format!("bash -c 'exec 3<>/dev/udp/{VIP}/53; echo hi >&3; timeout 3 head -c 2 <&3'"),
    );
    assert!(out.starts_with('b'), "node-local UDP client got {out:?}");
    let out = cg.run(&n1, &format!("bash -c 'exec 3<>/dev/tcp/{VIP}/82' 2>&1"));
    assert!(
        out.to_lowercase().contains("refused"),
        "no backends: connection refused, got {out:?}"
    );
    assert!(c.node1.counters().unwrap().event(Event::SocketLb) >= 13);
    c.node1.detach_cgroup().unwrap();
}

#[test]
fn socket_level_balancing_writes_a_flow_event_per_connect_and_new_udp_pair() {
    let mut c = Cluster::new("sockflow");
    c.program(&["b1", "b2", "b3"], |b| {
        ServiceSpec::cluster_ip(Frontend::tcp(vip(), 80), b)
    });
    // One backend: every datagram of a socket goes to the same one.
    c.program(&["b1"], |b| udp(ServiceSpec::cluster_ip(Frontend::udp(vip(), 54), b)));
    c.program(&[], |b| ServiceSpec::cluster_ip(Frontend::tcp(vip(), 82), b));
    let cg = TestCgroup::new("sockflow");
    c.node1.attach_cgroup(&cg.0).expect("attach cgroup programs");
    let mut reader = flows::FlowReader::open(c.node1.pin_root()).expect("the flows ring buffer is pinned");
    let mut seen = Vec::new();
    reader.drain(&mut seen);
    seen.clear();
    let n1 = c.topo.ns("n1");
    for _ in 0..3 {
        let out = cg.run(&n1, &format!("bash -c 'exec 3<>/dev/tcp/{VIP}/80; head -n1 <&3'"));
        assert!(out.starts_with('b'), "node-local TCP client got {out:?}");
    }
    // Three datagrams from one unconnected socket (sendmsg4 each time): one
    // new (socket, backend) pair, one event. The replies come from the VIP.
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(3)\n\
         for _ in range(3):\n    s.sendto(b\"hi\", (\"{VIP}\", 54)); data, peer = s.recvfrom(100)\n\
         print(data.decode().split()[0], peer[0], peer[1])"
    );
    let out = cg.run(&n1, &format!("python3 -c '{script}'"));
    assert_eq!(
        out.trim(),
        format!("b1 {VIP} 54"),
        "unconnected UDP through the ClusterIP"
    );
    let out = cg.run(&n1, &format!("bash -c 'exec 3<>/dev/tcp/{VIP}/82' 2>&1"));
    assert!(out.to_lowercase().contains("refused"), "got {out:?}");

    reader.drain(&mut seen);
    assert_eq!(seen.len(), 5, "{seen:#?}");
    let unknown = std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let backends: Vec<_> = BACKENDS.iter().map(|(_, _, a)| addr(a, 8080)).collect();
    for f in &seen[..3] {
        assert_eq!(
            (f.hook, f.verdict, f.reason),
            (flows::FlowHook::Socket, flows::FlowVerdict::Forwarded, Event::SocketLb)
        );
        assert_eq!((f.source, f.frontend), (unknown, Some(Frontend::tcp(vip(), 80))));
        assert!(f.backend.is_some_and(|b| backends.contains(&b)), "{f:?}");
    }
    let udp = &seen[3];
    assert_eq!((udp.hook, udp.reason), (flows::FlowHook::Socket, Event::SocketLb));
    assert_eq!(udp.frontend, Some(Frontend::udp(vip(), 54)));
    assert_eq!(udp.backend, Some(addr(BACKENDS[0].2, 8053)));
    assert_eq!(udp.source.ip(), &Ipv4Addr::UNSPECIFIED, "no IP_PKTINFO source asked");
    let refused = &seen[4];
    assert_eq!(
        (refused.hook, refused.verdict, refused.reason),
        (
            flows::FlowHook::Socket,
            flows::FlowVerdict::Rejected,
            Event::NoBackendReject
        )
    );
    assert_eq!(
        (refused.frontend, refused.backend),
        (Some(Frontend::tcp(vip(), 82)), None)
    );
    assert_eq!(
        c.node1.counters().unwrap().event(Event::SocketLb),
        6,
        "every connect and datagram is translated, only new flows are events"
    );
    c.node1.detach_cgroup().unwrap();
}
