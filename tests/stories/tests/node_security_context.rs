//! A user hardens pods and uses the node's namespaces, and noded runs them
//! as the kubelet would.
//!
//! `cargo xtask up --nodes 1`, then one manifest of busybox pods:
//! * `secure` (pod `runAsUser: 1000`, `runAsGroup: 3000`,
//!   `supplementalGroups: [4000]`, `fsGroup: 5000`, `seccompProfile:
//!   RuntimeDefault`; container `allowPrivilegeEscalation: false`): `id` shows
//!   the user and groups, its emptyDir belongs to the fsGroup (setgid, so new
//!   files too), `/proc/self/status` shows `NoNewPrivs: 1` and seccomp filtering;
//! * `tools` (root, `readOnlyRootFilesystem`, `capabilities` add NET_ADMIN and
//!   drop NET_RAW, `hostAliases`, downward-API `resourceFieldRef`s): writing to
//!   `/` fails, `CapEff` has NET_ADMIN and lacks NET_RAW, `/etc/hosts` has the
//!   aliases under the pod's own entry, the env values are the kubelet's
//!   (limits, requests, the node's allocatable CPU when there is no limit);
//! * `nonroot` (`runAsNonRoot` with busybox, which runs as root): waits in
//!   `CreateContainerConfigError` with the kubelet's message, also in a
//!   Warning `Failed` event;
//! * `hostnet` (`hostNetwork`, httpd on 18080): its podIP is the node's
//!   address, it sees the node's interfaces, its containerPort is defaulted
//!   to a hostPort, and a ClusterIP Service in front of it answers from the
//!   `tools` pod (the endpoint is the node's address);
//! * `last-words` (`restartPolicy: Never`): one container writes its
//!   termination message file, one fails with `FallbackToLogsOnError`; both
//!   messages show in `kubectl get pod -o jsonpath`.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster, BUSYBOX_IMAGE};
use std::time::{Duration, Instant};

fn manifest() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: secure}}
spec:
  terminationGracePeriodSeconds: 0
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    supplementalGroups: [4000]
    fsGroup: 5000
    seccompProfile: {{type: RuntimeDefault}}
  volumes: [{{name: data, emptyDir: {{}}}}]
  containers:
  - name: app
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
    securityContext: {{allowPrivilegeEscalation: false}}
    volumeMounts: [{{name: data, mountPath: /data}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: tools}}
spec:
  terminationGracePeriodSeconds: 0
  hostAliases:
  - ip: 10.1.2.3
    hostnames: [foo.local, bar.local]
  containers:
  - name: app
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
    resources:
      limits: {{memory: 64Mi}}
      requests: {{cpu: 250m, memory: 64Mi}}
    securityContext:
      readOnlyRootFilesystem: true
      capabilities: {{add: [NET_ADMIN], drop: [NET_RAW]}}
    env:
    - name: MEMORY_MI
      valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}
    - name: CPU_REQUEST_M
      valueFrom: {{resourceFieldRef: {{resource: requests.cpu, divisor: 1m}}}}
    - name: CPU_LIMIT_M
      valueFrom: {{resourceFieldRef: {{resource: limits.cpu, divisor: 1m}}}}
    - name: CPU_LIMIT
      valueFrom: {{resourceFieldRef: {{resource: limits.cpu}}}}
    - name: POD_IPS
      valueFrom: {{fieldRef: {{fieldPath: status.podIPs}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: nonroot}}
spec:
  terminationGracePeriodSeconds: 0
  securityContext: {{runAsNonRoot: true}}
  containers:
  - name: app
    image: {BUSYBOX_IMAGE}
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: hostnet, labels: {{app: hostnet}}}}
spec:
  terminationGracePeriodSeconds: 0
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  containers:
  - name: app
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "mkdir -p /tmp/www && echo host-network-page > /tmp/www/index.html && exec httpd -f -p 18080 -h /tmp/www"]
    ports: [{{containerPort: 18080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: hostnet}}
spec:
  selector: {{app: hostnet}}
  ports: [{{port: 80, targetPort: 18080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: last-words}}
spec:
  restartPolicy: Never
  containers:
  - name: file
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "printf bye-from-the-file > /dev/termination-log; exit 3"]
  - name: logs
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "echo first-line; echo oops-in-the-logs; exit 1"]
    terminationMessagePolicy: FallbackToLogsOnError
