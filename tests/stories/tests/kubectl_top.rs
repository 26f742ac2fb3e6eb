//! A user sees what the cluster's nodes and pods use with `kubectl top`, as
//! on Kubernetes with metrics-server.
//!
//! `cargo xtask up --nodes 1` starts the metrics server beside the other
//! control-plane processes; it registers the APIService
//! `v1beta1.metrics.k8s.io`, which becomes Available. In a namespace of its
//! own the user runs a busybox pod that burns CPU and one that sleeps, then:
//! * within a minute `kubectl top pods` lists both, the burner's CPU above
//!   the sleeper's, and `kubectl top pod burner --containers` names its
//!   container;
//! * `kubectl top nodes` shows the node with CPU and memory;
//! * `kubectl get --raw /apis/metrics.k8s.io/v1beta1/namespaces/<ns>/pods/burner`
//!   is a PodMetrics with the container's usage and a window;
//! * jane, without RBAC, is refused with Kubernetes' 403 text; once she is
//!   bound to `view` in the namespace (which aggregates
//!   `system:aggregated-metrics-reader`), `kubectl top pods` works for her.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster, BUSYBOX_IMAGE};
use sluice_tests::{run_ok, workspace_bin};

const NS: &str = "top-story";

static CACHE: AtomicU32 = AtomicU32::new(0);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// kubectl with `kubeconfig` and a discovery cache of its own: kubectl
/// keeps discovery for hours, and the metrics API appears after the first
/// call of the story.
fn kubectl_as(cluster: &TestCluster, kubeconfig: &Path, args: &[&str]) -> Output {
    let n = CACHE.fetch_add(1, Ordering::SeqCst);
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cluster.home().join(format!("kubectl-cache-{n}")))
        .args(args)
        .output()
        .expect("run kubectl")
}

/// Millicores from `kubectl top`'s CPU column (`998m`, `1`).
fn millicores(s: &str) -> Option<u64> {
    match s.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => s.parse::<u64>().ok().map(|c| c * 1000),
    }
}

/// Rows of `kubectl top ... --no-headers`, split on whitespace.
fn rows(out: &Output) -> Vec<Vec<String>> {
    text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .filter(|r: &Vec<String>| !r.is_empty())
        .collect()
}

fn user_kubeconfig(cluster: &TestCluster, user: &str) -> PathBuf {
    let admin = std::fs::read_to_string(cluster.kubeconfig()).expect("admin kubeconfig");
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .expect("server in the admin kubeconfig")
        .trim()
        .to_string();
    let path = cluster.home().join(format!("{user}.kubeconfig"));
    run_ok(
        Command::new(workspace_bin("apiserver"))
            .args(["kubeconfig", "--cert-dir"])
            .arg(cluster.home().join("pki"))
            .args(["--server", &server, "--user", user, "--out"])
            .arg(&path),
    );
    path
}

