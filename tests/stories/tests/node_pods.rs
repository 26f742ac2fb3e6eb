//! User stories: a node joins, and Pods created in the API run in containerd.
//!
//! Real etcd, API server, controller-manager (node IPAM gives the podCIDR),
//! containerd + runc with the local images, `noded` and `sluice-cni`. The
//! user sees the Node Ready with a podCIDR; a Pod Running and Ready with an
//! IP from it, serving over HTTP on that IP; a killed container restarted
//! with its restartCount; `kubectl get -o wide` and `kubectl describe`
//! showing all that; readiness probes driving Ready; ConfigMaps and Secrets
//! reaching containers as env and files; limits landing in the container's
//! cgroup; deletion honouring the grace period and emptying containerd; a
//! failing probe (on a named port) or a missing ConfigMap explained in
//! `kubectl describe` with the kubelet's Unhealthy, Killing and FailedMount
//! events; a starting pod's stored versions going from ContainerCreating
//! straight to Running and Ready, as the kubelet reports them; pods mounting
//! the same ConfigMap sharing the node's one watch of it; a quiet node
//! renewing its Lease but writing its status only when it changed.
//!
//! Needs root. Build first: `cargo build -p sluice-apiserver -p sluice-controllers
//! -p sluice-noded -p sluice-cni -p sluice-pause -p xtask` (or `cargo xtask test`).

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use sluice_tests::controllers::{eventually, serial};
use sluice_tests::node::{http_get, in_cidr, pod_ready, SingleNode};
use std::process::Command;
use std::time::{Duration, Instant};

/// Pod routes land in the root network namespace: a cluster CIDR no other test file uses.
const CLUSTER_CIDR: &str = "10.213.128.0/18";

fn kubectl(node: &SingleNode, args: &[&str]) -> String {
    let out = node.control_plane.kubectl().args(args).output().expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A busybox httpd serving `/www` on 8080, after running `setup` (shell).
fn httpd_pod(name: &str, setup: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "httpd",
                "image": "busybox:1.35.0",
                "command": ["sh", "-c", format!("mkdir -p /www && {setup} && exec httpd -f -p 8080 -h /www")],
                "ports": [{"containerPort": 8080}]
            }]
        }
    })
}

