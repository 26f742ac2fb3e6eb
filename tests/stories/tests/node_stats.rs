//! User story: an operator reads a node's resource usage from its kubelet API.
//!
//! Real etcd, API server, controller-manager, containerd + runc and `noded`
//! (one node). A pod burns CPU (`while :; do :; done`, capped at 300m) and
//! another sleeps. With an administrator's client certificate the operator
//! reads the node's `/metrics/resource` (what metrics-server scrapes) and
//! `/stats/summary` on the port the Node reports: the burner's CPU grows
//! between two reads and is far above the sleeper's, working sets are above
//! zero, and `/metrics` has counted both pod starts. A user without RBAC gets
//! the kubelet's 403; one bound to `system:kubelet-api-admin` may read.
//!
//! Needs root. Build first: `cargo build -p sluice-apiserver -p sluice-controllers
//! -p sluice-noded -p sluice-cni -p sluice-pause` (or `cargo xtask test`).

use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use serde_json::{json, Value};
use sluice_tests::controllers::eventually;
use sluice_tests::node::SingleNode;

const NODE: &str = "stats-node-1";
/// A cluster CIDR no other test on this machine uses (pod routes land in the root namespace).
const CLUSTER_CIDR: &str = "10.217.48.0/20";

/// A client for the node's HTTPS port with the client certificate of `kubeconfig`.
async fn kubelet_client(kubeconfig: &Path, port: i32) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kube config");
    cfg.cluster_url = format!("https://127.0.0.1:{port}").parse().expect("url");
    cfg.default_retry = false;
    kube::Client::try_from(cfg).expect("client")
}

/// GET `path`: status code and body.
async fn get(client: &kube::Client, path: &str) -> (u16, String) {
    let req = http::Request::get(path).body(Vec::new()).expect("request");
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("the node answers");
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// The value and timestamp of the sample `series{labels}` in Prometheus text.
fn sample(text: &str, series: &str) -> Option<(f64, Option<i64>)> {
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))?;
    let mut fields = line[series.len()..].split_whitespace();
    let value = fields.next()?.parse().ok()?;
    Some((value, fields.next().and_then(|t| t.parse().ok())))
}

fn container_series(name: &str, pod: &str) -> String {
    format!("{name}{{container=\"main\",namespace=\"default\",pod=\"{pod}\"}}")
}

