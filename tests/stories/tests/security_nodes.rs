//! An administrator checks that a node's credentials reach only what the
//! node's own pods need (Kubernetes' Node authorizer and NodeRestriction).
//!
//! `cargo xtask up --nodes 2`. In a namespace of their own they make two
//! Secrets, `mounted` and `unused`, and a pod pinned to node 1 that mounts
//! `mounted`. With the kubeconfig noded runs with (`nodes/<node>/kubeconfig`
//! under the cluster's home):
//! * node 1 reads `mounted` but not `unused`: 403 `secrets "unused" is
//!   forbidden: User "system:node:<n1>" cannot get resource "secrets" in API
//!   group "" in the namespace "...": no relationship found between node
//!   '<n1>' and this object`; node 2 cannot read `mounted` either, nor list
//!   the namespace's Secrets;
//! * once the pod is deleted, node 1 cannot read `mounted` any more;
//! * node 1 cannot label node 2 (`node "<n1>" is not allowed to modify node
//!   "<n2>"`) nor give itself a `node-restriction.kubernetes.io/` label, but
//!   may label itself otherwise;
//! * node 1 cannot update the status of a pod bound to node 2;
//! * a bootstrap token issued for node 1 (Secret annotation
//!   `bootstrap.sluice.dev/node-name`) gets a 403 for node 2, and its
//!   request for node 1 is approved and signed by the controllers;
//! * the scheduler and the controller-manager ran as `system:kube-scheduler`
//!   and `system:kube-controller-manager` (their kubeconfigs in the cluster's
//!   home) without a single 403 in their logs.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sluice_tests::cluster::{wait_for, TestCluster, BUSYBOX_IMAGE};

const NS: &str = "security-nodes";

fn node_kubeconfig(cluster: &TestCluster, i: u32) -> PathBuf {
    cluster
        .home()
        .join("nodes")
        .join(cluster.node_name(i))
        .join("kubeconfig")
}

