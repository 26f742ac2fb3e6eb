//! An administrator runs nodes whose client certificates live 90 seconds
//! (issue 14 item 2, "nodes rotate their certificates").
//!
//! `cargo xtask up --nodes 1 --controller-manager-arg=--cluster-signing-duration=90s`:
//! the node joins with its bootstrap token and gets a certificate valid for
//! 90 s (csrsigning backdates notBefore by 5 minutes). Without anyone doing
//! anything:
//! * noded asks for its next certificate with its current one: `kubectl get
//!   csr` lists requests by `system:node:<name>` approved by csrapproving
//!   ("Auto approving self kubelet client certificate after
//!   SubjectAccessReview.") and issued, and the node's kubeconfig holds a new
//!   certificate;
//! * once the join certificate has expired (and the old one no longer gets
//!   through), the same noded — not restarted — still renews its Lease and
//!   runs a new pod to completion, reporting its status.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use base64::Engine;
use sluice_tests::cluster::{wait_for, TestCluster, BUSYBOX_IMAGE};

/// The client certificate (PEM) of the kubeconfig at `path`.
fn client_certificate(path: &Path) -> String {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("node kubeconfig")).expect("noded writes JSON");
    let b64 = doc["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .expect("client-certificate-data");
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).expect("base64")).expect("PEM")
}

/// `openssl x509 <args>` of `pem`.
fn openssl_x509(pem: &str, args: &[&str]) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .arg("x509")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pem.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("openssl");
    assert!(out.status.success(), "openssl x509 {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// notAfter of `pem` as seconds since the epoch.
fn not_after(pem: &str) -> u64 {
    let end = openssl_x509(pem, &["-noout", "-enddate"]);
    let date = end.trim_start_matches("notAfter=");
    let out = Command::new("date")
        .args(["-u", "-d", date, "+%s"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("epoch seconds")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn a_node_rotates_its_client_certificate_before_it_expires() {
    let cluster = TestCluster::up(1, &["--controller-manager-arg=--cluster-signing-duration=90s"]);
    let node = cluster.node_name(1);
    let kubeconfig = cluster.home().join("nodes").join(&node).join("kubeconfig");
    let noded_pid = cluster.pid(&format!("{node}-noded")).expect("noded runs");

    // The join certificate, kept to try it once it has expired.
    let joined = client_certificate(&kubeconfig);
    let joined_serial = openssl_x509(&joined, &["-noout", "-serial"]);
    let joined_expiry = not_after(&joined);
    assert!(
        joined_expiry <= now() + 95,
        "the join certificate lives 90 s: expires at {joined_expiry}, now {}",
        now()
    );
    assert_eq!(
        openssl_x509(&joined, &["-noout", "-subject", "-nameopt", "RFC2253"]),
        format!("subject=O=system:nodes,CN=system:node:{node}")
    );
    let saved = tempfile::tempdir().expect("temp dir");
    let old_kubeconfig = saved.path().join("joined.kubeconfig");
    std::fs::copy(&kubeconfig, &old_kubeconfig).expect("copy the kubeconfig");

    // noded renews with its own certificate; csrapproving says why it approved.
    let renewal = wait_for(Duration::from_secs(150), || {
        let rows = cluster.kubectl_ok(&[
            "get",
            "csr",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.spec.signerName} {.spec.username} {.status.conditions[0].type} {.status.certificate}{"\n"}{end}"#,
        ]);
        rows.lines()
            .find(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                f.len() == 5
                    && f[1] == "kubernetes.io/kube-apiserver-client-kubelet"
                    && f[2] == format!("system:node:{node}")
                    && f[3] == "Approved"
                    && !f[4].is_empty()
            })
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
    })
    .unwrap_or_else(|| {
        panic!(
            "no renewal by the node within 150 s:\n{}\n{}",
            cluster.kubectl_ok(&["get", "csr"]),
            cluster.logs_tail()
        )
    });
    let message = cluster.kubectl_ok(&[
        "get",
        "csr",
        &renewal,
        "-o",
        "jsonpath={.status.conditions[0].reason}: {.status.conditions[0].message}",
    ]);
    assert_eq!(
        message,
        "AutoApproved: Auto approving self kubelet client certificate after SubjectAccessReview."
    );
    let rotated = wait_for(Duration::from_secs(30), || {
        let current = client_certificate(&kubeconfig);
        (openssl_x509(&current, &["-noout", "-serial"]) != joined_serial).then_some(current)
    })
    .expect("the kubeconfig holds the renewed certificate");
    assert!(
        not_after(&rotated) > joined_expiry,
        "the new certificate outlives the old one"
    );

    // Past the join certificate's expiry, the old one is refused...
    let wait = (joined_expiry + 5).saturating_sub(now());
    std::thread::sleep(Duration::from_secs(wait));
    let old = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&old_kubeconfig)
        .args(["get", "node", &node, "--request-timeout=10s"])
        .output()
        .expect("kubectl");
    assert!(
        !old.status.success(),
        "the expired join certificate still works: {}",
        String::from_utf8_lossy(&old.stdout)
    );

    // ...and the same noded, on the renewed certificates, keeps working:
    // its Lease is renewed after that moment...
    let expired_at = joined_expiry + 5;
    let renewed = wait_for(Duration::from_secs(30), || {
        let t = cluster.kubectl_ok(&[
            "-n",
            "kube-node-lease",
            "get",
            "lease",
            &node,
            "-o",
            "jsonpath={.spec.renewTime}",
        ]);
        let out = Command::new("date").args(["-u", "-d", t.trim(), "+%s"]).output().ok()?;
        let at: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        (at > expired_at).then_some(at)
    });
    assert!(
        renewed.is_some(),
        "the node's Lease is no longer renewed:\n{}",
        cluster.logs_tail()
    );

    // ...and it runs a new pod to completion, reporting its status.
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: after-rotation, namespace: default}}
spec:
  restartPolicy: Never
  containers:
  - {{name: c, image: {BUSYBOX_IMAGE}, command: [sh, -c, "echo rotated"]}}
"#
    ));
    let phase = wait_for(Duration::from_secs(90), || {
        let p = cluster.kubectl_ok(&["get", "pod", "after-rotation", "-o", "jsonpath={.status.phase}"]);
        (p == "Succeeded").then_some(p)
    });
    assert!(
        phase.is_some(),
        "the pod did not succeed: {}\n{}",
        cluster.kubectl_ok(&["get", "pod", "after-rotation", "-o", "yaml"]),
        cluster.logs_tail()
    );
    assert_eq!(
        cluster.pid(&format!("{node}-noded")),
        Some(noded_pid),
        "noded was not restarted"
    );
    let log =
        std::fs::read_to_string(cluster.home().join("logs").join(format!("{node}-noded.log"))).unwrap_or_default();
    assert!(
        log.contains("node client certificate rotated"),
        "noded logs its rotation"
    );
    cluster.kubectl_ok(&["delete", "pod", "after-rotation", "--wait=false"]);
}
