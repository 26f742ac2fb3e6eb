//! An operator checks what `cargo xtask up` promises about the data at rest
//! and the paper trail: etcd speaks TLS only and wants a client certificate
//! of its own CA, a Secret is stored encrypted (`etcdctl` with the API
//! server's etcd client certificate sees `k8s:enc:secretbox:v1:key1:` and
//! ciphertext, never the value), kubectl still reads it back, and the audit
//! log has a Metadata-level line for the create. Then they rotate the key as
//! Kubernetes documents it: a new key first in the EncryptionConfiguration,
//! restart the API server, `kubectl get secrets -A -o json | kubectl replace
//! -f -`, and etcd holds the Secret under the new key; the old key removed
//! and the API server restarted once more, the Secret still reads.

use base64::Engine as _;
use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster};
use sluice_tests::workspace_bin;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const NS: &str = "payroll";
const SECRET: &str = "db-pass";
const VALUE: &str = "s3cr3t-Plaintext-4711";

/// `etcdctl` against the cluster's etcd: `endpoint` and TLS flags as given.
fn etcdctl(endpoint: &str, tls: &[String], args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["--dial-timeout=3s", "--command-timeout=5s"])
        .args(tls)
        .args(args)
        .output()
        .expect("run etcdctl")
}

/// TLS flags for etcdctl with the etcd CA and the given client pair under `pki/`.
fn tls_flags(cluster: &TestCluster, client: Option<(&str, &str)>) -> Vec<String> {
    let pki = cluster.home().join("pki");
    let mut flags = vec![format!("--cacert={}", pki.join("etcd/ca.crt").display())];
    if let Some((cert, key)) = client {
        flags.push(format!("--cert={}", pki.join(cert).display()));
        flags.push(format!("--key={}", pki.join(key).display()));
    }
    flags
}

