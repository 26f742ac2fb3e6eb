//! User story: the node daemon restarts (crash, upgrade) and the pods do not notice.
//!
//! Real etcd, API server, controller-manager, containerd + runc, `noded` and
//! `sluice-cni`. A pod runs an echo server with a readiness probe; the user
//! holds a TCP connection to it. `noded` is killed (SIGKILL by pid) and
//! started again: the connection keeps working throughout, the pod keeps
//! its container, restartCount, IP and Ready condition (no flap while the
//! new noded re-learns its probes), and the new noded still starts and
//! deletes pods.
//!
//! Needs root. Build first: `cargo build -p sluice-apiserver -p sluice-controllers
//! -p sluice-noded -p sluice-cni -p sluice-pause -p xtask` (or `cargo xtask test`).

use kube::api::DeleteParams;
use serde_json::json;
use sluice_tests::controllers::eventually;
use sluice_tests::node::{pod_ready, SingleNode};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Pod routes land in the root network namespace: a cluster CIDR no other test file uses.
const CLUSTER_CIDR: &str = "10.213.192.0/18";

/// A busybox TCP echo server on 9000, Ready (tcpSocket probe) 3 s after it starts.
fn echo_pod(name: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "echo",
                "image": "busybox:1.35.0",
                "command": ["nc", "-ll", "-p", "9000", "-e", "cat"],
                "readinessProbe": {"tcpSocket": {"port": 9000}, "initialDelaySeconds": 3, "periodSeconds": 1}
            }]
        }
    })
}

/// Send one line on the connection and read it back.
fn round_trip(reader: &mut BufReader<TcpStream>, line: &str) -> String {
    reader
        .get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .expect("write on the long-lived connection");
    let mut echoed = String::new();
    reader
        .read_line(&mut echoed)
        .expect("read on the long-lived connection");
    echoed.trim_end().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_noded_keeps_pods_running_and_their_connections_open() {
    let mut node = SingleNode::start("node-restart-1", CLUSTER_CIDR).await;
    node.create_pod(echo_pod("echo")).await;
    let before = node.wait_running_ready("echo", Duration::from_secs(60)).await;
    let status = before.status.clone().unwrap();
    let ip = status.pod_ip.clone().unwrap();
    let container = status.container_statuses.clone().unwrap()[0].clone();
    let runtime_objects = node.containers();

    let stream = TcpStream::connect_timeout(&format!("{ip}:9000").parse().unwrap(), Duration::from_secs(2))
        .expect("connect to the pod");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut conn = BufReader::new(stream);
    assert_eq!(round_trip(&mut conn, "before"), "before");

    // noded crashes; the pod and the connection do not care.
    let old_pid = node.noded.pid().unwrap();
    node.noded.kill();
    assert_eq!(round_trip(&mut conn, "while noded is down"), "while noded is down");
    node.noded.start_again();
    assert_ne!(node.noded.pid(), Some(old_pid));
    eventually(Duration::from_secs(30), "the new noded's pod loop started", || async {
        (node.noded.log().matches("pod loop started").count() == 2).then_some(())
    })
    .await;

    // For longer than the probe's initial delay and several relists, the pod
    // stays exactly as it was: same container, restarts, IP, and Ready.
    let pods = node.pods();
    for _ in 0..25 {
        let pod = pods.get("echo").await.unwrap();
        let now = pod.status.clone().unwrap();
        let current = now.container_statuses.clone().unwrap()[0].clone();
        assert!(pod_ready(&pod), "Ready flapped after the noded restart: {now:?}");
        assert_eq!(
            current.container_id, container.container_id,
            "the container was not replaced"
        );
        assert_eq!(current.restart_count, container.restart_count);
        assert_eq!(now.pod_ip.as_deref(), Some(ip.as_str()));
        assert_eq!(now.start_time, status.start_time);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        node.noded.is_running(),
        "noded still running:\n{}",
        node.noded.log_tail(40)
    );
    assert_eq!(
        node.containers(),
        runtime_objects,
        "same sandbox and containers in containerd"
    );
    assert_eq!(round_trip(&mut conn, "after"), "after");

    // The restarted noded runs new pods and removes old ones.
    node.create_pod(echo_pod("fresh")).await;
    node.wait_running_ready("fresh", Duration::from_secs(60)).await;
    for name in ["echo", "fresh"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually(
        Duration::from_secs(30),
        "both pods gone and containerd empty",
        || async {
            let list = pods.list(&Default::default()).await.ok()?;
            (list.items.is_empty() && node.containers().is_empty()).then_some(())
        },
    )
    .await;
}
