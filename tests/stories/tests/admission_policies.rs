//! Story: a cluster administrator shares the cluster between teams with
//! namespace policies. A team namespace gets a LimitRange (pods without
//! resources get its defaults, a container above its maximum is refused)
//! and a ResourceQuota (the controller-manager keeps its usage, a pod over
//! the quota is refused with Kubernetes' words, `kubectl describe quota`
//! shows used/hard, and deleting a pod frees its share). Without a
//! LimitRange a compute quota refuses pods that state no requests, and a
//! deleted ConfigMap frees its count. Pod Security
//! labels guard the namespaces: `restricted` refuses a privileged pod and
//! admits a conforming one, `warn=baseline` admits with a `Warning:`,
//! tightening the enforce level warns about the pods already there, and an
//! invalid level is refused.
//!
//! API server, etcd and controller-manager only: pods stay Pending, no node
//! is needed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_tests::controllers::ControllerManager;
use sluice_tests::{eventually, ControlPlane};

/// kubectl with `kubeconfig` and optional stdin: (success, stdout, stderr).
fn kubectl_in(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).expect("stdin written");
    drop(input);
    let out = child.wait_with_output().expect("kubectl finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    kubectl_in(kubeconfig, args, None)
}

fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(kubeconfig, args);
    assert!(ok, "kubectl {args:?} failed:\n{out}{err}");
    out
}

/// `kubectl apply -f -`: (success, stdout, stderr).
fn apply(kubeconfig: &Path, manifest: &str) -> (bool, String, String) {
    kubectl_in(kubeconfig, &["apply", "-f", "-"], Some(manifest))
}

fn privileged_pod(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  containers:\n  - name: {name}\n    image: busybox\n    securityContext:\n      privileged: true\n"
    )
}

