//! An administrator works with CertificateSigningRequests as Kubernetes
//! users do (`certificates.k8s.io/v1`, issue 14 item 2).
//!
//! `cargo xtask up --nodes 1` (the controller-manager runs the csrsigning
//! controller with the cluster CA):
//! * `kubectl get csr` lists the node's serving certificate request
//!   (`kubernetes.io/kubelet-serving`, requested by `system:node:<name>`)
//!   as `Approved,Issued`, and its join request (`xtask up` joins nodes
//!   with a bootstrap token bound to them): signer
//!   `kubernetes.io/kube-apiserver-client-kubelet`, REQUESTOR
//!   `system:bootstrap:<token id>`, `Approved,Issued` by the controllers;
//! * a user's request (openssl, CN `jane`, O `qa`, signer
//!   `kubernetes.io/kube-apiserver-client`, 600 s) shows REQUESTOR the
//!   administrator, REQUESTEDDURATION `10m` and stays `Pending`;
//!   `kubectl certificate approve` makes it `Approved,Issued`, and the
//!   issued certificate authenticates jane: `kubectl auth whoami` says
//!   `jane` in group `qa`, valid for 10 minutes (plus the 5 minute backdate);
//! * `kubectl certificate deny` on another leaves it `Denied` with no
//!   certificate;
//! * the spec is immutable (422) and a request without usages is refused
//!   with Kubernetes' `spec.usages: Required value`;
//! * node client requests (`kubernetes.io/kube-apiserver-client-kubelet`)
//!   are approved by the csrapproving controller after a
//!   SubjectAccessReview: the node renewing its own certificate (its own
//!   kubeconfig; `selfnodeclient`, bound to `system:nodes`) gets `AutoApproved`
//!   with Kubernetes' "Auto approving self kubelet client certificate after
//!   SubjectAccessReview." and a certificate, the administrator asking for a
//!   spare node's (`nodeclient`) gets "Auto approving kubelet client
//!   certificate after SubjectAccessReview.", while jane, who may create
//!   CSRs but holds neither permission, stays `Pending`.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use sluice_tests::cluster::{wait_for, TestCluster};

/// An openssl key and PEM certificate request for `subject` in `dir`.
fn user_request(dir: &Path, name: &str, subject: &str) -> String {
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
        .arg(dir.join(format!("{name}.key")))
        .args(["-subj", subject])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("PEM")
}

fn csr_manifest(name: &str, request_pem: &str, usages: &str) -> String {
    signer_manifest(name, request_pem, "kubernetes.io/kube-apiserver-client", usages)
}

fn signer_manifest(name: &str, request_pem: &str, signer: &str, usages: &str) -> String {
    let request = base64::engine::general_purpose::STANDARD.encode(request_pem);
    format!(
        r#"
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {{name: {name}}}
spec:
  request: {request}
  signerName: {signer}
  expirationSeconds: 600
  usages: {usages}
"#
    )
}

/// `kubectl` with `kubeconfig` and `args`, which must succeed.
fn kubectl_as(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["60", "kubectl"])
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `reason|message` of the Approved condition of CSR `name`.
fn approval(cluster: &TestCluster, name: &str) -> String {
    cluster.kubectl_ok(&[
        "get",
        "csr",
        name,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Approved")].reason}|{.status.conditions[?(@.type=="Approved")].message}"#,
    ])
}

/// The CONDITION column of `kubectl get csr <name>`.
fn condition(cluster: &TestCluster, name: &str) -> String {
    let out = cluster.kubectl_ok(&["get", "csr", name, "--no-headers"]);
    out.split_whitespace().last().unwrap_or_default().to_string()
}

