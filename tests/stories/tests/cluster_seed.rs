//! The seed scenario on a real one-node cluster, as a user runs it.
//!
//! `cargo xtask up --nodes 1` starts etcd, the API server, controller-manager,
//! scheduler and one node (a network namespace on a bridge, with its own
//! containerd and noded). The user `kubectl apply`s a Deployment of 3 busybox
//! httpd pods answering with their hostname and a NodePort Service
//! (8888 → 8080, nodePort 30003). They see all pods Running with IPs; from a
//! machine on the node's network (a client namespace on the bridge) 300
//! requests to `<node IP>:30003` are answered by all three pods; the
//! ClusterIP answers from inside a pod; after scaling to 5 and to 1 the
//! answering set follows; and neither the host nor the node holds any
//! iptables or nftables rule for the Service.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use sluice_tests::cluster::{wait_for, Client, PodView, TestCluster};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 8888, targetPort: 8080, nodePort: 30003}]
"#;

fn names(pods: &[PodView]) -> BTreeSet<String> {
    pods.iter().map(|p| p.name.clone()).collect()
}

/// Wait until `n` requests are all answered, by exactly the pods `expected`; then
/// assert it over 300 requests, each answered.
fn answered_by(client: &Client, url: &str, expected: &BTreeSet<String>) {
    let settled = wait_for(Duration::from_secs(30), || {
        let tally = client.tally(url, 30);
        (tally.keys().cloned().collect::<BTreeSet<_>>() == *expected).then_some(())
    });
    let tally = client.tally(url, 300);
    assert!(
        settled.is_some() && tally.keys().cloned().collect::<BTreeSet<_>>() == *expected,
        "300 requests to {url} should be answered by exactly {expected:?}; got {tally:?}"
    );
    assert_eq!(tally.values().sum::<usize>(), 300);
}

fn rules(netns: Option<&str>, cmd: &[&str]) -> String {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(cmd);
            c
        }
        None => {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        }
    };
    c.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn deployment_behind_a_node_port_answers_from_every_pod_and_follows_scaling() {
    let cluster = TestCluster::up(1, &[]);
    let node_ip = cluster.node_ip(1);
    let node = cluster.node_name(1);
    let nodes = cluster.kubectl_ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.trim(), format!("node/{node}"), "one node registered");

    cluster.apply(APP);
    let pods = cluster.wait_running("app=web", 3, Duration::from_secs(120));
    assert!(pods.iter().all(|p| p.node.as_deref() == Some(node.as_str())));
    let ips: BTreeSet<_> = pods.iter().map(|p| p.ip.clone().unwrap()).collect();
    assert_eq!(ips.len(), 3, "three distinct pod IPs: {ips:?}");

    // From a machine on the node's network, the node port reaches every pod.
    let client = cluster.client();
    let url = format!("http://{node_ip}:30003/");
    answered_by(&client, &url, &names(&pods));

    // The ClusterIP answers from inside a pod.
    let cluster_ip = cluster.kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let inside = &pods[0];
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        let answer = cluster.http_from_pod(inside, &cluster_ip, 8888);
        seen.insert(answer.unwrap_or_else(|| panic!("{cluster_ip}:8888 does not answer inside {}", inside.name)));
    }
    assert!(
        seen.is_subset(&names(&pods)) && !seen.is_empty(),
        "ClusterIP answers from the pods: {seen:?}"
    );

    // Scaling: the answering set follows.
    cluster.kubectl_ok(&["scale", "deployment/web", "--replicas=5"]);
    let five = cluster.wait_running("app=web", 5, Duration::from_secs(120));
    answered_by(&client, &url, &names(&five));
    cluster.kubectl_ok(&["scale", "deployment/web", "--replicas=1"]);
    let one = cluster.wait_running("app=web", 1, Duration::from_secs(120));
    answered_by(&client, &url, &names(&one));

    // No iptables or nftables rules for the Service, on the host or the node.
    for netns in [None, Some(node.as_str())] {
        for cmd in [&["iptables-save"][..], &["nft", "list", "ruleset"][..]] {
            let text = rules(netns, cmd);
            for ours in ["30003", cluster_ip.as_str(), "sluice", "KUBE-"] {
                assert!(!text.contains(ours), "{cmd:?} in {netns:?} mentions {ours}:\n{text}");
            }
        }
    }
}
