//! User story: a full node makes room for an important pod. A platform
//! engineer gives batch pods a low PriorityClass and a service a high one;
//! when the service's pod fits nowhere, the scheduler preempts as
//! kube-scheduler's DefaultPreemption does: the fewest lower-priority pods
//! are evicted (a `Preempted` event on each, naming the preemptor's uid and
//! the node), the pod is nominated to the node and bound there once they
//! are gone. A pod with `preemptionPolicy: Never` waits instead, and a pod
//! of the lowest priority finds no victims; both say so in FailedScheduling.
//!
//! Real etcd, API server and scheduler; nodes simulated by nodesim.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;
use sluice_tests::scheduling::{
    create_pods, failed_scheduling_events, pod, wait_bound, wait_for, NodeSim, SchedulerProcess,
};
use sluice_tests::ControlPlane;

async fn priority_class(raw: &sluice_tests::RawClient, name: &str, value: i64, policy: &str) {
    let r = raw
        .post(
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            &json!({"metadata": {"name": name}, "value": value, "preemptionPolicy": policy}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_the_fewest_low_priority_pods() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let raw = cp.raw().await;
    let kc = cp.kubeconfig_path();
    let _node = NodeSim::start(
        kc,
        &["--nodes", "1", "--name-prefix", "prio", "--cpu", "1", "--memory", "4Gi"],
    )
    .await;
    let _scheduler = SchedulerProcess::start(kc, "sched-preempt", &[]);
    priority_class(&raw, "batch", 10, "PreemptLowerPriority").await;
    priority_class(&raw, "service", 1000, "PreemptLowerPriority").await;
    priority_class(&raw, "polite", 1000, "Never").await;

    // Two batch pods of 400m fill the 1-cpu node (200m left).
    let batch: Vec<Pod> = (0..2)
        .map(|i| {
            pod(
                &format!("batch-{i}"),
                "400m",
                "100Mi",
                json!({"priorityClassName": "batch"}),
            )
        })
        .collect();
    create_pods(&client, "default", &batch).await;
    let node = wait_bound(&client, "default", "batch-0", Duration::from_secs(30)).await;
    wait_bound(&client, "default", "batch-1", Duration::from_secs(30)).await;

    // A polite pod (preemptionPolicy: Never) of high priority waits and says why.
    let polite = pod("polite", "600m", "100Mi", json!({"priorityClassName": "polite"}));
    create_pods(&client, "default", &[polite]).await;
    let events = wait_for(Duration::from_secs(30), "polite's FailedScheduling", || async {
        Some(failed_scheduling_events(&client, "default", "polite").await).filter(|e| !e.is_empty())
    })
    .await;
    assert_eq!(
        events[0].message.as_deref(),
        Some("0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.")
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete("polite", &Default::default()).await.expect("delete polite");

    // A batch pod finds nobody of lower priority to evict.
    create_pods(
        &client,
        "default",
        &[pod("batch-2", "600m", "100Mi", json!({"priorityClassName": "batch"}))],
    )
    .await;
    let events = wait_for(Duration::from_secs(30), "batch-2's FailedScheduling", || async {
        Some(failed_scheduling_events(&client, "default", "batch-2").await).filter(|e| !e.is_empty())
    })
    .await;
    assert_eq!(
        events[0].message.as_deref(),
        Some("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")
    );
    pods.delete("batch-2", &Default::default())
        .await
        .expect("delete batch-2");

    // The service's 600m pod: evicting one batch pod (400m) is enough.
    let service = pods
        .create(
            &PostParams::default(),
            &pod("service", "600m", "100Mi", json!({"priorityClassName": "service"})),
        )
        .await
        .expect("service pod");
    let uid = service.metadata.uid.clone().unwrap();
    assert_eq!(service.spec.as_ref().unwrap().priority, Some(1000));
    let bound = wait_bound(&client, "default", "service", Duration::from_secs(60)).await;
    assert_eq!(bound, node);
    let service = pods.get("service").await.unwrap();
    assert_eq!(
        service.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()),
        Some(node.as_str()),
        "nominated before it was bound"
    );
    let left: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .filter(|n| n.starts_with("batch-"))
        .collect();
    assert_eq!(left.len(), 1, "exactly one batch pod was preempted: {left:?}");
    let victim = if left[0] == "batch-0" { "batch-1" } else { "batch-0" };
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let preempted: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Preempted"))
        .collect();
    assert_eq!(preempted.len(), 1, "{preempted:?}");
    assert_eq!(preempted[0].involved_object.name.as_deref(), Some(victim));
    assert_eq!(preempted[0].type_.as_deref(), Some("Normal"));
    assert_eq!(
        preempted[0].message.as_deref(),
        Some(format!("Preempted by pod {uid} on node {node}").as_str())
    );
    // While it waited, the service said why in kube-scheduler's words (no preemption part: it preempted).
    let waited = failed_scheduling_events(&client, "default", "service").await;
    assert!(
        waited
            .iter()
            .all(|e| e.message.as_deref() == Some("0/1 nodes are available: 1 Insufficient cpu.")
                || e.message.as_deref() == Some("0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to a terminating pod on the nominated node.")),
        "{waited:?}"
    );
}
