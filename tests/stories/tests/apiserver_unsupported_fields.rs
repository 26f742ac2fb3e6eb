//! Story: a developer applies manifests that use pod-spec fields Sluice cannot
//! honour yet (a `tcpSocket` lifecycle hook on a sidecar init container, a
//! `Localhost` seccomp profile beside an honoured `runAsUser`) and is told so at
//! once — a 422 `Invalid` naming the field — instead of getting pods that
//! silently run without them. Deployments are refused at apply time, on their
//! template's field path; a typical manifest whose fields carry Kubernetes'
//! default values is accepted. The supported list is
//! `control/apiserver/src/pod_support.rs`.

use serde_json::{json, Value};
use sluice_tests::ControlPlane;

fn causes(status: &Value) -> Vec<String> {
    status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["field"].as_str().unwrap_or_default().to_string())
        .collect()
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hardened
spec:
  replicas: 2
  selector:
    matchLabels: {app: hardened}
  template:
    metadata:
      labels: {app: hardened}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f", "-p", "8080"]
        securityContext:
          runAsUser: 1000
          seccompProfile: {type: Localhost, localhostProfile: profiles/audit.json}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_pod_fields_are_refused_at_admission() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;

    // A Pod whose sidecar init container has a tcpSocket preStop hook (which
    // Kubernetes keeps only for compatibility): 422, Kubernetes' Status shape and wording.
    let resp = raw
        .post(
            "/api/v1/namespaces/default/pods",
            &json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "with-init"},
                "spec": {
                    "initContainers": [{"name": "setup", "image": "busybox:1.36", "restartPolicy": "Always",
                                        "lifecycle": {"preStop": {"tcpSocket": {"port": 80}}}}],
                    "containers": [{"name": "app", "image": "busybox:1.36"}]
                }
            }),
        )
        .await;
    assert_eq!(resp.status, 422, "{}", resp.text());
    let status = resp.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(causes(&status), ["spec.initContainers[0].lifecycle.preStop.tcpSocket"]);
    assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueForbidden");
    assert_eq!(
        status["message"],
        "Pod \"with-init\" is invalid: spec.initContainers[0].lifecycle.preStop.tcpSocket: Forbidden: tcpSocket lifecycle hooks are not supported (Kubernetes keeps the field for compatibility and fails such hooks when they run)"
    );
    let gone = raw.get("/api/v1/namespaces/default/pods/with-init").await;
    assert_eq!(gone.status, 404, "nothing was stored");

    // kubectl apply of a Deployment whose template asks for a Localhost seccomp
    // profile: refused at apply time, on the template's field path (its
    // runAsUser is honoured, so not named); no Deployment is stored.
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("hardened.yaml");
    std::fs::write(&manifest, DEPLOYMENT).expect("write manifest");
    let out = cp
        .kubectl()
        .args(["apply", "-f"])
        .arg(&manifest)
        .output()
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "apply must fail: {stderr}");
    assert!(
        stderr.contains(
            "spec.template.spec.containers[0].securityContext.seccompProfile: Forbidden: Localhost seccomp profiles are not supported by this cluster yet (RuntimeDefault and Unconfined are)"
        ),
        "{stderr}"
    );
    let gone = raw.get("/apis/apps/v1/namespaces/default/deployments/hardened").await;
    assert_eq!(gone.status, 404, "{}", gone.text());

    // The same over raw HTTP: the cause names the template path.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hardened"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "hardened"}},
            "template": {
                "metadata": {"labels": {"app": "hardened"}},
                "spec": {"containers": [{
                    "name": "web", "image": "busybox:1.36",
                    "securityContext": {"runAsUser": 1000,
                        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"}}
                }]}
            }
        }
    });
    let resp = raw
        .post("/apis/apps/v1/namespaces/default/deployments", &deployment)
        .await;
    assert_eq!(resp.status, 422, "{}", resp.text());
    assert_eq!(
        causes(&resp.json()),
        ["spec.template.spec.containers[0].securityContext.seccompProfile"]
    );

    // A typical manifest carrying Kubernetes' default values is accepted.
    let resp = raw
        .post(
            "/apis/apps/v1/namespaces/default/deployments",
            &json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "typical"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "typical"}},
                    "template": {
                        "metadata": {"labels": {"app": "typical"}},
                        "spec": {
                            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                            "securityContext": {}, "hostNetwork": false,
                            "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler",
                            "containers": [{
                                "name": "web", "image": "busybox:1.36",
                                "imagePullPolicy": "IfNotPresent",
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File",
                                "securityContext": {},
                                "ports": [{"containerPort": 8080, "protocol": "TCP"}]
                            }]
                        }
                    }
                }
            }),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let resp = raw
        .post(
            "/api/v1/namespaces/default/pods",
            &json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "typical"},
                "spec": {
                    "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "securityContext": {},
                    "containers": [{"name": "app", "image": "busybox:1.36",
                                    "terminationMessagePolicy": "File", "securityContext": {}}]
                }
            }),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());

    // Adding an unsupported field on update is refused too (the template is mutable).
    let resp = raw
        .patch(
            "/apis/apps/v1/namespaces/default/deployments/typical",
            "application/merge-patch+json",
            &json!({"spec": {"template": {"spec": {"hostUsers": false}}}}),
        )
        .await;
    assert_eq!(resp.status, 422, "{}", resp.text());
    assert_eq!(causes(&resp.json()), ["spec.template.spec.hostUsers"]);
}
