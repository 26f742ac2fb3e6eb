//! Joining a node with a bootstrap token, against the real API server.
//!
//! An administrator makes a token with `ctl node token create` (or the whole
//! command line with `ctl node join-command`); the token alone can do nothing
//! but ask for a node certificate; noded's join (`bootstrap::ensure_kubeconfig`,
//! what `noded --bootstrap-token` runs) trades it for a client certificate and
//! writes the kubeconfig the node then works with, once the controller-manager's
//! csrapproving and csrsigning have approved and signed its request. A
//! request for anything but a node is stored but never approved. Expired or
//! wrong tokens are refused.
//!
//! Run `cargo build -p sluice-apiserver -p sluice-ctl -p sluice-controllers` first (same target dir).

use base64::Engine;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use serde_json::json;
use sluice_noded::bootstrap::{ensure_kubeconfig, BootstrapConfig};
use sluice_tests::{workspace_bin, ControlPlane};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("command runs"))
        .await
        .expect("join")
}

fn ctl(cp: &ControlPlane, args: &[&str]) -> Command {
    let mut c = Command::new(workspace_bin("ctl"));
    c.arg("--kubeconfig").arg(cp.kubeconfig_path()).args(args);
    c
}

/// kubectl with only a server, CA and bearer token (no kubeconfig of its own).
fn kubectl_with_token(cp: &ControlPlane, empty_kubeconfig: &Path, token: &str, args: &[&str]) -> Command {
    let mut c = Command::new("kubectl");
    c.env("KUBECONFIG", empty_kubeconfig)
        .args([
            "--server",
            &cp.url(),
            "--token",
            token,
            "--request-timeout=20s",
            "--certificate-authority",
        ])
        .arg(cp.apiserver.cert_dir().join("ca.crt"))
        .args(args);
    c
}

