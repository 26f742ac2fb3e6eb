//! Story: a cluster administrator hands out access with RBAC. Anonymous
//! callers are turned away, a developer bound to a Role in one namespace
//! can do exactly what the Role says there and nothing elsewhere,
//! `kubectl auth can-i` agrees with what the server enforces, nobody can
//! grant permissions they do not hold, and the default policy Kubernetes
//! ships is there and comes back after an administrator damages it. A Role
//! naming one object lets its holder list and watch just that one by name.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_tests::controllers::ControllerManager;
use sluice_tests::{eventually, ControlPlane, RawClient};

/// kubectl with `kubeconfig`: (success, stdout, stderr).
fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(kubeconfig, args);
    assert!(ok, "kubectl {args:?} failed:\n{out}{err}");
    out
}

/// kubectl apply -f - with `manifest`.
fn apply(kubeconfig: &Path, manifest: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("manifest written");
    let out = child.wait_with_output().expect("kubectl finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl auth can-i` as the owner of `kubeconfig`.
fn can_i(kubeconfig: &Path, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let (ok, out, _) = kubectl(kubeconfig, &all);
    assert_eq!(out.trim(), if ok { "yes" } else { "no" }, "can-i {args:?}");
    ok
}

const TEAM_A: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-reader
  namespace: team-a
rules:
- apiGroups: [""]
  resources: ["pods", "pods/log"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: alice-reads-pods
  namespace: team-a
subjects:
- kind: User
  name: alice
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: pod-reader
"#;

#[tokio::test]
async fn rbac_grants_what_roles_say_and_nothing_more() {
    let mut cp = ControlPlane::start().await;
    let admin = cp.kubeconfig_path().to_path_buf();
    let alice = cp.apiserver.user_kubeconfig("alice", &["devs"]);
    let raw_alice: RawClient = cp.apiserver.raw_as(&alice).await;
    let anonymous = cp.anonymous().await;
    let raw_admin = cp.raw().await;

    // The default policy is there: cluster-admin bound to system:masters,
    // the aggregated user-facing roles, the discovery roles.
    let roles = kubectl_ok(&admin, &["get", "clusterroles"]);
    for want in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:node",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:node-bootstrapper",
    ] {
        assert!(
            roles.lines().any(|l| l.split_whitespace().next() == Some(want)),
            "{want} in\n{roles}"
        );
    }
    assert!(roles.starts_with("NAME") && roles.contains("CREATED AT"), "{roles}");
    let binding = kubectl_ok(&admin, &["get", "clusterrolebinding", "cluster-admin", "-o", "wide"]);
    assert!(
        binding.contains("ClusterRole/cluster-admin") && binding.contains("system:masters"),
        "{binding}"
    );
    let cr = raw_admin
        .get("/apis/rbac.authorization.k8s.io/v1/clusterroles/system:basic-user")
        .await
        .json();
    assert_eq!(
        cr["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
        "true"
    );

    // Anonymous: health and version only; everything else is 401.
    assert_eq!(anonymous.get("/healthz").await.status, 200);
    assert_eq!(anonymous.get("/version").await.status, 200);
    let r = anonymous.get("/api/v1/namespaces/default/pods").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["reason"], "Unauthorized");

    // Alice, before anyone grants her anything: discovery yes, pods no, with
    // Kubernetes' exact words and Status.
    assert_eq!(raw_alice.get("/apis").await.status, 200);
    let r = raw_alice.get("/api/v1/namespaces/default/pods").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
               "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})
    );
    let r = raw_alice.get("/apis/apps/v1/namespaces/default/deployments/web").await;
    assert_eq!(
        r.json()["message"],
        "deployments.apps \"web\" is forbidden: User \"alice\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"default\""
    );
    assert_eq!(
        r.json()["details"],
        json!({"name": "web", "group": "apps", "kind": "deployments"})
    );
    let r = raw_alice.get("/metrics").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "forbidden: User \"alice\" cannot get path \"/metrics\""
    );
    let (ok, _, err) = kubectl(&alice, &["get", "pods"]);
    assert!(!ok);
    assert!(
        err.contains("Error from server (Forbidden): pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );

    // Who am I.
    let whoami = kubectl_ok(&alice, &["auth", "whoami"]);
    assert!(whoami.contains("Username") && whoami.contains("alice"), "{whoami}");
    assert!(whoami.contains("[devs system:authenticated]"), "{whoami}");
    let me = kubectl_ok(&alice, &["auth", "whoami", "-o", "json"]);
    let me: Value = serde_json::from_str(&me).expect("json");
    assert_eq!(me["kind"], "SelfSubjectReview");
    assert_eq!(me["status"]["userInfo"]["username"], "alice");

    // The administrator grants access: a manifest applied with kubectl, and
    // kubectl's create commands.
    let (ok, out, err) = apply(&admin, TEAM_A);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("role.rbac.authorization.k8s.io/pod-reader created"),
        "{out}"
    );
    kubectl_ok(
        &admin,
        &[
            "create",
            "role",
            "cm-editor",
            "-n",
            "team-a",
            "--verb=get,list,create",
            "--resource=configmaps",
        ],
    );
    kubectl_ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "alice-cm",
            "-n",
            "team-a",
            "--role=cm-editor",
            "--user=alice",
        ],
    );
    kubectl_ok(
        &admin,
        &[
            "create",
            "clusterrole",
            "ns-viewer",
            "--verb=get,list",
            "--resource=namespaces",
        ],
    );
    kubectl_ok(
        &admin,
        &[
            "create",
            "clusterrolebinding",
            "devs-see-namespaces",
            "--clusterrole=ns-viewer",
            "--group=devs",
        ],
    );
    let bindings = kubectl_ok(&admin, &["get", "rolebindings", "-n", "team-a", "-o", "wide"]);
    assert!(
        bindings.contains("Role/pod-reader") && bindings.contains("alice"),
        "{bindings}"
    );
    // Applying the same manifest again changes nothing.
    let (ok, out, _) = apply(&admin, TEAM_A);
    assert!(
        ok && out.contains("role.rbac.authorization.k8s.io/pod-reader unchanged"),
        "{out}"
    );
    // Validation as Kubernetes: verbs required, roleRef immutable.
    let (ok, _, err) = kubectl(
        &admin,
        &[
            "create",
            "role",
            "empty",
            "-n",
            "team-a",
            "--verb=get",
            "--resource=pods",
            "--dry-run=server",
            "-o",
            "yaml",
        ],
    );
    assert!(ok, "{err}");
    let r = raw_admin
        .post(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles",
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "bad"},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text()
            .contains("rules[0].verbs: Required value: verbs must contain at least one value"),
        "{}",
        r.text()
    );
    let r = raw_admin
        .patch(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/alice-cm",
            "application/merge-patch+json",
            &json!({"roleRef": {"name": "pod-reader"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("cannot change roleRef"), "{}", r.text());

    // What alice may do now, as the server enforces it and as `kubectl auth
    // can-i` says: the same answers (the authorizer's cache follows etcd, so
    // wait for the grant to arrive first).
    eventually(Duration::from_secs(10), "alice's grant to take effect", || async {
        (raw_alice.get("/api/v1/namespaces/team-a/pods").await.status == 200).then_some(())
    })
    .await;
    // (kubectl auth can-i arguments, path alice reads, status)
    let matrix: &[(&[&str], &str, u16)] = &[
        (&["list", "pods", "-n", "team-a"], "/api/v1/namespaces/team-a/pods", 200),
        (
            &["get", "pods", "--subresource=log", "-n", "team-a"],
            "/api/v1/namespaces/team-a/pods/nope/log",
            404,
        ),
        (
            &["list", "pods", "-n", "default"],
            "/api/v1/namespaces/default/pods",
            403,
        ),
        (
            &["list", "secrets", "-n", "team-a"],
            "/api/v1/namespaces/team-a/secrets",
            403,
        ),
        (
            &["list", "configmaps", "-n", "team-a"],
            "/api/v1/namespaces/team-a/configmaps",
            200,
        ),
        (
            &["list", "configmaps", "-n", "default"],
            "/api/v1/namespaces/default/configmaps",
            403,
        ),
        (&["get", "namespaces/team-a"], "/api/v1/namespaces/team-a", 200),
        (&["list", "nodes"], "/api/v1/nodes", 403),
        (&["get", "/healthz"], "/healthz", 200),
        (&["get", "/metrics"], "/metrics", 403),
    ];
    for (args, path, status) in matrix {
        let got = raw_alice.get(path).await.status;
        assert_eq!(got, *status, "alice GET {path}");
        assert_eq!(can_i(&alice, args), got != 403, "can-i {args:?} vs {got} for {path}");
    }
    // Writes: a ConfigMap yes, deleting a pod no.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}});
    assert_eq!(
        raw_alice.post("/api/v1/namespaces/team-a/configmaps", &cm).await.status,
        201
    );
    assert!(can_i(&alice, &["create", "configmaps", "-n", "team-a"]));
    assert_eq!(raw_alice.delete("/api/v1/namespaces/team-a/pods/x").await.status, 403);
    assert!(!can_i(&alice, &["delete", "pods", "-n", "team-a"]));
    // The administrator (system:masters) may do anything.
    assert!(can_i(&admin, &["delete", "nodes"]));
    assert!(can_i(&admin, &["*", "*"]));
    // kubectl auth can-i --list: what alice holds in team-a.
    let list = kubectl_ok(&alice, &["auth", "can-i", "--list", "-n", "team-a"]);
    assert!(list.contains("Resources") && list.contains("Verbs"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("pods/log ") && l.contains("[get list watch]")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("configmaps ") && l.contains("[get list create]")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("selfsubjectaccessreviews.authorization.k8s.io")),
        "{list}"
    );
    // A SubjectAccessReview asked by the administrator about alice.
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
        "user": "alice", "groups": ["devs"],
        "resourceAttributes": {"namespace": "team-a", "verb": "watch", "resource": "pods"}}});
    let r = raw_admin
        .post("/apis/authorization.k8s.io/v1/subjectaccessreviews", &sar)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["status"]["allowed"], true);
    // ... but alice may not ask about others.
    let r = raw_alice
        .post("/apis/authorization.k8s.io/v1/subjectaccessreviews", &sar)
        .await;
    assert_eq!(r.status, 403);

    // Escalation: alice may now manage roles and bindings in team-a, but
    // only grant what she holds herself.
    kubectl_ok(
        &admin,
        // (not `*`: that would include `escalate` and `bind`)
        &[
            "create",
            "role",
            "rbac-manager",
            "-n",
            "team-a",
            "--verb=get,list,watch,create,update,patch,delete",
            "--resource=roles,rolebindings",
        ],
    );
    kubectl_ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "alice-rbac",
            "-n",
            "team-a",
            "--role=rbac-manager",
            "--user=alice",
        ],
    );
    eventually(Duration::from_secs(10), "alice's rbac-manager grant", || async {
        can_i(&alice, &["create", "roles", "-n", "team-a"]).then_some(())
    })
    .await;
    let (ok, _, err) = kubectl(
        &alice,
        &[
            "create",
            "role",
            "secret-reader",
            "-n",
            "team-a",
            "--verb=get",
            "--resource=secrets",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"),
        "{err}"
    );
    kubectl_ok(
        &alice,
        &[
            "create",
            "role",
            "log-reader",
            "-n",
            "team-a",
            "--verb=get",
            "--resource=pods/log",
        ],
    );
    let (ok, _, err) = kubectl(
        &alice,
        &[
            "create",
            "rolebinding",
            "bob-admin",
            "-n",
            "team-a",
            "--clusterrole=cluster-admin",
            "--user=bob",
        ],
    );
    assert!(
        !ok && err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    // (the role alice just made reaches the authorizer's cache through its watch)
    eventually(Duration::from_secs(10), "alice to bind the role she made", || async {
        kubectl(
            &alice,
            &[
                "create",
                "rolebinding",
                "bob-logs",
                "-n",
                "team-a",
                "--role=log-reader",
                "--user=bob",
            ],
        )
        .0
        .then_some(())
    })
    .await;
    // With `escalate` and `bind`, holding the permissions is not needed.
    kubectl_ok(
        &admin,
        &[
            "create",
            "role",
            "escalator",
            "-n",
            "team-a",
            "--verb=escalate,bind",
            "--resource=roles,clusterroles",
        ],
    );
    kubectl_ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "alice-escalates",
            "-n",
            "team-a",
            "--role=escalator",
            "--user=alice",
        ],
    );
    eventually(Duration::from_secs(10), "alice may escalate", || async {
        kubectl(
            &alice,
            &[
                "create",
                "role",
                "secret-reader",
                "-n",
                "team-a",
                "--verb=get",
                "--resource=secrets",
            ],
        )
        .0
        .then_some(())
    })
    .await;
    kubectl_ok(
        &alice,
        &[
            "create",
            "rolebinding",
            "bob-view",
            "-n",
            "team-a",
            "--clusterrole=view",
            "--user=bob",
        ],
    );

    // Aggregation: a ClusterRole labelled aggregate-to-view joins `view`.
    let _cm = ControllerManager::start(&admin, "rbac-story", &["--controllers=clusterrole-aggregation"]);
    let crontabs = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: crontab-reader
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: ["stable.example.com"]
  resources: ["crontabs"]
  verbs: ["get", "list", "watch"]
