//! User story for StatefulSet `volumeClaimTemplates` (issue 15): each
//! ordinal gets its own claim `<template>-<set>-<ordinal>`, bound to its own
//! volume; a pod writes into its volume, and after the pods are deleted the
//! recreated pods find their own data again. A real node (containerd +
//! noded), hostPath volumes the test offers, the scheduler and the
//! controller-manager.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_tests::controllers::{eventually, serial, start_scheduler};
use sluice_tests::node::SingleNode;

const NS: &str = "default";
const REPLICAS: i32 = 2;
/// Pod routes of the real-node story land in the root network namespace: a
/// cluster CIDR no other test file uses.
const CLUSTER_CIDR: &str = "10.214.128.0/20";

fn volume(name: &str, dir: &std::path::Path) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "sts-manual",
            "hostPath": {"path": dir.join(name).to_string_lossy(), "type": "DirectoryOrCreate"},
        },
    }))
    .expect("pv")
}

/// The host directory of the volume bound to claim `claim`.
async fn host_dir_of(client: &kube::Client, claim: &str) -> std::path::PathBuf {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let c = pvcs.get(claim).await.expect("claim");
    let pv = pvs
        .get(c.spec.and_then(|s| s.volume_name).as_deref().expect("bound"))
        .await
        .expect("pv");
    pv.spec
        .and_then(|s| s.host_path)
        .map(|h| std::path::PathBuf::from(h.path))
        .expect("hostPath")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ordinal_keeps_its_own_volume_across_pod_deletion() {
    let _serial = serial();
    let node = SingleNode::start("sts-storage-1", CLUSTER_CIDR).await;
    let _scheduler = start_scheduler(node.control_plane.kubeconfig_path());
    let client = node.client.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for i in 0..REPLICAS {
        pvs.create(&PostParams::default(), &volume(&format!("sts-pv-{i}"), dir.path()))
            .await
            .expect("create pv");
    }

    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "keeper"},
        "spec": {
            "serviceName": "keeper",
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "keeper"}},
            "template": {
                "metadata": {"labels": {"app": "keeper"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "app", "image": "busybox:1.35.0",
                        "command": ["sh", "-c",
                            "if [ -f /data/who ]; then cat /data/who > /data/read-back; else hostname > /data/who; fi; exec sleep 3600"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": {"tier": "disk"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "sts-manual",
                         "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    });
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    sets.create(&PostParams::default(), &serde_json::from_value(sts).expect("sts"))
        .await
        .expect("create sts");

    // Each ordinal gets its claim, bound, and its pod mounts it.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let mut uids = Vec::new();
    for i in 0..REPLICAS {
        let pod = node
            .wait_running_ready(&format!("keeper-{i}"), Duration::from_secs(120))
            .await;
        let claim_name = format!("data-keeper-{i}");
        let vol = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .and_then(|v| v.iter().find(|v| v.name == "data"))
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone());
        assert_eq!(vol.as_deref(), Some(claim_name.as_str()));
        let c = pvcs.get(&claim_name).await.expect("claim");
        assert_eq!(c.labels().get("app").map(String::as_str), Some("keeper"));
        assert_eq!(c.labels().get("tier").map(String::as_str), Some("disk"));
        assert!(c.metadata.owner_references.is_none(), "Retain: no owner");
        assert_eq!(c.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
        let who = host_dir_of(&client, &claim_name).await.join("who");
        eventually(Duration::from_secs(30), "the ordinal's name in its volume", || async {
            let text = std::fs::read_to_string(&who).ok()?;
            (text.trim() == format!("keeper-{i}")).then_some(())
        })
        .await;
        uids.push(pod.uid());
    }
    let table = String::from_utf8_lossy(
        &node
            .control_plane
            .kubectl()
            .args(["get", "pvc"])
            .output()
            .expect("kubectl")
            .stdout,
    )
    .into_owned();
    for i in 0..REPLICAS {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("data-keeper-{i} ")))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(line.contains("Bound") && line.contains("sts-manual"), "{table}");
    }

    // The pods are deleted; the recreated ones read their own data back.
    let pods: Api<Pod> = node.pods();
    for i in 0..REPLICAS {
        pods.delete(&format!("keeper-{i}"), &DeleteParams::default())
            .await
            .expect("delete pod");
    }
    for i in 0..REPLICAS {
        let name = format!("keeper-{i}");
        let back = eventually(Duration::from_secs(120), &format!("{name} recreated"), || async {
            let p = pods.get(&name).await.ok()?;
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            (p.uid() != uids[i as usize] && running && p.metadata.deletion_timestamp.is_none()).then_some(p)
        })
        .await;
        assert_ne!(back.uid(), uids[i as usize]);
        let read_back = host_dir_of(&client, &format!("data-keeper-{i}"))
            .await
            .join("read-back");
        eventually(
            Duration::from_secs(30),
            &format!("{name} read its own data"),
            || async {
                let text = std::fs::read_to_string(&read_back).ok()?;
                (text.trim() == name).then_some(())
            },
        )
        .await;
    }

    // Deleting the set keeps the claims (whenDeleted: Retain).
    sets.delete("keeper", &DeleteParams::default())
        .await
        .expect("delete sts");
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..REPLICAS {
        assert!(pvcs.get_opt(&format!("data-keeper-{i}")).await.expect("get").is_some());
    }
}
