//! A user autoscales a web Deployment on CPU, as in Kubernetes'
//! HorizontalPodAutoscaler walkthrough (php-apache plus a load generator).
//!
//! `cargo xtask up --nodes 1` (the controller-manager syncing autoscalers
//! every 5 s instead of 15 s) runs the metrics server; the user deploys
//! `web`, one busybox httpd whose CGI script burns CPU on every request
//! (requests 100m), a ClusterIP Service in front of it, and an
//! `autoscaling/v2` HorizontalPodAutoscaler: 1 to 4 replicas at 50% CPU
//! utilization, scale-down stabilized over 15 s. Then:
//! * with no traffic the autoscaler reports its CPU metric and keeps 1
//!   replica;
//! * a load-generator pod requests the script in a loop: the Deployment
//!   grows to at least 3 replicas, with a `SuccessfulRescale` event whose
//!   reason is "cpu resource utilization (percentage of request) above
//!   target", and `kubectl get hpa` shows the utilization above its target;
//! * once the load generator is deleted, the Deployment comes back to 1
//!   replica after the stabilization window ("All metrics below target").
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster, BUSYBOX_IMAGE};

const NS: &str = "autoscale-story";

static CACHE: AtomicU32 = AtomicU32::new(0);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// kubectl with a discovery cache of its own (the metrics API appears
/// while the story runs; kubectl keeps discovery for hours).
fn kubectl(cluster: &TestCluster, args: &[&str]) -> Output {
    let n = CACHE.fetch_add(1, Ordering::SeqCst);
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .arg("--cache-dir")
        .arg(cluster.home().join(format!("kubectl-cache-{n}")))
        .args(args)
        .output()
        .expect("run kubectl")
}

fn json(cluster: &TestCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-n", NS, "-o", "json"]);
    serde_json::from_str(&cluster.kubectl_ok(&all)).expect("kubectl prints JSON")
}

fn replicas(cluster: &TestCluster) -> i64 {
    json(cluster, &["get", "deployment", "web"])
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(-1)
}

/// The messages of the autoscaler's events, oldest first.
fn rescales(cluster: &TestCluster) -> Vec<String> {
    let events = json(
        cluster,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=web,reason=SuccessfulRescale",
        ],
    );
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

/// What a user reads when the story fails: the autoscaler, its events, the pods and their usage.
fn diagnosis(cluster: &TestCluster) -> String {
    let mut out = String::new();
    for args in [
        &["describe", "hpa", "web", "-n", NS][..],
        &["get", "pods", "-n", NS, "-o", "wide"],
        &["top", "pods", "-n", NS],
    ] {
        let o = kubectl(cluster, args);
        out += &format!("$ kubectl {}\n{}{}\n", args.join(" "), text(&o.stdout), text(&o.stderr));
    }
    out + &cluster.logs_tail()
}

#[test]
fn an_autoscaler_grows_a_deployment_under_cpu_load_and_shrinks_it_after() {
    let cluster = TestCluster::up(
        1,
        &["--controller-manager-arg=--horizontal-pod-autoscaler-sync-period=5s"],
    );

    let available = wait_for(Duration::from_secs(90), || {
        let out = cluster.kubectl(&[
            "get",
            "apiservice",
            "v1beta1.metrics.k8s.io",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
        ]);
        (text(&out.stdout) == "True").then_some(())
    });
    assert!(
        available.is_some(),
        "APIService v1beta1.metrics.k8s.io never became Available\n{}",
        cluster.logs_tail()
    );

    cluster.kubectl_ok(&["create", "namespace", NS]);
    cluster.apply(&format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: burn
  namespace: {NS}
data:
  burn: |
    #!/bin/sh
    i=0
    while [ $i -lt 20000 ]; do i=$((i+1)); done
    printf 'Content-Type: text/plain\r\n\r\nOK!\n'
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NS}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: httpd
        image: {BUSYBOX_IMAGE}
        command: [httpd, -f, -p, "8080", -h, /www]
        ports:
        - containerPort: 8080
        resources:
          requests: {{cpu: 100m}}
          limits: {{cpu: 200m}}
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 2
        volumeMounts:
        - name: cgi
          mountPath: /www/cgi-bin
      volumes:
      - name: cgi
        configMap:
          name: burn
          defaultMode: 0755
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {NS}
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: {NS}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  minReplicas: 1
  maxReplicas: 4
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 50
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 15
"#
    ));
    cluster.kubectl_ok(&["rollout", "status", "-n", NS, "deployment/web", "--timeout=120s"]);
    let service_ip = json(&cluster, &["get", "service", "web"])["spec"]["clusterIP"]
        .as_str()
        .expect("the Service has a ClusterIP")
        .to_string();

    // Idle: the autoscaler reads the pods' CPU and keeps one replica.
    let idle = wait_for(Duration::from_secs(90), || {
        let hpa = json(&cluster, &["get", "hpa", "web"]);
        hpa.pointer("/status/currentMetrics/0/resource/current/averageUtilization")
            .and_then(Value::as_i64)
    });
    let Some(idle) = idle else {
        panic!(
            "the autoscaler never reported the pods' CPU utilization\n{}",
            diagnosis(&cluster)
        );
    };
    assert!(
        idle < 50,
        "an idle httpd used {idle}% of its request\n{}",
        diagnosis(&cluster)
    );
    assert_eq!(replicas(&cluster), 1, "scaled without load\n{}", diagnosis(&cluster));

    // Load: four clients requesting the CPU-burning script in a loop.
    // `timeout 5 wget`, not `wget -T 5`: this busybox's wget (Debian's
    // busybox-static 1.35.0) dies of a segmentation fault whenever `-T` is
    // given, so every request would fail without reaching the Service.
    cluster.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: load
  namespace: {NS}
