//! Reading container logs: `kubectl logs` and `ctl logs` through the real API
//! server, which proxies to noded's real log server.
//!
//! The node side runs noded's log server (in this process, as noded runs it:
//! `log_server::start_for_node`) over a state directory holding CRI-format
//! log files written the way containerd writes them, for Pods bound to the
//! node in the real API server. A user then reads logs with kubectl and ctl:
//! whole, tail, timestamps, previous instance, follow until the container
//! stops; and gets Kubernetes' errors for pods that are missing, unscheduled,
//! waiting to start, or ambiguous. The log server itself refuses clients that
//! are not the API server.
//!
//! Run `cargo build -p sluice-apiserver -p sluice-ctl` first (same target dir).

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_tests::{eventually, workspace_bin, ControlPlane, Reaped};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const NODE: &str = "log-node";

/// A command's output, run off the async runtime (the log server shares it).
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("command runs"))
        .await
        .expect("join")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ctl(cp: &ControlPlane) -> Command {
    let mut c = Command::new(workspace_bin("ctl"));
    c.arg("--kubeconfig").arg(cp.kubeconfig_path());
    c
}

/// The file the runtime writes attempt `attempt` of `container` to.
fn log_file(state: &Path, uid: &str, container: &str, attempt: u32) -> PathBuf {
    let dir = state.join("pods").join(uid).join("logs").join(container);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{attempt}.log"))
}

