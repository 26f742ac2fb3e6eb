//! User story: an operator runs two schedulers for availability. Only the one holding
//! the `kube-system/sluice-scheduler` Lease binds pods; when it dies, the other takes
//! the Lease over and keeps scheduling.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use sluice_tests::scheduling::{create_pods, pod, wait_bound, wait_for, NodeSim, SchedulerProcess};
use sluice_tests::ControlPlane;

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get("sluice-scheduler").await.ok()?.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_binds_and_the_standby_takes_over() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let kc = cp.kubeconfig_path();
    let _nodes = NodeSim::start(kc, &["--nodes", "2", "--name-prefix", "node"]).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");

    let mut first = SchedulerProcess::start(kc, "sched-a", &[]);
    wait_for(Duration::from_secs(30), "sched-a leads", || async {
        (holder(&leases).await? == "sched-a").then_some(())
    })
    .await;
    let second = SchedulerProcess::start(kc, "sched-b", &[]);
    wait_for(Duration::from_secs(30), "sched-b waiting as a candidate", || async {
        second.log().contains("waiting to become leader").then_some(())
    })
    .await;

    let batch = |prefix: &str| {
        (0..5)
            .map(|i| pod(&format!("{prefix}-{i}"), "100m", "64Mi", json!({})))
            .collect::<Vec<_>>()
    };
    create_pods(&client, "default", &batch("before")).await;
    for i in 0..5 {
        wait_bound(&client, "default", &format!("before-{i}"), Duration::from_secs(30)).await;
    }
    assert_eq!(first.bound_count(), 5, "the leader bound every pod");
    assert_eq!(second.bound_count(), 0, "the standby bound nothing");
    assert!(!second.log().contains("became leader"));

    // The leader crashes: the standby takes over once the Lease expires.
    first.kill();
    wait_for(Duration::from_secs(30), "sched-b takes over", || async {
        (holder(&leases).await? == "sched-b").then_some(())
    })
    .await;
    let lease = leases.get("sluice-scheduler").await.unwrap();
    assert!(lease.spec.unwrap().lease_transitions.unwrap_or(0) >= 1);
    create_pods(&client, "default", &batch("after")).await;
    for i in 0..5 {
        wait_bound(&client, "default", &format!("after-{i}"), Duration::from_secs(30)).await;
    }
    assert_eq!(second.bound_count(), 5, "the new leader bound the new pods");
}
