//! User stories for static PersistentVolume binding (issue 15): an
//! administrator offers hostPath volumes, users claim storage, the PV
//! controller (`persistentvolume-binder`) binds claims to volumes, kubectl
//! shows what Kubernetes shows, and the protection finalizers keep a claim
//! while a pod uses it. Real etcd, API server and controller-manager; the
//! pod story adds a real node (containerd + noded).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_tests::controllers::{eventually, serial, ControllerManager};
use sluice_tests::node::SingleNode;
use sluice_tests::ControlPlane;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);
/// Pod routes of the real-node story land in the root network namespace: a
/// cluster CIDR no other test file uses.
const CLUSTER_CIDR: &str = "10.214.112.0/20";

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl().args(args).output().expect("kubectl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl {args:?} failed: {text}");
    text
}

/// A hostPath volume of `size` under `dir`.
fn volume(name: &str, size: &str, dir: &std::path::Path, class: &str, labels: serde_json::Value) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "hostPath": {"path": dir.join(name).to_string_lossy(), "type": "DirectoryOrCreate"},
        },
    }))
    .expect("pv")
}

fn claim(name: &str, size: &str, class: Option<&str>) -> PersistentVolumeClaim {
    let mut c = json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    });
    if let Some(class) = class {
        c["spec"]["storageClassName"] = json!(class);
    }
    serde_json::from_value(c).expect("pvc")
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The reasons and messages of the Events about object `name`.
async fn events_about(client: &kube::Client, name: &str) -> Vec<(String, String, String)> {
    Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

/// The column headers of `kubectl get` output.
fn header_of(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect()
}

/// The row of `name` in `kubectl get` output, split into columns.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in:\n{table}"))
        .split_whitespace()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bind_to_the_smallest_fitting_volume_and_kubectl_shows_it() {
    let _serial = serial();
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-storage", &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);

    // An administrator offers three volumes of the class "manual".
    for (name, size, tier) in [
        ("pv-small", "1Gi", "fast"),
        ("pv-big", "5Gi", "fast"),
        ("pv-slow", "2Gi", "slow"),
    ] {
        pvs.create(
            &PostParams::default(),
            &volume(name, size, dir.path(), "manual", json!({"tier": tier})),
        )
        .await
        .expect("create pv");
    }
    let available = eventually(WAIT, "the volumes Available", || async {
        let list = pvs.list(&ListParams::default()).await.ok()?.items;
        (list.len() == 3 && list.iter().all(|v| phase_of_volume(v) == "Available")).then_some(list)
    })
    .await;
    for v in &available {
        assert_eq!(v.finalizers(), ["kubernetes.io/pv-protection"], "{}", v.name_any());
        assert_eq!(
            v.spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref()),
            Some("Retain")
        );
    }
    let table = kubectl(&cp, &["get", "pv"]);
    assert_eq!(
        header_of(&table),
        [
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ],
        "{table}"
    );

    // A user claims 1500Mi of fast storage: the 5Gi fast volume is the only fit.
    let mut data = claim("data", "1500Mi", Some("manual"));
    data.spec.as_mut().expect("spec").selector =
        Some(serde_json::from_value(json!({"matchLabels": {"tier": "fast"}})).expect("selector"));
    pvcs.create(&PostParams::default(), &data).await.expect("create pvc");
    let bound = eventually(WAIT, "data Bound", || async {
        let c = pvcs.get("data").await.ok()?;
        (phase_of_claim(&c) == "Bound").then_some(c)
    })
    .await;
    assert_eq!(
        bound.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("pv-big")
    );
    assert_eq!(bound.finalizers(), ["kubernetes.io/pvc-protection"]);
    assert_eq!(
        bound
            .annotations()
            .get("pv.kubernetes.io/bind-completed")
            .map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        bound
            .annotations()
            .get("pv.kubernetes.io/bound-by-controller")
            .map(String::as_str),
        Some("yes")
    );
    let st = bound.status.as_ref().expect("status");
    assert_eq!(
        st.capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.as_str()),
        Some("5Gi")
    );
    assert_eq!(st.access_modes.as_deref(), Some(&["ReadWriteOnce".to_string()][..]));
    let pv = eventually(WAIT, "pv-big Bound", || async {
        let v = pvs.get("pv-big").await.ok()?;
        (phase_of_volume(&v) == "Bound").then_some(v)
    })
    .await;
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()).expect("claimRef");
    assert_eq!(
        (claim_ref.namespace.as_deref(), claim_ref.name.as_deref()),
        (Some(NS), Some("data"))
    );
    assert_eq!(claim_ref.uid, bound.uid());

    let pv_table = kubectl(&cp, &["get", "pv"]);
    assert_eq!(
        row(&pv_table, "pv-big")[..7],
        ["pv-big", "5Gi", "RWO", "Retain", "Bound", "default/data", "manual"],
        "{pv_table}"
    );
    assert_eq!(
        row(&pv_table, "pv-small")[..6],
        ["pv-small", "1Gi", "RWO", "Retain", "Available", "manual"]
    );
    let pvc_table = kubectl(&cp, &["get", "pvc"]);
    assert_eq!(
        header_of(&pvc_table),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ],
        "{pvc_table}"
    );
    assert_eq!(
        row(&pvc_table, "data")[..7],
        ["data", "Bound", "pv-big", "5Gi", "RWO", "manual", "<unset>"],
        "{pvc_table}"
    );

    // A claim for more than any volume holds stays Pending and says why.
    pvcs.create(&PostParams::default(), &claim("huge", "100Gi", Some("")))
        .await
        .expect("create huge");
    let events = eventually(WAIT, "FailedBinding on huge", || async {
        let e = events_about(&client, "huge").await;
        e.iter().any(|(_, r, _)| r == "FailedBinding").then_some(e)
    })
    .await;
    assert!(
        events.contains(&(
            "Normal".into(),
            "FailedBinding".into(),
            "no persistent volumes available for this claim and no storage class is set".into()
        )),
        "{events:?}"
    );
    assert_eq!(phase_of_claim(&pvcs.get("huge").await.expect("huge")), "Pending");
    let described = kubectl(&cp, &["describe", "pvc", "huge"]);
    assert!(
        described.contains("no persistent volumes available for this claim and no storage class is set"),
        "{described}"
    );

    // Spec changes other than a bound claim's size are refused as Kubernetes refuses them.
    let out = cp
        .kubectl()
        .args([
            "patch",
            "pvc",
            "data",
            "--type=merge",
            "-p",
            r#"{"spec":{"accessModes":["ReadWriteMany"]}}"#,
        ])
        .output()
        .expect("kubectl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
        ),
        "{err}"
    );

    // Deleting the claim releases the volume; Retain keeps it Released with its claim.
    pvcs.delete("data", &DeleteParams::default())
        .await
        .expect("delete data");
    eventually(WAIT, "data gone", || async {
        pvcs.get_opt("data").await.ok()?.is_none().then_some(())
    })
    .await;
    eventually(WAIT, "pv-big Released", || async {
        let v = pvs.get("pv-big").await.ok()?;
        (phase_of_volume(&v) == "Released").then_some(v)
    })
    .await;
    let pv_table = kubectl(&cp, &["get", "pv", "pv-big"]);
    assert_eq!(
        row(&pv_table, "pv-big")[..6],
        ["pv-big", "5Gi", "RWO", "Retain", "Released", "default/data"],
        "{pv_table}"
    );
    // A new claim does not take the Released volume.
    pvcs.create(&PostParams::default(), &claim("again", "3Gi", Some("manual")))
        .await
        .expect("create again");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(phase_of_claim(&pvcs.get("again").await.expect("again")), "Pending");

    // A released volume can be deleted (its pv-protection finalizer goes).
    pvs.delete("pv-big", &DeleteParams::default()).await.expect("delete pv");
    eventually(WAIT, "pv-big gone", || async {
        pvs.get_opt("pv-big").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_without_a_class_gets_the_default_class() {
    let _serial = serial();
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-storage-default", &[]);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    // A fresh cluster's default class is local-path (the controller-manager's
    // provisioner creates it). The administrator makes another class the
    // default as Kubernetes' documentation says: unmark the old one first.
    let classes: Api<StorageClass> = Api::all(client.clone());
    let local_path = eventually(WAIT, "the local-path class", || async {
        classes.get_opt("local-path").await.ok().flatten()
    })
    .await;
    assert_eq!(
        local_path
            .annotations()
            .get("storageclass.kubernetes.io/is-default-class")
            .map(String::as_str),
        Some("true")
    );
    let out = cp
        .kubectl()
        .args([
            "annotate",
            "--overwrite",
            "storageclass",
            "local-path",
            "storageclass.kubernetes.io/is-default-class=false",
        ])
        .output()
        .expect("kubectl annotate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sc = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "story-default", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/story",
    });
    let out = cp
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(sc.to_string().as_bytes())?;
            c.wait_with_output()
        })
        .expect("kubectl apply");
    assert!(out.status.success());
    let classes = kubectl(&cp, &["get", "sc", "story-default"]);
    assert_eq!(
        row(&classes, "story-default")[..6],
        [
            "story-default",
            "(default)",
            "example.com/story",
            "Delete",
            "Immediate",
            "false"
        ],
        "{classes}"
    );

    pvcs.create(&PostParams::default(), &claim("mine", "1Gi", None))
        .await
        .expect("create pvc");
    let c = pvcs.get("mine").await.expect("mine");
    assert_eq!(
        c.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()),
        Some("story-default")
    );

    // No volume fits and the class has a provisioner: the claim waits for it.
    let c = eventually(WAIT, "mine annotated for its provisioner", || async {
        let c = pvcs.get("mine").await.ok()?;
        (c.annotations()
            .get("volume.kubernetes.io/storage-provisioner")
            .map(String::as_str)
            == Some("example.com/story"))
        .then_some(c)
    })
    .await;
    assert_eq!(
        c.annotations()
            .get("volume.beta.kubernetes.io/storage-provisioner")
            .map(String::as_str),
        Some("example.com/story")
    );
    let events = eventually(WAIT, "ExternalProvisioning on mine", || async {
        let e = events_about(&client, "mine").await;
        e.iter().any(|(_, r, _)| r == "ExternalProvisioning").then_some(e)
    })
    .await;
    assert!(
        events.iter().any(|(t, _, m)| t == "Normal"
            && m == "Waiting for a volume to be created either by the external provisioner 'example.com/story' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."),
        "{events:?}"
    );
    assert_eq!(phase_of_claim(&c), "Pending");

    // The class's provisioner and parameters may not change.
    let out = cp
        .kubectl()
        .args([
            "patch",
            "sc",
            "story-default",
            "--type=merge",
            "-p",
            r#"{"provisioner":"other.example/x"}"#,
        ])
        .output()
        .expect("kubectl");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("provisioner: Forbidden: updates to provisioner are forbidden.")
    );
}