#[test]
fn kubectl_top_shows_the_busy_pod_above_the_sleeping_one() {
    let cluster = TestCluster::up(1, &[]);
    let admin = cluster.kubeconfig();
    let node = cluster.node_name(1);

    // The metrics server registered itself and the aggregator checked it.
    let available = wait_for(Duration::from_secs(90), || {
        let out = cluster.kubectl(&[
            "get",
            "apiservice",
            "v1beta1.metrics.k8s.io",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
        ]);
        (text(&out.stdout) == "True").then_some(())
    });
    assert!(
        available.is_some(),
        "APIService v1beta1.metrics.k8s.io never became Available: {}\n{}",
        cluster.kubectl_ok(&["get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "yaml"]),
        cluster.logs_tail()
    );

    cluster.kubectl_ok(&["create", "namespace", NS]);
    cluster.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: burner
  namespace: {NS}
  labels: {{app: burner}}
spec:
  containers:
  - name: burn
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "while :; do :; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: sleeper
  namespace: {NS}
  labels: {{app: sleeper}}
spec:
  containers:
  - name: nap
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
"#
    ));
    cluster.kubectl_ok(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "pod/burner",
        "pod/sleeper",
        "--timeout=120s",
    ]);

    // kubectl top pods: both pods, the burner above the sleeper.
    let mut last = String::new();
    let usage = wait_for(Duration::from_secs(75), || {
        let out = kubectl_as(&cluster, &admin, &["top", "pods", "-n", NS, "--no-headers"]);
        last = format!("{}{}", text(&out.stdout), text(&out.stderr));
        let rows = rows(&out);
        let cpu = |pod: &str| {
            rows.iter()
                .find(|r| r.first().map(String::as_str) == Some(pod))
                .and_then(|r| millicores(r.get(1)?))
        };
        Some((cpu("burner")?, cpu("sleeper")?))
    });
    let Some((burner, sleeper)) = usage else {
        panic!(
            "kubectl top pods never listed both pods; last answer:\n{last}\n{}",
            cluster.logs_tail()
        );
    };
    assert!(
        burner > sleeper && burner >= 100,
        "the burner ({burner}m) should use more CPU than the sleeper ({sleeper}m):\n{last}"
    );
    let out = kubectl_as(
        &cluster,
        &admin,
        &["top", "pod", "burner", "-n", NS, "--containers", "--no-headers"],
    );
    let containers = rows(&out);
    assert_eq!(
        containers.first().map(|r| (r[0].as_str(), r[1].as_str())),
        Some(("burner", "burn")),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // kubectl top nodes: the node with CPU and memory.
    let out = kubectl_as(&cluster, &admin, &["top", "nodes", "--no-headers"]);
    let nodes = rows(&out);
    let row = nodes.iter().find(|r| r[0] == node).unwrap_or_else(|| {
        panic!(
            "kubectl top nodes lacks {node}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert!(millicores(&row[1]).is_some_and(|m| m > 0), "node CPU: {row:?}");
    assert!(row[3].ends_with("Mi") || row[3].ends_with("Gi"), "node memory: {row:?}");

    // The raw API: a PodMetrics.
    let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods/burner");
    let raw: Value = serde_json::from_str(&cluster.kubectl_ok(&["get", "--raw", &path])).expect("PodMetrics JSON");
    assert_eq!(raw["kind"], "PodMetrics", "{raw}");
    assert_eq!(raw["apiVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(raw["metadata"]["name"], "burner");
    assert_eq!(raw["metadata"]["labels"]["app"], "burner");
    assert_eq!(raw["containers"][0]["name"], "burn");
    assert!(raw["containers"][0]["usage"]["cpu"].is_string(), "{raw}");
    assert!(raw["containers"][0]["usage"]["memory"].is_string(), "{raw}");
    assert!(raw["window"].as_str().is_some_and(|w| w.ends_with('s')), "{raw}");
    let nodes: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"]))
            .expect("NodeMetricsList JSON");
    assert_eq!(nodes["kind"], "NodeMetricsList");
    assert_eq!(nodes["items"][0]["metadata"]["name"], node.as_str());

    // jane has no RBAC: 403 with Kubernetes' text.
    let jane = user_kubeconfig(&cluster, "jane");
    let out = kubectl_as(&cluster, &jane, &["get", "--raw", &path]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "pods.metrics.k8s.io \"burner\" is forbidden: User \"jane\" cannot get resource \"pods\" in API group \"metrics.k8s.io\" in the namespace \"{NS}\""
        )),
        "{err}"
    );
    let out = kubectl_as(&cluster, &jane, &["top", "pods", "-n", NS]);
    assert!(!out.status.success(), "jane's top pods: {}", text(&out.stdout));
    assert!(text(&out.stderr).contains("forbidden"), "{}", text(&out.stderr));

    // Bound to view in the namespace, she sees the pods' usage.
    cluster.kubectl_ok(&[
        "create",
        "rolebinding",
        "jane-view",
        "--clusterrole=view",
        "--user=jane",
        "-n",
        NS,
    ]);
    let mut last = String::new();
    let seen = wait_for(Duration::from_secs(45), || {
        let out = kubectl_as(&cluster, &jane, &["top", "pods", "-n", NS, "--no-headers"]);
        last = format!("{}{}", text(&out.stdout), text(&out.stderr));
        (out.status.success() && rows(&out).iter().any(|r| r[0] == "burner")).then_some(())
    });
    assert!(seen.is_some(), "jane with view still cannot top pods: {last}");
}
