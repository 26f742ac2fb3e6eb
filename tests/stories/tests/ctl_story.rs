//! The same day-to-day story with Sluice's own `ctl`: apply a Deployment and a
//! NodePort Service from a directory, list them as tables, read them back as
//! YAML/JSON, re-apply an edited manifest, scale, describe with events, watch
//! events, delete — and get clear errors with a non-zero exit on bad input.

use serde_json::Value;
use sluice_tests::{run_ok, workspace_bin, ControlPlane};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 3
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: busybox:1.35
        env:
        - {name: MODE, value: blue}
        ports:
        - {containerPort: 8080}
"#;

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  type: NodePort
  selector: {app: api}
  ports:
  - {port: 80, targetPort: 8080}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: api-settings
data: {color: blue}
"#;

fn ctl(cp: &ControlPlane) -> Command {
    let mut c = Command::new(workspace_bin("ctl"));
    c.arg("--kubeconfig").arg(cp.kubeconfig_path());
    c
}

fn ok(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().expect("ctl runs");
    assert!(
        !out.status.success(),
        "{cmd:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write manifest");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctl_apply_get_scale_describe_watch_delete() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = dir.path().join("app");
    std::fs::create_dir(&manifests).expect("dir");
    write(&manifests, "10-deployment.yaml", DEPLOYMENT);
    write(&manifests, "20-service.yaml", SERVICE);

    // apply a directory (multi-document files inside).
    let applied = ok(ctl(&cp).arg("apply").arg("-f").arg(&manifests));
    assert_eq!(
        applied.lines().collect::<Vec<_>>(),
        [
            "deployment.apps/api created",
            "service/api created",
            "configmap/api-settings created"
        ]
    );

    // Tables with the server's columns; short names and comma lists resolve through discovery.
    let table = ok(ctl(&cp).args(["get", "deploy,svc"]));
    assert!(
        table.contains("UP-TO-DATE") && table.contains("deployment.apps/api") && table.contains("0/3"),
        "{table}"
    );
    assert!(
        table.contains("service/api") && table.contains("NodePort") && table.contains("80:3"),
        "{table}"
    );
    let wide = ok(ctl(&cp).args(["get", "deployments.apps", "-o", "wide"]));
    assert!(wide.contains("SELECTOR") && wide.contains("app=api"), "{wide}");
    let all_ns = ok(ctl(&cp).args(["get", "ns"]));
    for ns in ["default", "kube-system", "kube-public"] {
        assert!(all_ns.contains(ns), "{all_ns}");
    }
    let across = ok(ctl(&cp).args(["get", "svc", "-A"]));
    assert!(across.lines().next().unwrap_or("").starts_with("NAMESPACE"), "{across}");
    assert_eq!(ok(ctl(&cp).args(["get", "cm", "-l", "app=none", "-o", "name"])), "");
    assert_eq!(
        ok(ctl(&cp).args(["get", "configmap/api-settings", "-o", "name"])).trim(),
        "configmap/api-settings"
    );

    // YAML shows the allocation; JSON parses.
    let svc: Value = serde_yaml::from_str(&ok(ctl(&cp).args(["get", "svc", "api", "-o", "yaml"]))).expect("yaml");
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().expect("nodePort");
    assert!((30000..=32767).contains(&node_port));
    assert!(svc["spec"]["clusterIP"]
        .as_str()
        .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()));

    // Re-apply an edited manifest from stdin: the image changes, the rest stays.
    let edited = DEPLOYMENT.replace("busybox:1.35", "busybox:1.36");
    let mut child = ctl(&cp)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctl apply -f -");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(edited.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("ctl apply finishes");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/api configured"
    );
    let d: Value = serde_json::from_str(&ok(ctl(&cp).args(["get", "deploy", "api", "-o", "json"]))).expect("json");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox:1.36");
    assert_eq!(c["env"][0]["value"], "blue");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    // Applying the same manifest again changes nothing.
    let again = ok(ctl(&cp).arg("apply").arg("-f").arg(manifests.join("20-service.yaml")));
    assert!(again.contains("service/api unchanged"), "{again}");

    // scale through the scale subresource.
    assert_eq!(
        ok(ctl(&cp).args(["scale", "deploy/api", "--replicas", "5"])).trim(),
        "deployment.apps/api scaled"
    );
    let d: Value = serde_json::from_str(&ok(ctl(&cp).args(["get", "deploy", "api", "-o", "json"]))).expect("json");
    assert_eq!(d["spec"]["replicas"], 5);

    // get events --watch streams an event created meanwhile; describe lists it.
    let mut watch = ctl(&cp)
        .args(["get", "events", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ctl get events --watch");
    let (tx, rx) = mpsc::channel();
    let stdout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(1000));
    let event = serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "api.rollout-1", "namespace": "default"},
        "involvedObject": {"kind": "Deployment", "name": "api", "namespace": "default", "apiVersion": "apps/v1",
                           "uid": d["metadata"]["uid"]},
        "reason": "RolloutChecked", "message": "image busybox:1.36 verified", "type": "Normal",
        "source": {"component": "story"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z", "count": 1
    });
    let created = cp.raw().await.post("/api/v1/namespaces/default/events", &event).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut seen = Vec::new();
    let mut found = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(15)) {
        seen.push(line.clone());
        if line.contains("RolloutChecked") {
            assert!(line.contains("deployment/api"), "{line}");
            found = true;
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        found,
        "ctl get events --watch never showed the event; saw:\n{}",
        seen.join("\n")
    );
    let described = ok(ctl(&cp).args(["describe", "deploy", "api"]));
    assert!(described.contains("Name:         api"), "{described}");
    assert!(
        described.contains("RolloutChecked") && described.contains("image busybox:1.36 verified"),
        "{described}"
    );

    // Errors: the server's Status message, non-zero exit, nothing changed.
    let err = fails(ctl(&cp).args(["get", "deploy", "nope"]));
    assert!(err.contains("NotFound") && err.contains("nope"), "{err}");
    let err = fails(ctl(&cp).args(["get", "widgets"]));
    assert!(err.contains("doesn't have a resource type \"widgets\""), "{err}");
    write(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n",
    );
    let err = fails(ctl(&cp).arg("create").arg("-f").arg(dir.path().join("bad.yaml")));
    assert!(err.contains("Invalid") && err.contains("metadata.name"), "{err}");
    let err = fails(
        ctl(&cp)
            .arg("create")
            .arg("-f")
            .arg(manifests.join("10-deployment.yaml")),
    );
    assert!(err.contains("AlreadyExists"), "{err}");

    // delete by manifest and by name.
    let deleted = ok(ctl(&cp).arg("delete").arg("-f").arg(manifests.join("20-service.yaml")));
    assert!(
        deleted.contains("service \"api\" deleted") && deleted.contains("configmap \"api-settings\" deleted"),
        "{deleted}"
    );
    assert_eq!(
        ok(ctl(&cp).args(["delete", "deploy", "api"])).trim(),
        "deployment.apps \"api\" deleted"
    );
    let err = fails(ctl(&cp).args(["get", "svc", "api"]));
    assert!(err.contains("NotFound"), "{err}");
    ok(ctl(&cp).args(["delete", "deploy", "api", "--ignore-not-found"]));
}