#[test]
fn certificate_signing_requests_are_approved_denied_and_issued() {
    let cluster = TestCluster::up(1, &[]);
    let node = cluster.node_name(1);

    // The node's own requests, listed as kubectl shows them.
    let listed = cluster.kubectl_ok(&["get", "csr"]);
    eprintln!("{listed}");
    let header: Vec<&str> = listed.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]
    );
    let serving = listed
        .lines()
        .find(|l| l.contains("kubernetes.io/kubelet-serving"))
        .unwrap_or_else(|| panic!("the node's serving CSR in:\n{listed}"));
    assert!(serving.contains(&format!("system:node:{node}")), "{serving}");
    assert!(serving.ends_with("Approved,Issued"), "{serving}");
    let joined = listed
        .lines()
        .find(|l| l.starts_with(&format!("node-csr-{node}-")))
        .unwrap_or_else(|| panic!("the node's join request in:\n{listed}"));
    assert!(
        joined.contains("kubernetes.io/kube-apiserver-client-kubelet"),
        "{joined}"
    );
    assert!(joined.contains(" system:bootstrap:"), "{joined}");
    assert!(joined.ends_with("Approved,Issued"), "{joined}");
    let reason = cluster.kubectl_ok(&[
        "get",
        "csr",
        joined.split_whitespace().next().unwrap_or_default(),
        "-o",
        "jsonpath={.status.conditions[0].reason}: {.status.conditions[0].message}",
    ]);
    assert_eq!(
        reason,
        "AutoApproved: Auto approving kubelet client certificate after SubjectAccessReview."
    );

    // A user's request stays Pending until approved.
    let dir = tempfile::tempdir().expect("temp dir");
    let jane = user_request(dir.path(), "jane", "/O=qa/CN=jane");
    cluster.apply(&csr_manifest("jane", &jane, "[client auth]"));
    let row = cluster.kubectl_ok(&["get", "csr", "jane", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[2..],
        ["kubernetes.io/kube-apiserver-client", "admin", "10m", "Pending"][..],
        "{row}"
    );

    let approved = cluster.kubectl_ok(&["certificate", "approve", "jane"]);
    assert!(approved.contains("approved"), "{approved}");
    let issued = wait_for(Duration::from_secs(20), || {
        (condition(&cluster, "jane") == "Approved,Issued").then_some(())
    });
    assert!(issued.is_some(), "jane's CSR: {}", condition(&cluster, "jane"));
    let reason = cluster.kubectl_ok(&["get", "csr", "jane", "-o", "jsonpath={.status.conditions[0].reason}"]);
    assert_eq!(reason, "KubectlApprove");

    // The certificate authenticates jane.
    let cert_b64 = cluster.kubectl_ok(&["get", "csr", "jane", "-o", "jsonpath={.status.certificate}"]);
    let cert = base64::engine::general_purpose::STANDARD
        .decode(cert_b64.trim())
        .expect("base64 certificate");
    let cert_path = dir.path().join("jane.crt");
    std::fs::write(&cert_path, &cert).expect("write jane.crt");
    let server = cluster.kubectl_ok(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let whoami = Command::new("timeout")
        .args(["60", "kubectl", "--kubeconfig=/dev/null"])
        .arg(format!("--server={}", server.trim()))
        .arg(format!(
            "--certificate-authority={}",
            cluster.home().join("pki").join("ca.crt").display()
        ))
        .arg(format!("--client-certificate={}", cert_path.display()))
        .arg(format!("--client-key={}", dir.path().join("jane.key").display()))
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ])
        .output()
        .expect("run kubectl");
    let who = String::from_utf8_lossy(&whoami.stdout);
    assert!(
        whoami.status.success(),
        "whoami: {}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    assert!(who.starts_with("jane "), "{who}");
    assert!(who.contains("qa"), "{who}");
    let dates = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-startdate",
            "-enddate",
            "-dateopt",
            "iso_8601",
            "-in",
        ])
        .arg(&cert_path)
        .output()
        .expect("run openssl");
    eprintln!("jane's certificate: {}", String::from_utf8_lossy(&dates.stdout));

    // Another is denied and never issued.
    let bob = user_request(dir.path(), "bob", "/CN=bob");
    cluster.apply(&csr_manifest("bob", &bob, "[client auth]"));
    let denied = cluster.kubectl_ok(&["certificate", "deny", "bob"]);
    assert!(denied.contains("denied"), "{denied}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(condition(&cluster, "bob"), "Denied");
    let none = cluster.kubectl_ok(&["get", "csr", "bob", "-o", "jsonpath={.status.certificate}"]);
    assert!(none.trim().is_empty(), "{none}");

    // Kubernetes' validation.
    let changed = cluster.kubectl(&[
        "patch",
        "csr",
        "bob",
        "--type=merge",
        "-p",
        r#"{"spec":{"signerName":"example.com/other"}}"#,
    ]);
    let err = String::from_utf8_lossy(&changed.stderr);
    assert!(!changed.status.success() && err.contains("field is immutable"), "{err}");
    let carol = user_request(dir.path(), "carol", "/CN=carol");
    let manifest = csr_manifest("carol", &carol, "[]");
    let path = dir.path().join("carol.yaml");
    std::fs::write(&path, manifest).expect("write manifest");
    let refused = cluster.kubectl(&["create", "-f", &path.display().to_string()]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("spec.usages: Required value"),
        "{err}"
    );

    // The node renews its own client certificate: csrapproving approves it
    // (selfnodeclient) and csrsigning issues it.
    let node_kubeconfig = cluster.home().join("nodes").join(&node).join("kubeconfig");
    assert!(node_kubeconfig.exists(), "{}", node_kubeconfig.display());
    let subject = format!("/O=system:nodes/CN=system:node:{node}");
    let renewal = user_request(dir.path(), "renewal", &subject);
    let path = dir.path().join("renewal.yaml");
    let manifest = signer_manifest(
        "node-renewal",
        &renewal,
        "kubernetes.io/kube-apiserver-client-kubelet",
        "[digital signature, client auth]",
    );
    std::fs::write(&path, manifest).expect("write manifest");
    kubectl_as(&node_kubeconfig, &["create", "-f", &path.display().to_string()]);
    let issued = wait_for(Duration::from_secs(20), || {
        (condition(&cluster, "node-renewal") == "Approved,Issued").then_some(())
    });
    assert!(
        issued.is_some(),
        "the node's renewal: {}",
        condition(&cluster, "node-renewal")
    );
    assert_eq!(
        approval(&cluster, "node-renewal"),
        "AutoApproved|Auto approving self kubelet client certificate after SubjectAccessReview."
    );
    let requestor = cluster.kubectl_ok(&["get", "csr", "node-renewal", "-o", "jsonpath={.spec.username}"]);
    assert_eq!(requestor, format!("system:node:{node}"));

    // The administrator asks for a spare node's: nodeclient.
    let spare = user_request(dir.path(), "spare", "/O=system:nodes/CN=system:node:spare");
    cluster.apply(&signer_manifest(
        "spare",
        &spare,
        "kubernetes.io/kube-apiserver-client-kubelet",
        "[digital signature, client auth]",
    ));
    let issued = wait_for(Duration::from_secs(20), || {
        (condition(&cluster, "spare") == "Approved,Issued").then_some(())
    });
    assert!(issued.is_some(), "spare: {}", condition(&cluster, "spare"));
    assert_eq!(
        approval(&cluster, "spare"),
        "AutoApproved|Auto approving kubelet client certificate after SubjectAccessReview."
    );

    // jane may create CSRs, but not have node client ones approved: Pending.
    cluster.kubectl_ok(&[
        "create",
        "clusterrole",
        "csr-creator",
        "--verb=create,get",
        "--resource=certificatesigningrequests.certificates.k8s.io",
    ]);
    cluster.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "jane-csr-creator",
        "--clusterrole=csr-creator",
        "--user=jane",
    ]);
    let jane_kubeconfig = dir.path().join("jane.kubeconfig");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: '{}', certificate-authority: '{}'}}\nusers:\n- name: jane\n  user: {{client-certificate: '{}', client-key: '{}'}}\ncontexts:\n- name: jane\n  context: {{cluster: c, user: jane}}\ncurrent-context: jane\n",
        server.trim(),
        cluster.home().join("pki").join("ca.crt").display(),
        cert_path.display(),
        dir.path().join("jane.key").display(),
    );
    std::fs::write(&jane_kubeconfig, kubeconfig).expect("write jane's kubeconfig");
    let other = user_request(dir.path(), "other", "/O=system:nodes/CN=system:node:other");
    let path = dir.path().join("other.yaml");
    let manifest = signer_manifest(
        "jane-node",
        &other,
        "kubernetes.io/kube-apiserver-client-kubelet",
        "[digital signature, client auth]",
    );
    std::fs::write(&path, manifest).expect("write manifest");
    kubectl_as(&jane_kubeconfig, &["create", "-f", &path.display().to_string()]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(condition(&cluster, "jane-node"), "Pending");
}
