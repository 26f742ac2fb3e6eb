//! User story: deleting a namespace removes everything in it, then the
//! namespace itself.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;
use sluice_tests::controllers::{deployment, eventually, start_nodes, start_scheduler, ControllerManager};
use sluice_tests::ControlPlane;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_its_contents() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _scheduler = start_scheduler(cp.kubeconfig_path());
    let _nodes = start_nodes(&client, cp.kubeconfig_path(), "node", 1).await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-1", &[]);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap(),
        )
        .await
        .unwrap();
    let ns = "team-a";
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment("web", 2, "web:v1")).unwrap(),
        )
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"a": "b"}})).unwrap(),
        )
        .await
        .unwrap();
    Api::<Service>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(Duration::from_secs(60), "two running pods", || async {
        (pods.list(&ListParams::default()).await.ok()?.items.len() == 2).then_some(())
    })
    .await;

    namespaces.delete(ns, &DeleteParams::default()).await.unwrap();
    let terminating = namespaces.get(ns).await.unwrap();
    assert_eq!(terminating.status.and_then(|s| s.phase).as_deref(), Some("Terminating"));
    eventually(Duration::from_secs(60), "namespace gone", || async {
        namespaces.get_opt(ns).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(pods
        .list(&ListParams::default())
        .await
        .map(|l| l.items.is_empty())
        .unwrap_or(true));
    assert!(Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items.is_empty())
        .unwrap_or(true));
    assert!(Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items.is_empty())
        .unwrap_or(true));
}
