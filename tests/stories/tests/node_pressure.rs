//! User story: a pod eats the node's memory; the node reports MemoryPressure,
//! is tainted, and evicts that pod, as the kubelet does — on a real one-node
//! cluster (`cargo xtask up --nodes 1`).
//!
//! With Kubernetes' default thresholds the node reports MemoryPressure,
//! DiskPressure and PIDPressure False with the kubelet's reasons and carries
//! no pressure taint. noded is then restarted with `--eviction-hard` set
//! 1.5 GiB below the node's `memory.available` measured now the way the
//! kubelet measures it (MemTotal minus the root memory cgroup's working set)
//! — a deterministic trigger: nothing is under pressure until a BestEffort pod
//! `hog` holds ~2.9 GiB (two `dd` buffers blocked writing into a pipe). Then
//! the node reports MemoryPressure=True (`KubeletHasInsufficientMemory`,
//! "kubelet has insufficient memory available"), the node lifecycle
//! controller taints it `node.kubernetes.io/memory-pressure:NoSchedule`,
//! `hog` (usage above its zero request, ranked first) is evicted — phase
//! Failed, reason `Evicted`, the kubelet's message naming the threshold and
//! the container, an `Evicted` event — while the Guaranteed pod `steady`
//! stays Running (the hog's memory is freed, so the threshold is no longer
//! met and no second pod goes). The condition stays True for the pressure
//! transition period (5 m), so a new pod without a toleration stays Pending
//! with a FailedScheduling message naming the taint.
//!
//! Needs root and ~3 GiB of free memory. Build first: `cargo build --workspace --bins`.

use std::time::Duration;

use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster, BUSYBOX_IMAGE};

const WAIT: Duration = Duration::from_secs(90);

/// `memory.available` as noded (and the kubelet) computes it, in bytes.
fn memory_available() -> i64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let field = |name: &str| -> i64 {
        let line = meminfo
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .expect("meminfo field");
        line.split_whitespace().nth(1).unwrap().parse::<i64>().unwrap() * 1024
    };
    let total = field("MemTotal");
    let root = std::path::Path::new("/sys/fs/cgroup/memory");
    let working_set = match std::fs::read_to_string(root.join("memory.usage_in_bytes")) {
        Ok(usage) => {
            let stat = std::fs::read_to_string(root.join("memory.stat")).expect("memory.stat");
            let inactive: i64 = stat
                .lines()
                .find_map(|l| l.strip_prefix("total_inactive_file "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            usage.trim().parse::<i64>().unwrap() - inactive
        }
        Err(_) => total - field("MemFree") - field("Inactive(file)"),
    };
    total - working_set
}

fn node_json(cluster: &TestCluster, node: &str) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", "node", node, "-o", "json"])).expect("node json")
}

fn condition(node: &Value, kind: &str) -> (String, String, String) {
    let c = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .cloned()
        .unwrap_or(Value::Null);
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

fn taint_keys(node: &Value) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn pod_json(cluster: &TestCluster, name: &str) -> Value {
    serde_json::from_slice(&cluster.kubectl(&["get", "pod", name, "-o", "json"]).stdout).unwrap_or(Value::Null)
}

fn manifests() -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: steady, labels: {{app: steady}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: steady
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    resources:
      requests: {{cpu: 50m, memory: 64Mi}}
      limits: {{cpu: 50m, memory: 64Mi}}
"#
    )
}

fn hog() -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: hog
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "dd if=/dev/zero bs=1500M count=1 | sleep 3600 & dd if=/dev/zero bs=1500M count=1 | sleep 3600 & wait"]
"#
    )
}

const LATE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: late}
spec:
  containers:
  - name: late
    image: busybox:1.35.0
    command: ["sleep", "3600"]
"#;

