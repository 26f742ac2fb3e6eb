//! A user gives pods data through volumes, and noded prepares them as the
//! kubelet would.
//!
//! `cargo xtask up --nodes 1`, a ConfigMap `app-config`, a Secret
//! `app-secret` and a busybox pod `volumes` (labels `app: volumes`,
//! `tier: web`, cpu limit 500m) with:
//! * a hostPath `DirectoryOrCreate` volume on a directory under a temp dir
//!   the test owns: noded creates it (0755), and a file written in the pod
//!   is on the host;
//! * a downwardAPI volume (all labels, the pod's name, the cpu limit with
//!   divisor 1m) and a projected volume (a configMap key, a secret key, the
//!   pod's name): the files hold the kubelet's values;
//! * the configMap as a volume and one key of it mounted alone with
//!   `subPath`; after `kubectl patch` of the ConfigMap the volume's files
//!   (and the projected one's) change within 90 s, while the subPath file
//!   keeps its first content (as in Kubernetes);
//! * an emptyDir `medium: Memory` with `sizeLimit: 16Mi`: a tmpfs of that
//!   size inside the pod (`/proc/mounts`), unmounted from the node when the
//!   pod is deleted.
//!
//! A pod `waiting` needs a ConfigMap that does not exist yet: it stays
//! ContainerCreating with a `FailedMount` Warning (`MountVolume.SetUp failed
//! for volume "late" : configmap "late-config" not found`) seen in `kubectl
//! get events` and `kubectl describe`, and starts once the ConfigMap is
//! created. A pod `wrong-type` wants a hostPath `Directory` where there is
//! none and gets `hostPath type check failed: <path> is not a directory`.
//! A pod `claimer` mounts a persistentVolumeClaim that does not exist yet:
//! FailedMount (`error processing PVC default/data`), then a hostPath
//! PersistentVolume and the claim pre-bound to it are created and the claim
//! marked Bound (as the PV controller would), and the pod starts; what it
//! writes is in the PV's directory. A pod `hog` writes 4 MiB into a disk
//! emptyDir with `sizeLimit: 1Mi` and is evicted (phase Failed, reason
//! Evicted, the kubelet's `Usage of EmptyDir volume "scratch" exceeds the
//! limit "1Mi".` message and an Evicted event).
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster, BUSYBOX_IMAGE};
use std::path::Path;
use std::time::Duration;

fn manifest(host_dir: &Path, missing: &Path) -> String {
    let host_dir = host_dir.display();
    let missing = missing.display();
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: app-config}}
data: {{greeting: hello, app.conf: level=info}}
---
apiVersion: v1
kind: Secret
metadata: {{name: app-secret}}
data: {{password: czNjcmV0}}
---
apiVersion: v1
kind: Pod
metadata:
  name: volumes
  labels: {{app: volumes, tier: web}}
spec:
  terminationGracePeriodSeconds: 0
  volumes:
  - name: host
    hostPath: {{path: {host_dir}, type: DirectoryOrCreate}}
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
      - {{path: cpu, resourceFieldRef: {{containerName: app, resource: limits.cpu, divisor: 1m}}}}
  - name: all
    projected:
      sources:
      - configMap: {{name: app-config, items: [{{key: greeting, path: greeting}}]}}
      - secret: {{name: app-secret, items: [{{key: password, path: password}}]}}
      - downwardAPI: {{items: [{{path: name, fieldRef: {{fieldPath: metadata.name}}}}]}}
  - name: config
    configMap: {{name: app-config}}
  - name: cache
    emptyDir: {{medium: Memory, sizeLimit: 16Mi}}
  containers:
  - name: app
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
    resources:
      limits: {{cpu: 500m, memory: 64Mi}}
    volumeMounts:
    - {{name: host, mountPath: /host}}
    - {{name: info, mountPath: /info}}
    - {{name: all, mountPath: /all}}
    - {{name: config, mountPath: /config}}
    - {{name: config, mountPath: /etc/app.conf, subPath: app.conf}}
    - {{name: cache, mountPath: /cache}}
---
apiVersion: v1
kind: Pod
metadata: {{name: waiting}}
spec:
  terminationGracePeriodSeconds: 0
  volumes: [{{name: late, configMap: {{name: late-config}}}}]
  containers:
  - name: app
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
    volumeMounts: [{{name: late, mountPath: /late}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: wrong-type}}
spec:
  terminationGracePeriodSeconds: 0
  volumes: [{{name: nodir, hostPath: {{path: {missing}, type: Directory}}}}]
  containers:
  - name: app
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
    volumeMounts: [{{name: nodir, mountPath: /nodir}}]
"#
    )
}

