//! User story: an operator drains a node for maintenance while a team's
//! PodDisruptionBudget protects its Deployment, on a real two-node cluster
//! (`cargo xtask up --nodes 2`).
//!
//! The Deployment `web` (2 replicas, an emptyDir each) runs on node 1; its
//! budget says `minAvailable: 2`. `kubectl get pdb` shows the budget with
//! kubectl's columns and 0 allowed disruptions once the disruption
//! controller has counted the pods. A raw eviction is refused with 429 and
//! Kubernetes' exact Status; `kubectl drain <node1> --ignore-daemonsets
//! --delete-emptydir-data` cordons the node and keeps retrying, printing
//! kubectl's "error when evicting ... (will retry after 5s): Cannot evict pod
//! as it would violate the pod's disruption budget." When the team relaxes the
//! budget to `minAvailable: 1`, the drain evicts one pod, waits for its
//! replacement to be Ready on node 2, evicts the other and reports the node
//! drained. Along the way: the budget refuses both bounds at once (422 with
//! Kubernetes' text), a Pending pod is evicted without a budget and carries
//! the `DisruptionTarget` condition, a dry-run eviction deletes nothing, and
//! a pod under two budgets cannot be evicted (500).
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_tests::cluster::{wait_for, TestCluster, BUSYBOX_IMAGE};

const WAIT: Duration = Duration::from_secs(90);

fn deployment() -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: {BUSYBOX_IMAGE}
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
        volumeMounts: [{{name: scratch, mountPath: /scratch}}]
      volumes: [{{name: scratch, emptyDir: {{}}}}]
"#
    )
}

const PDB: &str = r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"#;

/// `.status` of the budget as `current/desired/allowed/expected`.
fn budget(cluster: &TestCluster, name: &str) -> String {
    let out = cluster.kubectl(&[
        "get",
        "pdb",
        name,
        "-o",
        "jsonpath={.status.currentHealthy}/{.status.desiredHealthy}/{.status.disruptionsAllowed}/{.status.expectedPods}",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_budget(cluster: &TestCluster, name: &str, want: &str) {
    let mut last = String::new();
    let ok = wait_for(WAIT, || {
        last = budget(cluster, name);
        (last == want).then_some(())
    });
    assert!(
        ok.is_some(),
        "budget {name} should be {want} (current/desired/allowed/expected), is {last}\n{}",
        cluster.logs_tail()
    );
}

/// POST an Eviction for `pod` as a client library would; status code and
/// exact body.
fn evict(cluster: &TestCluster, pod: &str, query: &str, body: Value) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).expect("kubeconfig");
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube config");
        // The answer itself is under test: no retrying of 429s.
        cfg.default_retry = false;
        let client = kube::Client::try_from(cfg).expect("client");
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("/api/v1/namespaces/default/pods/{pod}/eviction{query}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(kube::client::Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("request");
        let resp = client.send(req).await.expect("request sent");
        let status = resp.status().as_u16();
        use http_body_util::BodyExt;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).trim_end().to_string())
    })
}

fn eviction(pod: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "default"}})
}