/// The Secret's value in etcd, read as the API server reads it.
fn stored(cluster: &TestCluster) -> Vec<u8> {
    let api_client = tls_flags(
        cluster,
        Some(("apiserver-etcd-client.crt", "apiserver-etcd-client.key")),
    );
    let key = format!("/registry/core/secrets/{NS}/{SECRET}");
    let out = etcdctl(&cluster.etcd_url(), &api_client, &["get", &key, "--print-value-only"]);
    assert!(
        out.status.success(),
        "etcdctl over TLS with the API server's client certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut value = out.stdout;
    // etcdctl ends the value with a newline.
    if value.last() == Some(&b'\n') {
        value.pop();
    }
    assert!(!value.is_empty(), "no value under {key}");
    value
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Assert the stored Secret is framed for `provider`/`key` and shows no plaintext.
fn assert_encrypted(cluster: &TestCluster, provider: &str, key: &str) {
    let value = stored(cluster);
    let prefix = format!("k8s:enc:{provider}:v1:{key}:");
    assert!(
        value.starts_with(prefix.as_bytes()),
        "etcd value starts with {:?}, want {prefix:?}",
        String::from_utf8_lossy(&value[..value.len().min(40)])
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(VALUE);
    for plain in [VALUE, b64.as_str(), "\"password\"", "\"kind\""] {
        assert!(!contains(&value, plain), "etcd value shows {plain:?} in plaintext");
    }
}

/// The Secret's value as kubectl shows it (decoded).
fn read_back(cluster: &TestCluster) -> String {
    let b64 = cluster.kubectl_ok(&["get", "secret", SECRET, "-n", NS, "-o", "jsonpath={.data.password}"]);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .expect("data.password is base64");
    String::from_utf8(bytes).expect("UTF-8 value")
}

/// Stop the API server (its pid file names it) and `xtask up` again, which
/// starts it with the edited EncryptionConfiguration.
fn restart_apiserver(cluster: &TestCluster) {
    let pid = cluster.pid("apiserver").expect("apiserver pid");
    // SAFETY: kill(2) with plain integers; the pid is the API server this story's cluster started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let gone = wait_for(Duration::from_secs(20), || {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (state.is_empty()
            || state
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
        .then_some(())
    });
    assert!(gone.is_some(), "the API server did not stop");
    cluster.start(&[]);
}

fn encryption_config(cluster: &TestCluster) -> PathBuf {
    cluster.home().join("pki/encryption-config.yaml")
}

/// Rewrite the secretbox provider's key list with `edit`.
fn edit_keys(cluster: &TestCluster, edit: impl FnOnce(&mut Vec<serde_yaml::Value>)) {
    let path = encryption_config(cluster);
    let text = std::fs::read_to_string(&path).expect("read the encryption config");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let keys = config["resources"][0]["providers"][0]["secretbox"]["keys"]
        .as_sequence_mut()
        .expect("xtask up writes a secretbox provider first");
    edit(keys);
    std::fs::write(&path, serde_yaml::to_string(&config).expect("YAML")).expect("write the encryption config");
}

/// The audit log's events (one JSON object a line).
fn audit_events(cluster: &TestCluster) -> Vec<Value> {
    let text = std::fs::read_to_string(cluster.home().join("logs/audit.log")).expect("logs/audit.log exists");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn secrets_are_ciphertext_in_etcd_over_tls_and_audited() {
    let cluster = TestCluster::up(0, &[]);
    cluster.kubectl_ok(&["create", "namespace", NS]);
    cluster.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        SECRET,
        "-n",
        NS,
        &format!("--from-literal=password={VALUE}"),
    ]);

    // etcd answers only TLS clients holding a certificate of its own CA.
    let key = format!("/registry/core/secrets/{NS}/{SECRET}");
    let plain = etcdctl(&cluster.etcd_url().replace("https://", "http://"), &[], &["get", &key]);
    assert!(!plain.status.success(), "plain HTTP etcdctl must not reach etcd");
    let anonymous = etcdctl(&cluster.etcd_url(), &tls_flags(&cluster, None), &["get", &key]);
    assert!(
        !anonymous.status.success(),
        "etcdctl over TLS without a client certificate must be refused"
    );
    // The cluster CA signs admins and nodes; etcd does not trust it.
    let admin_cert = cluster.home().join("pki");
    let by_cluster_ca = etcdctl(
        &cluster.etcd_url(),
        &[
            format!("--cacert={}", admin_cert.join("etcd/ca.crt").display()),
            format!("--cert={}", admin_cert.join("apiserver.crt").display()),
            format!("--key={}", admin_cert.join("apiserver.key").display()),
        ],
        &["get", &key],
    );
    assert!(
        !by_cluster_ca.status.success(),
        "a certificate of the cluster CA must not open etcd"
    );

    // An API server pointed at plain-HTTP etcd refuses to start, saying why.
    let refused = Command::new(workspace_bin("apiserver"))
        .arg("serve")
        .arg(format!(
            "--etcd-servers={}",
            cluster.etcd_url().replace("https://", "http://")
        ))
        .arg("--cert-dir")
        .arg(cluster.home().join("pki"))
        .args(["--secure-port", "1"])
        .output()
        .expect("run apiserver");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("is plain HTTP") && stderr.contains("--etcd-allow-insecure"),
        "apiserver with http:// etcd: {stderr}"
    );

    // With the API server's etcd client certificate: ciphertext only.
    assert_encrypted(&cluster, "secretbox", "key1");
    assert_eq!(read_back(&cluster), VALUE, "kubectl reads the Secret back decoded");

    // The audit log: the create at Metadata (no request or response body).
    let events = audit_events(&cluster);
    let create = events
        .iter()
        .find(|e| {
            e["verb"] == "create"
                && e["stage"] == "ResponseComplete"
                && e["objectRef"]["resource"] == "secrets"
                && e["objectRef"]["namespace"] == NS
                && e["objectRef"]["name"] == SECRET
        })
        .unwrap_or_else(|| panic!("no ResponseComplete create of secrets/{SECRET} in the audit log:\n{events:#?}"));
    assert_eq!(create["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(create["kind"], "Event");
    assert_eq!(create["level"], "Metadata");
    assert_eq!(create["user"]["username"], "admin");
    let groups: Vec<&str> = create["user"]["groups"]
        .as_array()
        .expect("user.groups")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        groups.contains(&"system:masters") && groups.contains(&"system:authenticated"),
        "groups {groups:?}"
    );
    assert_eq!(create["responseStatus"]["code"], 201);
    assert_eq!(create["objectRef"]["apiVersion"], "v1");
    assert!(create["auditID"].as_str().is_some_and(|id| !id.is_empty()));
    for body in ["requestObject", "responseObject"] {
        assert!(create.get(body).is_none(), "Metadata level logs no {body}: {create}");
    }
    let raw = std::fs::read_to_string(cluster.home().join("logs/audit.log")).expect("audit log");
    assert!(!raw.contains(VALUE), "the audit log must not hold the Secret's value");
    // The policy omits RequestReceived.
    assert!(events.iter().all(|e| e["stage"] != "RequestReceived"));

    // Key rotation, as Kubernetes documents it: the new key first, restart,
    // rewrite every Secret, then drop the old key.
    let mut new_key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut new_key))
        .expect("random key");
    let secret = base64::engine::general_purpose::STANDARD.encode(new_key);
    edit_keys(&cluster, |keys| {
        let entry = serde_yaml::to_value(serde_json::json!({"name": "key2", "secret": secret})).expect("YAML");
        keys.insert(0, entry);
    });
    restart_apiserver(&cluster);
    // Old data still reads with key1; nothing was rewritten yet.
    assert_eq!(read_back(&cluster), VALUE);
    assert_encrypted(&cluster, "secretbox", "key1");
    let all = cluster.kubectl_ok(&["get", "secrets", "-A", "-o", "json"]);
    let mut replace = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["replace", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl replace");
    std::io::Write::write_all(&mut replace.stdin.take().expect("stdin"), all.as_bytes()).expect("feed kubectl");
    let out = replace.wait_with_output().expect("kubectl replace");
    assert!(
        out.status.success(),
        "kubectl replace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_encrypted(&cluster, "secretbox", "key2");
    assert_eq!(read_back(&cluster), VALUE);

    edit_keys(&cluster, |keys| keys.retain(|k| k["name"] != "key1"));
    restart_apiserver(&cluster);
    assert_eq!(read_back(&cluster), VALUE, "the Secret reads with key2 alone");
    assert_encrypted(&cluster, "secretbox", "key2");
}
