//! User story: a node joins, a Pod created in the API runs in containerd.
//!
//! Real etcd, API server, controller-manager (node IPAM gives the podCIDR),
//! containerd + runc with the local images, `noded` and `sluice-cni`. The
//! user creates a ConfigMap and a Pod bound to the node; they see the Node
//! Ready with a podCIDR, the Pod Running and Ready with an IP from it, the
//! container serving the ConfigMap value over HTTP on that IP, a killed
//! container restarted with its restartCount, and on delete the Pod gone
//! from the API and its sandbox gone from containerd.
//!
//! Needs root. Build first: `cargo build -p sluice-apiserver -p sluice-controllers
//! -p sluice-noded -p sluice-cni -p sluice-pause -p xtask` (or `cargo xtask test`).

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use sluice_tests::controllers::{eventually, ControllerManager};
use sluice_tests::node::{Containerd, Noded};
use sluice_tests::ControlPlane;
use std::process::Command;
use std::time::Duration;

const NODE: &str = "node-story-1";
/// A cluster CIDR no other test on this machine uses (pod routes land in the root namespace).
const CLUSTER_CIDR: &str = "10.213.128.0/17";

fn containers_in(containerd: &Containerd) -> String {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&containerd.socket)
        .args(["-n", "k8s.io", "containers", "ls", "-q"])
        .output()
        .expect("ctr");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn http_get(ip: &str) -> Option<String> {
    let out = Command::new("curl").args(["-s", "--max-time", "2", &format!("http://{ip}:8080/")]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, bits) = cidr.split_once('/').expect("CIDR");
    let (net, ip): (std::net::Ipv4Addr, std::net::Ipv4Addr) = (net.parse().unwrap(), ip.parse().unwrap());
    let mask = u32::MAX.checked_shl(32 - bits.parse::<u32>().unwrap()).unwrap_or(0);
    u32::from(net) & mask == u32::from(ip) & mask
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_created_in_the_api_runs_in_containerd_and_reports_running_with_its_ip() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let containerd = Containerd::start();
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-node-story", &["--cluster-cidr", CLUSTER_CIDR]);
    let _noded = Noded::start(NODE, cp.kubeconfig_path(), &containerd, &[]);

    // The node registers, gets a podCIDR from node IPAM and turns Ready.
    let nodes: Api<Node> = Api::all(client.clone());
    let cidr = eventually(Duration::from_secs(60), "the node to be Ready with a podCIDR", || async {
        let node = nodes.get_opt(NODE).await.ok().flatten()?;
        let ready = node.status.as_ref()?.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then(|| node.spec.as_ref()?.pod_cidr.clone()).flatten()
    })
    .await;
    assert!(cidr.starts_with("10.213."), "podCIDR {cidr} from the cluster CIDR");
    let node = nodes.get(NODE).await.unwrap();
    let capacity = node.status.as_ref().unwrap().capacity.clone().unwrap();
    assert!(capacity.contains_key("cpu") && capacity.contains_key("memory") && capacity.contains_key("pods"));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    assert!(leases.get_opt(NODE).await.unwrap().is_some(), "node lease exists");

    // A ConfigMap and a Pod reading it, bound to the node.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    configmaps
        .create(&PostParams::default(), &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "greeting"}, "data": {"GREETING": "hello from sluice"}
        })).unwrap())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "httpd",
                "image": "sluice.local/busybox:latest",
                "command": ["sh", "-c", "mkdir -p /www && echo \"$GREETING\" > /www/index.html && exec httpd -f -p 8080 -h /www"],
                "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "greeting", "key": "GREETING"}}}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
            }]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let running = eventually(Duration::from_secs(60), "the pod to be Running and Ready with an IP", || async {
        let pod = pods.get("web").await.ok()?;
        let status = pod.status.as_ref()?;
        (status.phase.as_deref() == Some("Running") && status.pod_ip.is_some() && pod_ready(&pod)).then_some(pod)
    })
    .await;
    let status = running.status.unwrap();
    let ip = status.pod_ip.unwrap();
    assert!(in_cidr(&ip, &cidr), "pod IP {ip} inside the node's podCIDR {cidr}");
    assert_eq!(status.pod_ips.unwrap()[0].ip, ip);
    let container = &status.container_statuses.unwrap()[0];
    assert!(container.ready && container.state.as_ref().unwrap().running.is_some());
    assert!(!container.image_id.is_empty(), "imageID reported");
    assert_eq!(http_get(&ip).as_deref(), Some("hello from sluice"), "the pod serves the ConfigMap value");

    // A killed container is restarted and the restart is counted.
    let exec = Command::new("ctr")
        .arg("--address")
        .arg(&containerd.socket)
        .args(["-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL"])
        .arg(container.container_id.as_deref().unwrap().trim_start_matches("containerd://"))
        .output()
        .unwrap();
    assert!(exec.status.success(), "kill the container: {}", String::from_utf8_lossy(&exec.stderr));
    eventually(Duration::from_secs(30), "restartCount 1 and Ready again", || async {
        let pod = pods.get("web").await.ok()?;
        let restarts = pod.status.as_ref()?.container_statuses.as_ref()?.first()?.restart_count;
        (restarts == 1 && pod_ready(&pod)).then_some(())
    })
    .await;
    assert_eq!(http_get(&ip).as_deref(), Some("hello from sluice"), "same IP after the restart");

    // Delete: the pod leaves the API after its containers stopped; containerd is empty.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(30), "the pod to be gone from the API", || async {
        matches!(pods.get_opt("web").await, Ok(None)).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "no containers left in containerd", || async {
        containers_in(&containerd).is_empty().then_some(())
    })
    .await;
}
