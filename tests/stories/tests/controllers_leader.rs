//! User story: two controller-managers run; only the Lease holder acts, and
//! the other takes over when the leader is killed.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ListParams, PostParams};
use kube::Api;
use sluice_tests::controllers::{deployment, eventually, pods_with, start_nodes, start_scheduler, ControllerManager};
use sluice_tests::ControlPlane;

async fn holder(client: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get_opt("sluice-controller-manager")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_the_other_takes_over_when_it_dies() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _scheduler = start_scheduler(cp.kubeconfig_path());
    let _nodes = start_nodes(&client, cp.kubeconfig_path(), "node", 1).await;
    let mut first = ControllerManager::start(cp.kubeconfig_path(), "cm-first", &[]);
    eventually(Duration::from_secs(30), "cm-first holds the lease", || async {
        (holder(&client).await.as_deref() == Some("cm-first")).then_some(())
    })
    .await;
    let mut second = ControllerManager::start(cp.kubeconfig_path(), "cm-second", &[]);

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deploys
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment("one", 2, "one:v1")).unwrap(),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "pods of deployment one", || async {
        (pods_with(&client, "default", &[("app", "one")].into()).await.len() == 2).then_some(())
    })
    .await;
    // Give the standby every chance to (wrongly) act, then check it did not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(second.is_running());
    assert_eq!(holder(&client).await.as_deref(), Some("cm-first"));
    let standby_log = second.log();
    assert!(standby_log.contains("waiting to become leader"), "{standby_log}");
    assert!(
        !standby_log.contains("became leader"),
        "standby acted as leader:\n{standby_log}"
    );
    assert!(
        !standby_log.contains("caches synced"),
        "standby started controllers:\n{standby_log}"
    );

    first.kill();
    eventually(Duration::from_secs(30), "cm-second takes the lease", || async {
        (holder(&client).await.as_deref() == Some("cm-second")).then_some(())
    })
    .await;
    // The new leader acts: a new Deployment gets its pods.
    deploys
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment("two", 2, "two:v1")).unwrap(),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "pods of deployment two", || async {
        (pods_with(&client, "default", &[("app", "two")].into()).await.len() == 2).then_some(())
    })
    .await;
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get("sluice-controller-manager")
        .await
        .unwrap();
    assert!(lease.spec.unwrap().lease_transitions.unwrap_or(0) >= 1);
    let _ = Api::<Deployment>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await;
}