"#
    )
}

fn pod(cluster: &TestCluster, name: &str) -> Value {
    let out = cluster.kubectl(&["get", "pod", name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn wait_pod(cluster: &TestCluster, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_for(Duration::from_secs(90), || {
        last = pod(cluster, name);
        ok(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "pod {name}: timed out waiting for {what}; last seen: {:#}\n{}",
            last["status"],
            cluster.logs_tail()
        )
    })
}

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

/// `kubectl exec <pod> -- sh -c <script>`: (success, stdout + stderr).
fn exec(cluster: &TestCluster, pod: &str, script: &str) -> (bool, String) {
    let out = cluster.kubectl(&["exec", pod, "--", "sh", "-c", script]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn exec_ok(cluster: &TestCluster, pod: &str, script: &str) -> String {
    let (ok, text) = exec(cluster, pod, script);
    assert!(ok, "`{script}` in {pod}: {text}");
    text.trim().to_string()
}

#[test]
fn security_contexts_host_namespaces_and_termination_messages_reach_the_containers() {
    let start = Instant::now();
    let cluster = TestCluster::up(1, &[]);
    let up = start.elapsed();
    cluster.apply(&manifest());

    // Users, groups, no_new_privs and the runtime's default seccomp filter.
    wait_pod(&cluster, "secure", "Running", running);
    assert_eq!(exec_ok(&cluster, "secure", "id -u; id -g"), "1000\n3000");
    let groups = exec_ok(&cluster, "secure", "id -G");
    let groups: Vec<&str> = groups.split_whitespace().collect();
    assert!(groups.contains(&"4000") && groups.contains(&"5000"), "{groups:?}");
    // fsGroup owns the volume; new files inherit the group (setgid directory).
    assert_eq!(
        exec_ok(
            &cluster,
            "secure",
            "stat -c '%g %A' /data; touch /data/f && stat -c %g /data/f"
        ),
        "5000 drwxrwsrwx\n5000"
    );
    let status = exec_ok(&cluster, "secure", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "filtered by RuntimeDefault: {status}");

    // A read-only root, capabilities, hostAliases and the downward API.
    let tools = wait_pod(&cluster, "tools", "Running", running);
    let (wrote, text) = exec(&cluster, "tools", "touch /written");
    assert!(!wrote && text.contains("Read-only file system"), "{text}");
    let cap_eff = exec_ok(&cluster, "tools", "grep ^CapEff: /proc/self/status | cut -f2");
    let cap_eff = u64::from_str_radix(&cap_eff, 16).expect("CapEff is hex");
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_NET_RAW: u64 = 1 << 13;
    assert!(
        cap_eff & CAP_NET_ADMIN != 0 && cap_eff & CAP_NET_RAW == 0,
        "CapEff {cap_eff:#x}"
    );
    let hosts = exec_ok(&cluster, "tools", "cat /etc/hosts");
    let pod_ip = tools["status"]["podIP"].as_str().expect("tools has an IP").to_string();
    let lines: Vec<&str> = hosts.lines().collect();
    assert!(lines.contains(&format!("{pod_ip}\ttools").as_str()), "{hosts}");
    assert!(lines.ends_with(&["10.1.2.3\tfoo.local\tbar.local"]), "{hosts}");
    let node = cluster.kubectl_ok(&["get", "node", &cluster.node_name(1), "-o", "json"]);
    let node: Value = serde_json::from_str(&node).expect("node JSON");
    let allocatable_m = allocatable_cpu_millis(&node);
    let env = exec_ok(
        &cluster,
        "tools",
        "echo $MEMORY_MI $CPU_REQUEST_M $CPU_LIMIT_M $CPU_LIMIT $POD_IPS",
    );
    assert_eq!(
        env,
        format!("64 250 {allocatable_m} {} {pod_ip}", allocatable_m.div_ceil(1000)),
        "limits.cpu without a limit is the node's allocatable CPU, rounded up to cores"
    );

    // runAsNonRoot with an image that runs as root: the kubelet's refusal.
    let nonroot = wait_pod(&cluster, "nonroot", "CreateContainerConfigError", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    let uid = nonroot["metadata"]["uid"].as_str().unwrap_or_default();
    assert_eq!(
        nonroot["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"nonroot_default({uid})\", container: app)"
        )
    );
    let event = wait_for(Duration::from_secs(30), || {
        let out = cluster.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=nonroot",
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        list["items"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "Failed" && e["type"] == "Warning")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
    });
    assert_eq!(
        event,
        Some(format!(
            "Error: container has runAsNonRoot and image will run as root (pod: \"nonroot_default({uid})\", container: app)"
        )),
        "the kubelet's Warning Failed event"
    );

    // The host network: the node's address and interfaces.
    let hostnet = wait_pod(&cluster, "hostnet", "Running", running);
    let node_ip = cluster.node_ip(1);
    assert_eq!(hostnet["status"]["podIP"], node_ip.as_str(), "{:#}", hostnet["status"]);
    let addresses = exec_ok(&cluster, "hostnet", "ip -4 -o addr");
    assert!(addresses.contains(&format!("inet {node_ip}/")), "{addresses}");
    assert_eq!(
        hostnet["spec"]["containers"][0]["ports"][0]["hostPort"], 18080,
        "a host-network containerPort is defaulted to a hostPort"
    );
    // A Service in front of it: its endpoint is the node's address, reached from a pod.
    let cluster_ip = cluster.kubectl_ok(&["get", "service", "hostnet", "-o", "jsonpath={.spec.clusterIP}"]);
    let fetch = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {cluster_ip} 80");
    let page = wait_for(Duration::from_secs(30), || {
        let (ok, text) = exec(&cluster, "tools", &fetch);
        (ok && text.contains("host-network-page")).then_some(text)
    });
    assert!(
        page.is_some(),
        "the hostNetwork pod answers through its Service {cluster_ip}: {:?}",
        exec(&cluster, "tools", &fetch)
    );

    // Termination messages: from the file, and from the logs on error.
    wait_pod(&cluster, "last-words", "Failed", |p| p["status"]["phase"] == "Failed");
    let message = |container: usize| {
        cluster.kubectl_ok(&[
            "get",
            "pod",
            "last-words",
            "-o",
            &format!("jsonpath={{.status.containerStatuses[{container}].state.terminated.message}}"),
        ])
    };
    let by_name = |name: &str| {
        let p = pod(&cluster, "last-words");
        let i = p["status"]["containerStatuses"]
            .as_array()
            .and_then(|cs| cs.iter().position(|c| c["name"] == name))
            .expect("container status");
        message(i)
    };
    assert_eq!(by_name("file"), "bye-from-the-file");
    assert_eq!(by_name("logs"), "first-line\noops-in-the-logs\n");

    eprintln!("cluster up in {up:?}, story done in {:?}", start.elapsed());
}

/// The node's allocatable CPU in millicores (`1900m` or `2`).
fn allocatable_cpu_millis(node: &Value) -> u64 {
    let cpu = node["status"]["allocatable"]["cpu"].as_str().expect("allocatable cpu");
    match cpu.strip_suffix('m') {
        Some(m) => m.parse().expect("millicores"),
        None => cpu.parse::<u64>().expect("cores") * 1000,
    }
}
