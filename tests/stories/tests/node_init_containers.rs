//! User stories: init containers, sidecars and lifecycle hooks on a real node.
//!
//! Real etcd, API server, controller-manager (node IPAM, the Job controller),
//! containerd + runc with the local busybox image and `noded`. The user sees
//! two init containers run one after the other (their lines reach the app
//! container in order through an emptyDir) while `kubectl get pod` shows
//! `Init:0/2` then `Init:1/2` and the `Initialized` condition names the
//! containers still to complete, and again when its sandbox is killed and
//! recreated; a postStart hook writes a file the app
//! sees; a preStop HTTP hook reaches another pod when the pod is deleted (a
//! failing exec one gives `FailedPreStopHook`); an
//! init container failing under `restartPolicy: Never` fails the pod
//! (`Init:Error`, app never started), one failing in a pod that restarts
//! backs off (`Init:CrashLoopBackOff`); a failing postStart hook gives the
//! kubelet's `FailedPostStartHook` and `Killing` events; a sidecar that exits
//! is restarted beside its running app; a sidecar (init container with
//! `restartPolicy: Always`) is running and ready before and while the main
//! container runs (`2/2`), and a Job whose pod has one completes once the
//! main container exits, the sidecar stopped after it.
//!
//! Needs root. Build first: `cargo build --workspace --bins`.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use sluice_tests::controllers::{eventually, serial};
use sluice_tests::node::SingleNode;
use std::time::{Duration, Instant};

/// Pod routes land in the root network namespace: a cluster CIDR no other test file uses.
const CLUSTER_CIDR: &str = "10.215.0.0/20";
const IMAGE: &str = "busybox:1.35.0";

fn kubectl(node: &SingleNode, args: &[&str]) -> String {
    let out = node.control_plane.kubectl().args(args).output().expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The STATUS column of `kubectl get pod NAME` (and READY).
fn get_pod(node: &SingleNode, name: &str) -> (String, String) {
    let line = kubectl(node, &["get", "pod", name, "--no-headers"]);
    let fields: Vec<&str> = line.split_whitespace().collect();
    (
        fields.get(1).copied().unwrap_or_default().to_string(),
        fields.get(2).copied().unwrap_or_default().to_string(),
    )
}

fn status_of<'a>(statuses: &'a Option<Vec<ContainerStatus>>, name: &str) -> Option<&'a ContainerStatus> {
    statuses.as_ref()?.iter().find(|s| s.name == name)
}

fn running(s: Option<&ContainerStatus>) -> bool {
    s.and_then(|s| s.state.as_ref()).is_some_and(|st| st.running.is_some())
}

