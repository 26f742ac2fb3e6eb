//! Two real nodes: a flat pod network across nodes, node ports that reach
//! pods on other nodes, and pods rescheduled when a node dies.
//!
//! `cargo xtask up --nodes 2` with a shortened node-monitor grace period and
//! eviction toleration. The user places pods of Deployment `b` on node 2 only
//! (cordoning node 1 while they are created) and one pod of `a` on node 1.
//! They see: pods on different nodes reach each other by pod IP (no NAT:
//! each answers with its own name); the NodePort of `b` on node 1's address
//! is answered by `b`'s pods living on node 2; after node 2's `noded` is
//! stopped (by pid), node 2 turns NotReady, `b`'s pods come back Running on
//! node 1 and node 1's node port is answered by them.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use sluice_tests::cluster::{wait_for, PodView, TestCluster};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

fn deployment(name: &str, replicas: u32, node_selector: Option<&str>) -> String {
    let selector = node_selector
        .map(|n| format!("      nodeSelector: {{kubernetes.io/hostname: {n}}}\n"))
        .unwrap_or_default();
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{selector}      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
"#
    )
}

const SERVICE_B: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: b}
spec:
  type: NodePort
  selector: {app: b}
  ports: [{port: 8888, targetPort: 8080, nodePort: 30004}]
"#;

fn http(cluster: &TestCluster, from: &PodView, to: &PodView) -> String {
    let ip = to.ip.as_deref().unwrap();
    let answer = wait_for(Duration::from_secs(20), || cluster.http_from_pod(from, ip, 8080));
    answer.unwrap_or_else(|| panic!("{} ({:?}) cannot reach {} at {ip}:8080", from.name, from.node, to.name))
}

#[test]
fn pods_reach_across_nodes_node_ports_forward_and_a_dead_nodes_pods_move() {
    let cluster = TestCluster::up(
        2,
        &[
            "--controller-manager-arg=--node-monitor-period=1s",
            "--controller-manager-arg=--node-monitor-grace-period=8s",
            "--controller-manager-arg=--default-eviction-toleration-seconds=2",
            "--controller-manager-arg=--pod-gc-period=1s",
        ],
    );
    let (n1, n2) = (cluster.node_name(1), cluster.node_name(2));

    // b's pods only on node 2: node 1 is cordoned while they are placed.
    cluster.kubectl_ok(&["cordon", &n1]);
    cluster.apply(&deployment("b", 2, None));
    cluster.apply(SERVICE_B);
    let b = cluster.wait_running("app=b", 2, Duration::from_secs(120));
    assert!(
        b.iter().all(|p| p.node.as_deref() == Some(n2.as_str())),
        "b on node 2: {b:#?}"
    );
    cluster.kubectl_ok(&["uncordon", &n1]);
    cluster.apply(&deployment("a", 1, Some(&n1)));
    let a = cluster.wait_running("app=a", 1, Duration::from_secs(120));
    assert_eq!(a[0].node.as_deref(), Some(n1.as_str()));

    // Pod to pod across nodes, by pod IP, both ways.
    assert_eq!(http(&cluster, &a[0], &b[0]), b[0].name, "a (node 1) → b (node 2)");
    assert_eq!(http(&cluster, &b[1], &a[0]), a[0].name, "b (node 2) → a (node 1)");

    // Node 1's node port reaches b's pods, which live only on node 2.
    let client = cluster.client();
    let url = format!("http://{}:30004/", cluster.node_ip(1));
    let expected: BTreeSet<String> = b.iter().map(|p| p.name.clone()).collect();
    let tally = wait_for(Duration::from_secs(30), || {
        let tally = client.tally(&url, 40);
        (tally.keys().cloned().collect::<BTreeSet<_>>() == expected).then_some(tally)
    });
    assert!(
        tally.is_some(),
        "node 1's port 30004 answered by b's pods on node 2; last: {:?}",
        client.tally(&url, 20)
    );

    // Node 2's noded stops: its pods are evicted and b runs again on node 1.
    let pid = cluster.pid(&format!("{n2}-noded")).expect("noded pid of node 2");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("noded runs");
    assert!(exe.to_string_lossy().contains("noded"), "pid {pid} is noded");
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let moved = wait_for(Duration::from_secs(120), || {
        let live: Vec<PodView> = cluster.pods("app=b").into_iter().filter(|p| !p.terminating).collect();
        let ok = live.len() == 2
            && live
                .iter()
                .all(|p| p.node.as_deref() == Some(n1.as_str()) && p.phase == "Running" && p.ready);
        ok.then_some(live)
    });
    let moved = moved.unwrap_or_else(|| {
        panic!(
            "b not rescheduled on node 1: {:#?}\n{}",
            cluster.pods("app=b"),
            cluster.logs_tail()
        )
    });
    // And the node port follows them.
    let expected: BTreeSet<String> = moved.iter().map(|p| p.name.clone()).collect();
    let tally = wait_for(Duration::from_secs(30), || {
        let tally = client.tally(&url, 30);
        (tally.keys().cloned().collect::<BTreeSet<_>>() == expected).then_some(tally)
    });
    assert!(
        tally.is_some(),
        "port 30004 answered by the rescheduled pods; last: {:?}",
        client.tally(&url, 20)
    );
    let not_ready = cluster.kubectl_ok(&[
        "get",
        "node",
        &n2,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
    ]);
    assert_ne!(not_ready.trim(), "True", "node 2 no longer Ready");
}
