//! User stories for Deployments and ReplicaSets: real etcd, API server and
//! controller-manager, stand-in nodes that run whatever is bound to them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_tests::controllers::{
    deployment, eventually, pod_available, pods_with, serial, start_nodes, start_scheduler, ControllerManager,
};
use sluice_tests::ControlPlane;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);

fn image_of(d: &Deployment) -> String {
    d.spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

async fn owned_replicasets(client: &kube::Client, d: &Deployment) -> Vec<ReplicaSet> {
    let uid = d.uid().unwrap();
    Api::<ReplicaSet>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .collect()
}

async fn live_pods(client: &kube::Client, app: &str) -> Vec<Pod> {
    pods_with(client, NS, &BTreeMap::from([("app", app)]))
        .await
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn wait_rolled_out(deploys: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    eventually(
        WAIT,
        &format!("deployment {name} rolled out with {replicas} replicas"),
        || async {
            let d = deploys.get(name).await.ok()?;
            let st = d.status.clone()?;
            let done = st.observed_generation >= d.metadata.generation
                && st.updated_replicas == Some(replicas)
                && st.available_replicas == Some(replicas)
                && st.replicas == Some(replicas);
            done.then_some(d)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_its_pods_scales_and_replaces_deleted_ones() {
    let _serial = serial();
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _scheduler = start_scheduler(cp.kubeconfig_path());
    let _nodes = start_nodes(&client, cp.kubeconfig_path(), "node", 2).await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-1", &[]);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    deploys
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment("web", 3, "web:v1")).unwrap(),
        )
        .await
        .unwrap();
    let d = wait_rolled_out(&deploys, "web", 3).await;

    // One ReplicaSet named after the template hash, owning three running pods.
    let rss = owned_replicasets(&client, &d).await;
    assert_eq!(rss.len(), 1, "one ReplicaSet");
    let rs = &rss[0];
    let hash = rs
        .labels()
        .get("pod-template-hash")
        .cloned()
        .expect("pod-template-hash label");
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(
        rs.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let owner = &rs.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.block_owner_deletion),
        ("Deployment", Some(true))
    );
    let running = live_pods(&client, "web").await;
    assert_eq!(running.len(), 3);
    for p in &running {
        assert_eq!(p.labels().get("pod-template-hash"), Some(&hash));
        assert_eq!(p.owner_references()[0].name, rs.name_any());
        assert!(pod_available(p), "pod {} is running and ready", p.name_any());
    }
    let conditions = d.status.as_ref().unwrap().conditions.clone().unwrap();
    let available = conditions
        .iter()
        .find(|c| c.type_.as_deref() == Some("Available"))
        .unwrap();
    assert_eq!(
        (available.status.as_deref(), available.reason.as_deref()),
        (Some("True"), Some("MinimumReplicasAvailable"))
    );

    // Scale 3 -> 10 -> 2.
    for replicas in [10, 2] {
        deploys
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .unwrap();
        wait_rolled_out(&deploys, "web", replicas).await;
        eventually(WAIT, &format!("{replicas} live pods"), || async {
            (live_pods(&client, "web").await.len() == replicas as usize).then_some(())
        })
        .await;
        let rs = Api::<ReplicaSet>::namespaced(client.clone(), NS)
            .get(&rss[0].name_any())
            .await
            .unwrap();
        assert_eq!(rs.spec.replicas, Some(replicas), "the same ReplicaSet is scaled");
    }

    // A deleted pod is replaced.
    let victim = live_pods(&client, "web").await[0].name_any();
    pods.delete(&victim, &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "deleted pod replaced", || async {
        let live = live_pods(&client, "web").await;
        (live.len() == 2 && live.iter().all(|p| p.name_any() != victim && pod_available(p))).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_with_max_unavailable_zero_never_drops_below_replicas_and_rollback_restores() {
    let _serial = serial();
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _scheduler = start_scheduler(cp.kubeconfig_path());
    let _nodes = start_nodes(&client, cp.kubeconfig_path(), "node", 2).await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-1", &[]);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);

    let mut manifest = deployment("api", 3, "api:v1");
    manifest["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    // Each new pod must stay ready 1s before it counts, which also spreads the rollout over time to sample.
    manifest["spec"]["minReadySeconds"] = json!(1);
    deploys
        .create(&PostParams::default(), &serde_json::from_value(manifest).unwrap())
        .await
        .unwrap();
    wait_rolled_out(&deploys, "api", 3).await;

    // Sample available pods all through the update.
    let stop = Arc::new(AtomicBool::new(false));
    let min_seen = Arc::new(AtomicUsize::new(usize::MAX));
    let sampler = {
        let (client, stop, min_seen) = (client.clone(), stop.clone(), min_seen.clone());
        tokio::spawn(async move {
            let mut samples = 0;
            while !stop.load(Ordering::SeqCst) {
                let n = live_pods(&client, "api")
                    .await
                    .iter()
                    .filter(|p| pod_available(p))
                    .count();
                min_seen.fetch_min(n, Ordering::SeqCst);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        })
    };
    deploys
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "api:v2"}]}}}}),
            ),
        )
        .await
        .unwrap();
    let d = wait_rolled_out(&deploys, "api", 3).await;
    eventually(WAIT, "only v2 pods left", || async {
        let live = live_pods(&client, "api").await;
        (live.len() == 3
            && live
                .iter()
                .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("api:v2")))
        .then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.await.unwrap();
    assert!(samples >= 20, "sampled the rollout ({samples} samples)");
    assert!(
        min_seen.load(Ordering::SeqCst) >= 3,
        "available pods dipped to {} during the rollout",
        min_seen.load(Ordering::SeqCst)
    );

    let rss = owned_replicasets(&client, &d).await;
    assert_eq!(rss.len(), 2, "old ReplicaSet kept as history");
    let revisions: BTreeMap<String, i32> = rss
        .iter()
        .map(|rs| {
            (
                rs.annotations()["deployment.kubernetes.io/revision"].clone(),
                rs.spec.replicas.unwrap(),
            )
        })
        .collect();
    assert_eq!(revisions, BTreeMap::from([("1".to_string(), 0), ("2".to_string(), 3)]));
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );

    // Rollback (what `kubectl rollout undo` does: the old template goes back in).
    let old = rss
        .iter()
        .find(|rs| rs.annotations()["deployment.kubernetes.io/revision"] == "1")
        .unwrap();
    let mut template = serde_json::to_value(old.spec.template.clone().unwrap()).unwrap();
    template["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("pod-template-hash");
    deploys
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template}})),
        )
        .await
        .unwrap();
    let d = wait_rolled_out(&deploys, "api", 3).await;
    assert_eq!(image_of(&d), "api:v1");
    eventually(WAIT, "only v1 pods left", || async {
        let live = live_pods(&client, "api").await;
        (live.len() == 3
            && live
                .iter()
                .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("api:v1")))
        .then_some(())
    })
    .await;
    let old = Api::<ReplicaSet>::namespaced(client.clone(), NS)
        .get(&old.name_any())
        .await
        .unwrap();
    assert_eq!(
        old.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3"),
        "reused ReplicaSet gets the next revision"
    );
    assert_eq!(
        old.annotations()
            .get("deployment.kubernetes.io/revision-history")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        owned_replicasets(&client, &d).await.len(),
        2,
        "no third ReplicaSet for a known template"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_of_a_deployment_removes_replicasets_and_pods_first() {
    let _serial = serial();
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _scheduler = start_scheduler(cp.kubeconfig_path());
    let _nodes = start_nodes(&client, cp.kubeconfig_path(), "node", 1).await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-1", &[]);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    deploys
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment("fg", 2, "fg:v1")).unwrap(),
        )
        .await
        .unwrap();
    let d = wait_rolled_out(&deploys, "fg", 2).await;
    let rs_name = owned_replicasets(&client, &d).await[0].name_any();

    deploys
        .delete(
            "fg",
            &DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Until its dependents are gone, the Deployment stays (deleting, with the foregroundDeletion finalizer).
    let saw_deleting_owner = Arc::new(AtomicBool::new(false));
    eventually(WAIT, "deployment gone", || {
        let deploys = deploys.clone();
        let client = client.clone();
        let rs_name = rs_name.clone();
        let saw = saw_deleting_owner.clone();
        async move {
            match deploys.get_opt("fg").await.unwrap() {
                Some(d) => {
                    assert!(d.metadata.deletion_timestamp.is_some());
                    assert!(d.finalizers().iter().any(|f| f == "foregroundDeletion"));
                    saw.store(true, Ordering::SeqCst);
                    None
                }
                None => {
                    // The owner disappears only after its dependents.
                    let rs = Api::<ReplicaSet>::namespaced(client.clone(), NS)
                        .get_opt(&rs_name)
                        .await
                        .unwrap();
                    assert!(rs.is_none(), "ReplicaSet outlived its foreground-deleted Deployment");
                    let pods = pods_with(&client, NS, &BTreeMap::from([("app", "fg")])).await;
                    assert!(
                        pods.is_empty(),
                        "pods outlived their foreground-deleted Deployment: {:?}",
                        pods.iter().map(|p| p.name_any()).collect::<Vec<_>>()
                    );
                    Some(())
                }
            }
        }
    })
    .await;
    assert!(
        saw_deleting_owner.load(Ordering::SeqCst),
        "the Deployment waited for its dependents"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_and_undo_work() {
    let _serial = serial();
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _scheduler = start_scheduler(cp.kubeconfig_path());
    let _nodes = start_nodes(&client, cp.kubeconfig_path(), "node", 2).await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-1", &[]);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    deploys
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment("shop", 2, "shop:v1")).unwrap(),
        )
        .await
        .unwrap();

    let kubectl = |args: &[&str]| {
        let out = cp.kubectl().args(args).output().expect("kubectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = kubectl(&["rollout", "status", "deployment/shop", "--timeout=60s"]);
    assert!(ok, "rollout status failed: {out}");
    assert!(out.contains("successfully rolled out"), "{out}");

    let (ok, out) = kubectl(&["set", "image", "deployment/shop", "app=shop:v2"]);
    assert!(ok, "set image: {out}");
    let (ok, out) = kubectl(&["rollout", "status", "deployment/shop", "--timeout=60s"]);
    assert!(
        ok && out.contains("successfully rolled out"),
        "rollout status after update: {out}"
    );
    assert_eq!(image_of(&deploys.get("shop").await.unwrap()), "shop:v2");

    let (ok, out) = kubectl(&["rollout", "history", "deployment/shop"]);
    assert!(ok && out.contains('1') && out.contains('2'), "history: {out}");
    let (ok, out) = kubectl(&["rollout", "undo", "deployment/shop"]);
    assert!(ok, "rollout undo: {out}");
    assert!(out.contains("rolled back"), "{out}");
    let (ok, out) = kubectl(&["rollout", "status", "deployment/shop", "--timeout=60s"]);
    assert!(
        ok && out.contains("successfully rolled out"),
        "rollout status after undo: {out}"
    );
    let d = deploys.get("shop").await.unwrap();
    assert_eq!(image_of(&d), "shop:v1");
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3")
    );
}