/// The `Used` and `Hard` columns of `resource` in `kubectl describe quota`.
fn described(text: &str, resource: &str) -> Option<(String, String)> {
    text.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.len() == 3 && cols[0] == resource).then(|| (cols[1].to_string(), cols[2].to_string()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_policies_limit_default_and_guard_pods() {
    let cp = ControlPlane::start().await;
    let kc = cp.kubeconfig_path().to_path_buf();
    let _cm = ControllerManager::start(&kc, "cm-1", &[]);

    // --- A team namespace with defaults, limits and a quota.
    kubectl_ok(&kc, &["create", "namespace", "team"]);
    let (ok, out, err) = apply(
        &kc,
        "apiVersion: v1
kind: LimitRange
metadata:
  name: defaults
  namespace: team
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 250m, memory: 128Mi}
    max: {cpu: \"1\"}
---
apiVersion: v1
kind: ResourceQuota
metadata:
  name: q
  namespace: team
spec:
  hard: {pods: \"2\", requests.cpu: \"1\", limits.memory: 1Gi}
",
    );
    assert!(ok, "policies applied: {out}{err}");
    assert!(kubectl_ok(&kc, &["get", "limitranges", "-n", "team"]).starts_with("NAME       CREATED AT"));

    // The controller-manager fills in the quota's status.
    eventually(Duration::from_secs(30), "quota status computed", || async {
        let used = kubectl(
            &kc,
            &["get", "quota", "q", "-n", "team", "-o", "jsonpath={.status.used.pods}"],
        )
        .1;
        (used == "0").then_some(())
    })
    .await;

    // A pod without resources gets the LimitRange's defaults, recorded in an annotation.
    kubectl_ok(&kc, &["run", "p1", "-n", "team", "--image=busybox"]);
    let resources = kubectl_ok(
        &kc,
        &[
            "get",
            "pod",
            "p1",
            "-n",
            "team",
            "-o",
            "jsonpath={.spec.containers[0].resources}",
        ],
    );
    let resources: serde_json::Value = serde_json::from_str(&resources).expect("resources are JSON");
    assert_eq!(
        resources,
        serde_json::json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "250m", "memory": "128Mi"}})
    );
    let annotation = kubectl_ok(
        &kc,
        &[
            "get",
            "pod",
            "p1",
            "-n",
            "team",
            "-o",
            "jsonpath={.metadata.annotations.kubernetes\\.io/limit-ranger}",
        ],
    );
    assert_eq!(
        annotation,
        "LimitRanger plugin set: cpu, memory request for container p1; cpu, memory limit for container p1"
    );

    // A container above the LimitRange's maximum is refused.
    let (ok, _, err) = apply(
        &kc,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\n  namespace: team\nspec:\n  containers:\n  - name: big\n    image: busybox\n    resources:\n      limits: {cpu: \"2\"}\n",
    );
    assert!(!ok);
    assert!(
        err.contains("pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"),
        "{err}"
    );

    // The quota admits two pods, then refuses the third with Kubernetes' words.
    kubectl_ok(&kc, &["run", "p2", "-n", "team", "--image=busybox"]);
    let (ok, _, err) = kubectl(&kc, &["run", "p3", "-n", "team", "--image=busybox"]);
    assert!(!ok);
    assert!(
        err.contains(
            "Error from server (Forbidden): pods \"p3\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        ),
        "{err}"
    );
    let describe = kubectl_ok(&kc, &["describe", "quota", "q", "-n", "team"]);
    assert_eq!(
        described(&describe, "pods"),
        Some(("2".into(), "2".into())),
        "{describe}"
    );
    assert_eq!(
        described(&describe, "requests.cpu"),
        Some(("500m".into(), "1".into())),
        "{describe}"
    );
    assert_eq!(
        described(&describe, "limits.memory"),
        Some(("512Mi".into(), "1Gi".into())),
        "{describe}"
    );
    let table = kubectl_ok(&kc, &["get", "quota", "-n", "team"]);
    assert!(table.starts_with("NAME   AGE"), "{table}");
    assert!(table.contains("pods: 2/2, requests.cpu: 500m/1"), "{table}");
    assert!(table.contains("limits.memory: 512Mi/1Gi"), "{table}");

    // Deleting a pod frees its share.
    kubectl_ok(&kc, &["delete", "pod", "p1", "-n", "team", "--wait=false"]);
    eventually(Duration::from_secs(30), "usage released", || async {
        let used = kubectl(
            &kc,
            &["get", "quota", "q", "-n", "team", "-o", "jsonpath={.status.used.pods}"],
        )
        .1;
        (used == "1").then_some(())
    })
    .await;
    kubectl_ok(&kc, &["run", "p3", "-n", "team", "--image=busybox"]);

    // --- Without a LimitRange, a compute quota wants every container to say what it needs,
    // and object counts are released when objects go.
    kubectl_ok(&kc, &["create", "namespace", "lab"]);
    let (ok, out, err) = apply(
        &kc,
        "apiVersion: v1
kind: ResourceQuota
metadata:
  name: compute
  namespace: lab
spec:
  hard: {requests.cpu: \"1\", limits.memory: 1Gi, count/configmaps: \"2\"}
",
    );
    assert!(ok, "{out}{err}");
    eventually(Duration::from_secs(30), "lab quota status computed", || async {
        let used = kubectl(
            &kc,
            &[
                "get",
                "quota",
                "compute",
                "-n",
                "lab",
                "-o",
                "jsonpath={.status.used.count/configmaps}",
            ],
        )
        .1;
        // kube-root-ca.crt may or may not exist in this cluster.
        (used == "0" || used == "1").then_some(())
    })
    .await;
    let (ok, _, err) = kubectl(&kc, &["run", "bare", "-n", "lab", "--image=busybox"]);
    assert!(!ok);
    assert!(
        err.contains(
            "pods \"bare\" is forbidden: failed quota: compute: must specify limits.memory for: bare; requests.cpu for: bare"
        ),
        "{err}"
    );
    let configmaps = |n: usize| (0..n).map(|i| format!("cm-{i}")).collect::<Vec<_>>();
    let mut refused = None;
    for name in configmaps(3) {
        let (ok, _, err) = kubectl(&kc, &["create", "configmap", &name, "-n", "lab"]);
        if !ok {
            refused = Some((name, err));
            break;
        }
    }
    let (name, err) = refused.expect("the quota refuses a third ConfigMap");
    assert!(
        err.contains(&format!("configmaps \"{name}\" is forbidden: exceeded quota: compute, requested: count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2")),
        "{err}"
    );
    kubectl_ok(&kc, &["delete", "configmap", "cm-0", "-n", "lab"]);
    eventually(Duration::from_secs(30), "ConfigMap count released", || async {
        kubectl(&kc, &["create", "configmap", &name, "-n", "lab"])
            .0
            .then_some(())
    })
    .await;

    // --- A restricted namespace refuses a privileged pod and admits a conforming one.
    kubectl_ok(&kc, &["create", "namespace", "locked"]);
    kubectl_ok(
        &kc,
        &[
            "label",
            "namespace",
            "locked",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    );
    let (ok, _, err) = apply(&kc, &privileged_pod("locked", "priv"));
    assert!(!ok);
    assert!(
        err.contains(
            "pods \"priv\" is forbidden: violates PodSecurity \"restricted:latest\": \
privileged (container \"priv\" must not set securityContext.privileged=true), \
allowPrivilegeEscalation != false (container \"priv\" must set securityContext.allowPrivilegeEscalation=false), \
unrestricted capabilities (container \"priv\" must set securityContext.capabilities.drop=[\"ALL\"]), \
runAsNonRoot != true (pod or container \"priv\" must set securityContext.runAsNonRoot=true), \
seccompProfile (pod or container \"priv\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        ),
        "{err}"
    );
    let conforming = "apiVersion: v1
kind: Pod
metadata:
  name: good
  namespace: locked
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: good
    image: busybox
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
";
    let (ok, out, err) = apply(&kc, conforming);
    assert!(ok, "conforming pod admitted: {out}{err}");
    assert!(!err.contains("Warning"), "{err}");

    // --- A namespace that only warns admits with a warning, for pods and workloads.
    kubectl_ok(&kc, &["create", "namespace", "open"]);
    kubectl_ok(
        &kc,
        &["label", "namespace", "open", "pod-security.kubernetes.io/warn=baseline"],
    );
    let (ok, out, err) = apply(&kc, &privileged_pod("open", "priv"));
    assert!(ok, "{out}{err}");
    assert!(
        err.contains(
            "Warning: would violate PodSecurity \"baseline:latest\": privileged (container \"priv\" must not set securityContext.privileged=true)"
        ),
        "{err}"
    );
    let (ok, out, err) = apply(
        &kc,
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: open
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      hostNetwork: true
      containers:
      - name: web
        image: busybox
",
    );
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("Warning: would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"),
        "{err}"
    );

    // Tightening the enforce level warns about the pods already there.
    let (ok, out, err) = kubectl(
        &kc,
        &[
            "label",
            "namespace",
            "open",
            "pod-security.kubernetes.io/enforce=baseline",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        err.contains(
            "Warning: existing pods in namespace \"open\" violate the new PodSecurity enforce level \"baseline:latest\""
        ),
        "{err}"
    );
    assert!(err.contains("Warning: priv: privileged"), "{err}");

    // Label values are validated.
    let (ok, _, err) = kubectl(
        &kc,
        &[
            "label",
            "namespace",
            "open",
            "pod-security.kubernetes.io/enforce=strict",
            "--overwrite",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains(
            "namespaces \"open\" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": must be one of privileged, baseline, restricted"
        ),
        "{err}"
    );
}

/// `etcd_request_duration_seconds_count{operation, type}` of the API server.
async fn etcd_requests(raw: &sluice_tests::RawClient, operation: &str, resource: &str) -> u64 {
    let text = raw.get("/metrics").await.text();
    let series = format!("etcd_request_duration_seconds_count{{operation=\"{operation}\",type=\"{resource}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().expect("a counter value"))
}

/// etcd reads of what admission reads for a pod: gets of namespaces and
/// ServiceAccounts, lists of PriorityClasses, ResourceQuotas and LimitRanges.
async fn admission_reads_of_etcd(raw: &sluice_tests::RawClient) -> (u64, u64) {
    let gets = etcd_requests(raw, "get", "namespaces").await + etcd_requests(raw, "get", "serviceaccounts").await;
    let mut lists = 0;
    for resource in ["priorityclasses.scheduling.k8s.io", "resourcequotas", "limitranges"] {
        lists += etcd_requests(raw, "list", resource).await;
    }
    (gets, lists)
}

/// Admission reads what a pod create depends on (its namespace, its
/// ServiceAccount, PriorityClasses, quotas, limit ranges) from the API
/// server's watch cache, as Kubernetes' admission plugins read informers,
/// instead of reading etcd six times per pod; and a write acknowledged just
/// before still decides the create: a namespace's enforce level flipped a
/// moment earlier, a ServiceAccount deleted a moment earlier.
#[tokio::test]
async fn admission_reads_the_watch_cache_and_every_write_acknowledged_before() {
    use serde_json::json;
    // ServiceAccount admission on (ControlPlane::start turns it off).
    let etcd = sluice_tests::Etcd::start().await;
    let apiserver = sluice_tests::ApiServer::start(&etcd, &[]).await;
    let raw = apiserver.raw().await;
    let created = |r: sluice_tests::RawResponse, what: &str| {
        assert_eq!(r.status, 201, "{what}: {}", r.text());
    };
    created(
        raw.post("/api/v1/namespaces", &json!({"metadata": {"name": "teams"}}))
            .await,
        "namespace",
    );
    created(
        raw.post(
            "/api/v1/namespaces/teams/serviceaccounts",
            &json!({"metadata": {"name": "app"}}),
        )
        .await,
        "service account",
    );
    let pod = |name: &str, account: &str| {
        json!({"metadata": {"name": name}, "spec": {
            "serviceAccountName": account,
            "containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}})
    };
    let pods = "/api/v1/namespaces/teams/pods";
    created(raw.post(pods, &pod("first", "app")).await, "first pod");

    // Twenty more pods: the namespace (read twice per pod: lifecycle and
    // Pod Security) and the ServiceAccount come from the cache, as do the
    // (empty) PriorityClasses, quotas and limit ranges.
    let (gets_before, lists_before) = admission_reads_of_etcd(&raw).await;
    for i in 0..20 {
        created(raw.post(pods, &pod(&format!("p-{i}"), "app")).await, "pod");
    }
    let (gets_after, lists_after) = admission_reads_of_etcd(&raw).await;
    let (read, listed) = (gets_after - gets_before, lists_after - lists_before);
    assert!(
        read <= 2,
        "{read} etcd reads of namespaces and service accounts for 20 pods (60 before)"
    );
    assert!(
        listed <= 2,
        "{listed} etcd lists of priority classes, quotas, limit ranges for 20 pods (60 before)"
    );

    // What was written a moment before decides each create.
    let ns = "/api/v1/namespaces/teams";
    for round in 0..5 {
        for (level, admitted) in [("restricted", false), ("privileged", true)] {
            let labels = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}});
            let r = raw.patch(ns, "application/merge-patch+json", &labels).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let r = raw.post(pods, &pod(&format!("{level}-{round}"), "app")).await;
            assert_eq!(
                r.status == 201,
                admitted,
                "enforce={level}, round {round}: {}",
                r.text()
            );
            if !admitted {
                assert_eq!(r.status, 403, "{}", r.text());
            }
        }
        let account = format!("brief-{round}");
        let accounts = "/api/v1/namespaces/teams/serviceaccounts";
        created(
            raw.post(accounts, &json!({"metadata": {"name": account}})).await,
            "brief account",
        );
        created(
            raw.post(pods, &pod(&format!("with-{account}"), &account)).await,
            "pod of a new account",
        );
        let r = raw.delete(&format!("{accounts}/{account}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let r = raw.post(pods, &pod(&format!("without-{account}"), &account)).await;
        assert_eq!(r.status, 403, "a pod of the account just deleted: {}", r.text());
    }
}
