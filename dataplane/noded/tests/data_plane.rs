//! noded's data plane on the real kernel, in network namespaces: a "node"
//! namespace with two pods and a host outside the cluster, driven as noded
//! drives it — start (open the datapath, masquerade, NodePorts on the
//! interface carrying the node IP), CNI AddPod for each pod, a restart that
//! adopts everything while a connection stays open, DelPod. Needs root.

#[path = "../../datapath/tests/common/netns.rs"]
mod netns;

use netns::*;
use sluice_noded::network::{DataPlane, NetworkArgs};
use sluice_proto::cni::v1::PodInterface;
use std::path::PathBuf;

const NODE: &str = "198.18.0.1";
const OUTSIDE: &str = "198.18.0.100";
const A: &str = "198.19.1.10";
const B: &str = "198.19.1.11";

fn args(pin_root: &str) -> NetworkArgs {
    NetworkArgs {
        data_plane: "on".into(),
        cluster_cidr: "198.19.0.0/17".parse().unwrap(),
        bpf_pin_root: Some(PathBuf::from(pin_root)),
        external_interface: None,
        nodeport_hook: "tc".into(),
        socket_lb_cgroup: None,
        no_masquerade: false,
        endpoint_drain_delay_ms: 0,
        flow_events: true,
        xdp_forward: true,
        nodeport_mode: "snat".into(),
    }
}

/// What the CNI plugin reports on AddPod.
fn pod_interface(topo: &Topology, pod: &str, ip: &str, host_veth: &str) -> PodInterface {
    let mac = in_ns(&topo.ns(pod), || sluice_datapath::interface_mac("eth0").unwrap());
    PodInterface {
        container_id: format!("sandbox-{pod}"),
        host_veth: host_veth.into(),
        pod_ip: ip.into(),
        pod_mac: mac.to_string(),
        ..Default::default()
    }
}

/// Removes the test's pins (uninstalls its datapath) at the end, even on panic.
struct Pins(String);
impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn connects(topo: &Topology, from: &str, to: &str) -> bool {
    in_ns(&topo.ns(from), || {
        std::net::TcpStream::connect_timeout(&addr(to, 8080).into(), std::time::Duration::from_secs(1)).is_ok()
    })
}

#[test]
fn pods_get_their_data_plane_on_add_keep_it_across_a_restart_and_lose_it_on_delete() {
    let pin_root = format!("/sys/fs/bpf/sluice-test-noded-{}", std::process::id());
    let _pins = Pins(pin_root.clone());
    let mut topo = Topology::new();
    topo.add_host("out", OUTSIDE, false);
    let n1 = topo.add_host("n1", NODE, true);
    let (_, a_if) = topo.add_pod("a", "n1", A);
    let (_, b_if) = topo.add_pod("b", "n1", B);
    // Only the eBPF path can deliver between the pods.
    sh(&["ip", "-n", &n1, "route", "del", &format!("{A}/32")]);
    sh(&["ip", "-n", &n1, "route", "del", &format!("{B}/32")]);
    topo.tcp_server("b", 8080, "b");
    topo.tcp_server("out", 8080, "out");
    let pods = [pod_interface(&topo, "a", A, &a_if), pod_interface(&topo, "b", B, &b_if)];
    assert!(!connects(&topo, "a", B));

    let dataplane = in_ns(&n1, || {
        DataPlane::start(&args(&pin_root), "n1", Some(NODE.parse().unwrap())).expect("data plane starts")
    });
    assert!(dataplane.is_ready());
    in_ns(&n1, || {
        for pod in &pods {
            dataplane.attach_pod(pod).expect("AddPod attaches");
        }
    });
    let (name, peer, mut conn) = in_ns(&topo.ns("a"), || greet(addr(B, 8080))).expect("A reaches B veth to veth");
    assert_eq!((name.as_str(), peer.as_str()), ("b", A));
    let (name, peer, _) = in_ns(&topo.ns("a"), || greet(addr(OUTSIDE, 8080))).expect("A reaches the outside");
    assert_eq!(
        (name.as_str(), peer.as_str()),
        ("out", NODE),
        "masqueraded to the node address"
    );
    {
        let dp = dataplane.datapath().unwrap();
        let dp = dp.lock().unwrap();
        assert!(
            dp.attachments().iter().any(|(i, h)| i == "eth0" && h == "tcext"),
            "NodePorts on the node IP's interface: {:?}",
            dp.attachments()
        );
        assert_eq!(dp.endpoints().unwrap().len(), 2);
    }

    // Restart: a new process adopts the pins and re-attaches the known pods.
    drop(dataplane);
    in_ns(&topo.ns("a"), || echo(&mut conn, "while noded is down")).expect("connection survives noded going away");
    let dataplane = in_ns(&n1, || {
        let dp = DataPlane::start(&args(&pin_root), "n1", Some(NODE.parse().unwrap())).expect("data plane restarts");
        dp.adopt(&pods[..]);
        dp
    });
    in_ns(&topo.ns("a"), || echo(&mut conn, "after the restart")).expect("connection survives the restart");
    assert!(connects(&topo, "a", B), "new connections after the restart");

    // DelPod: B's endpoint and programs go.
    in_ns(&n1, || dataplane.detach_pod(Some(B.parse().unwrap()), Some(&b_if))).expect("DelPod detaches");
    assert!(!connects(&topo, "a", B), "B is no longer delivered");
    let dp = dataplane.datapath().unwrap();
    let dp = dp.lock().unwrap();
    assert_eq!(
        dp.endpoints()
            .unwrap()
            .iter()
            .map(|e| e.ip.to_string())
            .collect::<Vec<_>>(),
        [A]
    );
    assert!(!dp.attachments().iter().any(|(i, _)| *i == b_if));
}