spec:
  containers:
  - name: load
    image: {BUSYBOX_IMAGE}
    command: [sh, -c, 'for w in 1 2 3 4; do (while :; do timeout 5 wget -q -O /dev/null http://{service_ip}/cgi-bin/burn; done) & done; wait']
"#
    ));
    cluster.kubectl_ok(&["wait", "-n", NS, "--for=condition=Ready", "pod/load", "--timeout=120s"]);
    // What the load pod's clients do, once by hand: the Service answers with the script's output.
    let url = format!("http://{service_ip}/cgi-bin/burn");
    let answer = kubectl(
        &cluster,
        &[
            "exec", "-n", NS, "load", "--", "timeout", "10", "wget", "-q", "-O-", &url,
        ],
    );
    assert_eq!(
        text(&answer.stdout),
        "OK!\n",
        "the load pod's request to {url} did not run the script: {}\n{}",
        text(&answer.stderr),
        diagnosis(&cluster)
    );
    let loaded = Instant::now();
    let grown = wait_for(Duration::from_secs(180), || {
        let n = replicas(&cluster);
        (n >= 3).then_some(n)
    });
    let Some(grown) = grown else {
        panic!(
            "the Deployment never grew to 3 replicas under load\n{}",
            diagnosis(&cluster)
        );
    };
    eprintln!(
        "scaled to {grown} replicas {:?} after the load started",
        loaded.elapsed()
    );
    let up = rescales(&cluster);
    assert!(
        up.iter()
            .any(|m| m.ends_with("reason: cpu resource utilization (percentage of request) above target")),
        "no SuccessfulRescale above target among {up:?}\n{}",
        diagnosis(&cluster)
    );
    assert!(grown <= 4, "maxReplicas is 4, the Deployment has {grown}");
    // kubectl get hpa: TARGETS shows the utilization against its target,
    // "cpu: 175%/50%" (kubectl 1.32 here; older ones print "175%/50%"): the
    // columns between REFERENCE and MINPODS.
    let out = kubectl(&cluster, &["get", "hpa", "web", "-n", NS, "--no-headers"]);
    let row = text(&out.stdout);
    let columns: Vec<&str> = row.split_whitespace().collect();
    let targets = columns
        .get(2..columns.len().saturating_sub(4))
        .unwrap_or_default()
        .join(" ");
    let now: i64 = targets
        .trim_start_matches("cpu:")
        .split('%')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("TARGETS column {targets:?} in {row:?}"));
    assert!(targets.ends_with("/50%"), "TARGETS column {targets:?} in {row:?}");
    assert!(now > 0, "under load the utilization is {now}%: {row:?}");
    // The new replicas start and serve.
    cluster.kubectl_ok(&["rollout", "status", "-n", NS, "deployment/web", "--timeout=120s"]);

    // Load gone: back to one replica once the 15 s window has passed.
    cluster.kubectl_ok(&["delete", "pod", "load", "-n", NS, "--grace-period=0", "--force"]);
    let stopped = Instant::now();
    let shrunk = wait_for(Duration::from_secs(180), || (replicas(&cluster) == 1).then_some(()));
    assert!(
        shrunk.is_some(),
        "the Deployment stayed at {} replicas after the load stopped\n{}",
        replicas(&cluster),
        diagnosis(&cluster)
    );
    let waited = stopped.elapsed();
    eprintln!("back to 1 replica {waited:?} after the load stopped");
    assert!(
        waited >= Duration::from_secs(15),
        "scaled down after {waited:?}, inside the 15 s stabilization window"
    );
    let down = rescales(&cluster);
    assert!(
        down.iter()
            .any(|m| m == "New size: 1; reason: All metrics below target"),
        "no SuccessfulRescale to 1 below target among {down:?}\n{}",
        diagnosis(&cluster)
    );
}