fn kubectl_as(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A PEM certificate request for `system:node:<node>` in `system:nodes`.
fn node_csr(dir: &Path, node: &str) -> String {
    let key = dir.join(format!("{node}.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
        ])
        .arg(&key)
        .args(["-subj", &format!("/O=system:nodes/CN=system:node:{node}")])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl: {}", stderr(&out));
    String::from_utf8(out.stdout).expect("PEM")
}

/// POST a node client CSR with bearer `token`; (HTTP code, body).
fn request_certificate(cluster: &TestCluster, server: &str, token: &str, node: &str) -> (u16, String) {
    use base64::Engine;
    let pem = node_csr(cluster.home(), node);
    let body = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "node-csr-"},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem),
                 "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                 "usages": ["digital signature", "client auth"]}
    });
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(cluster.home().join("pki").join("ca.crt"))
        .args([
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: application/json",
        ])
        .args(["-X", "POST", "--data", &body.to_string()])
        .arg(format!(
            "{server}/apis/certificates.k8s.io/v1/certificatesigningrequests"
        ))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn a_node_reaches_only_what_its_pods_use() {
    let cluster = TestCluster::up(2, &[]);
    let (n1, n2) = (cluster.node_name(1), cluster.node_name(2));
    let (kc1, kc2) = (node_kubeconfig(&cluster, 1), node_kubeconfig(&cluster, 2));
    assert!(kc1.exists(), "noded's kubeconfig at {}", kc1.display());

    cluster.kubectl_ok(&["create", "namespace", NS]);
    cluster.kubectl_ok(&["-n", NS, "create", "secret", "generic", "mounted", "--from-literal=k=v"]);
    cluster.kubectl_ok(&["-n", NS, "create", "secret", "generic", "unused", "--from-literal=k=v"]);
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: reader, namespace: {NS}, labels: {{app: reader}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {n1}}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    command: [sh, -c, 'cat /s/k && sleep 3600']
    volumeMounts: [{{name: s, mountPath: /s}}]
  volumes: [{{name: s, secret: {{secretName: mounted}}}}]
"#
    ));
    let running = wait_for(Duration::from_secs(120), || {
        let phase = cluster.kubectl(&["-n", NS, "get", "pod", "reader", "-o", "jsonpath={.status.phase}"]);
        (String::from_utf8_lossy(&phase.stdout) == "Running").then_some(())
    });
    assert!(
        running.is_some(),
        "the pod mounting the secret runs\n{}",
        cluster.logs_tail()
    );

    // Node 1 reads the Secret its pod mounts, and nothing else.
    let ok = kubectl_as(&kc1, &["-n", NS, "get", "secret", "mounted", "-o", "name"]);
    assert!(ok.status.success(), "node 1 reads its pod's secret: {}", stderr(&ok));
    let denied = kubectl_as(&kc1, &["-n", NS, "get", "secret", "unused"]);
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains(&format!(
            r#"secrets "unused" is forbidden: User "system:node:{n1}" cannot get resource "secrets" in API group "" in the namespace "{NS}": no relationship found between node '{n1}' and this object"#
        )),
        "{}",
        stderr(&denied)
    );
    let other = kubectl_as(&kc2, &["-n", NS, "get", "secret", "mounted"]);
    assert!(
        stderr(&other).contains(&format!("no relationship found between node '{n2}' and this object")),
        "{}",
        stderr(&other)
    );
    let list = kubectl_as(&kc1, &["-n", NS, "get", "secrets"]);
    assert!(stderr(&list).contains("is forbidden"), "{}", stderr(&list));

    // Node 1 may not touch node 2, nor its own node-restriction labels.
    let patch = kubectl_as(&kc1, &["label", "node", &n2, "stolen=yes"]);
    assert!(!patch.status.success());
    assert!(
        stderr(&patch).contains(&format!(r#"node "{n1}" is not allowed to modify node "{n2}""#)),
        "{}",
        stderr(&patch)
    );
    let restricted = kubectl_as(
        &kc1,
        &["label", "node", &n1, "node-restriction.kubernetes.io/trusted=yes"],
    );
    assert!(
        stderr(&restricted).contains("is not allowed to modify labels: node-restriction.kubernetes.io/trusted"),
        "{}",
        stderr(&restricted)
    );
    let own = kubectl_as(&kc1, &["label", "node", &n1, "example.com/rack=a"]);
    assert!(own.status.success(), "a node labels itself: {}", stderr(&own));

    // Node 2 may not write the status of node 1's pod (a PUT of
    // pods/status: nodes may not read it, so kubectl patch cannot be used).
    let pod_json = cluster.kubectl_ok(&["-n", NS, "get", "pod", "reader", "-o", "json"]);
    let body = cluster.home().join("reader-status.json");
    let mut pod: serde_json::Value = serde_json::from_str(&pod_json).expect("pod JSON");
    if let Some(meta) = pod["metadata"].as_object_mut() {
        meta.remove("resourceVersion"); // an unconditional update
    }
    std::fs::write(&body, pod.to_string()).expect("write the pod");
    let status = kubectl_as(
        &kc2,
        &[
            "replace",
            "--raw",
            &format!("/api/v1/namespaces/{NS}/pods/reader/status"),
            "-f",
            &body.display().to_string(),
        ],
    );
    let said = format!("{}{}", stderr(&status), String::from_utf8_lossy(&status.stdout));
    assert!(
        said.contains(&format!(
            r#"node \"{n2}\" can only update pod status for pods with spec.nodeName set to itself"#
        )) || said.contains(&format!(
            r#"node "{n2}" can only update pod status for pods with spec.nodeName set to itself"#
        )),
        "{said}"
    );
    let own = kubectl_as(
        &kc1,
        &[
            "replace",
            "--raw",
            &format!("/api/v1/namespaces/{NS}/pods/reader/status"),
            "-f",
            &body.display().to_string(),
        ],
    );
    assert!(own.status.success(), "node 1 writes its pod's status: {}", stderr(&own));

    // Deleting the pod takes the Secret away from node 1.
    cluster.kubectl_ok(&["-n", NS, "delete", "pod", "reader", "--wait=true"]);
    let gone = wait_for(Duration::from_secs(30), || {
        let o = kubectl_as(&kc1, &["-n", NS, "get", "secret", "mounted"]);
        (!o.status.success()).then_some(())
    });
    assert!(gone.is_some(), "node 1 still reads the secret of a deleted pod");

    // A bootstrap token issued for node 1 joins as node 1 only.
    let server = cluster.kubectl_ok(&["config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-token-sec001
  namespace: kube-system
  annotations: {{bootstrap.sluice.dev/node-name: {n1}}}
type: bootstrap.kubernetes.io/token
stringData:
  token-id: sec001
  token-secret: 0123456789abcdef
  usage-bootstrap-authentication: "true"
"#
    ));
    let token = "sec001.0123456789abcdef";
    let (code, body) = request_certificate(&cluster, server.trim(), token, &n2);
    assert_eq!(code, 403, "a token for node 1 asks for node 2: {body}");
    assert!(body.contains(&format!("bound to node \\\"{n1}\\\"")), "{body}");
    let (code, body) = request_certificate(&cluster, server.trim(), token, &n1);
    assert_eq!(code, 201, "a token for node 1 asks for node 1: {body}");
    // The controllers approve (nodeclient) and sign it.
    let created: serde_json::Value = serde_json::from_str(&body).expect("a CSR");
    let name = created["metadata"]["name"].as_str().expect("named").to_string();
    let issued = wait_for(Duration::from_secs(30), || {
        let cert = cluster.kubectl_ok(&["get", "csr", &name, "-o", "jsonpath={.status.certificate}"]);
        (!cert.is_empty()).then_some(())
    });
    assert!(
        issued.is_some(),
        "node 1's request was not issued: {}",
        cluster.kubectl_ok(&["get", "csr"])
    );

    // The scheduler and the controller-manager run under their own names,
    // and the bootstrap roles cover what they did here: no 403 in their logs.
    for (file, user) in [
        ("scheduler.kubeconfig", "system:kube-scheduler"),
        ("controller-manager.kubeconfig", "system:kube-controller-manager"),
    ] {
        let who = kubectl_as(
            &cluster.home().join(file),
            &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
        );
        assert_eq!(String::from_utf8_lossy(&who.stdout), user, "{}", stderr(&who));
    }
    for log in ["scheduler.log", "controller-manager.log"] {
        let text = std::fs::read_to_string(cluster.home().join("logs").join(log)).unwrap_or_default();
        let denied: Vec<&str> = text
            .lines()
            .filter(|l| l.to_lowercase().contains("forbidden"))
            .collect();
        assert!(denied.is_empty(), "{log} has denials:\n{}", denied.join("\n"));
    }

    cluster.kubectl_ok(&["-n", "kube-system", "delete", "secret", "bootstrap-token-sec001"]);
    cluster.kubectl_ok(&["delete", "namespace", NS, "--wait=false"]);
}