"#;
    let (ok, out, err) = apply(&admin, crontabs);
    assert!(ok, "{out}{err}");
    eventually(Duration::from_secs(20), "view to aggregate crontab-reader", || async {
        let view = raw_admin
            .get("/apis/rbac.authorization.k8s.io/v1/clusterroles/view")
            .await
            .json();
        let rules = view["rules"].as_array().cloned().unwrap_or_default();
        let has = |res: &str| {
            rules
                .iter()
                .any(|r| r["resources"].as_array().is_some_and(|a| a.iter().any(|x| x == res)))
        };
        (has("crontabs") && has("pods") && has("deployments")).then_some(())
    })
    .await;
    // edit aggregates view (labelled aggregate-to-edit), so it follows once
    // the controller has seen view change: eventually, as in Kubernetes.
    eventually(
        Duration::from_secs(20),
        "edit to aggregate view's roles too",
        || async {
            let edit = raw_admin
                .get("/apis/rbac.authorization.k8s.io/v1/clusterroles/edit")
                .await
                .json();
            edit["rules"].to_string().contains("crontabs").then_some(())
        },
    )
    .await;
    let bob = cp.apiserver.user_kubeconfig("bob", &[]);
    eventually(
        Duration::from_secs(10),
        "bob to see deployments through view",
        || async { can_i(&bob, &["list", "deployments.apps", "-n", "team-a"]).then_some(()) },
    )
    .await;
    assert!(!can_i(&bob, &["list", "secrets", "-n", "team-a"]));

    // The default policy comes back at the next start: a rule taken from
    // system:basic-user returns; a role marked autoupdate=false is left alone.
    let r = raw_admin
        .patch(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:basic-user",
            "application/merge-patch+json",
            &json!({"rules": [{"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews"], "verbs": ["create"]}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = raw_admin
        .patch(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:public-info-viewer",
            "application/merge-patch+json",
            &json!({"metadata": {"annotations": {"rbac.authorization.kubernetes.io/autoupdate": "false"}},
                    "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    cp.restart_apiserver().await;
    let raw_admin = cp.raw().await;
    let basic = raw_admin
        .get("/apis/rbac.authorization.k8s.io/v1/clusterroles/system:basic-user")
        .await
        .json();
    // (what was missing comes back as Kubernetes adds it: one rule per permission)
    assert_eq!(basic["rules"].as_array().map(Vec::len), Some(3), "{basic}");
    assert!(
        basic["rules"].to_string().contains("selfsubjectrulesreviews"),
        "{basic}"
    );
    let info = raw_admin
        .get("/apis/rbac.authorization.k8s.io/v1/clusterroles/system:public-info-viewer")
        .await
        .json();
    assert_eq!(info["rules"].as_array().map(Vec::len), Some(1), "{info}");
    // After the restart the authorizer's cache is loaded before serving.
    assert_eq!(
        cp.apiserver
            .raw_as(&alice)
            .await
            .get("/api/v1/namespaces/team-a/pods")
            .await
            .status,
        200
    );
}

const ONE_CONFIG_MAP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: team-n
---
apiVersion: v1
kind: ConfigMap
metadata: {name: mine, namespace: team-n}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other, namespace: team-n}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: one-config-map, namespace: team-n}
rules:
- apiGroups: [""]
  resources: ["configmaps"]
  resourceNames: ["mine"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: carol-reads-mine, namespace: team-n}
subjects:
- kind: User
  name: carol
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: one-config-map}
"#;

/// A Role that names one object (`resourceNames`) lets its holder list and
/// watch just that object, by a field selector on its name, as in
/// Kubernetes (an informer of one object works); a list of all, or of
/// another name, is still forbidden.
#[tokio::test]
async fn a_role_naming_one_object_allows_listing_and_watching_it_by_name() {
    let cp = ControlPlane::start().await;
    let (ok, _, err) = apply(cp.kubeconfig_path(), ONE_CONFIG_MAP);
    assert!(ok, "{err}");
    let carol_kc = cp.apiserver.user_kubeconfig("carol", &[]);
    let carol = cp.apiserver.raw_as(&carol_kc).await;
    let base = "/api/v1/namespaces/team-n/configmaps";
    let get = |path: String| {
        let carol = &carol;
        async move { carol.get(&path).await }
    };

    let mine = eventually(Duration::from_secs(10), "carol's Role in force", || async {
        let r = get(format!("{base}?fieldSelector=metadata.name%3Dmine")).await;
        (r.status == 200).then_some(r)
    })
    .await;
    let items = mine.json()["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
    assert_eq!(items[0]["metadata"]["name"], "mine");
    assert_eq!(
        get(format!("{base}?fieldSelector=metadata.name%3D%3Dmine"))
            .await
            .status,
        200,
        "`==` pins the name as `=` does"
    );
    let watch = get(format!(
        "{base}?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dmine"
    ))
    .await;
    assert_eq!(watch.status, 200, "{}", watch.text());
    assert!(watch.text().contains(r#""name":"mine""#), "{}", watch.text());

    for denied in [
        base.to_string(),
        format!("{base}?fieldSelector=metadata.name%3Dother"),
        format!("{base}?fieldSelector=metadata.name!%3Dother"),
        format!("{base}?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dother"),
    ] {
        let r = get(denied.clone()).await;
        assert_eq!(r.status, 403, "{denied}: {}", r.text());
        assert!(
            r.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains(r#"User "carol" cannot"#)),
            "{}",
            r.text()
        );
    }
    // kubectl's own field selector goes the same way.
    let (ok, out, err) = kubectl(
        &carol_kc,
        &[
            "get",
            "configmaps",
            "-n",
            "team-n",
            "--field-selector",
            "metadata.name=mine",
            "-o",
            "name",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "configmap/mine");
}