fn append(path: &Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

async fn pod(pods: &Api<Pod>, name: &str, node: Option<&str>, containers: &[&str]) -> String {
    let containers: Vec<_> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox:1.35.0"}))
        .collect();
    let mut spec = json!({"containers": containers});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    pods.create(&PostParams::default(), &p)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_read_container_logs_through_the_api_server() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let state = tempfile::tempdir().unwrap();

    // The node: registered with its address; its log server reports its port.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NODE}})).unwrap(),
        )
        .await
        .unwrap();
    let addresses = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}});
    nodes
        .patch_status(NODE, &PatchParams::default(), &Patch::Merge(&addresses))
        .await
        .unwrap();
    let server = sluice_noded::log_server::start_for_node(
        cp.kubeconfig_path(),
        client.clone(),
        NODE,
        Some("127.0.0.1"),
        state.path(),
        0,
        None,
    )
    .await
    .expect("log server starts");
    let port = server.local_addr.port();
    eventually(Duration::from_secs(10), "the Node reports the log port", || {
        let nodes = nodes.clone();
        async move {
            let n = nodes.get(NODE).await.ok()?;
            (n.status?.daemon_endpoints?.kubelet_endpoint?.port == i32::from(port)).then_some(())
        }
    })
    .await;

    // A pod whose container restarted once: attempt 0 then attempt 1, with a partial line.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let uid = pod(&pods, "web", Some(NODE), &["app"]).await;
    append(
        &log_file(state.path(), &uid, "app", 0),
        &[
            "2024-05-01T10:00:00.000000001Z stdout F first run",
            "2024-05-01T10:00:01.000000001Z stderr F crashed",
        ],
    );
    let current = log_file(state.path(), &uid, "app", 1);
    append(
        &current,
        &[
            "2024-05-01T10:01:00.100000000Z stdout F line one",
            "2024-05-01T10:01:00.200000000Z stdout P line ",
            "2024-05-01T10:01:00.300000000Z stdout F two",
            "2024-05-01T10:01:00.400000000Z stderr F line three",
        ],
    );

    let logs = |args: &[&str]| {
        let mut c = cp.kubectl();
        c.args(["--request-timeout=20s", "logs"]).args(args);
        c
    };
    let out = run(logs(&["web"])).await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        text(&out).0,
        "line one\nline two\nline three\n",
        "CRI prefix stripped, partial lines joined"
    );
    let out = run(logs(&["web", "--tail=1"])).await;
    assert_eq!(text(&out).0, "line three\n");
    let out = run(logs(&["web", "--timestamps", "--tail=2"])).await;
    assert_eq!(
        text(&out).0,
        "2024-05-01T10:01:00.200000000Z line two\n2024-05-01T10:01:00.400000000Z line three\n"
    );
    let out = run(logs(&["web", "--previous"])).await;
    assert_eq!(text(&out).0, "first run\ncrashed\n");
    let out = run(logs(&["web", "--limit-bytes=6"])).await;
    assert_eq!(text(&out).0, "line o");
    let out = run(logs(&["pod/web", "-c", "app", "--since=1h"])).await;
    assert_eq!(text(&out).0, "", "every line is older than an hour");

    // ctl reads the same.
    let out = run({
        let mut c = ctl(&cp);
        c.args(["logs", "web", "--tail", "2"]);
        c
    })
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0, "line two\nline three\n");

    // Follow: new lines stream as they are written; the stream ends when the container stops.
    let mut follower = Reaped(
        logs(&["-f", "web", "--tail=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = follower.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("no line {what:?} from kubectl logs -f"))
    };
    assert_eq!(next("tail"), "line three");
    append(
        &current,
        &["2024-05-01T10:02:00.000000000Z stdout F appended while following"],
    );
    assert_eq!(next("appended"), "appended while following");
    let terminated = json!({"status": {"containerStatuses": [{"name": "app", "image": "busybox:1.35.0", "imageID": "", "ready": false,
        "restartCount": 1, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
    // The runtime has written the container's last line before its status says it stopped.
    append(&current, &["2024-05-01T10:02:01.000000000Z stdout F last words"]);
    pods.patch_status("web", &PatchParams::default(), &Patch::Merge(&terminated))
        .await
        .unwrap();
    assert_eq!(next("last words"), "last words");
    let status = eventually(
        Duration::from_secs(15),
        "kubectl logs -f ends after the container stopped",
        || {
            let s = follower.0.try_wait().unwrap();
            async move { s }
        },
    )
    .await;
    assert!(status.success());

    // ctl logs -f on a stopped container prints everything and returns.
    let out = run({
        let mut c = ctl(&cp);
        c.args(["logs", "-f", "web"]);
        c
    })
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.ends_with("appended while following\nlast words\n"),
        "{:?}",
        text(&out)
    );

    // Errors users see, as Kubernetes words them.
    let out = run(logs(&["missing"])).await;
    assert!(!out.status.success());
    assert_eq!(
        text(&out).1.trim(),
        "error: error from server (NotFound): pods \"missing\" not found in namespace \"default\""
    );
    let r = cp.raw().await.get("/api/v1/namespaces/default/pods/missing/log").await;
    assert_eq!(
        (r.status, r.json()["message"].as_str()),
        (404, Some("pods \"missing\" not found"))
    );
    pod(&pods, "unscheduled", None, &["app"]).await;
    let out = run(logs(&["unscheduled"])).await;
    assert_eq!(
        text(&out).1.trim(),
        "Error from server (BadRequest): pod unscheduled does not have a host assigned"
    );
    pod(&pods, "fresh", Some(NODE), &["app"]).await;
    let out = run(logs(&["fresh"])).await;
    assert_eq!(
        text(&out).1.trim(),
        "Error from server (BadRequest): container \"app\" in pod \"fresh\" is waiting to start: ContainerCreating"
    );
    let out = run(logs(&["fresh", "--previous"])).await;
    assert_eq!(
        text(&out).1.trim(),
        "Error from server (BadRequest): previous terminated container \"app\" in pod \"fresh\" not found"
    );
    pod(&pods, "two", Some(NODE), &["a", "b"]).await;
    let out = run(logs(&["two", "-c", "nope"])).await;
    assert_eq!(
        text(&out).1.trim(),
        "error: container nope is not valid for pod two",
        "kubectl checks -c itself"
    );
    let raw = cp.raw().await;
    let r = raw.get("/api/v1/namespaces/default/pods/two/log?container=nope").await;
    assert_eq!(
        (r.status, r.json()["message"].as_str()),
        (400, Some("container nope is not valid for pod two"))
    );
    let r = raw.get("/api/v1/namespaces/default/pods/two/log").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["kind"], "Status");
    assert_eq!(
        r.json()["message"],
        "a container name must be specified for pod two, choose one of: [a b]"
    );
    let r = raw.get("/api/v1/namespaces/default/pods/web/log?tailLines=-1").await;
    assert_eq!((r.status, r.json()["reason"].as_str()), (400, Some("BadRequest")));

    // The log server answers only the API server (and administrators).
    let node_kubeconfig = state.path().join("node.kubeconfig");
    let issued = Command::new(workspace_bin("apiserver"))
        .args(["kubeconfig", "--cert-dir"])
        .arg(cp.apiserver.cert_dir())
        .args([
            "--server",
            &format!("https://127.0.0.1:{port}"),
            "--user",
            &format!("system:node:{NODE}"),
            "--group",
            "system:nodes",
            "--out",
        ])
        .arg(&node_kubeconfig)
        .output()
        .unwrap();
    assert!(issued.status.success());
    let as_node = direct_client(&node_kubeconfig).await;
    let path = "/containerLogs/default/web/app";
    match as_node
        .request_text(http::Request::get(path).body(Vec::new()).unwrap())
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "a node certificate may not read logs: {s:?}"),
        other => panic!("a node certificate read logs: {other:?}"),
    }
    let mut no_cert = kube::Config::new(format!("https://127.0.0.1:{port}").parse().unwrap());
    no_cert.accept_invalid_certs = true;
    no_cert.auth_info.token = Some(sluice_tests::ADMIN_TOKEN.to_string().into());
    let anonymous = kube::Client::try_from(no_cert).unwrap();
    assert!(
        anonymous
            .request_text(http::Request::get(path).body(Vec::new()).unwrap())
            .await
            .is_err(),
        "a client without a cluster-CA certificate must not get through the TLS handshake"
    );
    drop(server);
}

/// A client for the log server itself, with the kubeconfig's certificate (its serving cert is self-signed).
async fn direct_client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    cfg.root_cert = None;
    cfg.accept_invalid_certs = true;
    kube::Client::try_from(cfg).unwrap()
}
