//! No request is lost when pods go away: scale-down and rolling updates
//! under continuous load, across two nodes.
//!
//! `cargo xtask up --nodes 2`. The user runs a Deployment of 4 busybox httpd
//! pods spread over both nodes behind a NodePort Service. From a machine on
//! the nodes' network, `hey` keeps sending requests, each on a new
//! connection, to node 1's node port (pods on node 2 are reached through
//! node 1). Ten times in a row they scale to 2 and back to 4, then restart
//! the rollout and wait for it. Every request of every round is answered
//! with 200: no connection is refused, reset or left unanswered, although
//! pods on both nodes are deleted while traffic flows (each node takes a
//! deleted pod out of its maps before its containers are signalled, and
//! waits briefly for the other node to see the EndpointSlice change).
//!
//! Needs root and `hey`. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use sluice_tests::cluster::{wait_for, TestCluster};
use std::collections::BTreeSet;
use std::time::Duration;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 4
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
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
  ports: [{port: 80, targetPort: 8080, nodePort: 30005}]
"#;

#[test]
fn scale_down_and_rolling_updates_under_load_lose_no_request() {
    let cluster = TestCluster::up(2, &[]);
    cluster.apply(APP);
    let pods = cluster.wait_running("app=web", 4, Duration::from_secs(120));
    let nodes: BTreeSet<_> = pods.iter().filter_map(|p| p.node.clone()).collect();
    assert_eq!(nodes.len(), 2, "the pods are spread over both nodes: {pods:#?}");

    let client = cluster.client();
    let url = format!("http://{}:30005/", cluster.node_ip(1));
    let names: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
    let settled = wait_for(Duration::from_secs(30), || {
        let tally = client.tally(&url, 40);
        (tally.keys().cloned().collect::<BTreeSet<_>>() == names).then_some(())
    });
    assert!(
        settled.is_some(),
        "node 1's port answered by all 4 pods: {:?}",
        client.tally(&url, 40)
    );

    for round in 1..=10 {
        let load = client.load(&url, 4, 5);
        std::thread::sleep(Duration::from_millis(500));
        cluster.kubectl_ok(&["scale", "deployment/web", "--replicas=2"]);
        cluster.wait_running("app=web", 2, Duration::from_secs(60));
        cluster.kubectl_ok(&["scale", "deployment/web", "--replicas=4"]);
        cluster.wait_running("app=web", 4, Duration::from_secs(60));
        cluster.kubectl_ok(&["rollout", "restart", "deployment/web"]);
        cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
        let pods = cluster.wait_running("app=web", 4, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(500));
        let report = load.finish();
        println!(
            "round {round}: {} requests answered in {:.1?}, {} failed",
            report.ok(),
            report.duration,
            report.failed()
        );
        assert!(
            report.failed() == 0 && report.ok() > 100,
            "round {round}: every request under scale-down and rolling update is answered: {report:?}\n\
             datapath events: {}\n{}",
            datapath_events(&cluster),
            cluster.logs_tail()
        );
        let spread: BTreeSet<_> = pods.iter().filter_map(|p| p.node.clone()).collect();
        assert_eq!(spread.len(), 2, "round {round}: still on both nodes: {pods:#?}");
    }
}

/// Each node's datapath event counters (`bpftool map dump` of the pinned
/// `events` map), to tell drops from the kernel's or the pods' doing.
fn datapath_events(cluster: &TestCluster) -> String {
    (1..=2)
        .map(|i| {
            let node = cluster.node_name(i);
            let out = std::process::Command::new("bpftool")
                .args([
                    "-j",
                    "map",
                    "dump",
                    "pinned",
                    &format!("/sys/fs/bpf/sluice/{node}/events"),
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            format!("{node}: {out}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