fn initialized(pod: &Pod) -> Option<(String, Option<String>)> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Initialized")?;
    Some((c.status.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_sidecars_and_hooks_run_as_in_kubernetes() {
    let _serial = serial();
    let started = Instant::now();
    let node = SingleNode::start("init-story-1", CLUSTER_CIDR).await;
    let pods = node.pods();
    let node_name = node.noded.node_name.clone();

    // A pod that prints what an HTTP request to it asked for: the preStop hook's target.
    node.create_pod(json!({
        "metadata": {"name": "listener"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "nc", "image": IMAGE,
            "command": ["sh", "-c", "while true; do printf 'HTTP/1.0 200 OK\\r\\n\\r\\n' | nc -l -p 8080; done"]
        }]}
    }))
    .await;
    // Two init containers, each sleeping before it writes its line; the app prints them
    // and waits for its postStart hook's file.
    node.create_pod(json!({
        "metadata": {"name": "ordered"},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [
                {"name": "first", "image": IMAGE, "command": ["sh", "-c", "sleep 2; echo one >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                {"name": "second", "image": IMAGE, "command": ["sh", "-c", "sleep 2; echo two >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]}
            ],
            "containers": [{
                "name": "app", "image": IMAGE,
                "command": ["sh", "-c", "cat /work/order; until [ -f /work/hooked ]; do sleep 0.1; done; cat /work/hooked; trap 'exit 0' TERM; while true; do sleep 0.2; done"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo post-start-ran > /work/hooked"]}}}
            }]
        }
    }))
    .await;
    // An init container that fails in a pod that never restarts.
    node.create_pod(json!({
        "metadata": {"name": "broken-init"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "check", "image": IMAGE, "command": ["sh", "-c", "echo no database; exit 3"]}],
            "containers": [{"name": "app", "image": IMAGE, "command": ["true"]}]
        }
    }))
    .await;
    // An init container that keeps failing in a pod that restarts: back-off.
    node.create_pod(json!({
        "metadata": {"name": "crashy-init"},
        "spec": {
            "initContainers": [{"name": "wait-db", "image": IMAGE, "command": ["sh", "-c", "exit 1"]}],
            "containers": [{"name": "app", "image": IMAGE, "command": ["sleep", "3600"]}]
        }
    }))
    .await;
    // A sidecar that exits now and then beside a long-running app: restarted each time.
    node.create_pod(json!({
        "metadata": {"name": "flaky-sidecar"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "initContainers": [{"name": "agent", "image": IMAGE, "restartPolicy": "Always",
                                "command": ["sh", "-c", "sleep 1; exit 1"]}],
            "containers": [{"name": "app", "image": IMAGE, "command": ["sleep", "3600"]}]
        }
    }))
    .await;
    // A postStart hook that fails: the kubelet's event, and the container killed.
    node.create_pod(json!({
        "metadata": {"name": "bad-hook"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": IMAGE, "command": ["sleep", "3600"],
                            "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo nope; exit 7"]}}}}]
        }
    }))
    .await;
    // restartPolicy OnFailure: a container that fails once is restarted, then the pod succeeds.
    node.create_pod(json!({
        "metadata": {"name": "retry-once"},
        "spec": {
            "restartPolicy": "OnFailure",
            "volumes": [{"name": "work", "emptyDir": {}}],
            "containers": [{"name": "app", "image": IMAGE,
                            "command": ["sh", "-c", "[ -f /work/ran ] || { touch /work/ran; exit 1; }"],
                            "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]
        }
    }))
    .await;
    // While the init containers sleep, kubectl shows Init:0/2, then Init:1/2, and the
    // Initialized condition names the containers still to complete.
    let mut seen_status: Vec<String> = Vec::new();
    let mut seen_messages: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, status) = get_pod(&node, "ordered");
        if seen_status.last() != Some(&status) {
            seen_status.push(status.clone());
        }
        if let Some((_, Some(message))) = pods.get("ordered").await.ok().as_ref().and_then(initialized) {
            if seen_messages.last() != Some(&message) {
                seen_messages.push(message);
            }
        }
        if status == "Running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ordered not Running; kubectl showed {seen_status:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        seen_status.contains(&"Init:0/2".to_string()) && seen_status.contains(&"Init:1/2".to_string()),
        "kubectl showed {seen_status:?}"
    );
    assert!(
        seen_status.iter().position(|s| s == "Init:0/2") < seen_status.iter().position(|s| s == "Init:1/2"),
        "{seen_status:?}"
    );
    assert!(
        seen_messages.contains(&"containers with incomplete status: [first second]".to_string())
            && seen_messages.contains(&"containers with incomplete status: [second]".to_string()),
        "Initialized messages {seen_messages:?}"
    );
    let pod = pods.get("ordered").await.unwrap();
    assert_eq!(initialized(&pod).map(|i| i.0).as_deref(), Some("True"));
    let status = pod.status.clone().unwrap();
    for name in ["first", "second"] {
        let s = status_of(&status.init_container_statuses, name).expect("init container status");
        let done = s.state.as_ref().unwrap().terminated.as_ref().expect("terminated");
        assert_eq!(
            (done.exit_code, done.reason.as_deref()),
            (0, Some("Completed")),
            "{name}"
        );
        assert!(s.ready && s.started == Some(false) && s.restart_count == 0, "{s:?}");
        assert!(s
            .container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("containerd://")));
        assert!(!s.image_id.is_empty() && s.image == IMAGE);
    }
    let conditions: Vec<String> = status.conditions.unwrap().iter().map(|c| c.type_.clone()).collect();
    assert!(
        conditions.contains(&"PodReadyToStartContainers".to_string()),
        "{conditions:?}"
    );

    // The app saw the init containers' lines in order, then its postStart hook's file.
    let logs = eventually(Duration::from_secs(20), "app logs with the hook's line", || async {
        let out = node
            .control_plane
            .kubectl()
            .args(["logs", "ordered", "-c", "app"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("post-start-ran").then_some(text)
    })
    .await;
    assert_eq!(logs, "one\ntwo\npost-start-ran\n");
    assert_eq!(
        kubectl(&node, &["logs", "ordered", "-c", "first"]),
        "",
        "init container logs are served"
    );

    // The sandbox dies: a new one runs the init containers again, in order, before the app.
    let before = pods.get("ordered").await.unwrap().status.unwrap();
    let first_id = status_of(&before.init_container_statuses, "first")
        .unwrap()
        .container_id
        .clone()
        .unwrap();
    let app_id = status_of(&before.container_statuses, "app")
        .unwrap()
        .container_id
        .clone()
        .unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&node.ctr(&["containers", "info", app_id.trim_start_matches("containerd://")]))
            .expect("ctr containers info is JSON");
    let sandbox = info["Spec"]["annotations"]["io.kubernetes.cri.sandbox-id"]
        .as_str()
        .expect("the app's sandbox id")
        .to_string();
    node.ctr(&["tasks", "kill", "-s", "SIGKILL", &sandbox]);
    let mut statuses: Vec<String> = Vec::new();
    let rerun = eventually(
        Duration::from_secs(60),
        "init containers re-run in a new sandbox",
        || {
            let (_, status) = get_pod(&node, "ordered");
            if statuses.last() != Some(&status) {
                statuses.push(status.clone());
            }
            let pods = pods.clone();
            let first_id = first_id.clone();
            async move {
                let pod = pods.get("ordered").await.ok()?;
                let s = pod.status.clone()?;
                let first = status_of(&s.init_container_statuses, "first")?;
                let again = first.container_id.as_deref().is_some_and(|id| id != first_id);
                (again && status == "Running").then_some(pod)
            }
        },
    )
    .await;
    assert!(
        statuses.iter().any(|s| s.starts_with("Init:")),
        "kubectl showed the init containers again: {statuses:?}"
    );
    let second = status_of(&rerun.status.as_ref().unwrap().init_container_statuses, "second").unwrap();
    assert_eq!(
        second.state.as_ref().unwrap().terminated.as_ref().map(|t| t.exit_code),
        Some(0)
    );

    // The failed init container fails the pod; the app never started.
    let broken = eventually(Duration::from_secs(30), "broken-init Failed", || async {
        let pod = pods.get("broken-init").await.ok()?;
        (pod.status.as_ref()?.phase.as_deref() == Some("Failed")).then_some(pod)
    })
    .await;
    let status = broken.status.unwrap();
    let check = status_of(&status.init_container_statuses, "check").unwrap();
    let failed = check.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((failed.exit_code, failed.reason.as_deref()), (3, Some("Error")));
    let app = status_of(&status.container_statuses, "app").unwrap();
    let waiting = app.state.as_ref().unwrap().waiting.as_ref().expect("app never started");
    assert_eq!(waiting.reason.as_deref(), Some("PodInitializing"));
    assert_eq!(get_pod(&node, "broken-init").1, "Init:Error");
    assert_eq!(kubectl(&node, &["logs", "broken-init", "-c", "check"]), "no database\n");

    // A Job whose pod has a sidecar, ready by its readiness probe; the main container checks it is up.
    let sidecar = json!({
        "name": "proxy", "image": IMAGE, "restartPolicy": "Always",
        "command": ["sh", "-c", "echo up > /work/proxy; trap 'exit 0' TERM; while true; do sleep 0.2; done"],
        "readinessProbe": {"exec": {"command": ["cat", "/work/proxy"]}, "periodSeconds": 1},
        "volumeMounts": [{"name": "work", "mountPath": "/work"}]
    });
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "with-sidecar"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "nodeName": node_name,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [sidecar],
            "containers": [{"name": "main", "image": IMAGE,
                            "command": ["sh", "-c", "cat /work/proxy && sleep 5 && echo main done"],
                            "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]
        }}}
    }))
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(node.client.clone(), "default");
    jobs.create(&PostParams::default(), &job).await.expect("create the job");

    // The failing init container backs off (kubectl: Init:CrashLoopBackOff); the app waits.
    eventually(Duration::from_secs(30), "crashy-init in Init:CrashLoopBackOff", || {
        let status = get_pod(&node, "crashy-init").1;
        async move { (status == "Init:CrashLoopBackOff").then_some(()) }
    })
    .await;
    let crashy = pods.get("crashy-init").await.unwrap().status.unwrap();
    assert_eq!(crashy.phase.as_deref(), Some("Pending"));
    assert!(
        status_of(&crashy.init_container_statuses, "wait-db")
            .unwrap()
            .restart_count
            >= 1
    );
    assert!(!running(status_of(&crashy.container_statuses, "app")));

    // The sidecar that exits is restarted while the app keeps running, never restarted.
    eventually(Duration::from_secs(30), "the flaky sidecar restarted", || async {
        let status = pods.get("flaky-sidecar").await.ok()?.status?;
        let agent = status_of(&status.init_container_statuses, "agent")?;
        let app = status_of(&status.container_statuses, "app")?;
        (agent.restart_count >= 2 && running(Some(app)) && app.restart_count == 0).then_some(())
    })
    .await;

    // The failed postStart hook: FailedPostStartHook with the kubelet's text, then Killing.
    let uid = pods.get("bad-hook").await.unwrap().metadata.uid.unwrap();
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(node.client.clone(), "default");
    let hook_events = eventually(
        Duration::from_secs(30),
        "FailedPostStartHook and Killing events",
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            let of_pod: Vec<(String, String)> = list
                .items
                .into_iter()
                .filter(|e| e.involved_object.name.as_deref() == Some("bad-hook"))
                .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
                .collect();
            let has = |reason: &str| of_pod.iter().any(|(r, _)| r == reason);
            (has("FailedPostStartHook") && has("Killing")).then_some(of_pod)
        },
    )
    .await;
    assert!(
        hook_events.contains(&(
            "FailedPostStartHook".to_string(),
            format!("Exec lifecycle hook ([sh -c echo nope; exit 7]) for Container \"app\" in Pod \"bad-hook_default({uid})\" failed - error: command 'sh -c echo nope; exit 7' exited with 7: , message: \"nope\\n\"")
        )),
        "{hook_events:?}"
    );
    assert!(hook_events.contains(&("Killing".to_string(), "FailedPostStartHook".to_string())));

    // The OnFailure pod was restarted once and then succeeded.
    let retried = eventually(Duration::from_secs(30), "retry-once Succeeded", || async {
        let status = pods.get("retry-once").await.ok()?.status?;
        (status.phase.as_deref() == Some("Succeeded")).then_some(status)
    })
    .await;
    assert_eq!(status_of(&retried.container_statuses, "app").unwrap().restart_count, 1);

    // The Job's pod: the sidecar is running and ready while main runs (2/2), then the Job
    // completes and the sidecar was stopped after main.
    let job_pod = eventually(Duration::from_secs(30), "the job's pod with both running", || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels("job-name=with-sidecar"))
            .await
            .ok()?;
        let pod = list.items.into_iter().next()?;
        let status = pod.status.as_ref()?;
        let proxy = status_of(&status.init_container_statuses, "proxy");
        let both =
            running(proxy) && proxy.is_some_and(|p| p.ready) && running(status_of(&status.container_statuses, "main"));
        both.then(|| pod.metadata.name.clone().unwrap())
    })
    .await;
    assert_eq!(get_pod(&node, &job_pod), ("2/2".to_string(), "Running".to_string()));
    eventually(Duration::from_secs(40), "the job Complete", || async {
        let job = jobs.get("with-sidecar").await.ok()?;
        job.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True")
            .then_some(())
    })
    .await;
    let finished = pods.get(&job_pod).await.unwrap();
    let status = finished.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    let main = status_of(&status.container_statuses, "main").unwrap();
    let proxy = status_of(&status.init_container_statuses, "proxy").unwrap();
    let main_end = main
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .finished_at
        .clone();
    let proxy_end = proxy
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .finished_at
        .clone();
    assert!(
        proxy_end >= main_end,
        "sidecar stopped after main: {proxy_end:?} {main_end:?}"
    );
    assert_eq!(kubectl(&node, &["logs", &job_pod, "-c", "main"]), "up\nmain done\n");

    // Deleting the app pod runs its preStop HTTP hook first: the listener prints the request.
    let listener = node.wait_running_ready("listener", Duration::from_secs(30)).await;
    let listener_ip = listener.status.unwrap().pod_ip.unwrap();
    // Pods are immutable: the hook lives in a pod created for this step.
    node.create_pod(json!({
        "metadata": {"name": "stopping"},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "app", "image": IMAGE,
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
                "lifecycle": {"preStop": {"httpGet": {"host": listener_ip, "port": 8080, "path": "/pre-stop-from-stopping"}}}
            }, {
                "name": "stubborn", "image": IMAGE,
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
                "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo cannot; exit 2"]}}}
            }]
        }
    }))
    .await;
    let stopping_uid = node
        .wait_running_ready("stopping", Duration::from_secs(30))
        .await
        .metadata
        .uid
        .unwrap();
    pods.delete("stopping", &DeleteParams::default()).await.unwrap();
    eventually(
        Duration::from_secs(20),
        "the preStop request in the listener's logs",
        || async {
            let out = node.control_plane.kubectl().args(["logs", "listener"]).output().ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("GET /pre-stop-from-stopping")
                .then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(20), "stopping gone", || async {
        matches!(pods.get_opt("stopping").await, Ok(None)).then_some(())
    })
    .await;
    // The failing preStop hook is reported as the kubelet does; the container still stopped.
    let failed = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("stopping"))
        .find(|e| e.reason.as_deref() == Some("FailedPreStopHook"))
        .expect("a FailedPreStopHook event");
    assert_eq!(
        failed.message.unwrap(),
        format!("Exec lifecycle hook ([sh -c echo cannot; exit 2]) for Container \"stubborn\" in Pod \"stopping_default({stopping_uid})\" failed - error: command 'sh -c echo cannot; exit 2' exited with 2: , message: \"cannot\\n\"")
    );
    eprintln!("init container story took {:?}", started.elapsed());
}
