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
//! A one-node cluster runs Redis as a Deployment on a claim: what it wrote
//! is still there after its pod is deleted and replaced. The user then grows
//! the claim (`kubectl patch`), and the claim and its volume report the new
//! size with Kubernetes' resize events; shrinking it is refused.
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

/// The user story of issue 15: Redis keeps what it wrote on its claim when
/// its pod is deleted and the Deployment makes a new one; the claim then
/// grows when the user asks for more, as the class allows expansion.
#[test]
fn redis_keeps_its_data_on_a_claim_across_pods_and_the_claim_grows() {
    let cluster = TestCluster::up(1, &[]);
    cluster.apply(&claim("redis-data", None));
    cluster.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis}
spec:
  replicas: 1
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers:
      - name: redis
        image: redis:7.0.15
        command: [redis-server, --appendonly, "yes", --dir, /data, --protected-mode, "no"]
        ports: [{containerPort: 6379}]
        readinessProbe: {tcpSocket: {port: 6379}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes:
      - name: data
        persistentVolumeClaim: {claimName: redis-data}
"#,
    );
    let first = cluster.wait_running("app=redis", 1, WAIT).remove(0);
    let cli = |pod: &PodView, args: &[&str]| {
        let mut cmd = vec!["redis-cli"];
        cmd.extend_from_slice(args);
        let out = cluster.exec_in_pod(pod, &cmd);
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // redis-server may still be starting when the container runs.
    wait_for(Duration::from_secs(60), || {
        let out = cluster.exec_in_pod(&first, &["redis-cli", "ping"]);
        (String::from_utf8_lossy(&out.stdout).trim() == "PONG").then_some(())
    })
    .expect("redis answers PING");
    assert_eq!(cli(&first, &["set", "greeting", "survives"]), "OK");
    assert_eq!(cli(&first, &["rpush", "queue", "a", "b", "c"]), "3");

    // The pod goes; the Deployment's next pod finds the data.
    cluster.kubectl_ok(&["delete", "pod", &first.name, "--wait=true"]);
    let second = wait_for(WAIT, || {
        cluster
            .pods("app=redis")
            .into_iter()
            .find(|p| p.name != first.name && p.phase == "Running" && p.ready)
    })
    .unwrap_or_else(|| panic!("no second redis pod\n{}", cluster.logs_tail()));
    assert_eq!(cli(&second, &["get", "greeting"]), "survives");
    assert_eq!(cli(&second, &["lrange", "queue", "0", "-1"]), "a\nb\nc");

    // The user asks for more space: the claim and its volume grow.
    let volume = wait_bound(&cluster, "redis-data");
    cluster.kubectl_ok(&[
        "patch",
        "pvc",
        "redis-data",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}"#,
    ]);
    wait_for(WAIT, || {
        let c = get_json(&cluster, &["pvc", "redis-data"])?;
        (c["status"]["capacity"]["storage"] == "128Mi").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the claim never grew\n{}\n{}",
            cluster.kubectl_ok(&["describe", "pvc", "redis-data"]),
            cluster.logs_tail()
        )
    });
    let pv = get_json(&cluster, &["pv", &volume]).unwrap();
    assert_eq!(pv["spec"]["capacity"]["storage"], "128Mi", "{pv}");
    let c = get_json(&cluster, &["pvc", "redis-data"]).unwrap();
    assert!(
        c["status"]["conditions"].as_array().is_none_or(|c| c.is_empty()),
        "no resize condition is left: {c}"
    );
    let described = wait_for(Duration::from_secs(30), || {
        let out = cluster.kubectl_ok(&["describe", "pvc", "redis-data"]);
        out.contains("VolumeResizeSuccessful").then_some(out)
    })
    .expect("a VolumeResizeSuccessful event");
    for reason in ["ExternalExpanding", "Resizing", "Resize volume succeeded"] {
        assert!(described.contains(reason), "{reason} missing:\n{described}");
    }
    assert!(described.contains("128Mi"), "{described}");
    // Shrinking below what the volume has is refused, as Kubernetes refuses it.
    let out = cluster.kubectl(&[
        "patch",
        "pvc",
        "redis-data",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"64Mi"}}}}"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"),
        "{err}"
    );
    // Redis kept running on its volume throughout.
    assert_eq!(cli(&second, &["get", "greeting"]), "survives");
}