async fn joined_client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("joined kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_joins_with_a_bootstrap_token() {
    let cp = ControlPlane::start().await;
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.kubeconfig");
    std::fs::write(&empty, "").unwrap();
    let ca_file = cp.apiserver.cert_dir().join("ca.crt");
    let ca_key = cp.apiserver.cert_dir().join("ca.key");
    let _cm = sluice_tests::controllers::ControllerManager::start(
        cp.kubeconfig_path(),
        "cm-join",
        &[
            "--controllers=csrapproving,csrsigning",
            &format!("--cluster-signing-cert-file={}", ca_file.display()),
            &format!("--cluster-signing-key-file={}", ca_key.display()),
        ],
    );

    // The administrator makes a token; it is stored the Kubernetes way.
    let out = run(ctl(&cp, &["node", "token", "create", "--ttl", "1h"])).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (id, _) = token.split_once('.').expect("token is <id>.<secret>");
    let out = run({
        let mut c = cp.kubectl();
        c.args([
            "get",
            "secret",
            "-n",
            "kube-system",
            &format!("bootstrap-token-{id}"),
            "-o",
            "jsonpath={.type}",
        ]);
        c
    })
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bootstrap.kubernetes.io/token");

    // The token alone may not read or change the cluster.
    let out = run(kubectl_with_token(&cp, &empty, &token, &["get", "pods"])).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("Error from server (Forbidden): pods is forbidden: User \"system:bootstrap:{id}\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"")
    );
    let wrong = format!("{id}.0000000000000000");
    let out = run(kubectl_with_token(&cp, &empty, &wrong, &["get", "pods"])).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: You must be logged in to the server (Unauthorized)"
    );

    // Nor get a certificate for anything but a node.
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "admin");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:masters");
    let request = params
        .serialize_request(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem()
        .unwrap();
    let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "sneaky"},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(request), "signerName": "kubernetes.io/kube-apiserver-client-kubelet", "usages": ["digital signature", "client auth"]}});
    let r = cp
        .apiserver
        .with_token(&token)
        .await
        .post("/apis/certificates.k8s.io/v1/certificatesigningrequests", &csr)
        .await;
    assert_eq!(r.status, 201, "stored, for the controllers to judge: {}", r.text());
    assert!(r.json().pointer("/status/certificate").is_none(), "{}", r.text());

    // noded joins: its node certificate lands in a private kubeconfig and works.
    let kubeconfig = dir.path().join("node1/noded.kubeconfig");
    let join = BootstrapConfig {
        apiserver: cp.url(),
        ca_file: ca_file.clone(),
        token: token.clone(),
    };
    ensure_kubeconfig(&kubeconfig, "node1", Some(&join))
        .await
        .expect("joins");
    assert_eq!(
        std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let node_client = joined_client(&kubeconfig).await;
    let nodes: Api<Node> = Api::all(node_client);
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "node1"}})).unwrap(),
        )
        .await
        .expect("the node registers itself");
    let out = run({
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "node", "node1", "-o", "name"]);
        c
    })
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "node/node1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The controllers approved the node's request, as the token's user, and
    // left the request for `admin` alone.
    let out = run({
        let mut c = cp.kubectl();
        c.args([
            "get",
            "csr",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.spec.username} {.status.conditions[0].reason} {.status.certificate}{"\n"}{end}"#,
        ]);
        c
    })
    .await;
    let csrs = String::from_utf8_lossy(&out.stdout).into_owned();
    let joined = csrs
        .lines()
        .find(|l| l.starts_with("node-csr-node1-"))
        .unwrap_or_else(|| panic!("the node's request is listed: {csrs}"));
    let fields: Vec<&str> = joined.split(' ').collect();
    assert_eq!(fields[1], format!("system:bootstrap:{id}"), "{joined}");
    assert_eq!(fields[2], "AutoApproved", "{joined}");
    assert!(!fields[3].is_empty(), "issued: {joined}");
    let sneaky = csrs
        .lines()
        .find(|l| l.starts_with("sneaky "))
        .expect("sneaky is listed");
    assert_eq!(
        sneaky.trim_end(),
        format!("sneaky system:bootstrap:{id}"),
        "never approved: {csrs}"
    );

    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        !text.contains(&token),
        "the token is not kept once the node has its certificate"
    );
    // A restart finds its kubeconfig and needs no token.
    ensure_kubeconfig(&kubeconfig, "node1", None)
        .await
        .expect("existing kubeconfig is used");

    // An expired token is refused.
    let out = run(ctl(&cp, &["node", "token", "create", "--ttl", "1s"])).await;
    let short = String::from_utf8(out.stdout).unwrap().trim().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let late = BootstrapConfig {
        apiserver: cp.url(),
        ca_file: ca_file.clone(),
        token: short,
    };
    let err = ensure_kubeconfig(&dir.path().join("late.kubeconfig"), "late", Some(&late))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Unauthorized"), "{err}");
    assert!(!dir.path().join("late.kubeconfig").exists());

    // `ctl node join-command` prints what to run on the new machine: the CA and a fresh token.
    let out = run(ctl(&cp, &["node", "join-command", "--apiserver", &cp.url()])).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let ca_b64 = printed
        .lines()
        .find_map(|l| l.strip_prefix("echo '")?.split('\'').next())
        .expect("CA line");
    let ca = base64::engine::general_purpose::STANDARD.decode(ca_b64).unwrap();
    assert_eq!(ca, std::fs::read(&ca_file).unwrap(), "the printed CA is the cluster CA");
    let words: Vec<&str> = printed.split_whitespace().collect();
    let at = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .map(|i| words[i + 1].to_string())
            .unwrap_or_else(|| panic!("{flag} in {printed}"))
    };
    assert_eq!(at("--apiserver"), cp.url());
    let printed_ca = dir.path().join("printed-ca.crt");
    std::fs::write(&printed_ca, &ca).unwrap();
    let join2 = BootstrapConfig {
        apiserver: cp.url(),
        ca_file: printed_ca,
        token: at("--bootstrap-token"),
    };
    ensure_kubeconfig(&dir.path().join("node2.kubeconfig"), "node2", Some(&join2))
        .await
        .expect("the printed command's token joins");
}
