//! User story: a Service's EndpointSlices (and legacy Endpoints) follow its
//! pods — addresses appear when pods get IPs, readiness flips are reflected,
//! named target ports are resolved.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_tests::controllers::{deployment, eventually, start_nodes, start_scheduler, ControllerManager};
use sluice_tests::ControlPlane;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);

async fn slices(client: &kube::Client) -> Vec<EndpointSlice> {
    Api::<EndpointSlice>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap()
        .items
}

/// (pod name, ready) of every endpoint across the Service's slices.
async fn endpoints_by_pod(client: &kube::Client) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = slices(client)
        .await
        .iter()
        .flat_map(|s| s.endpoints.clone().unwrap_or_default())
        .map(|e| {
            (
                e.target_ref.and_then(|r| r.name).unwrap_or_default(),
                e.conditions.and_then(|c| c.ready).unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slices_follow_pod_readiness() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _scheduler = start_scheduler(cp.kubeconfig_path());
    let _nodes = start_nodes(&client, cp.kubeconfig_path(), "node", 1).await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-1", &[]);

    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    Api::<Deployment>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment("web", 3, "web:v1")).unwrap(),
        )
        .await
        .unwrap();

    let eps = eventually(WAIT, "three ready endpoints", || async {
        let eps = endpoints_by_pod(&client).await;
        (eps.len() == 3 && eps.iter().all(|(_, ready)| *ready)).then_some(eps)
    })
    .await;
    let all = slices(&client).await;
    assert_eq!(all.len(), 1);
    let slice = &all[0];
    assert_eq!(
        slice
            .labels()
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(slice.address_type, "IPv4");
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("http"), Some(8080)),
        "named targetPort resolved to the container port"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    for e in slice.endpoints.as_ref().unwrap() {
        let pod = pods
            .get(e.target_ref.as_ref().unwrap().name.as_ref().unwrap())
            .await
            .unwrap();
        assert_eq!(e.addresses, vec![pod.status.as_ref().unwrap().pod_ip.clone().unwrap()]);
        assert_eq!(e.node_name.as_deref(), Some("node-0"));
    }
    assert_eq!(slice.owner_references()[0].kind, "Service");

    // One pod stops being ready: its endpoint is kept but not ready.
    let (sick, _) = &eps[0];
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    // Stop the stand-in kubelet from "fixing" it: it only touches pods that are not Running.
    pods.patch_status(
        sick,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}]}}),
        ),
    )
    .await
    .unwrap();
    eventually(WAIT, "endpoint of the unready pod not ready", || async {
        let eps = endpoints_by_pod(&client).await;
        let ready: Vec<bool> = eps.iter().map(|(_, r)| *r).collect();
        (eps.len() == 3 && eps.iter().any(|(n, r)| n == sick && !r) && ready.iter().filter(|r| **r).count() == 2)
            .then_some(())
    })
    .await;

    // The legacy Endpoints object agrees.
    eventually(
        WAIT,
        "legacy Endpoints with 2 ready and 1 not ready address",
        || async {
            let ep = Api::<Endpoints>::namespaced(client.clone(), NS)
                .get_opt("web")
                .await
                .ok()??;
            let subsets = ep.subsets.unwrap_or_default();
            let ready: usize = subsets
                .iter()
                .map(|s| s.addresses.as_ref().map_or(0, |a| a.len()))
                .sum();
            let not_ready: usize = subsets
                .iter()
                .map(|s| s.not_ready_addresses.as_ref().map_or(0, |a| a.len()))
                .sum();
            (ready == 2 && not_ready == 1 && subsets[0].ports.as_ref()?[0].port == 8080).then_some(())
        },
    )
    .await;
}
