//! User story: a platform engineer steers pods with nodeSelector, node affinity
//! (required and preferred, label expressions and node-name fields), taints and
//! tolerations, cordoning and host ports, and sees kube-scheduler's placements and
//! FailedScheduling messages.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use sluice_tests::scheduling::{
    create_pods, failed_scheduling_events, pod, wait_bound, wait_for, NodeSim, SchedulerProcess,
};
use sluice_tests::ControlPlane;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_affinity_taints_cordons_and_host_ports() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let kc = cp.kubeconfig_path();
    let base = ["--cpu", "4", "--memory", "8Gi"];
    let _a = NodeSim::start(
        kc,
        &[&["--nodes", "2", "--name-prefix", "a", "--label", "zone=a"][..], &base].concat(),
    )
    .await;
    let _gpu = NodeSim::start(
        kc,
        &[
            &[
                "--nodes",
                "2",
                "--name-prefix",
                "gpu",
                "--label",
                "zone=b",
                "--taint",
                "dedicated=gpu:NoSchedule",
                "--synthetic-pod-cidr",
                "10.201.0.0/16",
            ][..],
            &base,
        ]
        .concat(),
    )
    .await;
    let _spot = NodeSim::start(
        kc,
        &[
            &[
                "--nodes",
                "1",
                "--name-prefix",
                "spot",
                "--label",
                "zone=c",
                "--taint",
                "spot=true:PreferNoSchedule",
                "--synthetic-pod-cidr",
                "10.202.0.0/16",
            ][..],
            &base,
        ]
        .concat(),
    )
    .await;
    let _scheduler = SchedulerProcess::start(kc, "sched-1", &[]);
    let t = Duration::from_secs(30);

    let required = |key: &str, op: &str, values: &[&str]| {
        json!({ "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{ "matchExpressions": [{ "key": key, "operator": op, "values": values }] }] } } })
    };
    let gpu_toleration = json!([{ "key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule" }]);
    create_pods(
        &client,
        "default",
        &[
            pod("selector-a", "100m", "64Mi", json!({ "nodeSelector": { "zone": "a" } })),
            pod("wants-gpu-untolerated", "100m", "64Mi", json!({ "affinity": required("zone", "In", &["b"]) })),
            pod("wants-gpu-tolerated", "100m", "64Mi", json!({ "affinity": required("zone", "In", &["b"]), "tolerations": gpu_toleration })),
            pod("prefers-c-tolerates-spot", "100m", "64Mi", json!({
                "affinity": { "nodeAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
                    { "weight": 100, "preference": { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["c"] }] } }] } },
                "tolerations": [{ "key": "spot", "operator": "Exists", "effect": "PreferNoSchedule" }]
            })),
            pod("pinned-by-name", "100m", "64Mi", json!({ "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["a-1"] }] }] } } } })),
        ],
    )
    .await;

    assert!(wait_bound(&client, "default", "selector-a", t).await.starts_with("a-"));
    assert!(wait_bound(&client, "default", "wants-gpu-tolerated", t)
        .await
        .starts_with("gpu-"));
    assert_eq!(
        wait_bound(&client, "default", "prefers-c-tolerates-spot", t).await,
        "spot-0"
    );
    assert_eq!(wait_bound(&client, "default", "pinned-by-name", t).await, "a-1");

    // Without the toleration the gpu nodes are off limits, and the message says so per node.
    let ev = wait_for(t, "FailedScheduling for wants-gpu-untolerated", || async {
        failed_scheduling_events(&client, "default", "wants-gpu-untolerated")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        ev.message.as_deref(),
        Some(
            "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, \
             3 node(s) didn't match Pod's node affinity/selector. preemption: 0/5 nodes are available: \
             5 Preemption is not helpful for scheduling."
        )
    );

    // PreferNoSchedule: pods that may go to zone a or c but do not tolerate spot avoid it.
    let a_or_c = || json!({ "affinity": required("zone", "In", &["a", "c"]) });
    create_pods(
        &client,
        "default",
        &(0..3)
            .map(|i| pod(&format!("avoids-spot-{i}"), "100m", "64Mi", a_or_c()))
            .collect::<Vec<_>>(),
    )
    .await;
    for i in 0..3 {
        let node = wait_bound(&client, "default", &format!("avoids-spot-{i}"), t).await;
        assert!(node.starts_with("a-"), "avoids-spot-{i} went to {node}");
    }

    // Host ports: a second pod wanting host port 8080 on a-1 must wait.
    let on_a1 = || json!({ "nodeSelector": { "kubernetes.io/hostname": "a-1" } });
    let mut first = pod("port-0", "100m", "64Mi", on_a1());
    let mut second = pod("port-1", "100m", "64Mi", on_a1());
    for p in [&mut first, &mut second] {
        p.spec.as_mut().unwrap().containers[0].ports = Some(vec![k8s_openapi::api::core::v1::ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }]);
    }
    create_pods(&client, "default", &[first]).await;
    assert_eq!(wait_bound(&client, "default", "port-0", t).await, "a-1");
    create_pods(&client, "default", &[second]).await;
    let ev = wait_for(t, "FailedScheduling for port-1", || async {
        failed_scheduling_events(&client, "default", "port-1")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        ev.message
            .as_deref()
            .unwrap()
            .contains("1 node(s) didn't have free ports for the requested pod ports"),
        "{ev:?}"
    );

    // Cordon a-0: a pod pinned to it waits; uncordon: it is bound.
    let nodes: Api<Node> = Api::all(client.clone());
    let cordon = |on: bool| json!({ "spec": { "unschedulable": on } });
    nodes
        .patch("a-0", &PatchParams::default(), &Patch::Merge(&cordon(true)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    create_pods(
        &client,
        "default",
        &[pod(
            "on-a0",
            "100m",
            "64Mi",
            json!({ "nodeSelector": { "kubernetes.io/hostname": "a-0" } }),
        )],
    )
    .await;
    let ev = wait_for(t, "FailedScheduling for on-a0", || async {
        failed_scheduling_events(&client, "default", "on-a0")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        ev.message.as_deref(),
        Some(
            "0/5 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector, \
             2 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/5 nodes are available: \
             5 Preemption is not helpful for scheduling."
        )
    );
    nodes
        .patch("a-0", &PatchParams::default(), &Patch::Merge(&cordon(false)))
        .await
        .unwrap();
    assert_eq!(wait_bound(&client, "default", "on-a0", t).await, "a-0");
}
