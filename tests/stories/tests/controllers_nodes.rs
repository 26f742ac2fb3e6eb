//! User stories about nodes: each gets its own pod CIDR, and a node whose
//! Lease stops being renewed is marked unreachable, its pods are evicted
//! after their toleration and come back on other nodes.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use sluice_tests::controllers::{
    deployment, eventually, pod_available, pods_with, start_nodes, start_scheduler, ControllerManager,
};
use sluice_tests::ControlPlane;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_heartbeating_has_its_pods_evicted_and_rescheduled() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let kubeconfig = cp.kubeconfig_path();
    let _cm = ControllerManager::start(
        kubeconfig,
        "cm-1",
        &[
            "--default-eviction-toleration-seconds=2",
            "--cluster-cidr=10.200.0.0/16",
        ],
    );
    let _scheduler = start_scheduler(kubeconfig);
    // First only the node that will die, so every pod lands there.
    let mut doomed = start_nodes(&client, kubeconfig, "doomed", 1).await;
    let labels = BTreeMap::from([("app", "svc")]);
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment("svc", 3, "svc:v1")).unwrap(),
        )
        .await
        .unwrap();
    let first: Vec<String> = eventually(WAIT, "3 running pods on doomed-0", || async {
        let pods = pods_with(&client, "default", &labels).await;
        let ok = pods.len() == 3
            && pods
                .iter()
                .all(|p| pod_available(p) && p.spec.as_ref().unwrap().node_name.as_deref() == Some("doomed-0"));
        ok.then(|| pods.iter().map(|p| p.name_any()).collect())
    })
    .await;
    let _healthy = start_nodes(&client, kubeconfig, "healthy", 2).await;

    // Node IPAM: every node gets a distinct /24 of the cluster CIDR.
    let node_api: Api<Node> = Api::all(client.clone());
    let cidrs = eventually(WAIT, "pod CIDRs on all nodes", || async {
        let nodes = node_api.list(&ListParams::default()).await.ok()?.items;
        let cidrs: Vec<String> = nodes.iter().filter_map(|n| n.spec.as_ref()?.pod_cidr.clone()).collect();
        (cidrs.len() == 3).then_some(cidrs)
    })
    .await;
    assert_eq!(
        cidrs.iter().collect::<HashSet<_>>().len(),
        3,
        "distinct CIDRs: {cidrs:?}"
    );
    assert!(
        cidrs.iter().all(|c| c.starts_with("10.200.") && c.ends_with("/24")),
        "{cidrs:?}"
    );

    // The node dies: its Lease is no longer renewed.
    doomed.kill();
    let node = eventually(WAIT, "doomed-0 tainted unreachable", || async {
        let n = node_api.get("doomed-0").await.ok()?;
        let tainted = n
            .spec
            .as_ref()?
            .taints
            .as_ref()?
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute");
        tainted.then_some(n)
    })
    .await;
    let ready = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "Unknown");

    // After the (shortened) default toleration its pods are evicted and replaced on the healthy nodes.
    eventually(WAIT, "pods of doomed-0 replaced on healthy nodes", || async {
        let pods = pods_with(&client, "default", &labels).await;
        let live: Vec<_> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let ok = live.len() == 3
            && live.iter().all(|p| {
                pod_available(p)
                    && p.spec
                        .as_ref()
                        .unwrap()
                        .node_name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("healthy-"))
            })
            && first.iter().all(|n| live.iter().all(|p| p.name_any() != *n));
        ok.then_some(())
    })
    .await;
}
