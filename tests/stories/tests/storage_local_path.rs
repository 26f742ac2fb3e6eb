//! Node-local persistent volumes with the default `local-path` StorageClass.
//!
//! A two-node cluster (`cargo xtask up --nodes 2`). The user sees the
//! default class in `kubectl get storageclass`, creates a claim without a
//! class, and sees it wait for its first consumer (Pending, the
//! `WaitForFirstConsumer` event). Once a pod uses it, the claim is bound to a
//! provisioned volume pinned to the node the pod was scheduled to; what the
//! pod wrote is still there for the next pod using the claim, which lands on
//! the same node. Deleting the pod and the claim removes the volume and its
//! directory on that node. A class with `reclaimPolicy: Retain` keeps the
//! volume `Released` with its directory.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use serde_json::Value;
use sluice_tests::cluster::{wait_for, PodView, TestCluster};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn claim(name: &str, class: Option<&str>) -> String {
    let class = class.map(|c| format!("  storageClassName: {c}\n")).unwrap_or_default();
    format!(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}}}
spec:
{class}  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
"#
    )
}

fn pod(name: &str, claim: &str, script: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sh, -c, '{script}']
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}}}
"#
    )
}

fn get_json(cluster: &TestCluster, args: &[&str]) -> Option<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = cluster.kubectl(&all);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Waits for the claim to be Bound; returns its volume's name.
fn wait_bound(cluster: &TestCluster, claim: &str) -> String {
    wait_for(WAIT, || {
        let c = get_json(cluster, &["pvc", claim])?;
        (c["status"]["phase"] == "Bound").then(|| c["spec"]["volumeName"].as_str().map(str::to_owned))?
    })
    .unwrap_or_else(|| {
        panic!(
            "claim {claim} never bound:\n{}\n{}",
            String::from_utf8_lossy(&cluster.kubectl(&["describe", "pvc", claim]).stdout),
            cluster.logs_tail()
        )
    })
}

fn wait_gone(cluster: &TestCluster, args: &[&str]) {
    let gone = wait_for(WAIT, || get_json(cluster, args).is_none().then_some(()));
    assert!(gone.is_some(), "{args:?} still exists\n{}", cluster.logs_tail());
}

fn running(cluster: &TestCluster, name: &str) -> PodView {
    cluster.wait_running(&format!("app={name}"), 1, WAIT).remove(0)
}

#[test]
fn claims_get_node_local_volumes_where_their_pod_runs() {
    let cluster = TestCluster::up(2, &[]);

    // The default class, as `kubectl get storageclass` shows it.
    let classes = wait_for(Duration::from_secs(60), || {
        let out = cluster.kubectl_ok(&["get", "storageclass"]);
        out.contains("local-path (default)").then_some(out)
    })
    .expect("the local-path class appears");
    let row = classes.lines().find(|l| l.starts_with("local-path")).unwrap();
    for column in ["sluice.dev/local-path", "Delete", "WaitForFirstConsumer"] {
        assert!(row.contains(column), "{column} missing from {row:?}");
    }
    // Every node publishes its storage root (noded does once its Node exists).
    for i in 1..=2 {
        let root = wait_for(Duration::from_secs(30), || {
            let node = get_json(&cluster, &["node", &cluster.node_name(i)])?;
            node["metadata"]["annotations"]["storage.sluice.dev/local-path-root"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default();
        assert!(Path::new(&root).is_dir(), "node {i} publishes root {root:?}");
    }

    // A claim without a class waits for its first consumer.
    cluster.apply(&claim("data", None));
    let waiting = wait_for(Duration::from_secs(30), || {
        let out = cluster.kubectl_ok(&["describe", "pvc", "data"]);
        out.contains("WaitForFirstConsumer").then_some(out)
    })
    .unwrap_or_else(|| panic!("no WaitForFirstConsumer event\n{}", cluster.logs_tail()));
    assert!(waiting.contains("Pending"), "{waiting}");
    let c = get_json(&cluster, &["pvc", "data"]).unwrap();
    assert_eq!(c["spec"]["storageClassName"], "local-path", "{c}");

    // A pod using it: the claim binds to a volume on the pod's node.
    cluster.apply(&pod("writer", "data", "echo kept > /data/hello && sleep 3600"));
    let writer = running(&cluster, "writer");
    let node = writer.node.clone().unwrap();
    let volume = wait_bound(&cluster, "data");
    let pv = get_json(&cluster, &["pv", &volume]).unwrap();
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0],
        node.as_str(),
        "{pv}"
    );
    assert_eq!(pv["spec"]["storageClassName"], "local-path");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    let dir = pv["spec"]["hostPath"]["path"].as_str().unwrap().to_string();
    let uid = c["metadata"]["uid"].as_str().unwrap();
    assert!(dir.ends_with(&format!("/pvc-{uid}_default_data")), "{dir}");
    let events = cluster.kubectl_ok(&["describe", "pvc", "data"]);
    assert!(events.contains("ProvisioningSucceeded"), "{events}");
    let written = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(Path::new(&dir).join("hello")).ok()
    });
    assert_eq!(written.as_deref(), Some("kept\n"));

    // The data outlives the pod; the next pod lands on the same node.
    cluster.kubectl_ok(&["delete", "pod", "writer", "--wait=true"]);
    cluster.apply(&pod("reader", "data", "cat /data/hello && sleep 3600"));
    let reader = running(&cluster, "reader");
    assert_eq!(reader.node.as_deref(), Some(node.as_str()));
    let logs = wait_for(Duration::from_secs(30), || {
        let out = cluster.kubectl_ok(&["logs", "reader"]);
        (!out.is_empty()).then_some(out)
    });
    assert_eq!(logs.as_deref(), Some("kept\n"));

    // Deleting the pod and the claim deletes the volume and its directory.
    cluster.kubectl_ok(&["delete", "pod", "reader", "--wait=true"]);
    cluster.kubectl_ok(&["delete", "pvc", "data"]);
    wait_gone(&cluster, &["pv", &volume]);
    assert!(!Path::new(&dir).exists(), "{dir} is still there");

    // A Retain class keeps the released volume and its directory.
    cluster.apply(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: keep}
provisioner: sluice.dev/local-path
reclaimPolicy: Retain
volumeBindingMode: WaitForFirstConsumer
"#,
    );
    cluster.apply(&claim("kept", Some("keep")));
    cluster.apply(&pod("keeper", "kept", "echo retained > /data/hello && sleep 3600"));
    running(&cluster, "keeper");
    let volume = wait_bound(&cluster, "kept");
    let pv = get_json(&cluster, &["pv", &volume]).unwrap();
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    let dir = pv["spec"]["hostPath"]["path"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(30), || {
        Path::new(&dir).join("hello").exists().then_some(())
    })
    .expect("the pod wrote into the volume");
    cluster.kubectl_ok(&["delete", "pod", "keeper", "--wait=true"]);
    cluster.kubectl_ok(&["delete", "pvc", "kept"]);
    wait_for(WAIT, || {
        let pv = get_json(&cluster, &["pv", &volume])?;
        (pv["status"]["phase"] == "Released").then_some(())
    })
    .unwrap_or_else(|| panic!("{volume} never Released\n{}", cluster.logs_tail()));
    std::thread::sleep(Duration::from_secs(3));
    assert!(get_json(&cluster, &["pv", &volume]).is_some(), "a Retain volume stays");
    assert_eq!(
        std::fs::read_to_string(Path::new(&dir).join("hello")).ok().as_deref(),
        Some("retained\n")
    );
}
