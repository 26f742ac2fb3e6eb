//! A platform engineer manages an application on Sluice with the real kubectl
//! (v1.32) and the kubeconfig the API server generates: apply a Deployment and
//! a NodePort Service, look at them, edit the manifest and apply again
//! (strategic merge keeps what the manifest does not mention), scale, watch
//! events, delete. kubectl runs with its default validation (no
//! `--validate=false`): discovery and OpenAPI must satisfy it.

use serde_json::Value;
use sluice_tests::{run_ok as run, ControlPlane};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const MANIFEST_V1: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.35
        command: ["httpd", "-f", "-p", "8080"]
        env:
        - {name: MODE, value: blue}
        - {name: LOG_LEVEL, value: info}
        ports:
        - {containerPort: 8080, name: http}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
"#;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kubectl_json(cp: &ControlPlane, args: &[&str]) -> Value {
    let out = run(cp.kubectl().args(args).args(["-o", "json"]));
    serde_json::from_slice(&out.stdout).expect("kubectl -o json prints JSON")
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write manifest");
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_apply_get_edit_scale_watch_delete() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = write(dir.path(), "app.yaml", MANIFEST_V1);

    // kubectl talks to us without a version-skew warning and lists our resources.
    let version = run(cp.kubectl().args(["version", "-o", "json"]));
    let v: Value = serde_json::from_slice(&version.stdout).expect("version json");
    assert_eq!(v["serverVersion"]["minor"], "32");
    assert!(
        !String::from_utf8_lossy(&version.stderr).contains("WARNING"),
        "skew warning"
    );
    let resources = stdout(&run(cp.kubectl().args(["api-resources"])));
    for line in ["deployments", "deploy", "svc", "endpointslices", "leases"] {
        assert!(resources.contains(line), "api-resources lacks {line}:\n{resources}");
    }

    // apply with default (strict, server-side) validation.
    let applied = run(cp.kubectl().arg("apply").arg("-f").arg(&manifest));
    let text = stdout(&applied);
    assert!(text.contains("deployment.apps/web created"), "{text}");
    assert!(text.contains("service/web created"), "{text}");
    assert!(
        String::from_utf8_lossy(&applied.stderr).trim().is_empty(),
        "apply warned: {}",
        String::from_utf8_lossy(&applied.stderr)
    );

    // A pod exists too (no controllers run in this test: create one directly).
    let pod = write(
        dir.path(),
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web-manual, labels: {app: web}}\nspec:\n  containers:\n  - {name: web, image: busybox:1.35}\n",
    );
    run(cp.kubectl().arg("apply").arg("-f").arg(&pod));

    // `kubectl get deploy,svc,po` prints the usual columns for each type.
    let table = stdout(&run(cp.kubectl().args(["get", "deploy,svc,po"])));
    assert!(
        table.contains("READY") && table.contains("UP-TO-DATE") && table.contains("AVAILABLE"),
        "{table}"
    );
    assert!(
        table.contains("deployment.apps/web") && table.contains("0/3"),
        "{table}"
    );
    assert!(
        table.contains("CLUSTER-IP") && table.contains("PORT(S)") && table.contains("service/web"),
        "{table}"
    );
    assert!(table.contains("NodePort"), "{table}");
    assert!(
        table.contains("pod/web-manual") && table.contains("STATUS") && table.contains("RESTARTS"),
        "{table}"
    );
    let wide = stdout(&run(cp.kubectl().args(["get", "deploy", "-o", "wide"])));
    assert!(
        wide.contains("SELECTOR") && wide.contains("app=web") && wide.contains("busybox:1.35"),
        "{wide}"
    );

    // `kubectl get svc -o yaml` shows the allocated ClusterIP and NodePort.
    let svc_yaml = stdout(&run(cp.kubectl().args(["get", "svc", "web", "-o", "yaml"])));
    let svc: Value = serde_yaml::from_str(&svc_yaml).expect("service yaml");
    let cluster_ip = svc["spec"]["clusterIP"].as_str().expect("clusterIP allocated");
    assert!(
        cluster_ip.starts_with("10.") && cluster_ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "{cluster_ip}"
    );
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("nodePort allocated");
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    // Someone labels the deployment outside the manifest; the edited manifest
    // changes the image and one env var. Strategic merge keeps the label, the
    // untouched env var and the port, and changes the rest.
    run(cp.kubectl().args(["label", "deploy", "web", "team=payments"]));
    let edited = MANIFEST_V1
        .replace("busybox:1.35", "busybox:1.36")
        .replace("{name: MODE, value: blue}", "{name: MODE, value: green}");
    write(dir.path(), "app.yaml", &edited);
    let reapplied = stdout(&run(cp.kubectl().arg("apply").arg("-f").arg(&manifest)));
    assert!(reapplied.contains("deployment.apps/web configured"), "{reapplied}");
    assert!(reapplied.contains("service/web unchanged"), "{reapplied}");
    let d = kubectl_json(&cp, &["get", "deploy", "web"]);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox:1.36");
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("").into(),
                e["value"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        env,
        [("MODE".into(), "green".into()), ("LOG_LEVEL".into(), "info".into())]
    );
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(
        d["metadata"]["labels"]["team"], "payments",
        "label set outside the manifest survives apply"
    );
    assert_eq!(d["spec"]["replicas"], 3);
    // The Service kept its allocation across the re-apply.
    let svc = kubectl_json(&cp, &["get", "svc", "web"]);
    assert_eq!(svc["spec"]["clusterIP"], cluster_ip);
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], node_port);

    // Removing an env var from the manifest removes it from the object.
    write(
        dir.path(),
        "app.yaml",
        &edited.replace("        - {name: LOG_LEVEL, value: info}\n", ""),
    );
    run(cp.kubectl().arg("apply").arg("-f").arg(&manifest));
    let d = kubectl_json(&cp, &["get", "deploy", "web"]);
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env.as_array().map(Vec::len), Some(1), "{env}");

    // kubectl scale goes through the scale subresource.
    let scaled = stdout(&run(cp.kubectl().args(["scale", "deploy", "web", "--replicas=5"])));
    assert!(scaled.contains("deployment.apps/web scaled"), "{scaled}");
    assert_eq!(kubectl_json(&cp, &["get", "deploy", "web"])["spec"]["replicas"], 5);

    // `kubectl get events -w` streams an event created while it watches.
    let deploy_uid = kubectl_json(&cp, &["get", "deploy", "web"])["metadata"]["uid"].clone();
    let mut watch = cp
        .kubectl()
        .args(["get", "events", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get events -w");
    let (tx, rx) = mpsc::channel();
    let out = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give the watch a moment to be established (the event below is also
    // caught by the initial list if it lands before the watch starts).
    std::thread::sleep(Duration::from_millis(1500));
    let event = serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web.manual-1", "namespace": "default"},
        "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default", "apiVersion": "apps/v1",
                           "uid": deploy_uid},
        "reason": "ReleaseChecked", "message": "release green verified", "type": "Normal",
        "source": {"component": "story"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z", "count": 1
    });
    let created = cp.raw().await.post("/api/v1/namespaces/default/events", &event).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut seen = Vec::new();
    let mut found = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(15)) {
        seen.push(line.clone());
        if line.contains("ReleaseChecked") {
            assert!(
                line.contains("deployment/web") && line.contains("release green verified"),
                "{line}"
            );
            found = true;
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        found,
        "kubectl get events -w never showed the event; saw:\n{}",
        seen.join("\n")
    );

    // describe shows the deployment and its events.
    let described = stdout(&run(cp.kubectl().args(["describe", "deploy", "web"])));
    assert!(described.contains("ReleaseChecked"), "{described}");

    // delete -f removes both objects.
    let deleted = stdout(&run(cp.kubectl().arg("delete").arg("-f").arg(&manifest)));
    assert!(
        deleted.contains("deployment.apps \"web\" deleted") && deleted.contains("service \"web\" deleted"),
        "{deleted}"
    );
    let gone = cp
        .kubectl()
        .args(["get", "deploy", "web"])
        .output()
        .expect("kubectl runs");
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_apply_reports_invalid_objects_with_field_paths() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // An unknown field: strict field validation rejects it and nothing is created.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\nspec: {oops: true}\n",
    );
    let out = cp
        .kubectl()
        .arg("apply")
        .arg("-f")
        .arg(&bad)
        .output()
        .expect("kubectl runs");
    assert!(!out.status.success(), "unknown field accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec"), "{err}");
    let missing = cp
        .kubectl()
        .args(["get", "cm", "settings"])
        .output()
        .expect("kubectl runs");
    assert!(!missing.status.success(), "a rejected object was created");

    // kubectl explain reads our OpenAPI.
    let explain = stdout(&run(cp
        .kubectl()
        .args(["explain", "deployment.spec.template.spec.containers.ports"])));
    assert!(explain.contains("containerPort"), "{explain}");
}
