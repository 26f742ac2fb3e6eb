//! A CSI driver plugged into the cluster.
//!
//! The driver is `sluice-csi-hostpath` (tests/csi-hostpath: a small CSI
//! driver backed by directories, with real bind mounts), run on the node's
//! side as a process serving its CSI socket and a registration socket in
//! noded's `plugins_registry` directory, as node-driver-registrar would;
//! next to it `sluice-csi-controller` plays csi-provisioner and
//! csi-attacher. The user sees the driver registered on the node (CSINode,
//! the `csi.volume.kubernetes.io/nodeid` annotation), creates a
//! StorageClass for it, a claim and a pod: the claim binds to a volume made
//! by `CreateVolume`, a VolumeAttachment appears and is attached, and what
//! the pod writes lands in the driver's backing directory. Deleting the pod
//! unpublishes and unstages the volume (no mounts left) and detaches it;
//! deleting the claim deletes the volume (`DeleteVolume`) and its PV.
//!
//! Needs root. Build first: `cargo build --workspace --bins`.

use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const DRIVER: &str = "hostpath.csi.sluice.dev";

/// Processes this story started, killed (by pid) on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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

fn mounts_below(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.display().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(str::to_owned)
        .collect()
}

fn calls(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

#[test]
fn a_csi_driver_provisions_attaches_and_mounts_volumes() {
    let cluster = TestCluster::up(1, &[]);
    let node = cluster.node_name(1);
    let noded_state = cluster.home().join("nodes").join(&node).join("noded");
    let csi_dir: PathBuf = cluster.home().join("csi");
    let backing = csi_dir.join("backing");
    let socket = csi_dir.join("csi.sock");
    let call_log = csi_dir.join("calls.log");
    let registration = noded_state.join("plugins_registry").join(format!("{DRIVER}-reg.sock"));
    std::fs::create_dir_all(&csi_dir).unwrap();

    // The driver's node plugin (with its registrar) and controller sidecars.
    let log = |name: &str| std::fs::File::create(csi_dir.join(name)).unwrap();
    let driver = Command::new(sluice_tests::workspace_bin("sluice-csi-hostpath"))
        .arg("--endpoint")
        .arg(&socket)
        .arg("--backing-dir")
        .arg(&backing)
        .args(["--nodeid", &node])
        .arg("--registration-socket")
        .arg(&registration)
        .arg("--call-log")
        .arg(&call_log)
        .stdout(Stdio::null())
        .stderr(log("driver.log"))
        .spawn()
        .expect("start sluice-csi-hostpath");
    let mut procs = Procs(vec![driver]);
    wait_for(Duration::from_secs(30), || socket.exists().then_some(())).expect("the driver listens");
    let controller = Command::new(sluice_tests::workspace_bin("sluice-csi-controller"))
        .arg("--csi-address")
        .arg(&socket)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .stdout(Stdio::null())
        .stderr(log("controller.log"))
        .spawn()
        .expect("start sluice-csi-controller");
    procs.0.push(controller);
    let logs = || {
        format!(
            "driver:\n{}\ncontroller:\n{}\n{}",
            std::fs::read_to_string(csi_dir.join("driver.log")).unwrap_or_default(),
            std::fs::read_to_string(csi_dir.join("controller.log")).unwrap_or_default(),
            cluster.logs_tail()
        )
    };

    // The driver is registered on the node.
    cluster.apply(&format!(
        r#"
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {{name: {DRIVER}}}
spec: {{attachRequired: true, podInfoOnMount: true, fsGroupPolicy: File}}
"#
    ));
    let csinode = wait_for(Duration::from_secs(60), || {
        let c = get_json(&cluster, &["csinode", &node])?;
        let d = c["spec"]["drivers"]
            .as_array()?
            .iter()
            .find(|d| d["name"] == DRIVER)?
            .clone();
        Some(d)
    })
    .unwrap_or_else(|| panic!("the driver never appeared in CSINode {node}\n{}", logs()));
    assert_eq!(csinode["nodeID"], node.as_str(), "{csinode}");
    assert_eq!(
        csinode["topologyKeys"][0], "topology.hostpath.csi.sluice.dev/node",
        "{csinode}"
    );
    let n = get_json(&cluster, &["node", &node]).unwrap();
    let ids: Value = serde_json::from_str(
        n["metadata"]["annotations"]["csi.volume.kubernetes.io/nodeid"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ids[DRIVER], node.as_str(), "{ids}");

    // A class, a claim and a pod.
    cluster.apply(&format!(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: csi-hostpath}}
provisioner: {DRIVER}
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  storageClassName: csi-hostpath
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: writer, labels: {{app: writer}}}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{fsGroup: 2000}}
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo hello from the pod > /data/hello && sleep 3600']
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: data}}
"#
    ));
    let pods = cluster.wait_running("app=writer", 1, Duration::from_secs(180));
    assert_eq!(pods[0].node.as_deref(), Some(node.as_str()));
    let claim = get_json(&cluster, &["pvc", "data"]).unwrap();
    assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
    let uid = claim["metadata"]["uid"].as_str().unwrap().to_string();
    let volume = format!("pvc-{uid}");
    assert_eq!(claim["spec"]["volumeName"], volume.as_str());
    let pv = get_json(&cluster, &["pv", &volume]).unwrap();
    assert_eq!(pv["spec"]["csi"]["driver"], DRIVER, "{pv}");
    assert_eq!(pv["spec"]["csi"]["volumeHandle"], volume.as_str(), "{pv}");
    assert_eq!(pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"], DRIVER);
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0],
        node.as_str(),
        "{pv}"
    );

    // The attach path ran: an attached VolumeAttachment named as Kubernetes names it.
    let vas = get_json(&cluster, &["volumeattachments"]).unwrap();
    let va = vas["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["spec"]["source"]["persistentVolumeName"] == volume.as_str())
        .unwrap_or_else(|| panic!("no VolumeAttachment for {volume}: {vas}"))
        .clone();
    assert_eq!(va["spec"]["attacher"], DRIVER);
    assert_eq!(va["spec"]["nodeName"], node.as_str());
    assert_eq!(va["status"]["attached"], true, "{va}");
    assert_eq!(
        va["status"]["attachmentMetadata"]["attachedNode"],
        node.as_str(),
        "{va}"
    );
    assert!(va["metadata"]["name"].as_str().unwrap().starts_with("csi-"), "{va}");

    // What the pod wrote is in the driver's backing directory.
    let file = backing.join(&volume).join("hello");
    let written = wait_for(Duration::from_secs(30), || std::fs::read_to_string(&file).ok())
        .unwrap_or_else(|| panic!("{} never written\n{}", file.display(), logs()));
    assert_eq!(written.trim(), "hello from the pod");
    let mounted = mounts_below(&noded_state);
    assert!(
        mounted.iter().any(|m| m.ends_with("/globalmount")),
        "staged: {mounted:?}"
    );
    assert!(
        mounted.iter().any(|m| m.ends_with("/volumes/data")),
        "published: {mounted:?}"
    );
    let log = calls(&call_log);
    for call in [
        "CreateVolume",
        "ControllerPublishVolume",
        "NodeStageVolume",
        "NodePublishVolume",
    ] {
        assert!(log.contains(&format!("{call} {volume}")), "{call} missing:\n{log}");
    }

    // Deleting the pod unpublishes, unstages and detaches the volume.
    cluster.kubectl_ok(&["delete", "pod", "writer", "--wait=true", "--timeout=120s"]);
    let unmounted = wait_for(WAIT, || mounts_below(&noded_state).is_empty().then_some(()));
    assert!(
        unmounted.is_some(),
        "mounts left: {:?}\n{}",
        mounts_below(&noded_state),
        logs()
    );
    let detached = wait_for(WAIT, || {
        let vas = get_json(&cluster, &["volumeattachments"])?;
        vas["items"].as_array()?.is_empty().then_some(())
    });
    assert!(detached.is_some(), "VolumeAttachment left\n{}", logs());
    let log = calls(&call_log);
    for call in ["NodeUnpublishVolume", "NodeUnstageVolume", "ControllerUnpublishVolume"] {
        assert!(log.contains(&format!("{call} {volume}")), "{call} missing:\n{log}");
    }
    assert!(file.exists(), "the data outlives the pod");

    // Deleting the claim deletes the volume.
    cluster.kubectl_ok(&["delete", "pvc", "data", "--wait=true", "--timeout=120s"]);
    let gone = wait_for(WAIT, || get_json(&cluster, &["pv", &volume]).is_none().then_some(()));
    assert!(gone.is_some(), "PV {volume} left\n{}", logs());
    assert!(calls(&call_log).contains(&format!("DeleteVolume {volume}")));
    assert!(!backing.join(&volume).exists(), "the backing directory is removed");

    // Clean up: the processes (by pid, on drop), their sockets.
    drop(procs);
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&registration);
}