fn claim_pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: claimer}}
spec:
  terminationGracePeriodSeconds: 0
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: data}}}}]
  containers:
  - name: app
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
    volumeMounts: [{{name: data, mountPath: /data}}]
"#
    )
}

fn claim_and_volume(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-data}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  hostPath: {{path: {dir}, type: DirectoryOrCreate}}
  claimRef: {{namespace: default, name: data}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: pv-data
  resources: {{requests: {{storage: 1Gi}}}}
"#
    )
}

fn pod(cluster: &TestCluster, name: &str) -> Value {
    let out = cluster.kubectl(&["get", "pod", name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

fn wait_running(cluster: &TestCluster, name: &str) -> Value {
    let mut last = Value::Null;
    wait_for(Duration::from_secs(120), || {
        last = pod(cluster, name);
        running(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "pod {name} not Running; last seen: {:#}\n{}",
            last["status"],
            cluster.logs_tail()
        )
    })
}

fn exec_ok(cluster: &TestCluster, pod: &str, script: &str) -> String {
    let out = cluster.kubectl(&["exec", pod, "--", "sh", "-c", script]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "`{script}` in {pod}: {text}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Messages of the `FailedMount` Warning events about pod `name` (`kubectl get events`).
fn failed_mounts(cluster: &TestCluster, name: &str) -> Vec<String> {
    warnings(cluster, name, "FailedMount")
}

/// The messages of the Warning events with `reason` about the object `name`.
fn warnings(cluster: &TestCluster, name: &str, reason: &str) -> Vec<String> {
    let out = cluster.kubectl(&["get", "events", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason && e["type"] == "Warning")
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn volumes_bring_host_files_pod_facts_config_and_memory_into_pods() {
    let owned = tempfile::Builder::new()
        .prefix("sluice-volumes-")
        .tempdir()
        .expect("temp dir");
    let host_dir = owned.path().join("host-data");
    let missing = owned.path().join("not-there");
    let cluster = TestCluster::up(1, &[]);
    cluster.apply(&manifest(&host_dir, &missing));

    // hostPath DirectoryOrCreate: created by the node, shared with the pod.
    let volumes = wait_running(&cluster, "volumes");
    let meta = std::fs::metadata(&host_dir).expect("noded created the hostPath directory");
    assert!(meta.is_dir());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o755
    );
    exec_ok(&cluster, "volumes", "echo written-in-the-pod > /host/note");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("note")).expect("file on the host"),
        "written-in-the-pod\n"
    );

    // downwardAPI and projected files.
    assert_eq!(
        exec_ok(&cluster, "volumes", "cat /info/labels"),
        "app=\"volumes\"\ntier=\"web\""
    );
    assert_eq!(exec_ok(&cluster, "volumes", "cat /info/name"), "volumes");
    assert_eq!(exec_ok(&cluster, "volumes", "cat /info/cpu"), "500");
    assert_eq!(
        exec_ok(
            &cluster,
            "volumes",
            "cat /all/greeting; echo; cat /all/password; echo; cat /all/name"
        ),
        "hello\ns3cret\nvolumes"
    );
    // The kubelet's layout: per-key links into ..data.
    assert_eq!(
        exec_ok(&cluster, "volumes", "readlink /config/greeting"),
        "..data/greeting"
    );
    // Volumes of API data are read-only.
    let out = cluster.kubectl(&["exec", "volumes", "--", "sh", "-c", "echo x > /config/new"]);
    assert!(!out.status.success(), "configMap volumes are mounted read-only");

    // subPath: one key as a single file.
    assert_eq!(
        exec_ok(&cluster, "volumes", "test -f /etc/app.conf && cat /etc/app.conf"),
        "level=info"
    );

    // emptyDir medium Memory: a tmpfs of sizeLimit.
    let mounts = exec_ok(&cluster, "volumes", "grep ' /cache ' /proc/mounts");
    assert!(mounts.starts_with("tmpfs /cache tmpfs"), "{mounts}");
    assert!(mounts.contains("size=16384k"), "{mounts}");

    // A ConfigMap update reaches the mounted files; the subPath file keeps its content.
    cluster.kubectl_ok(&[
        "patch",
        "configmap",
        "app-config",
        "--type=merge",
        "-p",
        r#"{"data":{"greeting":"updated","app.conf":"level=debug"}}"#,
    ]);
    let seen = wait_for(Duration::from_secs(90), || {
        let text = exec_ok(
            &cluster,
            "volumes",
            "cat /config/greeting; echo; cat /all/greeting; echo; cat /config/app.conf",
        );
        (text == "updated\nupdated\nlevel=debug").then_some(text)
    });
    assert!(seen.is_some(), "the ConfigMap update did not reach the pod within 90 s");
    assert_eq!(exec_ok(&cluster, "volumes", "cat /etc/app.conf"), "level=info");

    // A missing ConfigMap: FailedMount, ContainerCreating, then Running once it exists.
    let expected = "MountVolume.SetUp failed for volume \"late\" : configmap \"late-config\" not found";
    let events = wait_for(Duration::from_secs(60), || {
        let found = failed_mounts(&cluster, "waiting");
        found.iter().any(|m| m == expected).then_some(found)
    });
    assert!(
        events.is_some(),
        "no FailedMount event: {:?}",
        failed_mounts(&cluster, "waiting")
    );
    let waiting = pod(&cluster, "waiting");
    assert_eq!(
        waiting["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating",
        "{:#}",
        waiting["status"]
    );
    let described = cluster.kubectl_ok(&["describe", "pod", "waiting"]);
    assert!(
        described.contains("FailedMount") && described.contains(expected),
        "{described}"
    );
    cluster.kubectl_ok(&["create", "configmap", "late-config", "--from-literal=ready=yes"]);
    wait_running(&cluster, "waiting");
    assert_eq!(exec_ok(&cluster, "waiting", "cat /late/ready"), "yes");

    // A hostPath of the wrong type.
    let expected = format!("hostPath type check failed: {} is not a directory", missing.display());
    let events = wait_for(Duration::from_secs(60), || {
        let found = failed_mounts(&cluster, "wrong-type");
        found.iter().any(|m| m.ends_with(&expected)).then_some(found)
    });
    assert!(
        events.is_some(),
        "no type check failure: {:?}",
        failed_mounts(&cluster, "wrong-type")
    );
    assert!(!missing.exists(), "type Directory creates nothing");

    // A persistentVolumeClaim: the pod waits for its claim (unschedulable,
    // as kube-scheduler's VolumeBinding says), then mounts the bound PV's
    // hostPath once the PV controller has bound the pair.
    let pv_dir = owned.path().join("pv-data");
    cluster.apply(&claim_pod());
    let expected = r#"persistentvolumeclaim "data" not found"#;
    let events = wait_for(Duration::from_secs(60), || {
        let found = warnings(&cluster, "claimer", "FailedScheduling");
        found.iter().any(|m| m.contains(expected)).then_some(found)
    });
    assert!(
        events.is_some(),
        "no FailedScheduling for the missing claim: {:?}",
        warnings(&cluster, "claimer", "FailedScheduling")
    );
    assert_eq!(pod(&cluster, "claimer")["status"]["phase"], "Pending");
    cluster.apply(&claim_and_volume(&pv_dir));
    wait_running(&cluster, "claimer");
    exec_ok(&cluster, "claimer", "echo kept-on-the-volume > /data/f");
    assert_eq!(
        std::fs::read_to_string(pv_dir.join("f")).expect("file in the PV's directory"),
        "kept-on-the-volume\n"
    );

    // Deleting the pod unmounts its tmpfs from the node.
    let uid = volumes["metadata"]["uid"].as_str().expect("uid").to_string();
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&uid) && l.contains("/volumes/cache"))
    };
    assert!(mounted(), "the Memory emptyDir is a mount on the node");
    cluster.kubectl_ok(&["delete", "pod", "volumes", "--wait=true", "--timeout=60s"]);
    assert!(
        wait_for(Duration::from_secs(30), || (!mounted()).then_some(())).is_some(),
        "the pod's tmpfs is still mounted on the node"
    );

    // A disk emptyDir over its sizeLimit gets its pod evicted, as the kubelet does.
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    command: [sh, -c, "dd if=/dev/zero of=/scratch/fill bs=1M count=4 && sleep 3600"]
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  volumes:
  - name: scratch
    emptyDir: {{sizeLimit: 1Mi}}
"#
    ));
    let evicted = wait_for(Duration::from_secs(90), || {
        let p = pod(&cluster, "hog");
        (p["status"]["phase"] == "Failed").then_some(p)
    })
    .unwrap_or_else(|| panic!("the hog was not evicted: {}", pod(&cluster, "hog")));
    assert_eq!(evicted["status"]["reason"], "Evicted", "{evicted}");
    let message = evicted["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r#"Usage of EmptyDir volume "scratch" exceeds the limit "1Mi"."#),
        "{message}"
    );
    assert!(
        wait_for(Duration::from_secs(30), || (!warnings(&cluster, "hog", "Evicted")
            .is_empty())
        .then_some(()))
        .is_some(),
        "no Evicted event for the hog"
    );
    drop(cluster);
    drop(owned);
}
