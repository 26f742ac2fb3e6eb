//! A program in a pod talks to the API server as its ServiceAccount, the way
//! in-cluster clients (client-go's `InClusterConfig`) do.
//!
//! `cargo xtask up --nodes 1`; the user:
//! * creates a namespace and sees its `default` ServiceAccount and the
//!   ConfigMap `kube-root-ca.crt` (the cluster CA, Kubernetes' description)
//!   appear; an edited `ca.crt` is put back and a deleted `default` account
//!   comes back;
//! * runs a pod (Debian's curl, `cargo xtask images --only curl`) with the
//!   `kube-api-access` projected volume (token with `expirationSeconds: 600`,
//!   `kube-root-ca.crt`'s `ca.crt`, the namespace) at
//!   `/var/run/secrets/kubernetes.io/serviceaccount`: the three files are
//!   there, the token is the pod's account's, bound to the pod, and lives
//!   600 s (`exp - iat`);
//! * the pod's `KUBERNETES_SERVICE_HOST:PORT` is the `kubernetes` Service's
//!   ClusterIP:443, whose EndpointSlice names the API server's advertised
//!   address (the bridge) and secure port `https`;
//! * from inside the pod, `curl --cacert ca.crt` with the mounted token to
//!   `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` (the
//!   ClusterIP, balanced to the API server outside the cluster network and
//!   masqueraded to the node's address) is told 403 with Kubernetes' message;
//!   after `kubectl create rolebinding --clusterrole=view
//!   --serviceaccount=<ns>:default` a request to
//!   `https://kubernetes.default.svc` (resolved to the ClusterIP; the
//!   certificate names the Service) lists the pod;
//! * copies the token out, deletes the pod: the token is refused with 401.
//!
//! Token refresh before expiry is unit-tested in noded (`volumes::sa_token`).
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster};
use sluice_tests::{run_ok, workspace_bin};

