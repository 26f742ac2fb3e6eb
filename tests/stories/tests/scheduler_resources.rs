//! User story: a platform engineer runs pods with resource requests on nodes of known
//! size. Pods land only where their requests fit (cpu, memory, pod count, counting pods
//! already there), nodes are never overcommitted, a pod that fits nowhere gets a
//! FailedScheduling event saying why per node, and it is bound as soon as a node with
//! room appears.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use serde_json::json;
use sluice_tests::scheduling::{
    create_pods, failed_scheduling_events, pod, wait_bound, wait_for, NodeSim, SchedulerProcess,
};
use sluice_tests::ControlPlane;

fn cpu_millis(p: &Pod) -> i64 {
    let q = &p.spec.as_ref().unwrap().containers[0]
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["cpu"]
        .0;
    q.trim_end_matches('m').parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_land_only_where_requests_fit_and_wait_for_room() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let kc = cp.kubeconfig_path();
    let _small = NodeSim::start(
        kc,
        &[
            "--nodes",
            "3",
            "--name-prefix",
            "small",
            "--cpu",
            "1",
            "--memory",
            "2Gi",
        ],
    )
    .await;
    let _scheduler = SchedulerProcess::start(kc, "sched-1", &[]);

    // Seven pods of 400m on three 1-cpu nodes: two fit per node, the seventh fits nowhere.
    let pods: Vec<Pod> = (0..7)
        .map(|i| pod(&format!("web-{i}"), "400m", "100Mi", json!({})))
        .collect();
    create_pods(&client, "default", &pods).await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let bound = |list: &[Pod]| {
        list.iter()
            .filter(|p| p.spec.as_ref().unwrap().node_name.is_some())
            .count()
    };
    wait_for(Duration::from_secs(30), "six pods bound", || async {
        let list = api.list(&ListParams::default()).await.ok()?.items;
        (bound(&list) == 6).then_some(())
    })
    .await;

    // Give the scheduler time to (wrongly) place the seventh, then check nothing is overcommitted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let list = api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(
        bound(&list),
        6,
        "exactly six of seven 400m pods fit on three 1-cpu nodes"
    );
    let mut per_node: HashMap<String, i64> = HashMap::new();
    for p in &list {
        if let Some(n) = p.spec.as_ref().unwrap().node_name.clone() {
            *per_node.entry(n).or_default() += cpu_millis(p);
        }
    }
    assert_eq!(per_node.len(), 3, "pods spread over all three nodes: {per_node:?}");
    assert!(
        per_node.values().all(|m| *m <= 1000),
        "a node is overcommitted: {per_node:?}"
    );

    // The waiting pod is told why, per node, like kube-scheduler does.
    let waiting = list
        .iter()
        .find(|p| p.spec.as_ref().unwrap().node_name.is_none())
        .unwrap();
    let waiting_name = waiting.metadata.name.clone().unwrap();
    let events = wait_for(Duration::from_secs(20), "FailedScheduling event", || async {
        let ev = failed_scheduling_events(&client, "default", &waiting_name).await;
        (!ev.is_empty()).then_some(ev)
    })
    .await;
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert_eq!(events[0].involved_object.kind.as_deref(), Some("Pod"));
    assert_eq!(
        events[0].message.as_deref(),
        Some(
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: \
             3 No preemption victims found for incoming pod."
        )
    );
    let cond = wait_for(Duration::from_secs(10), "PodScheduled=False condition", || async {
        let p = api.get(&waiting_name).await.ok()?;
        p.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));

    // Bound pods run: the simulated kubelet reports them Running with a pod IP.
    wait_for(Duration::from_secs(30), "bound pods Running with an IP", || async {
        let list = api.list(&ListParams::default()).await.ok()?.items;
        let running = list
            .iter()
            .filter(|p| {
                let s = p.status.as_ref();
                s.and_then(|s| s.phase.as_deref()) == Some("Running") && s.and_then(|s| s.pod_ip.as_deref()).is_some()
            })
            .count();
        (running == 6).then_some(())
    })
    .await;

    // A node with room appears: the waiting pod is bound there without any user action.
    let _big = NodeSim::start(
        kc,
        &[
            "--nodes",
            "1",
            "--name-prefix",
            "big",
            "--cpu",
            "2",
            "--memory",
            "4Gi",
            "--synthetic-pod-cidr",
            "10.200.0.0/16",
        ],
    )
    .await;
    let node = wait_bound(&client, "default", &waiting_name, Duration::from_secs(30)).await;
    assert_eq!(node, "big-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_pod_count_limit_a_node_too() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let kc = cp.kubeconfig_path();
    let _node = NodeSim::start(
        kc,
        &[
            "--nodes",
            "1",
            "--name-prefix",
            "tiny",
            "--cpu",
            "8",
            "--memory",
            "1Gi",
            "--pods",
            "3",
        ],
    )
    .await;
    let _scheduler = SchedulerProcess::start(kc, "sched-1", &[]);

    create_pods(&client, "default", &[pod("mem-0", "100m", "600Mi", json!({}))]).await;
    wait_bound(&client, "default", "mem-0", Duration::from_secs(30)).await;
    create_pods(&client, "default", &[pod("mem-1", "100m", "600Mi", json!({}))]).await;
    let ev = wait_for(Duration::from_secs(20), "FailedScheduling for mem-1", || async {
        failed_scheduling_events(&client, "default", "mem-1")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        ev.message
            .as_deref()
            .unwrap()
            .starts_with("0/1 nodes are available: 1 Insufficient memory."),
        "{ev:?}"
    );

    // Two small pods fill the node's three pod slots; a third small one must wait.
    create_pods(
        &client,
        "default",
        &[
            pod("small-0", "10m", "10Mi", json!({})),
            pod("small-1", "10m", "10Mi", json!({})),
        ],
    )
    .await;
    wait_bound(&client, "default", "small-0", Duration::from_secs(30)).await;
    wait_bound(&client, "default", "small-1", Duration::from_secs(30)).await;
    create_pods(&client, "default", &[pod("small-2", "10m", "10Mi", json!({}))]).await;
    let ev = wait_for(Duration::from_secs(20), "FailedScheduling for small-2", || async {
        failed_scheduling_events(&client, "default", "small-2")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        ev.message
            .as_deref()
            .unwrap()
            .starts_with("0/1 nodes are available: 1 Too many pods."),
        "{ev:?}"
    );
    assert_eq!(
        sluice_tests::scheduling::node_of(&client, "default", "mem-1").await,
        None
    );

    // Deleting a running pod frees its slot: the waiting small pod gets it.
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.delete("small-0", &Default::default()).await.unwrap();
    assert_eq!(
        wait_bound(&client, "default", "small-2", Duration::from_secs(30)).await,
        "tiny-0"
    );
}