fn summary_container<'a>(summary: &'a Value, pod: &str) -> &'a Value {
    summary["pods"]
        .as_array()
        .and_then(|pods| pods.iter().find(|p| p["podRef"]["name"] == pod))
        .map(|p| &p["containers"][0])
        .unwrap_or_else(|| panic!("pod {pod} in the summary: {summary}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_cpu_and_memory_of_a_node_its_pods_and_containers() {
    let node = SingleNode::start(NODE, CLUSTER_CIDR).await;
    node.create_pod(json!({
        "metadata": {"name": "burner"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": "busybox:1.35.0",
                "command": ["sh", "-c", "while :; do :; done"],
                "resources": {"limits": {"cpu": "300m", "memory": "64Mi"}},
            }],
        }
    }))
    .await;
    node.create_pod(json!({
        "metadata": {"name": "sleeper"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox:1.35.0", "command": ["sleep", "3600"]}],
        }
    }))
    .await;
    node.wait_running_ready("burner", Duration::from_secs(60)).await;
    node.wait_running_ready("sleeper", Duration::from_secs(60)).await;

    let nodes: Api<Node> = Api::all(node.client.clone());
    let port = nodes
        .get(NODE)
        .await
        .unwrap()
        .status
        .and_then(|s| s.daemon_endpoints?.kubelet_endpoint)
        .map(|e| e.port)
        .expect("the node reports its kubelet port");
    let apiserver = &node.control_plane.apiserver;
    let admin = kubelet_client(&apiserver.user_kubeconfig("stats-admin", &["system:masters"]), port).await;

    // /metrics/resource: the kubelet's series, stamped in milliseconds.
    let (code, first) = get(&admin, "/metrics/resource").await;
    assert_eq!(code, 200, "{first}");
    let burner_cpu = container_series("container_cpu_usage_seconds_total", "burner");
    let (burned_before, stamp) = sample(&first, &burner_cpu).unwrap_or_else(|| panic!("{burner_cpu} in\n{first}"));
    assert!(
        stamp.is_some_and(|t| t > 1_600_000_000_000),
        "a millisecond timestamp: {first}"
    );
    for series in [
        "node_cpu_usage_seconds_total",
        "node_memory_working_set_bytes",
        "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"burner\"}",
        "pod_memory_working_set_bytes{namespace=\"default\",pod=\"sleeper\"}",
        &container_series("container_start_time_seconds", "sleeper"),
        "scrape_error",
    ] {
        assert!(sample(&first, series).is_some(), "{series} in\n{first}");
    }
    assert_eq!(sample(&first, "scrape_error").map(|s| s.0), Some(0.0), "{first}");
    let (_, summary_first) = get(&admin, "/stats/summary").await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, second) = get(&admin, "/metrics/resource").await;
    let (burned_after, _) = sample(&second, &burner_cpu).expect("burner CPU");
    let (slept, _) = sample(
        &second,
        &container_series("container_cpu_usage_seconds_total", "sleeper"),
    )
    .expect("sleeper CPU");
    assert!(
        burned_after > burned_before + 0.3,
        "the burner used CPU in 3 s: {burned_before} -> {burned_after}"
    );
    assert!(
        burned_after > slept * 10.0,
        "burner {burned_after} s vs sleeper {slept} s"
    );
    for pod in ["burner", "sleeper"] {
        let (bytes, _) = sample(&second, &container_series("container_memory_working_set_bytes", pod)).expect("memory");
        assert!(bytes > 0.0, "{pod}'s working set: {bytes}");
    }

    // /stats/summary: the same usage in statsapi's JSON, with rates once read twice.
    let (code, text) = get(&admin, "/stats/summary").await;
    assert_eq!(code, 200, "{text}");
    let summary: Value = serde_json::from_str(&text).expect("JSON");
    let first: Value = serde_json::from_str(&summary_first).expect("JSON");
    assert_eq!(summary["node"]["nodeName"], NODE);
    assert!(
        summary["node"]["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0),
        "{summary}"
    );
    assert!(
        summary["node"]["memory"]["workingSetBytes"].as_u64() > Some(0),
        "{summary}"
    );
    let burner = summary_container(&summary, "burner");
    let sleeper = summary_container(&summary, "sleeper");
    assert!(
        burner["cpu"]["usageCoreNanoSeconds"].as_u64()
            > summary_container(&first, "burner")["cpu"]["usageCoreNanoSeconds"].as_u64(),
        "{burner}"
    );
    let burning = burner["cpu"]["usageNanoCores"]
        .as_u64()
        .expect("a rate after two reads");
    assert!(
        burning > 100_000_000 && burning > sleeper["cpu"]["usageNanoCores"].as_u64().unwrap_or(0) * 10,
        "burner {burner} vs sleeper {sleeper}"
    );
    assert!(burner["memory"]["workingSetBytes"].as_u64() > Some(0), "{burner}");

    // /metrics: the kubelet's own series.
    let (code, metrics) = get(&admin, "/metrics").await;
    assert_eq!(code, 200, "{metrics}");
    let starts = sample(&metrics, "kubelet_pod_start_duration_seconds_count").map(|s| s.0);
    assert!(starts >= Some(2.0), "both pod starts counted: {metrics}");
    assert!(
        sample(&metrics, "kubelet_pleg_relist_duration_seconds_count").is_some_and(|s| s.0 > 0.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "kubelet_running_pods").is_some_and(|s| s.0 >= 2.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "kubelet_running_containers{container_state=\"running\"}").is_some_and(|s| s.0 >= 2.0),
        "{metrics}"
    );

    // A user without RBAC is refused, as the kubelet refuses.
    let nobody = kubelet_client(&apiserver.user_kubeconfig("stats-nobody", &[]), port).await;
    assert_eq!(
        get(&nobody, "/metrics/resource").await,
        (
            403,
            "Forbidden (user=stats-nobody, verb=get, resource=nodes, subresource=metrics)".to_string()
        )
    );
    assert_eq!(
        get(&nobody, "/stats/summary").await,
        (
            403,
            "Forbidden (user=stats-nobody, verb=get, resource=nodes, subresource=stats)".to_string()
        )
    );

    // Bound to system:kubelet-api-admin, a monitoring user may read.
    let out = node
        .control_plane
        .kubectl()
        .args([
            "create",
            "clusterrolebinding",
            "stats-reader",
            "--clusterrole=system:kubelet-api-admin",
            "--user=stats-reader",
        ])
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reader_kubeconfig = apiserver.user_kubeconfig("stats-reader", &[]);
    // The API server's authorizer learns of the binding from its watch, a
    // moment after kubectl returns; noded, as the kubelet, keeps a denial
    // for 30 s. So wait until the API server itself says yes (as the user
    // would see with `kubectl auth can-i`) before asking the node.
    eventually(
        Duration::from_secs(10),
        "the API server allows the bound user",
        || async {
            let out = std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&reader_kubeconfig)
                .args(["auth", "can-i", "get", "nodes", "--subresource=stats"])
                .output()
                .expect("kubectl");
            (String::from_utf8_lossy(&out.stdout).trim() == "yes").then_some(())
        },
    )
    .await;
    let reader = kubelet_client(&reader_kubeconfig, port).await;
    let (code, text) = eventually(
        Duration::from_secs(10),
        "the bound user reads /stats/summary",
        || async {
            let answer = get(&reader, "/stats/summary").await;
            (answer.0 == 200).then_some(answer)
        },
    )
    .await;
    assert!(code == 200 && text.contains("\"nodeName\""), "{text}");
}