const NS: &str = "in-cluster";
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Build (or reuse) the curl image and push it into the cluster as `curl:story`.
fn push_curl(cluster: &TestCluster) {
    let out = run_ok(Command::new(workspace_bin("xtask")).args(["images", "--only", "curl", "--no-push"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let archive = text
        .lines()
        .find_map(|l| l.split('\t').nth(1))
        .unwrap_or_else(|| panic!("no archive path in: {text}"));
    cluster.push_image(std::path::Path::new(archive.trim()), "curl:story");
}

fn kubectl_json(cluster: &TestCluster, args: &[&str]) -> Option<Value> {
    let out = cluster.kubectl(args);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// `sh -c script` in the pod through `kubectl exec`; stdout.
fn in_pod(cluster: &TestCluster, pod: &str, script: &str) -> String {
    cluster.kubectl_ok(&["exec", "-n", NS, pod, "--", "sh", "-c", script])
}

/// An HTTPS GET from inside the pod with its mounted token and CA: (status, body).
fn api_from_pod(cluster: &TestCluster, pod: &str, resolve: &str, url: &str) -> (u16, String) {
    let script = format!(
        "curl -sS --max-time 5 --resolve {resolve} --cacert {SA_DIR}/ca.crt \
         -H \"Authorization: Bearer $(cat {SA_DIR}/token)\" -w '\\n%{{http_code}}' {url}"
    );
    let out = in_pod(cluster, pod, &script);
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[test]
fn a_pod_calls_the_api_server_as_its_service_account() {
    let cluster = TestCluster::up(1, &[]);
    push_curl(&cluster);
    let ca = std::fs::read_to_string(cluster.home().join("pki/ca.crt")).expect("cluster CA");

    // A new namespace gets its default ServiceAccount and the root CA.
    cluster.kubectl_ok(&["create", "namespace", NS]);
    wait_for(Duration::from_secs(30), || {
        kubectl_json(&cluster, &["get", "serviceaccount", "default", "-n", NS, "-o", "json"])
    })
    .expect("the default ServiceAccount appears");
    let cm = wait_for(Duration::from_secs(30), || {
        kubectl_json(
            &cluster,
            &["get", "configmap", "kube-root-ca.crt", "-n", NS, "-o", "json"],
        )
    })
    .expect("kube-root-ca.crt appears");
    assert_eq!(cm["data"]["ca.crt"], ca.as_str(), "the cluster CA bundle");
    assert!(cm["metadata"]["annotations"]["kubernetes.io/description"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Contains a CA bundle that can be used to verify the kube-apiserver"));

    // Edits are undone, a deleted account comes back.
    cluster.kubectl_ok(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"forged"}}"#,
    ]);
    wait_for(Duration::from_secs(30), || {
        kubectl_json(
            &cluster,
            &["get", "configmap", "kube-root-ca.crt", "-n", NS, "-o", "json"],
        )
        .filter(|cm| cm["data"]["ca.crt"] == ca.as_str())
    })
    .expect("ca.crt is put back");
    let old_uid =
        kubectl_json(&cluster, &["get", "sa", "default", "-n", NS, "-o", "json"]).unwrap()["metadata"]["uid"].clone();
    cluster.kubectl_ok(&["delete", "serviceaccount", "default", "-n", NS]);
    wait_for(Duration::from_secs(30), || {
        kubectl_json(&cluster, &["get", "sa", "default", "-n", NS, "-o", "json"])
            .filter(|sa| sa["metadata"]["uid"] != old_uid)
    })
    .expect("the default ServiceAccount is recreated");

    // A pod with the kube-api-access volume.
    cluster.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: {NS}
spec:
  containers:
  - name: main
    image: curl:story
    volumeMounts:
    - name: kube-api-access-story
      mountPath: {SA_DIR}
      readOnly: true
  volumes:
  - name: kube-api-access-story
    projected:
      sources:
      - serviceAccountToken:
          expirationSeconds: 600
          path: token
      - configMap:
          name: kube-root-ca.crt
          items:
          - key: ca.crt
            path: ca.crt
      - downwardAPI:
          items:
          - path: namespace
            fieldRef:
              fieldPath: metadata.namespace
"#
    ));
    let pod = wait_for(Duration::from_secs(120), || {
        kubectl_json(&cluster, &["get", "pod", "client", "-n", NS, "-o", "json"])
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .unwrap_or_else(|| {
        let events = cluster.kubectl(&["get", "events", "-n", NS]);
        panic!(
            "the pod did not run: {}\n{}",
            String::from_utf8_lossy(&events.stdout),
            cluster.logs_tail()
        )
    });
    let pod_uid = pod["metadata"]["uid"].as_str().unwrap().to_string();

    assert_eq!(in_pod(&cluster, "client", &format!("cat {SA_DIR}/namespace")), NS);
    assert_eq!(in_pod(&cluster, "client", &format!("cat {SA_DIR}/ca.crt")), ca);
    let token = in_pod(&cluster, "client", &format!("cat {SA_DIR}/token"));
    let claims = jwt_claims(&token);
    assert_eq!(claims["sub"], format!("system:serviceaccount:{NS}:default"));
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        pod_uid.as_str(),
        "bound to the pod: {claims}"
    );
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 600, "the requested expirationSeconds");

    // Through the kubernetes Service, without rights: Kubernetes' 403.
    let env = in_pod(
        &cluster,
        "client",
        "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
    );
    let service = env.trim().to_string();
    let cluster_ip = cluster.kubectl_ok(&["get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(
        service,
        format!("{}:443", cluster_ip.trim()),
        "the kubernetes Service's ClusterIP"
    );
    let path = format!("/api/v1/namespaces/{NS}/pods");
    // The Service's endpoint is the API server's advertised address and port.
    let slice = kubectl_json(&cluster, &["get", "endpointslice", "kubernetes", "-o", "json"])
        .expect("the kubernetes EndpointSlice");
    let endpoint = slice["endpoints"][0]["addresses"][0]
        .as_str()
        .expect("an endpoint")
        .to_string();
    let port = slice["ports"][0]["port"].as_i64().expect("a port");
    assert_eq!(slice["ports"][0]["name"], "https");
    assert_eq!(endpoint, cluster.gateway(), "the advertised address");
    let server = cluster.kubectl_ok(&["config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    assert!(
        server.trim().ends_with(&format!(":{port}")),
        "the endpoint's port is the API server's secure port: {server} vs {port}"
    );
    // As client-go's in-cluster config: https://$KUBERNETES_SERVICE_HOST:
    // $KUBERNETES_SERVICE_PORT, through the ClusterIP (the certificate names
    // it) to the API server outside the cluster network.
    let resolve = format!("kubernetes.default.svc:443:{}", cluster_ip.trim());
    let url = format!("https://{service}{path}");
    let (code, body) = api_from_pod(&cluster, "client", &resolve, &url);
    assert_eq!(code, 403, "{body}");
    let status: Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!(
        status["message"],
        format!(
            "pods is forbidden: User \"system:serviceaccount:{NS}:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"{NS}\""
        )
    );

    // Granted view in its namespace, it lists the pods (by the Service's DNS name).
    cluster.kubectl_ok(&[
        "create",
        "rolebinding",
        "default-view",
        "-n",
        NS,
        "--clusterrole=view",
        &format!("--serviceaccount={NS}:default"),
    ]);
    let url = format!("https://kubernetes.default.svc{path}");
    let listed = wait_for(Duration::from_secs(30), || {
        let (code, body) = api_from_pod(&cluster, "client", &resolve, &url);
        (code == 200).then_some(body)
    })
    .expect("the pod list once bound to view");
    let list: Value = serde_json::from_str(&listed).expect("a PodList");
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"][0]["metadata"]["name"], "client");

    // The token dies with its pod.
    cluster.kubectl_ok(&["delete", "pod", "client", "-n", NS, "--wait=true", "--timeout=90s"]);
    let ca_file = cluster.home().join("pki/ca.crt");
    let refused = wait_for(Duration::from_secs(30), || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&ca_file)
            .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
            .args(["-w", "\n%{http_code}", &format!("{}{path}", server.trim())])
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.trim_end().ends_with("401").then_some(text)
    });
    assert!(refused.is_some(), "the deleted pod's token is refused with 401");
}