async fn wait_gone(pods: &Api<Pod>, name: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    eventually(timeout, &format!("pod {name} gone from the API"), || async {
        matches!(pods.get_opt(name).await, Ok(None)).then_some(())
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_created_in_the_api_runs_in_containerd_and_reports_running_with_its_ip() {
    let _serial = serial();
    let node = SingleNode::start("node-story-1", CLUSTER_CIDR).await;
    let client = node.client.clone();

    // The node registered with capacity and a lease, and got a podCIDR from the cluster CIDR.
    let cidr = node.pod_cidr.clone();
    assert!(
        in_cidr(cidr.split('/').next().unwrap(), CLUSTER_CIDR),
        "podCIDR {cidr} from the cluster CIDR"
    );
    let registered = Api::<Node>::all(client.clone()).get("node-story-1").await.unwrap();
    let capacity = registered.status.as_ref().unwrap().capacity.clone().unwrap();
    assert!(capacity.contains_key("cpu") && capacity.contains_key("memory") && capacity.contains_key("pods"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    assert!(
        leases.get_opt("node-story-1").await.unwrap().is_some(),
        "node lease exists"
    );

    // A ConfigMap and a Pod reading it, bound to the node.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let greeting = json!({"metadata": {"name": "greeting"}, "data": {"GREETING": "hello from sluice"}});
    configmaps
        .create(&PostParams::default(), &serde_json::from_value(greeting).unwrap())
        .await
        .unwrap();
    let mut web = httpd_pod("web", "echo \"$GREETING\" > /www/index.html");
    web["spec"]["containers"][0]["env"] =
        json!([{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "greeting", "key": "GREETING"}}}]);
    web["spec"]["containers"][0]["readinessProbe"] =
        json!({"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1});
    let created = Instant::now();
    node.create_pod(web).await;
    let running = node.wait_running_ready("web", Duration::from_secs(60)).await;
    eprintln!("pod web: create -> Running and Ready seen in {:?}", created.elapsed());

    let status = running.status.clone().unwrap();
    let ip = status.pod_ip.clone().unwrap();
    assert!(in_cidr(&ip, &cidr), "pod IP {ip} inside the node's podCIDR {cidr}");
    assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, ip);
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(status.start_time.is_some(), "startTime set");
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    let conditions: Vec<(String, String)> = status
        .conditions
        .clone()
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(
            conditions.contains(&(kind.to_string(), "True".to_string())),
            "{kind} True in {conditions:?}"
        );
    }
    let container = status.container_statuses.clone().unwrap()[0].clone();
    assert!(container.ready && container.state.as_ref().unwrap().running.is_some());
    assert_eq!(container.restart_count, 0);
    assert!(
        container.image_id.starts_with("sha256:") || container.image_id.contains('@'),
        "imageID {}",
        container.image_id
    );
    assert_eq!(
        http_get(&ip, 8080, "/").as_deref(),
        Some("hello from sluice"),
        "the pod serves the ConfigMap value"
    );

    // The pulled image is in the node's status.images (what the scheduler's
    // ImageLocality scores), by its repo digest, with its size.
    let nodes: Api<Node> = Api::all(client.clone());
    let images = eventually(Duration::from_secs(30), "the pulled image in status.images", || async {
        let images = nodes.get("node-story-1").await.ok()?.status?.images?;
        images
            .iter()
            .any(|i| i.names.iter().flatten().any(|n| *n == container.image_id))
            .then_some(images)
    })
    .await;
    assert!(
        images
            .iter()
            .all(|i| i.size_bytes.unwrap_or(0) > 0 && !i.names.as_deref().unwrap_or_default().is_empty()),
        "{images:?}"
    );
    assert!(
        images.windows(2).all(|w| w[0].size_bytes >= w[1].size_bytes),
        "largest first: {images:?}"
    );

    // kubectl shows the pod the way a user expects.
    let wide = kubectl(&node, &["get", "pods", "-o", "wide"]);
    let row = wide
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("web in:\n{wide}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &columns[1..4],
        &["1/1", "Running", "0"],
        "READY STATUS RESTARTS in {row}"
    );
    assert!(
        columns.contains(&ip.as_str()) && columns.contains(&"node-story-1"),
        "IP and NODE in {row}"
    );

    // A killed container (its process, by pid) is restarted and the restart is counted.
    let container_id = container.container_id.clone().unwrap();
    let pid = node.task_pid(&container_id);
    let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(killed.success(), "kill {pid}");
    let pods = node.pods();
    let restarted = eventually(Duration::from_secs(30), "restartCount 1 and Ready again", || async {
        let pod = pods.get("web").await.ok()?;
        let restarts = pod.status.as_ref()?.container_statuses.as_ref()?.first()?.restart_count;
        (restarts == 1 && pod_ready(&pod)).then_some(pod)
    })
    .await;
    let after = restarted.status.unwrap().container_statuses.unwrap()[0].clone();
    assert_ne!(after.container_id, container.container_id, "a new container");
    let last = after
        .last_state
        .and_then(|s| s.terminated)
        .expect("lastState.terminated after the kill");
    assert_eq!(last.exit_code, 137, "killed by SIGKILL");
    assert_eq!(
        http_get(&ip, 8080, "/").as_deref(),
        Some("hello from sluice"),
        "same IP after the restart"
    );

    let described = kubectl(&node, &["describe", "pod", "web"]);
    let words = described.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "Status: Running",
        &format!("IP: {ip}"),
        "Node: node-story-1/127.0.0.1",
        "Restart Count: 1",
        "Last State: Terminated",
        "Exit Code: 137",
        "Ready: True",
        "ContainersReady True",
        "Ready True",
        "QoS Class: BestEffort",
        "Normal Started",
        "Started container httpd",
        "Created container httpd",
        "already present on machine",
    ] {
        assert!(words.contains(expected), "describe shows {expected:?}:\n{described}");
    }

    // Delete: the pod leaves the API after its containers stopped; containerd is empty.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    wait_gone(&pods, "web", Duration::from_secs(30)).await;
    eventually(Duration::from_secs(10), "no containers left in containerd", || async {
        node.containers().is_empty().then_some(())
    })
    .await;
    assert_eq!(http_get(&ip, 8080, "/"), None, "nothing answers on the old pod IP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readiness_probe_decides_whether_a_running_pod_is_ready() {
    let _serial = serial();
    let node = SingleNode::start("node-story-2", CLUSTER_CIDR).await;
    let mut pod = httpd_pod("picky", "echo up > /www/index.html");
    pod["spec"]["containers"][0]["readinessProbe"] =
        json!({"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1});
    node.create_pod(pod).await;
    let pods = node.pods();

    // Running and serving, but /healthz is 404: not Ready, and it stays so.
    let running = eventually(Duration::from_secs(60), "pod picky Running with an IP", || async {
        let pod = pods.get("picky").await.ok()?;
        let status = pod.status.as_ref()?;
        (status.phase.as_deref() == Some("Running") && status.pod_ip.is_some()).then_some(pod)
    })
    .await;
    let ip = running.status.as_ref().unwrap().pod_ip.clone().unwrap();
    eventually(Duration::from_secs(10), "picky serving /", || async {
        http_get(&ip, 8080, "/").filter(|b| b == "up")
    })
    .await;
    for _ in 0..15 {
        let pod = pods.get("picky").await.unwrap();
        assert!(!pod_ready(&pod), "Ready although /healthz fails: {:?}", pod.status);
        let container = &pod.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
        assert!(!container.ready && container.state.as_ref().unwrap().running.is_some());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let conditions = pods.get("picky").await.unwrap().status.unwrap().conditions.unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));

    // The app gets healthy: Ready follows; it breaks again: Ready drops.
    let container_id = running.status.unwrap().container_statuses.unwrap()[0]
        .container_id
        .clone()
        .unwrap();
    node.exec(&container_id, &["sh", "-c", "echo ok > /www/healthz"]);
    node.wait_running_ready("picky", Duration::from_secs(10)).await;
    node.exec(&container_id, &["rm", "/www/healthz"]);
    eventually(Duration::from_secs(10), "picky not Ready again", || async {
        let pod = pods.get("picky").await.ok()?;
        (!pod_ready(&pod)).then_some(())
    })
    .await;
    let pod = pods.get("picky").await.unwrap();
    assert_eq!(
        pod.status.unwrap().container_statuses.unwrap()[0].restart_count,
        0,
        "readiness never restarts"
    );

    pods.delete("picky", &DeleteParams::default()).await.unwrap();
    wait_gone(&pods, "picky", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmaps_and_secrets_reach_the_container_as_env_and_files() {
    let _serial = serial();
    let node = SingleNode::start("node-story-3", CLUSTER_CIDR).await;
    let client = node.client.clone();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "settings"}, "data": {"colour": "teal", "size": "XL"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "creds"}, "data": {"password": "czNjcjN0"}  // "s3cr3t"
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut pod = httpd_pod(
        "configured",
        "echo \"$CFG_colour $CFG_size\" > /www/env-cm && echo \"$PASSWORD\" > /www/env-secret && echo \"$POD_NAME\" > /www/env-name",
    );
    let container = &mut pod["spec"]["containers"][0];
    container["envFrom"] = json!([{"prefix": "CFG_", "configMapRef": {"name": "settings"}}]);
    container["env"] = json!([
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]);
    container["volumeMounts"] = json!([
        {"name": "settings", "mountPath": "/www/settings", "readOnly": true},
        {"name": "creds", "mountPath": "/www/creds", "readOnly": true},
        {"name": "scratch", "mountPath": "/www/scratch"}
    ]);
    pod["spec"]["volumes"] = json!([
        {"name": "settings", "configMap": {"name": "settings", "items": [{"key": "colour", "path": "colour.txt"}]}},
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "scratch", "emptyDir": {}}
    ]);
    node.create_pod(pod).await;
    let ip = node
        .wait_running_ready("configured", Duration::from_secs(60))
        .await
        .status
        .unwrap()
        .pod_ip
        .unwrap();

    assert_eq!(
        http_get(&ip, 8080, "/env-cm").as_deref(),
        Some("teal XL"),
        "envFrom ConfigMap with prefix"
    );
    assert_eq!(
        http_get(&ip, 8080, "/env-secret").as_deref(),
        Some("s3cr3t"),
        "env from a Secret key"
    );
    assert_eq!(
        http_get(&ip, 8080, "/env-name").as_deref(),
        Some("configured"),
        "downward API"
    );
    assert_eq!(
        http_get(&ip, 8080, "/settings/colour.txt").as_deref(),
        Some("teal"),
        "configMap volume item"
    );
    assert_eq!(http_get(&ip, 8080, "/settings/size"), None, "only the listed item");
    assert_eq!(
        http_get(&ip, 8080, "/creds/password").as_deref(),
        Some("s3cr3t"),
        "secret volume"
    );

    // A pod naming a missing key waits with a clear reason instead of starting.
    let mut broken = httpd_pod("broken", "true");
    broken["spec"]["containers"][0]["env"] =
        json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope"}}}]);
    node.create_pod(broken).await;
    let pods = node.pods();
    let waiting = eventually(Duration::from_secs(30), "broken waiting with a reason", || async {
        let pod = pods.get("broken").await.ok()?;
        let state = pod.status?.container_statuses?.first()?.state.clone()?;
        state
            .waiting
            .filter(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
    })
    .await;
    assert!(
        waiting.message.unwrap_or_default().contains("nope"),
        "the message names the missing key"
    );

    for name in ["configured", "broken"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    wait_gone(&pods, "configured", Duration::from_secs(30)).await;
    wait_gone(&pods, "broken", Duration::from_secs(30)).await;
    assert!(
        !node
            .noded
            .state_dir
            .join("pods")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "pod volumes removed"
    );
}

/// `controller: path` pairs of a process's cgroups (cgroup v1 lines `N:controllers:/path`).
fn cgroups_of(pid: u32) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("/proc/PID/cgroup");
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers.to_string(), path.to_string()))
        })
        .collect()
}

fn cgroup_file(pid: u32, controller: &str, file: &str) -> String {
    let (controllers, path) = cgroups_of(pid)
        .into_iter()
        .find(|(c, _)| c.split(',').any(|c| c == controller))
        .unwrap_or_else(|| panic!("no {controller} cgroup for pid {pid}"));
    let path = format!("/sys/fs/cgroup/{controllers}{path}/{file}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_limits_land_in_the_containers_cgroup() {
    let _serial = serial();
    let node = SingleNode::start("node-story-4", CLUSTER_CIDR).await;
    let mut pod = httpd_pod("limited", "true");
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "250m", "memory": "64Mi"}});
    node.create_pod(pod).await;
    let running = node.wait_running_ready("limited", Duration::from_secs(60)).await;
    let status = running.status.unwrap();
    assert_eq!(status.qos_class.as_deref(), Some("Guaranteed"));
    let pid = node.task_pid(status.container_statuses.unwrap()[0].container_id.as_deref().unwrap());

    assert_eq!(
        cgroup_file(pid, "memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        cgroup_file(pid, "cpu", "cpu.cfs_quota_us"),
        "25000",
        "250m of a 100 ms period"
    );
    assert_eq!(cgroup_file(pid, "cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(
        cgroup_file(pid, "cpu", "cpu.shares"),
        "256",
        "request defaults to the limit"
    );
    let (_, memory_path) = cgroups_of(pid).into_iter().find(|(c, _)| c == "memory").unwrap();
    let uid = running.metadata.uid.clone().unwrap();
    assert!(
        memory_path.contains(&format!("/sluice/node-story-4/pod{uid}/")),
        "under the pod's cgroup: {memory_path}"
    );

    // Deleting the pod removes its cgroups too.
    let pods = node.pods();
    pods.delete("limited", &DeleteParams::default()).await.unwrap();
    wait_gone(&pods, "limited", Duration::from_secs(30)).await;
    let pod_cgroup = std::path::PathBuf::from(format!("/sys/fs/cgroup/memory/sluice/node-story-4/pod{uid}"));
    eventually(Duration::from_secs(5), "the pod's memory cgroup removed", || async {
        (!pod_cgroup.exists()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_honours_the_grace_period() {
    let _serial = serial();
    let node = SingleNode::start("node-story-5", CLUSTER_CIDR).await;
    let pods = node.pods();
    // "tidy" takes 3 s to shut down on SIGTERM and has 20 s for it.
    let tidy = json!({
        "metadata": {"name": "tidy"},
        "spec": {
            "terminationGracePeriodSeconds": 20,
            "containers": [{"name": "app", "image": "busybox:1.35.0",
                "command": ["sh", "-c", "trap 'sleep 3; exit 0' TERM; while true; do sleep 0.2; done"]}]
        }
    });
    // "stubborn" ignores SIGTERM; its spec allows 30 s but the user deletes it with 2 s.
    let stubborn = json!({
        "metadata": {"name": "stubborn"},
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "app", "image": "busybox:1.35.0",
                "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]}]
        }
    });
    node.create_pod(tidy).await;
    node.create_pod(stubborn).await;
    node.wait_running_ready("tidy", Duration::from_secs(60)).await;
    node.wait_running_ready("stubborn", Duration::from_secs(60)).await;

    pods.delete("tidy", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("tidy").await.unwrap();
    assert!(
        terminating.metadata.deletion_timestamp.is_some(),
        "the pod stays while it terminates"
    );
    let took = wait_gone(&pods, "tidy", Duration::from_secs(30)).await;
    assert!(
        took >= Duration::from_millis(2500),
        "tidy was given time to shut down, gone after {took:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "tidy is gone once it exited, not after the whole 20 s: {took:?}"
    );

    pods.delete(
        "stubborn",
        &DeleteParams {
            grace_period_seconds: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let took = wait_gone(&pods, "stubborn", Duration::from_secs(30)).await;
    assert!(
        took >= Duration::from_millis(1500),
        "stubborn got its 2 s, gone after {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "the delete's 2 s win over the spec's 30 s: {took:?}"
    );
    eventually(Duration::from_secs(10), "no containers left in containerd", || async {
        node.containers().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_probe_or_mount_shows_why_in_kubectl_describe() {
    let _serial = serial();
    let node = SingleNode::start("node-story-6", CLUSTER_CIDR).await;
    // httpd serves / but not /healthz; nothing listens on 9999. Probes name the port, as manifests do.
    let mut pod = httpd_pod("sickly", "echo up > /www/index.html");
    let container = &mut pod["spec"]["containers"][0];
    container["ports"] = json!([{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9999}]);
    container["readinessProbe"] =
        json!({"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1});
    container["livenessProbe"] = json!({"tcpSocket": {"port": "admin"}, "periodSeconds": 1, "failureThreshold": 2});
    node.create_pod(pod).await;
    // A configMap volume whose ConfigMap does not exist.
    node.create_pod(json!({
        "metadata": {"name": "unmounted"},
        "spec": {
            "containers": [{"name": "app", "image": "busybox:1.35.0", "command": ["sleep", "3600"],
                            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "missing"}}]
        }
    }))
    .await;
    let pods = node.pods();

    // The liveness probe restarts the container; describe says why, in the kubelet's words.
    let ip = eventually(
        Duration::from_secs(60),
        "sickly restarted by its liveness probe",
        || async {
            let pod = pods.get("sickly").await.ok()?;
            let status = pod.status?;
            (status.container_statuses?.first()?.restart_count >= 1).then_some(status.pod_ip?)
        },
    )
    .await;
    let described = eventually(Duration::from_secs(30), "probe events in describe", || async {
        let out = kubectl(&node, &["describe", "pod", "sickly"]);
        (out.contains("Readiness probe failed: HTTP probe failed with statuscode: 404")
            && out.contains(&format!(
                "Liveness probe failed: dial tcp {ip}:9999: connect: connection refused"
            ))
            && out.contains("Container httpd failed liveness probe, will be restarted"))
        .then_some(out)
    })
    .await;
    assert!(
        described.contains("Unhealthy") && described.contains("Killing"),
        "{described}"
    );
    let pod = pods.get("sickly").await.unwrap();
    assert!(!pod_ready(&pod), "never Ready while /healthz is 404");

    // The missing ConfigMap keeps the pod ContainerCreating, with a FailedMount event.
    let described = eventually(Duration::from_secs(30), "FailedMount in describe", || async {
        let out = kubectl(&node, &["describe", "pod", "unmounted"]);
        out.contains(r#"MountVolume.SetUp failed for volume "cfg" : configmap "missing" not found"#)
            .then_some(out)
    })
    .await;
    assert!(
        described.contains("FailedMount") && described.contains("ContainerCreating"),
        "{described}"
    );

    for name in ["sickly", "unmounted"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
        wait_gone(&pods, name, Duration::from_secs(30)).await;
    }
}

/// What `kubectl get pods -w` shows while a pod starts: Pending with its
/// container ContainerCreating, then Running and Ready, with no "Running but
/// not Ready" step between when the container has no probe. The kubelet
/// reports a container it just started with its first probe results (none
/// here: started and ready) in the same status write as Running, and so does
/// noded: two status writes per start, not three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_pod_goes_from_container_creating_to_running_and_ready_in_one_write() {
    use futures::StreamExt;
    use kube::api::{ListParams, WatchEvent, WatchParams};
    let _serial = serial();
    let node = SingleNode::start("node-story-7", CLUSTER_CIDR).await;
    let pods = node.pods();
    let from = pods
        .list_metadata(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let watch = pods
        .watch(&WatchParams::default().fields("metadata.name=plain"), &from)
        .await
        .unwrap();
    node.create_pod(httpd_pod("plain", "true")).await;

    // Every version of the pod the API server stored, until it is Running and Ready.
    let mut watch = watch.boxed();
    let mut seen: Vec<(String, bool, Option<String>)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|(phase, ready, _)| phase == "Running" && *ready) {
        let event = tokio::time::timeout_at(deadline, watch.next())
            .await
            .unwrap_or_else(|_| panic!("pod plain Running and Ready within 60 s; saw {seen:?}"))
            .expect("the watch stays open")
            .unwrap();
        let (WatchEvent::Added(pod) | WatchEvent::Modified(pod)) = event else {
            continue;
        };
        let status = pod.status.clone().unwrap_or_default();
        let waiting = status
            .container_statuses
            .iter()
            .flatten()
            .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
        seen.push((status.phase.clone().unwrap_or_default(), pod_ready(&pod), waiting));
    }
    assert!(
        seen.iter()
            .any(|(phase, _, waiting)| phase == "Pending" && waiting.as_deref() == Some("ContainerCreating")),
        "the node reported ContainerCreating first: {seen:?}"
    );
    let running: Vec<_> = seen.iter().filter(|(phase, _, _)| phase == "Running").collect();
    assert_eq!(running.len(), 1, "one Running version, already Ready: {seen:?}");

    pods.delete("plain", &DeleteParams::default()).await.unwrap();
    wait_gone(&pods, "plain", Duration::from_secs(30)).await;
}

/// The distinct ConfigMaps a stored pod's volumes read (its own `configMap`
/// volumes and projected sources, `kube-root-ca.crt` among them when the
/// ServiceAccount admission added the token volume).
fn config_maps_of(pod: &Pod) -> std::collections::BTreeSet<String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
    let mut names = std::collections::BTreeSet::new();
    for v in volumes {
        names.extend(v.config_map.map(|c| c.name));
        for s in v.projected.and_then(|p| p.sources).unwrap_or_default() {
            names.extend(s.config_map.map(|c| c.name));
        }
    }
    names
}

/// The API server's count of `verb` requests on `resource` (`WATCH`: those open now).
async fn requests(node: &SingleNode, verb: &str, resource: &str) -> f64 {
    let text = node.control_plane.raw().await.get("/metrics").await.text();
    let (name, code) = if verb == "WATCH" {
        ("apiserver_longrunning_requests", None)
    } else {
        ("apiserver_request_total", Some(("code", "200")))
    };
    let labels: Vec<(&str, &str)> = [("verb", verb), ("resource", resource)]
        .into_iter()
        .chain(code)
        .collect();
    sluice_tests::metrics::value(&text, name, &labels).unwrap_or(0.0)
}

/// Requests a quiet cluster should not make over and over: the attach-detach
/// controller works from the controller-manager's caches, and the garbage
/// collector watches the kinds those do not hold.
const QUIET_LISTS: [&str; 8] = [
    "persistentvolumes",
    "persistentvolumeclaims",
    "csidrivers",
    "volumeattachments",
    "configmaps",
    "secrets",
    "clusterroles",
    "rolebindings",
];

/// A platform engineer runs several pods mounting the same ConfigMap. The
/// node keeps one watch per ConfigMap its pods use, as the kubelet does,
/// instead of every pod reading its ConfigMaps again on every volume refresh:
/// with the pods running, no ConfigMap is read at all; a change still reaches
/// every pod's files; the watches end with the last pod using them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_mounting_the_same_config_map_share_one_watch_of_it() {
    let _serial = serial();
    let node = SingleNode::start("node-story-8", CLUSTER_CIDR).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(node.client.clone(), "default");
    let cm = serde_json::from_value(json!({"metadata": {"name": "shared"}, "data": {"greeting": "hello"}})).unwrap();
    configmaps.create(&PostParams::default(), &cm).await.unwrap();
    // The control plane's own ConfigMap watches are open first: the garbage
    // collector's metadata watches start with its first discovery (its
    // watch of Secrets, which nothing else watches here, is the sign), and
    // the count then holds still.
    let watches_before = eventually(
        Duration::from_secs(30),
        "the control plane's ConfigMap watches",
        || async {
            if requests(&node, "WATCH", "secrets").await < 1.0 {
                return None;
            }
            let open = requests(&node, "WATCH", "configmaps").await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            (requests(&node, "WATCH", "configmaps").await == open).then_some(open)
        },
    )
    .await;

    let names = ["reader-a", "reader-b", "reader-c"];
    for name in names {
        let mut pod = httpd_pod(name, "true");
        pod["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "cfg", "mountPath": "/www/cfg"}]);
        pod["spec"]["volumes"] = json!([{"name": "cfg", "configMap": {"name": "shared"}}]);
        node.create_pod(pod).await;
    }
    let mut ips = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for name in names {
        let pod = node.wait_running_ready(name, Duration::from_secs(90)).await;
        used.extend(config_maps_of(&pod));
        ips.push(pod.status.unwrap().pod_ip.unwrap());
    }
    for ip in &ips {
        assert_eq!(http_get(ip, 8080, "/cfg/greeting").as_deref(), Some("hello"));
    }
    assert!(used.contains("shared"), "{used:?}");

    // One watch per ConfigMap the pods use, not one per pod.
    let watches = eventually(Duration::from_secs(10), "the node's ConfigMap watches", || async {
        let open = requests(&node, "WATCH", "configmaps").await - watches_before;
        (open == used.len() as f64).then_some(open)
    })
    .await;
    assert_eq!(watches, used.len() as f64, "ConfigMaps used: {used:?}");

    // Running pods read no ConfigMap: two and a half volume refresh periods (10 s each) pass without a GET.
    // Nor does the controller-manager list the storage objects it caches, or
    // the kinds its garbage collector watches.
    let gets = requests(&node, "GET", "configmaps").await;
    let mut lists = Vec::new();
    for resource in QUIET_LISTS {
        lists.push(requests(&node, "LIST", resource).await);
    }
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(
        requests(&node, "GET", "configmaps").await,
        gets,
        "a running pod's volumes read their ConfigMaps from the node's watch"
    );
    for (resource, before) in QUIET_LISTS.into_iter().zip(lists) {
        assert_eq!(requests(&node, "LIST", resource).await, before, "LIST {resource}");
    }

    // A change reaches every pod's files through that watch.
    let patch = json!({"data": {"greeting": "changed"}});
    configmaps
        .patch(
            "shared",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    for ip in &ips {
        eventually(Duration::from_secs(30), "the change in the pod's file", || async {
            (http_get(ip, 8080, "/cfg/greeting").as_deref() == Some("changed")).then_some(())
        })
        .await;
    }

    // The watches end with the last pod using them.
    let pods = node.pods();
    for name in names {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in names {
        wait_gone(&pods, name, Duration::from_secs(30)).await;
    }
    eventually(
        Duration::from_secs(10),
        "the node's ConfigMap watches closed",
        || async { (requests(&node, "WATCH", "configmaps").await == watches_before).then_some(()) },
    )
    .await;
}

/// The API server's count of `verb` requests on `resource`'s `subresource`
/// ("" for the object itself).
async fn requests_of(node: &SingleNode, verb: &str, resource: &str, subresource: &str) -> f64 {
    let text = node.control_plane.raw().await.get("/metrics").await.text();
    let labels = [
        ("verb", verb),
        ("resource", resource),
        ("subresource", subresource),
        ("code", "200"),
    ];
    sluice_tests::metrics::value(&text, "apiserver_request_total", &labels).unwrap_or(0.0)
}

/// A platform engineer looks at a quiet node. Its Lease is renewed every
/// heartbeat (1 s here), but its Node is written only when its status
/// changed, as the kubelet posts it (`nodeStatusReportFrequency`: an
/// unchanged status again after 5 min): while nothing changes the node
/// neither writes nor reads its Node. A condition someone else changed
/// (as the node lifecycle controller does when a Lease runs out) is seen
/// through the node's watch of its Node and put right at the next heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_node_renews_its_lease_and_writes_its_status_only_when_it_changed() {
    let _serial = serial();
    let name = "node-story-9";
    let node = SingleNode::start(name, CLUSTER_CIDR).await;
    let nodes: Api<Node> = Api::all(node.client.clone());
    let leases: Api<Lease> = Api::namespaced(node.client.clone(), "kube-node-lease");
    let renewed = || async {
        let lease = leases.get(name).await.unwrap();
        lease.spec.unwrap().renew_time.unwrap().0
    };

    // Once the node has settled (its first image list, the controllers'
    // taints), eight heartbeats pass with the Lease renewed and the Node
    // neither written nor read.
    let window = Duration::from_secs(8);
    let quiet = eventually(
        Duration::from_secs(60),
        "eight heartbeats without a node status write",
        || async {
            let patches = requests_of(&node, "PATCH", "nodes", "status").await;
            let gets = requests_of(&node, "GET", "nodes", "").await;
            let version = nodes.get(name).await.unwrap().metadata.resource_version;
            let lease_from = renewed().await;
            tokio::time::sleep(window).await;
            let lease_to = renewed().await;
            // Reading the Node above is this test's own GET.
            let unread = requests_of(&node, "GET", "nodes", "").await - gets <= 1.0;
            let still = requests_of(&node, "PATCH", "nodes", "status").await == patches
                && nodes.get(name).await.unwrap().metadata.resource_version == version;
            still.then_some((unread, lease_to.duration_since(lease_from)))
        },
    )
    .await;
    let (unread, lease_advanced) = quiet;
    assert!(
        unread,
        "the node reads its Node from its watch, not with a GET every heartbeat"
    );
    assert!(
        lease_advanced >= k8s_openapi::jiff::SignedDuration::from_secs(5),
        "the Lease is renewed every heartbeat meanwhile (advanced {lease_advanced:?} in {window:?})"
    );

    // Someone else marks the node's Ready condition Unknown (dropping the
    // other conditions with it), and a node-problem-detector adds a
    // condition of its own. The node posts its status again at once, and
    // leaves the detector's condition alone.
    let marked = k8s_openapi::jiff::Timestamp::now();
    let unknown = json!({"status": {"conditions": [{
        "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
        "lastTransitionTime": marked.to_string(), "lastHeartbeatTime": marked.to_string()
    }, {
        "type": "KernelDeadlock", "status": "False", "reason": "KernelHasNoDeadlock",
        "message": "kernel has no deadlock",
        "lastTransitionTime": marked.to_string(), "lastHeartbeatTime": marked.to_string()
    }]}});
    nodes
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&unknown),
        )
        .await
        .unwrap();
    let restored = eventually(Duration::from_secs(10), "Ready posted again by the node", || async {
        let status = nodes.get(name).await.unwrap().status.unwrap();
        let conditions = status.conditions.unwrap_or_default();
        let ready = conditions.iter().find(|c| c.type_ == "Ready")?.clone();
        (ready.status == "True" && conditions.len() > 1).then_some((ready, conditions))
    })
    .await;
    let (ready, conditions) = restored;
    assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
    assert!(
        ready.last_transition_time.unwrap().0.as_second() >= marked.as_second(),
        "Ready became True again after it was Unknown: a new transition"
    );
    for kind in ["MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable"] {
        let c = conditions.iter().find(|c| c.type_ == kind);
        assert_eq!(c.map(|c| c.status.as_str()), Some("False"), "{kind}: {conditions:?}");
    }
    let detector = conditions.iter().find(|c| c.type_ == "KernelDeadlock");
    assert_eq!(
        detector.and_then(|c| c.reason.as_deref()),
        Some("KernelHasNoDeadlock"),
        "a condition another agent owns stays: {conditions:?}"
    );
}