#[test]
fn drain_waits_for_the_disruption_budget() {
    let started = Instant::now();
    let cluster = TestCluster::up(2, &[]);
    let (n1, n2) = (cluster.node_name(1), cluster.node_name(2));

    // web's two pods on node 1: node 2 is cordoned while they are placed.
    cluster.kubectl_ok(&["cordon", &n2]);
    cluster.apply(&deployment());
    let web = cluster.wait_running("app=web", 2, WAIT);
    assert!(web.iter().all(|p| p.node.as_deref() == Some(n1.as_str())), "{web:#?}");
    cluster.kubectl_ok(&["uncordon", &n2]);
    eprintln!("placed at {:?}", started.elapsed());

    // Both bounds at once: Kubernetes' 422.
    let both = cluster.home().join("both.yaml");
    std::fs::write(
        &both,
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: both}\nspec: {minAvailable: 1, maxUnavailable: 1, selector: {matchLabels: {app: web}}}\n",
    )
    .expect("write manifest");
    let out = cluster.kubectl(&["apply", "-f", &both.display().to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"The PodDisruptionBudget "both" is invalid: spec: Invalid value: policy.PodDisruptionBudgetSpec{MinAvailable:(*intstr.IntOrString)"#)
            && err.contains(": minAvailable and maxUnavailable cannot be both set"),
        "{err}"
    );

    // The budget: counted by the disruption controller, shown by kubectl.
    cluster.apply(PDB);
    wait_budget(&cluster, "web", "2/2/0/2");
    eprintln!("budget counted at {:?}", started.elapsed());
    let table = cluster.kubectl_ok(&["get", "pdb"]);
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        [
            "NAME",
            "MIN",
            "AVAILABLE",
            "MAX",
            "UNAVAILABLE",
            "ALLOWED",
            "DISRUPTIONS",
            "AGE"
        ],
        "{table}"
    );
    assert_eq!(lines[1][..4], ["web", "2", "N/A", "0"], "{table}");
    let cond = cluster.kubectl_ok(&[
        "get",
        "pdb",
        "web",
        "-o",
        "jsonpath={.status.conditions[0].type}/{.status.conditions[0].status}/{.status.conditions[0].reason}",
    ]);
    assert_eq!(cond, "DisruptionAllowed/False/InsufficientPods");

    // A client library's eviction: 429 with Kubernetes' Status, byte for byte.
    let (code, body) = evict(&cluster, &web[0].name, "", eviction(&web[0].name));
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        body,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Cannot evict pod as it would violate the pod's disruption budget.","reason":"TooManyRequests","details":{"causes":[{"reason":"DisruptionBudget","message":"The disruption budget web needs 2 healthy pods and has 2 currently"}]},"code":429}"#
    );
    let (code, body) = evict(&cluster, &web[0].name, "", eviction("other"));
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("name in URL does not match name in Eviction object"),
        "{body}"
    );

    // A Pending pod (nowhere to run) is evicted without asking any budget,
    // and is marked as disrupted by the Eviction API.
    cluster.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: stuck, labels: {app: stuck}, finalizers: [example.com/hold]}\nspec: {nodeSelector: {nowhere: \"true\"}, containers: [{name: c, image: busybox:1.35.0}]}\n",
    );
    let (code, body) = evict(&cluster, "stuck", "", eviction("stuck"));
    assert_eq!(
        (code, body.as_str()),
        (
            201,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}"#
        )
    );
    let cond = cluster.kubectl_ok(&[
        "get",
        "pod",
        "stuck",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"DisruptionTarget\")].reason}: {.status.conditions[?(@.type==\"DisruptionTarget\")].message}",
    ]);
    assert_eq!(cond, "EvictionByEvictionAPI: Eviction API: evicting");
    cluster.kubectl_ok(&[
        "patch",
        "pod",
        "stuck",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);

    eprintln!("evictions checked at {:?}", started.elapsed());
    // The drain: cordons, then retries while the budget forbids.
    let stderr_path = cluster.home().join("drain.err");
    let stdout_path = cluster.home().join("drain.out");
    let mut drain = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args([
            "drain",
            &n1,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=80s",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("drain.out"))
        .stderr(std::fs::File::create(&stderr_path).expect("drain.err"))
        .spawn()
        .expect("run kubectl drain");
    let refused = "(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.";
    let seen = wait_for(Duration::from_secs(30), || {
        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        (err.contains("error when evicting pods/\"web-") && err.contains(refused)).then_some(err)
    });
    let Some(seen) = seen else {
        let _ = drain.kill();
        let _ = drain.wait();
        panic!(
            "drain did not report the budget: {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    };
    assert!(seen.contains(" -n \"default\" (will retry after 5s)"), "{seen}");
    let unschedulable = cluster.kubectl_ok(&["get", "node", &n1, "-o", "jsonpath={.spec.unschedulable}"]);
    assert_eq!(unschedulable, "true");
    assert_eq!(
        cluster.pods("app=web").len(),
        2,
        "nothing evicted while the budget forbids"
    );

    // The team relaxes the budget: the drain goes through, one pod at a time.
    eprintln!("drain refused at {:?}", started.elapsed());
    let relaxed = Instant::now();
    cluster.kubectl_ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    let finished = wait_for(WAIT, || drain.try_wait().expect("drain status"));
    let Some(status) = finished else {
        let _ = drain.kill();
        let _ = drain.wait();
        panic!(
            "drain did not finish: {}{}",
            std::fs::read_to_string(&stdout_path).unwrap_or_default(),
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    };
    let mut out = String::new();
    std::fs::File::open(&stdout_path)
        .and_then(|mut f| f.read_to_string(&mut out))
        .expect("drain.out");
    let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "drain failed: {out}{err}");
    assert!(out.contains(&format!("node/{n1} cordoned")), "{out}");
    assert!(out.contains("evicted"), "{out}");
    assert!(out.contains(&format!("node/{n1} drained")), "{out}");
    eprintln!("drain finished {:?} after the budget was relaxed", relaxed.elapsed());
    let moved = cluster.wait_running("app=web", 2, WAIT);
    assert!(
        moved.iter().all(|p| p.node.as_deref() == Some(n2.as_str())),
        "{moved:#?}"
    );
    wait_budget(&cluster, "web", "2/1/1/2");
    eprintln!("drained at {:?}", started.elapsed());

    // A dry run deletes nothing and spends nothing.
    let (code, body) = evict(&cluster, &moved[0].name, "?dryRun=All", eviction(&moved[0].name));
    assert_eq!(code, 201, "{body}");
    assert_eq!(cluster.pods("app=web").iter().filter(|p| !p.terminating).count(), 2);
    assert_eq!(budget(&cluster, "web"), "2/1/1/2");

    // Two budgets over one pod: the eviction subresource refuses (500).
    cluster.apply(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web-too}\nspec: {maxUnavailable: 1, selector: {matchLabels: {app: web}}}\n",
    );
    let (code, body) = evict(&cluster, &moved[0].name, "", eviction(&moved[0].name));
    assert_eq!(
        (code, body.as_str()),
        (
            500,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.","code":500}"#
        )
    );
    cluster.kubectl_ok(&["uncordon", &n1]);
    eprintln!("story took {:?}", started.elapsed());
}
