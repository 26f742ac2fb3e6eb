//! User story: `kubectl logs` of a pod running on a real node.
//!
//! Real etcd, API server, controller-manager (node IPAM), containerd + runc
//! with the local busybox image, and `noded` (its log endpoint on a port the
//! OS picks, reported in the Node status). A pod prints a greeting and then a
//! tick every 300 ms: the user reads it with kubectl and ctl, follows it, and
//! reads the previous instance of a container that crashed.
//!
//! Needs root. Build first: `cargo build -p sluice-apiserver -p sluice-controllers
//! -p sluice-noded -p sluice-cni -p sluice-pause -p sluice-ctl -p xtask` (or `cargo xtask test`).

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use sluice_tests::controllers::{eventually, ControllerManager};
use sluice_tests::node::{Containerd, Noded};
use sluice_tests::{workspace_bin, ControlPlane, Reaped};
use std::io::BufRead;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const NODE: &str = "logs-node-1";
/// A cluster CIDR no other test on this machine uses (pod routes land in the root namespace).
const CLUSTER_CIDR: &str = "10.213.64.0/20";

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("command runs"))
        .await
        .expect("join")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pod(name: &str, script: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox:1.35.0", "command": ["sh", "-c", script]}],
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_reads_and_follows_a_running_container() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let containerd = Containerd::start();
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-logs-story", &["--cluster-cidr", CLUSTER_CIDR]);
    let noded = Noded::start(NODE, cp.kubeconfig_path(), &containerd, &[]);

    // The node turns Ready and says where its log endpoint is.
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(Duration::from_secs(60), "the node Ready with its log port", || async {
        let node = nodes.get_opt(NODE).await.ok().flatten()?;
        let status = node.status?;
        let ready = status
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let port = status.daemon_endpoints?.kubelet_endpoint?.port;
        (ready && port > 0).then_some(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let script = "echo hello from $(hostname); i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done";
    pods.create(&PostParams::default(), &pod("talker", script))
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "talker Running", || async {
        let p = pods.get("talker").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;

    let kubectl = |args: &[&str]| {
        let mut c = cp.kubectl();
        c.args(["--request-timeout=20s", "logs"]).args(args);
        c
    };
    let first = eventually(
        Duration::from_secs(20),
        "the greeting and a tick in kubectl logs",
        || async {
            let out = run(kubectl(&["talker"])).await;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && text.contains("tick 1\n")).then_some(text)
        },
    )
    .await;
    assert!(first.starts_with("hello from talker\ntick 0\n"), "{first:?}");

    let out = run({
        let mut c = Command::new(workspace_bin("ctl"));
        c.arg("--kubeconfig")
            .arg(cp.kubeconfig_path())
            .args(["logs", "talker", "--tail", "1"]);
        c
    })
    .await;
    let last = stdout(&out);
    assert!(last.starts_with("tick ") && last.lines().count() == 1, "{last:?}");

    // Following shows new ticks as the container prints them.
    let mut follower = Reaped(
        kubectl(&["-f", "talker", "--tail=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = follower.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let tick = |line: String| {
        line.strip_prefix("tick ")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("not a tick: {line:?}"))
    };
    let a = tick(rx.recv_timeout(Duration::from_secs(15)).expect("first followed line"));
    let b = tick(
        rx.recv_timeout(Duration::from_secs(15))
            .expect("a new line while following"),
    );
    let c = tick(
        rx.recv_timeout(Duration::from_secs(15))
            .expect("another new line while following"),
    );
    assert!(a < b && b < c, "ticks arrive in order as printed: {a} {b} {c}");
    drop(follower);

    // A container that crashed: its previous instance's output is still there.
    pods.create(
        &PostParams::default(),
        &pod("crasher", "echo run $(date +%s%N); sleep 0.5; exit 3"),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(60), "crasher restarted", || async {
        let p = pods.get("crasher").await.ok()?;
        let restarts = p.status?.container_statuses?.first()?.restart_count;
        (restarts >= 1).then_some(())
    })
    .await;
    let previous = stdout(&run(kubectl(&["crasher", "--previous"])).await);
    assert!(
        previous.starts_with("run ") && previous.lines().count() == 1,
        "{previous:?}"
    );
    drop(noded);
}
