//! Story: two teams manage one Deployment with server-side apply (issue 11)
//! — the platform team with `kubectl apply --server-side`, an autoscaler
//! over raw HTTP — and Sluice keeps `metadata.managedFields` as Kubernetes
//! does: who owns which field (FieldsV1), 409 conflicts naming the owner
//! (with `FieldManagerConflict` causes), `force` moving ownership, fields a
//! manager stops applying removed unless someone else owns them, Update
//! entries for other writes (`kubectl label`, client-side apply) and their
//! upgrade to server-side apply, resets, and the `PatchOptions` checks.
//!
//! Run just this file (builds the API server first; real etcd and kubectl
//! must be installed):
//!
//! ```sh
//! cargo build -p sluice-apiserver && cargo test -p sluice-stories --test apiserver_server_side_apply -- --nocapture
//! ```

use std::process::Output;

use serde_json::{json, Value};
use sluice_tests::{run_ok, workspace_root, ControlPlane, RawClient};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn manifest(replicas: i64, labels: &str, env: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
{labels}spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
{env}"#
    )
}

const TEAM_LABEL: &str = "    team: platform\n";
const ENV: &str = "        env:\n        - name: MODE\n          value: blue\n";

fn apply(cp: &ControlPlane, text: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("web.yaml");
    std::fs::write(&path, text).expect("write manifest");
    let mut c = cp.kubectl();
    c.args(["apply", "-f", path.to_str().expect("utf-8")]).args(extra);
    c.output().expect("kubectl runs")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The managedFields entry of `manager` with `operation`.
fn entry(obj: &Value, manager: &str, operation: &str) -> Option<Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|m| m["manager"] == manager && m["operation"] == operation)
        .cloned()
}

fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    format!(
                        "{}/{}",
                        m["manager"].as_str().unwrap_or(""),
                        m["operation"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn raw_apply(raw: &RawClient, query: &str, body: &str) -> sluice_tests::RawResponse {
    raw.request(
        "PATCH",
        &format!("{DEPLOYMENTS}/web?{query}"),
        Some("application/apply-patch+yaml"),
        body.as_bytes().to_vec(),
    )
    .await
}

const AUTOSCALER: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 5\n";

#[tokio::test(flavor = "multi_thread")]
async fn two_managers_share_a_deployment_through_server_side_apply() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;

    // The platform team applies server-side: kubectl owns what it applied.
    let out = ok(apply(&cp, &manifest(2, TEAM_LABEL, ENV), &["--server-side"]));
    assert!(out.contains("deployment.apps/web serverside-applied"), "{out}");
    let d = raw.get(&format!("{DEPLOYMENTS}/web")).await.json();
    assert_eq!(managers(&d), ["kubectl/Apply"], "{d}");
    let kubectl = entry(&d, "kubectl", "Apply").expect("kubectl entry");
    assert_eq!(kubectl["apiVersion"], "apps/v1");
    assert_eq!(kubectl["fieldsType"], "FieldsV1");
    assert!(kubectl["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{kubectl}");
    let f = &kubectl["fieldsV1"];
    assert_eq!(f["f:spec"]["f:replicas"], json!({}), "{f}");
    // The selector is atomic: owned as a whole.
    assert_eq!(f["f:spec"]["f:selector"], json!({}), "{f}");
    assert_eq!(f["f:metadata"]["f:labels"], json!({"f:app": {}, "f:team": {}}), "{f}");
    // Containers are a list-map keyed by name, ports by containerPort and protocol
    // (defaulted to TCP in the key, as Kubernetes does).
    let web = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(web["."], json!({}), "{f}");
    assert_eq!(web["f:image"], json!({}), "{f}");
    assert!(
        web["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["f:containerPort"].is_object(),
        "{f}"
    );
    assert!(web["f:env"]["k:{\"name\":\"MODE\"}"]["f:value"].is_object(), "{f}");
    // Defaults the server filled in are nobody's.
    assert!(web.get("f:terminationMessagePath").is_none(), "{f}");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );

    // The autoscaler applies replicas over raw HTTP: the field is kubectl's.
    let r = raw_apply(&raw, "fieldManager=autoscaler", AUTOSCALER).await;
    assert_eq!(r.status, 409, "{}", r.text());
    let s = r.json();
    assert_eq!(s["reason"], "Conflict");
    assert_eq!(
        s["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
    );
    assert_eq!(
        s["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".spec.replicas"}])
    );
    // Applying the value kubectl applied is no conflict: both own it.
    let same = AUTOSCALER.replace("replicas: 5", "replicas: 2");
    let r = raw_apply(&raw, "fieldManager=autoscaler", &same).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = r.json();
    assert!(entry(&d, "autoscaler", "Apply").unwrap()["fieldsV1"]["f:spec"]["f:replicas"].is_object());
    assert!(entry(&d, "kubectl", "Apply").unwrap()["fieldsV1"]["f:spec"]["f:replicas"].is_object());
    // Forced, the autoscaler takes the field (force is parsed as Go's ParseBool).
    let r = raw_apply(&raw, "fieldManager=autoscaler&force=True", AUTOSCALER).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = r.json();
    assert_eq!(d["spec"]["replicas"], 5);
    assert!(
        entry(&d, "kubectl", "Apply").unwrap()["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none(),
        "{d}"
    );
    assert_eq!(
        entry(&d, "autoscaler", "Apply").unwrap()["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );

    // Now kubectl applying its replicas conflicts with the autoscaler...
    let out = apply(&cp, &manifest(2, TEAM_LABEL, ENV), &["--server-side"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"autoscaler\": .spec.replicas"),
        "{err}"
    );
    // ... until it forces, which takes the field back; the autoscaler, left
    // with nothing, is dropped.
    ok(apply(
        &cp,
        &manifest(2, TEAM_LABEL, ENV),
        &["--server-side", "--force-conflicts"],
    ));
    let d = raw.get(&format!("{DEPLOYMENTS}/web")).await.json();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(managers(&d), ["kubectl/Apply"], "{d}");

    // Another team shares the team label (same value, no conflict), then
    // kubectl stops applying both the label and the env var: the env var
    // goes, the label stays because the other team still owns it.
    let labeler = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    team: platform\n";
    let r = raw_apply(&raw, "fieldManager=labeler", labeler).await;
    assert_eq!(r.status, 200, "{}", r.text());
    ok(apply(&cp, &manifest(2, "", ""), &["--server-side"]));
    let d = raw.get(&format!("{DEPLOYMENTS}/web")).await.json();
    assert!(
        d["spec"]["template"]["spec"]["containers"][0].get("env").is_none(),
        "{d}"
    );
    assert_eq!(d["metadata"]["labels"]["team"], "platform", "{d}");
    let f = &entry(&d, "kubectl", "Apply").unwrap()["fieldsV1"];
    assert!(f["f:metadata"]["f:labels"].get("f:team").is_none(), "{f}");
    // When the last owner lets go, the label goes too.
    let r = raw_apply(
        &raw,
        "fieldManager=labeler",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["metadata"]["labels"].get("team").is_none(), "{}", r.text());

    // Other writes are Update entries of their manager: kubectl label's
    // field conflicts with a later apply, named with its apiVersion.
    run_ok(cp.kubectl().args(["label", "deployment", "web", "stage=prod"]));
    let d = raw.get(&format!("{DEPLOYMENTS}/web")).await.json();
    let label = entry(&d, "kubectl-label", "Update").unwrap_or_else(|| panic!("{:?}", managers(&d)));
    assert_eq!(label["apiVersion"], "apps/v1");
    assert_eq!(label["fieldsV1"], json!({"f:metadata": {"f:labels": {"f:stage": {}}}}));
    let out = apply(&cp, &manifest(2, "    stage: dev\n", ""), &["--server-side"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("conflict with \"kubectl-label\" using apps/v1: .metadata.labels.stage"),
        "{}",
        stderr(&out)
    );
    // A raw update without fieldManager is recorded under the User-Agent's first token.
    let mut d = raw.get(&format!("{DEPLOYMENTS}/web")).await.json();
    d["spec"]["minReadySeconds"] = json!(3);
    let r = raw.put(&format!("{DEPLOYMENTS}/web"), &d).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let updaters: Vec<String> = managers(&r.json())
        .into_iter()
        .filter(|m| m.ends_with("/Update"))
        .collect();
    assert_eq!(updaters.len(), 2, "{updaters:?}");

    // kubectl shows managedFields only when asked.
    let shown = run_ok(
        cp.kubectl()
            .args(["get", "deployment", "web", "-o", "yaml", "--show-managed-fields"]),
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("managedFields:"), "{shown}");
    assert!(shown.contains("manager: kubectl\n    operation: Apply"), "{shown}");
    assert!(shown.contains("fieldsType: FieldsV1"), "{shown}");
    let hidden = run_ok(cp.kubectl().args(["get", "deployment", "web", "-o", "yaml"]));
    assert!(!String::from_utf8_lossy(&hidden.stdout).contains("managedFields"));

    // managedFields may be reset with [{}]; the object is then unmanaged
    // until the next apply.
    let r = raw
        .patch(
            &format!("{DEPLOYMENTS}/web?fieldManager=resetter"),
            "application/merge-patch+json",
            &json!({"metadata": {"managedFields": [{}]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["metadata"].get("managedFields").is_none(), "{}", r.text());
    let r = raw
        .patch(
            &format!("{DEPLOYMENTS}/web?fieldManager=later"),
            "application/merge-patch+json",
            &json!({"spec": {"minReadySeconds": 4}}),
        )
        .await;
    assert!(r.json()["metadata"].get("managedFields").is_none(), "{}", r.text());
    // The next apply finds every field owned by `before-first-apply`.
    let r = raw_apply(&raw, "fieldManager=autoscaler", AUTOSCALER).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("conflict with \"before-first-apply\" using apps/v1: .spec.replicas"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_options_and_client_side_apply_upgrade() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let cms = "/api/v1/namespaces/default/configmaps";

    // PatchOptions are checked as Kubernetes checks them.
    let r = raw
        .request(
            "PATCH",
            &format!("{cms}/x"),
            Some("application/apply-patch+yaml"),
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let r = raw
        .patch(
            &format!("{cms}/x?force=true"),
            "application/merge-patch+json",
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    let long = "m".repeat(129);
    let r = raw
        .post(
            &format!("{cms}?fieldManager={long}"),
            &json!({"metadata": {"name": "c"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "CreateOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"
    );
    let r = raw
        .request(
            "PATCH",
            &format!("{cms}/x?fieldManager=a&force=yes"),
            Some("application/apply-patch+yaml"),
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = raw
        .request(
            "PATCH",
            &format!("{cms}/x?fieldManager=a"),
            Some("application/apply-patch+yaml"),
            b"apiVersion: v2\nkind: ConfigMap\n".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "Incorrect version specified in apply patch. Specified patch version: v2, expected: v1"
    );

    // Client-side apply: Update entries of kubectl-client-side-apply...
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: blue\n  size: small\n";
    ok(apply(&cp, cm, &[]));
    let c = raw.get(&format!("{cms}/settings")).await.json();
    let csa = entry(&c, "kubectl-client-side-apply", "Update").unwrap_or_else(|| panic!("{c}"));
    assert_eq!(
        csa["fieldsV1"]["f:data"],
        json!({".": {}, "f:mode": {}, "f:size": {}}),
        "{csa}"
    );
    assert!(
        csa["fieldsV1"]["f:metadata"]["f:annotations"]["f:kubectl.kubernetes.io/last-applied-configuration"]
            .is_object()
    );
    // ... and the upgrade to server-side apply changes a value the
    // annotation applied without a conflict, keeping the annotation in step.
    let changed = cm.replace("mode: blue", "mode: green");
    let out = ok(apply(&cp, &changed, &["--server-side"]));
    assert!(out.contains("configmap/settings serverside-applied"), "{out}");
    let c = raw.get(&format!("{cms}/settings")).await.json();
    assert_eq!(c["data"]["mode"], "green");
    assert!(entry(&c, "kubectl", "Apply").is_some(), "{c}");
    let last = c["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("annotation kept");
    assert!(last.contains("\"mode\":\"green\""), "{last}");
    // kubectl moved the client-side entry into its Apply entry (its
    // managedFields upgrade patch), so kubectl alone owns the data now.
    assert!(
        entry(&c, "kubectl-client-side-apply", "Update").is_none(),
        "{:?}",
        managers(&c)
    );
    let applied = |manager: &str, size: &str| {
        let body = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  size: {size}\n");
        let path = format!("{cms}/settings?fieldManager={manager}");
        let raw = &raw;
        async move {
            raw.request("PATCH", &path, Some("application/apply-patch+yaml"), body.into_bytes())
                .await
        }
    };
    assert_eq!(applied("ops2", "small").await.status, 200);
    let r = applied("ops", "large").await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .data.size\nconflicts with \"ops2\":\n- .data.size"
    );
    assert_eq!(r.json()["details"]["causes"].as_array().map(Vec::len), Some(2));

    // A CRD too big for the client-side annotation applies server-side.
    let big = workspace_root().join("tests/stories/fixtures/crds/prometheus-operator/server-side-only");
    let out = ok(cp
        .kubectl()
        .args(["apply", "--server-side", "-f", big.to_str().expect("utf-8")])
        .output()
        .expect("kubectl runs"));
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/prometheuses.monitoring.coreos.com serverside-applied"
        ),
        "{out}"
    );
    let crd = raw
        .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/prometheuses.monitoring.coreos.com")
        .await
        .json();
    assert_eq!(managers(&crd)[0], "kubectl/Apply", "{:?}", managers(&crd));
    assert!(crd["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_null());
    // Applying it again unchanged is a no-op.
    let out = ok(cp
        .kubectl()
        .args(["apply", "--server-side", "-f", big.to_str().expect("utf-8")])
        .output()
        .expect("kubectl runs"));
    assert!(out.contains("serverside-applied"), "{out}");
}