#[test]
fn a_memory_hog_is_evicted_under_memory_pressure_and_the_node_is_tainted() {
    let cluster = TestCluster::up(1, &[]);
    let node = cluster.node_name(1);

    // Default thresholds: no pressure, no pressure taint.
    let mut last = Value::Null;
    let calm = wait_for(WAIT, || {
        last = node_json(&cluster, &node);
        (condition(&last, "Ready").0 == "True").then_some(())
    });
    assert!(calm.is_some(), "node never Ready: {last}");
    assert_eq!(
        condition(&last, "MemoryPressure"),
        (
            "False".into(),
            "KubeletHasSufficientMemory".into(),
            "kubelet has sufficient memory available".into()
        )
    );
    assert_eq!(
        condition(&last, "DiskPressure"),
        (
            "False".into(),
            "KubeletHasNoDiskPressure".into(),
            "kubelet has no disk pressure".into()
        )
    );
    assert_eq!(
        condition(&last, "PIDPressure"),
        (
            "False".into(),
            "KubeletHasSufficientPID".into(),
            "kubelet has sufficient PID available".into()
        )
    );
    assert!(
        !taint_keys(&last).iter().any(|t| t.contains("pressure")),
        "{:?}",
        taint_keys(&last)
    );

    // noded again, with a memory threshold 1.5 GiB below what is available now.
    let pid = cluster.pid(&format!("{node}-noded")).expect("noded pid");
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    assert!(
        wait_for(Duration::from_secs(30), || (!std::path::Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists())
        .then_some(()))
        .is_some(),
        "noded did not stop"
    );
    let threshold_kib = (memory_available() - (3 << 29)) / 1024;
    eprintln!("eviction threshold: memory.available<{threshold_kib}Ki");
    let hard = format!("--noded-arg=--eviction-hard=memory.available<{threshold_kib}Ki");
    cluster.start(&[&hard, "--noded-arg=--housekeeping-interval=2s"]);

    cluster.apply(&manifests());
    cluster.wait_running("app=steady", 1, WAIT);
    let still_calm = node_json(&cluster, &node);
    assert_eq!(
        condition(&still_calm, "MemoryPressure").0,
        "False",
        "pressure before the hog"
    );

    cluster.apply(&hog());
    let pressed = wait_for(Duration::from_secs(120), || {
        last = node_json(&cluster, &node);
        (condition(&last, "MemoryPressure").0 == "True").then_some(())
    });
    assert!(pressed.is_some(), "no MemoryPressure: {last}\n{}", cluster.logs_tail());
    assert_eq!(
        condition(&last, "MemoryPressure"),
        (
            "True".into(),
            "KubeletHasInsufficientMemory".into(),
            "kubelet has insufficient memory available".into()
        )
    );
    let tainted = wait_for(WAIT, || {
        last = node_json(&cluster, &node);
        taint_keys(&last)
            .contains(&"node.kubernetes.io/memory-pressure:NoSchedule".to_string())
            .then_some(())
    });
    assert!(tainted.is_some(), "no memory-pressure taint: {:?}", taint_keys(&last));

    // The hog is evicted; its object stays, Failed / Evicted.
    let mut hog_now = Value::Null;
    let evicted = wait_for(WAIT, || {
        hog_now = pod_json(&cluster, "hog");
        (hog_now["status"]["reason"] == "Evicted").then_some(())
    });
    assert!(evicted.is_some(), "hog not evicted: {hog_now}\n{}", cluster.logs_tail());
    assert_eq!(hog_now["status"]["phase"], "Failed");
    let message = hog_now["status"]["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.starts_with(&format!(
            "The node was low on resource: memory. Threshold quantity: {}, available: ",
            sluice_noded_quantity(threshold_kib * 1024)
        )),
        "{message}"
    );
    assert!(
        message.contains("Container hog was using ")
            && message.ends_with("request is 0, has larger consumption of memory. "),
        "{message}"
    );
    let disruption = hog_now["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "DisruptionTarget")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(disruption["reason"], "TerminationByKubelet", "{hog_now}");
    let events = wait_for(WAIT, || {
        let out = cluster.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=hog,reason=Evicted",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        out.contains("The node was low on resource: memory.").then_some(out)
    });
    assert!(events.is_some(), "no Evicted event");

    // The Guaranteed pod stays (the memory came back: nobody else goes).
    std::thread::sleep(Duration::from_secs(8));
    let steady = pod_json(&cluster, "steady");
    assert_eq!(steady["status"]["phase"], "Running", "{steady}");
    assert!(steady["status"]["reason"].is_null(), "{steady}");

    // New pods without the toleration stay off the tainted node.
    cluster.apply(LATE);
    let mut late = Value::Null;
    let pending = wait_for(WAIT, || {
        late = pod_json(&cluster, "late");
        let scheduled = late["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "PodScheduled")
            .cloned()
            .unwrap_or(Value::Null);
        scheduled["message"]
            .as_str()
            .is_some_and(|m| m.contains("untolerated taint {node.kubernetes.io/memory-pressure: }"))
            .then_some(())
    });
    assert!(pending.is_some(), "late was not kept off: {late}");
    assert_eq!(late["status"]["phase"], "Pending");
    let failed_scheduling = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=late,reason=FailedScheduling",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        failed_scheduling.contains("node.kubernetes.io/memory-pressure"),
        "{failed_scheduling}"
    );
}

/// A byte count as Kubernetes prints a binary quantity (largest exact suffix).
fn sluice_noded_quantity(mut value: i64) -> String {
    let mut unit = "";
    for suffix in ["Ki", "Mi", "Gi", "Ti"] {
        if value % 1024 != 0 {
            break;
        }
        value /= 1024;
        unit = suffix;
    }
    format!("{value}{unit}")
}