/// On a real node: a pod mounts a claim bound to a hostPath volume and
/// writes to it; the file lands in the host directory. Deleting the claim
/// while the pod runs leaves it Terminating (pvc-protection) until the pod
/// is gone; then the volume is Released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_writes_through_its_claim_and_the_claim_waits_for_the_pod() {
    let _serial = serial();
    let node = SingleNode::start("storage-node-1", CLUSTER_CIDR).await;
    let client = node.client.clone();
    let cp = &node.control_plane;
    let dir = tempfile::tempdir().expect("temp dir");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    pvs.create(
        &PostParams::default(),
        &volume("pv-web", "1Gi", dir.path(), "", json!({})),
    )
    .await
    .expect("create pv");
    pvcs.create(&PostParams::default(), &claim("web-data", "1Gi", Some("")))
        .await
        .expect("create pvc");
    eventually(WAIT, "web-data Bound", || async {
        let c = pvcs.get("web-data").await.ok()?;
        (phase_of_claim(&c) == "Bound").then_some(c)
    })
    .await;

    node.create_pod(json!({
        "metadata": {"name": "writer"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "busybox:1.35.0",
                "command": ["sh", "-c", "echo hello-from-the-pod > /data/greeting && exec sleep 3600"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}}],
        },
    }))
    .await;
    node.wait_running_ready("writer", Duration::from_secs(120)).await;
    let host_file = dir.path().join("pv-web").join("greeting");
    eventually(WAIT, "the pod's file on the host", || async {
        let text = std::fs::read_to_string(&host_file).ok()?;
        (text.trim() == "hello-from-the-pod").then_some(())
    })
    .await;

    // The claim is in use: deleting it leaves it Terminating.
    pvcs.delete("web-data", &DeleteParams::default())
        .await
        .expect("delete pvc");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = pvcs.get("web-data").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    let table = kubectl(cp, &["get", "pvc", "web-data"]);
    assert_eq!(
        row(&table, "web-data")[..3],
        ["web-data", "Terminating", "pv-web"],
        "{table}"
    );

    // Once the pod is gone, so is the claim, and the volume is Released.
    let pods: Api<Pod> = node.pods();
    pods.delete("writer", &DeleteParams::default())
        .await
        .expect("delete pod");
    eventually(Duration::from_secs(90), "web-data gone", || async {
        pvcs.get_opt("web-data").await.ok()?.is_none().then_some(())
    })
    .await;
    eventually(WAIT, "pv-web Released", || async {
        let v = pvs.get("pv-web").await.ok()?;
        (phase_of_volume(&v) == "Released").then_some(())
    })
    .await;
    assert!(host_file.exists(), "Retain keeps the data");
}
