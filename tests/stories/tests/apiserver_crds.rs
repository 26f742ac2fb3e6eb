//! Story: a platform team installs operators' CustomResourceDefinitions
//! (issue 10) — Gateway API, cert-manager and prometheus-operator, the real
//! bundles, unchanged, from `tests/stories/fixtures/crds/` — with the real
//! kubectl, and uses the new kinds as they would on Kubernetes: the CRDs
//! become Established, objects are created, listed, watched, patched (merge
//! and JSON; strategic merge is refused with 415), shown with their printer
//! columns and short names, explained, validated (schema errors and CEL
//! rules, with field paths), defaulted and pruned; status and scale
//! subresources, several versions, finalizers, server-side apply, and
//! deleting a CRD deletes its objects. A small hand-written CRD (`Widget`,
//! below) covers what the bundles do not.
//!
//! Run just this file (builds the API server first; real etcd and kubectl
//! must be installed):
//!
//! ```sh
//! cargo build -p sluice-apiserver && cargo test -p sluice-stories --test apiserver_crds -- --nocapture
//! ```

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_tests::{eventually, run_ok, workspace_root, ControlPlane, RawClient};

/// kubectl with this cluster's kubeconfig and a discovery cache of its own
/// (so a cached discovery document can never hide or fake a new resource).
struct Kubectl<'a> {
    cp: &'a ControlPlane,
    cache: tempfile::TempDir,
}

impl<'a> Kubectl<'a> {
    fn new(cp: &'a ControlPlane) -> Self {
        Kubectl {
            cp,
            cache: tempfile::tempdir().expect("cache dir"),
        }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.cp.kubectl();
        c.arg("--cache-dir").arg(self.cache.path()).args(args);
        c
    }

    /// Run; panic unless it succeeds; stdout.
    fn ok(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&run_ok(&mut self.cmd(args)).stdout).into_owned()
    }

    /// Run; whatever happens.
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("kubectl runs")
    }

    /// Run, expecting failure; stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Apply a manifest given as text.
    fn apply_text(&self, text: &str, extra: &[&str]) -> Output {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("manifest.yaml");
        std::fs::write(&path, text).expect("write manifest");
        let p = path.to_str().expect("utf-8 path");
        let mut args = vec!["apply", "-f", p];
        args.extend(extra);
        self.run(&args)
    }
}

fn fixtures(project: &str) -> PathBuf {
    workspace_root().join("tests/stories/fixtures/crds").join(project)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Names of the CRDs in a fixture directory (top level only, as `kubectl apply -f dir` reads it).
fn crd_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("fixture");
        // YAML documents are separated by `---` lines.
        let mut doc = String::new();
        for line in text.lines().chain(std::iter::once("---")) {
            if line.trim_end() == "---" {
                if !doc.trim().is_empty() {
                    let v: Value = serde_yaml::from_str(&doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                    if v["kind"] == "CustomResourceDefinition" {
                        names.push(v["metadata"]["name"].as_str().expect("name").to_string());
                    }
                }
                doc.clear();
            } else {
                doc.push_str(line);
                doc.push('\n');
            }
        }
    }
    names
}

fn condition<'v>(obj: &'v Value, kind: &str) -> &'v Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

fn causes(status: &Value) -> Vec<String> {
    status["details"]["causes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn message(status: &Value) -> String {
    status["message"].as_str().unwrap_or_default().to_string()
}

/// Watch events (type, name) from `resource_version`, for `seconds`.
async fn watch_events(
    raw: &RawClient,
    collection: &str,
    resource_version: &str,
    seconds: u32,
) -> Vec<(String, String, Value)> {
    let r = raw
        .get(&format!(
            "{collection}?watch=1&resourceVersion={resource_version}&timeoutSeconds={seconds}&allowWatchBookmarks=false"
        ))
        .await;
    assert_eq!(r.status, 200, "watch {collection}: {}", r.text());
    r.text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let e: Value = serde_json::from_str(l).expect("watch event JSON");
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                e["object"].clone(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Installing the bundles
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn real_world_bundles_apply_unchanged_and_become_established() {
    let cp = ControlPlane::start().await;
    let k = Kubectl::new(&cp);
    let raw = cp.raw().await;

    for project in ["gateway-api", "cert-manager", "prometheus-operator"] {
        let dir = fixtures(project);
        let names = crd_names(&dir);
        assert!(names.len() >= 4, "{project}: {names:?}");
        // Applied exactly as users do: client-side apply, default (strict) validation.
        let applied = k.ok(&["apply", "-f", path_str(&dir)]);
        for n in &names {
            assert!(
                applied.contains(&format!("customresourcedefinition.apiextensions.k8s.io/{n} created")),
                "{applied}"
            );
        }
        let crds: Vec<String> = names.iter().map(|n| format!("crd/{n}")).collect();
        let mut args = vec!["wait", "--for", "condition=established", "--timeout=60s"];
        args.extend(crds.iter().map(String::as_str));
        k.ok(&args);

        for n in &names {
            let crd = raw
                .get(&format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}"))
                .await;
            assert_eq!(crd.status, 200, "{}", crd.text());
            let crd = crd.json();
            let names_accepted = condition(&crd, "NamesAccepted");
            assert_eq!(names_accepted["status"], "True", "{n}: {names_accepted}");
            assert_eq!(names_accepted["reason"], "NoConflicts", "{n}");
            assert_eq!(names_accepted["message"], "no conflicts found", "{n}");
            let established = condition(&crd, "Established");
            assert_eq!(established["status"], "True", "{n}: {established}");
            assert_eq!(established["reason"], "InitialNamesAccepted", "{n}");
            assert_eq!(established["message"], "the initial names have been accepted", "{n}");
            // acceptedNames mirror spec.names; the storage version is recorded.
            assert_eq!(
                crd["status"]["acceptedNames"]["kind"], crd["spec"]["names"]["kind"],
                "{n}"
            );
            assert_eq!(
                crd["status"]["acceptedNames"]["plural"], crd["spec"]["names"]["plural"],
                "{n}"
            );
            let storage: Vec<Value> = crd["spec"]["versions"]
                .as_array()
                .expect("versions")
                .iter()
                .filter(|v| v["storage"] == true)
                .map(|v| v["name"].clone())
                .collect();
            assert_eq!(crd["status"]["storedVersions"], Value::Array(storage), "{n}");

            // Each served version is in discovery at once, no restart.
            let group = crd["spec"]["group"].as_str().expect("group");
            let plural = crd["spec"]["names"]["plural"].as_str().expect("plural");
            for v in crd["spec"]["versions"].as_array().expect("versions") {
                let version = v["name"].as_str().expect("version name");
                let d = raw.get(&format!("/apis/{group}/{version}")).await;
                if v["served"] == true {
                    assert_eq!(d.status, 200, "{group}/{version}: {}", d.text());
                    let d = d.json();
                    assert_eq!(d["kind"], "APIResourceList");
                    let r = d["resources"]
                        .as_array()
                        .and_then(|rs| rs.iter().find(|r| r["name"] == plural))
                        .unwrap_or_else(|| panic!("{plural} in {group}/{version} discovery: {d}"));
                    assert_eq!(r["kind"], crd["spec"]["names"]["kind"]);
                    assert_eq!(r["namespaced"], crd["spec"]["scope"] == "Namespaced");
                    assert_eq!(r["singularName"], crd["spec"]["names"]["singular"]);
                }
            }
        }
    }

    // The Gateway API group is protected (*.k8s.io): the CRDs carry the
    // approval annotation, which Kubernetes reports as a condition.
    let gc = raw
        .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gatewayclasses.gateway.networking.k8s.io")
        .await
        .json();
    let approval = condition(&gc, "KubernetesAPIApprovalPolicyConformant");
    assert_eq!(approval["status"], "True", "{approval}");
    assert_eq!(approval["reason"], "ApprovedAnnotation");
    assert_eq!(
        approval["message"],
        "approved in https://github.com/kubernetes-sigs/gateway-api/pull/4530"
    );

    // Classic discovery lists the new groups with their preferred (storage) version.
    let groups = raw.get("/apis").await.json();
    let gw = groups["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == "gateway.networking.k8s.io"))
        .unwrap_or_else(|| panic!("gateway.networking.k8s.io in /apis: {groups}"))
        .clone();
    assert_eq!(gw["preferredVersion"]["groupVersion"], "gateway.networking.k8s.io/v1");
    let versions: Vec<&str> = gw["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["version"].as_str())
        .collect();
    assert!(
        versions.contains(&"v1") && versions.contains(&"v1beta1"),
        "{versions:?}"
    );

    // kubectl knows the short names and categories without a restart.
    let resources = k.ok(&["api-resources", "--api-group=gateway.networking.k8s.io"]);
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("gatewayclasses") && l.split_whitespace().any(|w| w == "gc")),
        "{resources}"
    );
    let resources = k.ok(&["api-resources", "--api-group=cert-manager.io"]);
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("certificates") && l.contains("cert,certs")),
        "{resources}"
    );
    assert_eq!(k.ok(&["get", "gc"]), "", "no GatewayClass yet");
    let none = k.run(&["get", "smon", "-A"]);
    assert!(none.status.success(), "{}", String::from_utf8_lossy(&none.stderr));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("No resources found"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    k.ok(&["get", "gateway-api", "-A"]);

    // kubectl explain reads the CRD's schema from /openapi/v3, live.
    let explain = k.ok(&["explain", "gatewayclass.spec"]);
    assert!(explain.contains("gateway.networking.k8s.io"), "{explain}");
    assert!(explain.contains("GatewayClass"), "{explain}");
    assert!(explain.contains("controllerName"), "{explain}");
    assert!(explain.contains("-required-"), "{explain}");
    let explain = k.ok(&["explain", "servicemonitor.spec.endpoints.port"]);
    assert!(explain.contains("ServiceMonitor"), "{explain}");
    let explain = k.ok(&["explain", "certificates", "--api-version=cert-manager.io/v1"]);
    assert!(explain.contains("secretName") || explain.contains("spec"), "{explain}");

    // prometheus-operator's Prometheus CRD is too big for client-side apply's
    // last-applied annotation; Kubernetes refuses it, and the project says
    // to apply it server-side, which works.
    let big = fixtures("prometheus-operator").join("server-side-only");
    let err = k.fails(&["apply", "-f", path_str(&big)]);
    assert!(
        err.contains("metadata.annotations: Too long: must have at most 262144 bytes"),
        "{err}"
    );
    let out = k.ok(&["apply", "--server-side", "-f", path_str(&big)]);
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/prometheuses.monitoring.coreos.com serverside-applied"
        ),
        "{out}"
    );
    k.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd/prometheuses.monitoring.coreos.com",
    ]);
    let prom = raw
        .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/prometheuses.monitoring.coreos.com")
        .await
        .json();
    let managers: Vec<&str> = prom["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"kubectl"), "{managers:?}");
    assert!(prom["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_null());
}

// ---------------------------------------------------------------------------
// Gateway API objects
// ---------------------------------------------------------------------------

const GATEWAY_CLASS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: sluice
spec:
  controllerName: sluice.dev/gateway-controller
  description: the story's class
"#;

const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
  namespace: default
spec:
  gatewayClassName: sluice
  listeners:
  - name: http
    protocol: HTTP
    port: 80
"#;

const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  namespace: default
spec:
  parentRefs:
  - name: web
  hostnames: ["web.example.com"]
  rules:
  - backendRefs:
    - name: web
      port: 80
"#;

async fn install(k: &Kubectl<'_>, project: &str) {
    let dir = fixtures(project);
    k.ok(&["apply", "-f", path_str(&dir)]);
    // `kubectl wait -f <dir>` also reads subdirectories (prometheus-operator's
    // `server-side-only/`), so wait for the CRDs `apply -f <dir>` created.
    let crds: Vec<String> = crd_names(&dir).iter().map(|n| format!("crd/{n}")).collect();
    let mut args = vec!["wait", "--for", "condition=established", "--timeout=60s"];
    args.extend(crds.iter().map(String::as_str));
    k.ok(&args);
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_api_objects_are_validated_defaulted_printed_watched_and_patched() {
    let cp = ControlPlane::start().await;
    let k = Kubectl::new(&cp);
    let raw = cp.raw().await;
    install(&k, "gateway-api").await;

    let classes = "/apis/gateway.networking.k8s.io/v1/gatewayclasses";
    let gateways = "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways";
    let routes = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes";
    let list_rv = raw.get(gateways).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_string();

    // Cluster-scoped and namespaced kinds, created with kubectl apply.
    for (text, what) in [
        (GATEWAY_CLASS, "gatewayclass"),
        (GATEWAY, "gateway"),
        (ROUTE, "httproute"),
    ] {
        let out = k.apply_text(text, &[]);
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(" created"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(raw.get(&format!("{classes}/sluice")).await.status, 200);
    // A cluster-scoped kind has no namespaced path.
    assert_eq!(
        raw.get("/apis/gateway.networking.k8s.io/v1/namespaces/default/gatewayclasses/sluice")
            .await
            .status,
        404
    );

    // Defaulting: the schema's defaults are filled in, including a defaulted status.
    let gc = raw.get(&format!("{classes}/sluice")).await.json();
    assert_eq!(gc["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(gc["kind"], "GatewayClass");
    assert_eq!(gc["metadata"]["generation"], 1);
    let accepted = condition(&gc, "Accepted");
    assert_eq!(accepted["status"], "Unknown", "{gc}");
    assert_eq!(accepted["reason"], "Pending");
    assert_eq!(accepted["message"], "Waiting for controller");
    let route = raw.get(&format!("{routes}/web")).await.json();
    assert_eq!(
        route["spec"]["parentRefs"][0]["group"], "gateway.networking.k8s.io",
        "{route}"
    );
    assert_eq!(route["spec"]["parentRefs"][0]["kind"], "Gateway");
    assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["group"], "");
    assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["kind"], "Service");
    assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["weight"], 1);
    assert_eq!(
        route["spec"]["rules"][0]["matches"][0]["path"]["type"], "PathPrefix",
        "{route}"
    );
    assert_eq!(route["spec"]["rules"][0]["matches"][0]["path"]["value"], "/");

    // additionalPrinterColumns in kubectl get (priority 1 columns only with -o wide).
    let out = k.ok(&["get", "gatewayclasses"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "CONTROLLER", "ACCEPTED", "AGE"], "{out}");
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(
        &row[..3],
        ["sluice", "sluice.dev/gateway-controller", "Unknown"],
        "{out}"
    );
    let wide = k.ok(&["get", "gc", "-o", "wide"]);
    assert!(wide.lines().next().expect("header").contains("DESCRIPTION"), "{wide}");
    assert!(wide.contains("the story's class"), "{wide}");
    let out = k.ok(&["get", "gtw"]);
    let header: Vec<&str> = out.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"], "{out}");
    assert!(out.lines().nth(1).expect("row").starts_with("web "), "{out}");
    let out = k.ok(&["get", "httproutes"]);
    assert!(out.contains("HOSTNAMES"), "{out}");
    assert!(out.contains("web.example.com"), "{out}");
    // The Table the server sends carries the CRD's columns.
    let table = raw
        .get_accept(classes, "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
        .await;
    let t = table.json();
    assert_eq!(t["kind"], "Table", "{t}");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, ["Name", "Controller", "Accepted", "Age", "Description"]);
    assert_eq!(t["columnDefinitions"][4]["priority"], 1);
    assert_eq!(t["rows"][0]["cells"][1], "sluice.dev/gateway-controller");

    // Lists have the CRD's listKind.
    let list = raw.get(gateways).await.json();
    assert_eq!(list["kind"], "GatewayList");
    assert_eq!(list["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

    // Schema validation: 422 with the field path, worded as Kubernetes words it.
    let mut bad: Value = serde_yaml::from_str(GATEWAY).expect("yaml");
    bad["metadata"]["name"] = json!("bad-port");
    bad["spec"]["listeners"][0]["port"] = json!("eighty");
    let r = raw.post(gateways, &bad).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let s = r.json();
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(s["details"]["kind"], "Gateway");
    assert_eq!(s["details"]["group"], "gateway.networking.k8s.io");
    assert!(causes(&s).contains(&"spec.listeners[0].port".to_string()), "{s}");
    assert!(
        message(&s).starts_with("Gateway.gateway.networking.k8s.io \"bad-port\" is invalid: "),
        "{s}"
    );
    assert!(
        message(&s).contains(
            "spec.listeners[0].port: Invalid value: \"string\": spec.listeners[0].port in body must be of type integer: \"string\""
        ),
        "{s}"
    );
    assert_eq!(raw.get(&format!("{gateways}/bad-port")).await.status, 404);
    // A pattern and a required field.
    let r = raw
        .post(
            classes,
            &json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                    "metadata": {"name": "nopattern"}, "spec": {"controllerName": "no-slash"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(causes(&r.json()), ["spec.controllerName"]);
    assert!(
        message(&r.json()).contains("spec.controllerName in body should match"),
        "{}",
        r.text()
    );
    let r = raw
        .post(
            classes,
            &json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                    "metadata": {"name": "empty"}, "spec": {}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        message(&r.json()).contains("spec.controllerName: Required value"),
        "{}",
        r.text()
    );

    // A CEL rule (x-kubernetes-validations) rejects a bad create...
    let mut tls_on_http: Value = serde_yaml::from_str(GATEWAY).expect("yaml");
    tls_on_http["metadata"]["name"] = json!("tls-on-http");
    tls_on_http["spec"]["listeners"][0]["tls"] = json!({"mode": "Terminate", "certificateRefs": [{"name": "cert"}]});
    let r = raw.post(gateways, &tls_on_http).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        causes(&r.json()).contains(&"spec.listeners".to_string()),
        "{}",
        r.text()
    );
    assert!(
        message(&r.json()).contains("tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"),
        "{}",
        r.text()
    );
    // ... also through kubectl, which shows the rule's message and the path.
    let yaml = serde_yaml::to_string(&tls_on_http).expect("yaml");
    let out = k.apply_text(&yaml, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.listeners"), "{err}");
    assert!(err.contains("tls must not be specified"), "{err}");

    // ... and a transition rule (self == oldSelf) rejects a bad update.
    let changed = GATEWAY_CLASS.replace("sluice.dev/gateway-controller", "sluice.dev/other-controller");
    let out = k.apply_text(&changed, &[]);
    assert!(!out.status.success(), "controllerName is immutable");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.controllerName: Invalid value: \"string\": Value is immutable"),
        "{err}"
    );
    let r = raw
        .patch(
            &format!("{classes}/sluice"),
            "application/merge-patch+json",
            &json!({"spec": {"controllerName": "sluice.dev/other"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(causes(&r.json()), ["spec.controllerName"]);
    // The rule only fires on a change: an update leaving it alone passes.
    let r = raw
        .patch(
            &format!("{classes}/sluice"),
            "application/merge-patch+json",
            &json!({"spec": {"description": "edited"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["metadata"]["generation"], 2);

    // Merge patch and JSON patch work; strategic merge patch is refused as
    // for every custom resource.
    let r = raw
        .patch(
            &format!("{gateways}/web"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"team": "web"}}, "spec": {"listeners": [{"name": "http", "protocol": "HTTP", "port": 8080}]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["spec"]["listeners"][0]["port"], 8080);
    assert_eq!(
        r.json()["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["from"],
        "Same"
    );
    let r = raw
        .patch(
            &format!("{gateways}/web"),
            "application/json-patch+json",
            &json!([{"op": "test", "path": "/metadata/labels/team", "value": "web"},
                    {"op": "add", "path": "/spec/listeners/-", "value": {"name": "admin", "protocol": "HTTP", "port": 9090}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["spec"]["listeners"][1]["name"], "admin");
    let r = raw
        .patch(
            &format!("{gateways}/web"),
            "application/strategic-merge-patch+json",
            &json!({"metadata": {"labels": {"x": "y"}}}),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text());
    let s = r.json();
    assert_eq!(s["reason"], "UnsupportedMediaType", "{s}");
    assert!(
        message(&s).starts_with("the body of the request was in an unknown format - accepted media types include: "),
        "{s}"
    );
    assert!(message(&s).contains("application/merge-patch+json"), "{s}");
    assert!(!message(&s).contains("strategic"), "{s}");
    // kubectl patch defaults to strategic; on a CR it must be told --type merge.
    let out = k.run(&["patch", "gateway", "web", "-p", r#"{"metadata":{"labels":{"x":"y"}}}"#]);
    assert!(!out.status.success());
    k.ok(&[
        "patch",
        "gateway",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"x":"y"}}}"#,
    ]);

    // Pruning: unknown fields are dropped (with a warning by default, refused with Strict).
    let mut extra: Value = serde_yaml::from_str(ROUTE).expect("yaml");
    extra["metadata"]["name"] = json!("pruned");
    extra["spec"]["colour"] = json!("blue");
    let r = raw.post(routes, &extra).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.json()["spec"].get("colour").is_none(), "{}", r.text());
    let warning = r
        .headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(warning.contains("unknown field \\\"spec.colour\\\""), "{warning}");
    assert!(raw.get(&format!("{routes}/pruned")).await.json()["spec"]
        .get("colour")
        .is_none());
    extra["metadata"]["name"] = json!("strict");
    let r = raw.post(&format!("{routes}?fieldValidation=Strict"), &extra).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["reason"], "BadRequest");
    assert!(
        message(&r.json()).contains("strict decoding error: unknown field \"spec.colour\""),
        "{}",
        r.text()
    );

    // Several versions with None conversion: the same object through v1beta1.
    let beta = raw
        .get("/apis/gateway.networking.k8s.io/v1beta1/namespaces/default/gateways/web")
        .await;
    assert_eq!(beta.status, 200, "{}", beta.text());
    let beta = beta.json();
    assert_eq!(beta["apiVersion"], "gateway.networking.k8s.io/v1beta1");
    assert_eq!(beta["spec"]["listeners"][1]["name"], "admin");
    let v1 = raw.get(&format!("{gateways}/web")).await.json();
    assert_eq!(beta["metadata"]["uid"], v1["metadata"]["uid"]);
    assert_eq!(beta["metadata"]["resourceVersion"], v1["metadata"]["resourceVersion"]);

    // Watch from before the creates sees every change in order.
    raw.delete(&format!("{gateways}/web")).await;
    let events = watch_events(&raw, gateways, &list_rv, 2).await;
    let seen: Vec<(&str, &str)> = events.iter().map(|(t, n, _)| (t.as_str(), n.as_str())).collect();
    assert_eq!(
        seen.first(),
        Some(&("ADDED", "web")),
        "watch of a custom resource: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&("DELETED", "web")), "{seen:?}");
    assert!(seen.iter().filter(|(t, _)| *t == "MODIFIED").count() >= 3, "{seen:?}");
    assert!(events
        .iter()
        .all(|(_, _, o)| o["apiVersion"] == "gateway.networking.k8s.io/v1" && o["kind"] == "Gateway"));
    // The kube crate's watcher works on a custom resource too (dynamic API).
    let client = cp.client().await;
    let ar = kube::api::ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    };
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(client, "default", &ar);
    let names: Vec<String> = api
        .list(&Default::default())
        .await
        .expect("list httproutes")
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    assert_eq!(names, ["pruned", "web"]);
    let wp = kube::api::WatchParams::default().timeout(3);
    let rv = api
        .list(&Default::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let stream = api.watch(&wp, &rv).await.expect("watch starts");
    futures::pin_mut!(stream);
    raw.delete(&format!("{routes}/pruned")).await;
    // Bookmarks may come at any time (kube asks for them); skip them.
    let ev = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match futures::StreamExt::next(&mut stream)
                .await
                .expect("stream open")
                .expect("event")
            {
                kube::api::WatchEvent::Bookmark(_) => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("an event within 5s");
    match ev {
        kube::api::WatchEvent::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("pruned")),
        other => panic!("expected Deleted, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Server-side apply of a custom resource
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn server_side_apply_of_a_custom_resource_tracks_owners_and_conflicts() {
    let cp = ControlPlane::start().await;
    let k = Kubectl::new(&cp);
    let raw = cp.raw().await;
    install(&k, "gateway-api").await;
    let gw = "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/web";

    let out = k.apply_text(GATEWAY, &["--server-side"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("gateway.gateway.networking.k8s.io/web serverside-applied"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let obj = raw.get(gw).await.json();
    let mf = obj["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .clone();
    let kubectl = mf
        .iter()
        .find(|m| m["manager"] == "kubectl" && m["operation"] == "Apply")
        .unwrap_or_else(|| panic!("kubectl Apply entry: {mf:?}"));
    assert_eq!(kubectl["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(kubectl["fieldsType"], "FieldsV1");
    assert!(
        kubectl["fieldsV1"]["f:spec"]["f:gatewayClassName"].is_object(),
        "{kubectl}"
    );
    // Listeners are a list-map keyed by name: owned per key.
    assert!(
        kubectl["fieldsV1"]["f:spec"]["f:listeners"]["k:{\"name\":\"http\"}"].is_object(),
        "{kubectl}"
    );
    assert!(obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_null());

    // Another manager changing an owned field conflicts...
    let other = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: web\nspec:\n  gatewayClassName: other\n  listeners:\n  - name: http\n    protocol: HTTP\n    port: 80\n";
    let r = raw
        .request(
            "PATCH",
            &format!("{gw}?fieldManager=ops"),
            Some("application/apply-patch+yaml"),
            other.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let s = r.json();
    assert_eq!(s["reason"], "Conflict");
    assert!(message(&s).starts_with("Apply failed with"), "{s}");
    assert!(message(&s).contains("conflict with \"kubectl\""), "{s}");
    assert!(message(&s).contains(".spec.gatewayClassName"), "{s}");
    // ... unless forced, which moves ownership.
    let r = raw
        .request(
            "PATCH",
            &format!("{gw}?fieldManager=ops&force=true"),
            Some("application/apply-patch+yaml"),
            other.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["spec"]["gatewayClassName"], "other");
    let mf = r.json()["metadata"]["managedFields"].clone();
    let ops = mf
        .as_array()
        .and_then(|a| a.iter().find(|m| m["manager"] == "ops"))
        .expect("ops entry")
        .clone();
    assert!(ops["fieldsV1"]["f:spec"]["f:gatewayClassName"].is_object(), "{mf}");
    // kubectl applying again server-side without --force-conflicts now conflicts.
    let out = k.apply_text(GATEWAY, &["--server-side"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("conflict"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Server-side apply also creates: a new object from nothing, with defaults.
    let route = ROUTE.replace("name: web\n  namespace", "name: ssa\n  namespace");
    let out = k.apply_text(&route, &["--server-side"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = raw
        .get("/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/ssa")
        .await
        .json();
    assert_eq!(r["spec"]["parentRefs"][0]["kind"], "Gateway");
}

// ---------------------------------------------------------------------------
// cert-manager and prometheus-operator objects
// ---------------------------------------------------------------------------

const CERTIFICATE: &str = r#"
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: web
  namespace: default
spec:
  secretName: web-tls
  dnsNames: ["web.example.com"]
  issuerRef:
    name: letsencrypt
    kind: ClusterIssuer
"#;

const SERVICE_MONITOR: &str = r#"
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: web
  namespace: default
spec:
  selector:
    matchLabels: {app: web}
  endpoints:
  - port: metrics
  - targetPort: 9090
"#;

const PROMETHEUS_RULE: &str = r#"
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: web
  namespace: default
spec:
  groups:
  - name: web
    rules:
    - alert: WebDown
      expr: up{job="web"} == 0
      for: 5m
    - record: answer
      expr: 42
"#;

#[tokio::test(flavor = "multi_thread")]
async fn cert_manager_and_prometheus_objects_with_status_subresource_and_int_or_string() {
    let cp = ControlPlane::start().await;
    let k = Kubectl::new(&cp);
    let raw = cp.raw().await;
    install(&k, "cert-manager").await;
    install(&k, "prometheus-operator").await;

    for text in [CERTIFICATE, SERVICE_MONITOR, PROMETHEUS_RULE] {
        let out = k.apply_text(text, &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let certs = "/apis/cert-manager.io/v1/namespaces/default/certificates";

    // Printer columns with a condition filter, short names.
    let out = k.ok(&["get", "certs"]);
    let header: Vec<&str> = out.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "SECRET", "AGE"], "{out}");
    assert!(out.lines().nth(1).expect("row").contains("web-tls"), "{out}");
    let wide = k.ok(&["get", "cert", "web", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "SECRET", "ISSUER", "STATUS", "AGE"], "{wide}");
    assert!(wide.contains("letsencrypt"), "{wide}");
    assert!(k.ok(&["get", "smon"]).contains("web"));
    assert!(k
        .ok(&["get", "promrule", "web", "-o", "name"])
        .contains("prometheusrule.monitoring.coreos.com/web"));

    // The status subresource: status goes through /status only, and is
    // shown by the printer columns once set.
    let before = raw.get(&format!("{certs}/web")).await.json();
    assert_eq!(before["metadata"]["generation"], 1);
    let mut with_status = before.clone();
    with_status["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Issued", "message": "Certificate is up to date and has not expired", "lastTransitionTime": "2025-01-01T00:00:00Z"}]});
    with_status["spec"]["secretName"] = json!("ignored-by-status");
    let r = raw.put(&format!("{certs}/web/status"), &with_status).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = r.json();
    assert_eq!(after["spec"]["secretName"], "web-tls", "a status update ignores spec");
    assert_eq!(condition(&after, "Ready")["status"], "True");
    assert_eq!(after["metadata"]["generation"], 1, "status does not bump generation");
    let mut main = after.clone();
    main["status"] = json!({"conditions": []});
    main["spec"]["secretName"] = json!("web-tls-2");
    let r = raw.put(&format!("{certs}/web"), &main).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        condition(&r.json(), "Ready")["status"],
        "True",
        "the main resource ignores status"
    );
    assert_eq!(r.json()["metadata"]["generation"], 2);
    let out = k.ok(&["get", "certificate", "web"]);
    let row: Vec<&str> = out.lines().nth(1).expect("row").split_whitespace().collect();
    assert_eq!(&row[..3], ["web", "True", "web-tls-2"], "{out}");
    let r = raw
        .patch(
            &format!("{certs}/web/status"),
            "application/merge-patch+json",
            &json!({"status": {"revision": 3}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"]["revision"], 3);

    // Required fields and nested paths in a 422.
    let r = raw
        .post(
            certs,
            &json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "nosecret"},
                    "spec": {"issuerRef": {"name": "x"}, "duration": 5}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let c = causes(&r.json());
    assert!(c.contains(&"spec.secretName".to_string()), "{c:?}");
    assert!(c.contains(&"spec.duration".to_string()), "{c:?}");
    assert!(
        message(&r.json()).contains("spec.secretName: Required value"),
        "{}",
        r.text()
    );
    assert!(
        message(&r.json()).starts_with("Certificate.cert-manager.io \"nosecret\" is invalid: "),
        "{}",
        r.text()
    );
    // cert-manager's CEL rule on a cluster-scoped ClusterIssuer (venafi: exactly one of tpp, cloud, ngts).
    let r = raw
        .post(
            "/apis/cert-manager.io/v1/clusterissuers",
            &json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "venafi"},
                    "spec": {"venafi": {"zone": "z"}}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        message(&r.json()).contains("exactly one of tpp, cloud, or ngts must be configured"),
        "{}",
        r.text()
    );
    let r = raw
        .post(
            "/apis/cert-manager.io/v1/clusterissuers",
            &json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "selfsigned"},
                    "spec": {"selfSigned": {}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());

    // int-or-string keeps its type; defaults fill ServiceMonitor endpoints.
    let smon = raw
        .get("/apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/web")
        .await
        .json();
    assert_eq!(smon["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(smon["spec"]["endpoints"][1]["targetPort"], 9090, "{smon}");
    let rule = raw
        .get("/apis/monitoring.coreos.com/v1/namespaces/default/prometheusrules/web")
        .await
        .json();
    assert_eq!(rule["spec"]["groups"][0]["rules"][0]["expr"], "up{job=\"web\"} == 0");
    assert_eq!(rule["spec"]["groups"][0]["rules"][1]["expr"], 42);
    let r = raw
        .post(
            "/apis/monitoring.coreos.com/v1/namespaces/default/prometheusrules",
            &json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "bad"},
                    "spec": {"groups": [{"name": "g", "rules": [{"record": "r", "expr": true}]}]}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        causes(&r.json()).contains(&"spec.groups[0].rules[0].expr".to_string()),
        "{}",
        r.text()
    );
    // A list-map (groups keyed by name) refuses duplicate keys.
    let r = raw
        .post(
            "/apis/monitoring.coreos.com/v1/namespaces/default/prometheusrules",
            &json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "dup"},
                    "spec": {"groups": [{"name": "g", "rules": []}, {"name": "g", "rules": []}]}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        message(&r.json()).contains("spec.groups[1]: Duplicate value"),
        "{}",
        r.text()
    );
}

// ---------------------------------------------------------------------------
// A hand-written CRD for what the bundles do not cover
// ---------------------------------------------------------------------------

/// Two versions (v1alpha1 deprecated, v1 storage) with `None` conversion,
/// status + scale subresources, int-or-string, an embedded resource,
/// preserve-unknown-fields, defaults, a CEL rule and a transition rule.
fn widget_crd(storage: &str) -> Value {
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "size": {"type": "string", "enum": ["small", "medium", "large"], "default": "small"},
                    "replicas": {"type": "integer", "minimum": 0, "default": 1},
                    "port": {"x-kubernetes-int-or-string": true},
                    "capacity": {
                        "type": "integer",
                        "x-kubernetes-validations": [{"rule": "self >= oldSelf", "message": "capacity may not shrink"}]
                    },
                    "template": {
                        "type": "object",
                        "x-kubernetes-embedded-resource": true,
                        "x-kubernetes-preserve-unknown-fields": true
                    },
                    "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                },
                "x-kubernetes-validations": [
                    {"rule": "self.replicas <= 10 || self.size == 'large'", "message": "more than 10 replicas need size large"}
                ]
            },
            "status": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer"},
                    "selector": {"type": "string"},
                    "phase": {"type": "string"}
                }
            }
        }
    });
    let version = |name: &str| {
        let mut v = json!({
            "name": name,
            "served": true,
            "storage": name == storage,
            "schema": {"openAPIV3Schema": schema},
            "subresources": {
                "status": {},
                "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}
            },
            "additionalPrinterColumns": [
                {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
                {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                {"name": "Port", "type": "string", "jsonPath": ".spec.port", "priority": 1},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
            ]
        });
        if name == "v1alpha1" {
            v["deprecated"] = json!(true);
            v["deprecationWarning"] =
                json!("stories.sluice.dev/v1alpha1 Widget is deprecated; use stories.sluice.dev/v1");
        }
        v
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.stories.sluice.dev"},
        "spec": {
            "group": "stories.sluice.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wg"]},
            "conversion": {"strategy": "None"},
            "versions": [version("v1alpha1"), version("v1")]
        }
    })
}

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const WIDGETS: &str = "/apis/stories.sluice.dev/v1/namespaces/default/widgets";

async fn create_widget_crd(raw: &RawClient) {
    let r = raw.post(CRDS, &widget_crd("v1")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    eventually(Duration::from_secs(30), "Widget CRD Established and served", || async {
        let crd = raw.get(&format!("{CRDS}/widgets.stories.sluice.dev")).await.json();
        (condition(&crd, "Established")["status"] == "True" && raw.get(WIDGETS).await.status == 200).then_some(())
    })
    .await;
}

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "stories.sluice.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_written_crd_versions_scale_embedded_and_preserved_fields() {
    let cp = ControlPlane::start().await;
    let k = Kubectl::new(&cp);
    let raw = cp.raw().await;
    create_widget_crd(&raw).await;

    // Defaults and int-or-string.
    let r = raw
        .post(WIDGETS, &widget("a", json!({"port": 8080, "capacity": 5})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let a = r.json();
    assert_eq!(a["spec"]["size"], "small");
    assert_eq!(a["spec"]["replicas"], 1);
    assert_eq!(a["spec"]["port"], 8080);
    let r = raw.post(WIDGETS, &widget("b", json!({"port": "http"}))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["spec"]["port"], "http");
    let r = raw.post(WIDGETS, &widget("c", json!({"port": 1.5}))).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(causes(&r.json()), ["spec.port"]);
    let r = raw.post(WIDGETS, &widget("c", json!({"size": "huge"}))).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        message(&r.json())
            .contains("spec.size: Unsupported value: \"huge\": supported values: \"small\", \"medium\", \"large\""),
        "{}",
        r.text()
    );

    // Pruning honours preserve-unknown-fields; an embedded resource keeps
    // its own fields but has its metadata checked and pruned like ObjectMeta.
    let r = raw
        .post(
            WIDGETS,
            &widget(
                "embedded",
                json!({
                    "dropped": true,
                    "config": {"anything": {"nested": [1, 2]}},
                    "template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inner", "labels": {"a": "b"}, "bogus": 1}, "data": {"k": "v"}}
                }),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let e = raw.get(&format!("{WIDGETS}/embedded")).await.json();
    assert!(e["spec"].get("dropped").is_none(), "{e}");
    assert_eq!(e["spec"]["config"]["anything"]["nested"], json!([1, 2]));
    assert_eq!(e["spec"]["template"]["data"]["k"], "v");
    assert_eq!(e["spec"]["template"]["metadata"]["labels"]["a"], "b");
    assert!(e["spec"]["template"]["metadata"].get("bogus").is_none(), "{e}");
    let r = raw
        .post(
            WIDGETS,
            &widget(
                "nokind",
                json!({"template": {"apiVersion": "v1", "metadata": {"name": "x"}}}),
            ),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(causes(&r.json()), ["spec.template.kind"]);
    assert!(
        message(&r.json()).contains("spec.template.kind: Required value"),
        "{}",
        r.text()
    );

    // CEL: a rule across fields on create, a transition rule on update.
    let r = raw.post(WIDGETS, &widget("many", json!({"replicas": 12}))).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        message(&r.json()).contains("spec: Invalid value: \"object\": more than 10 replicas need size large"),
        "{}",
        r.text()
    );
    let r = raw
        .post(WIDGETS, &widget("many", json!({"replicas": 12, "size": "large"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = raw
        .patch(
            &format!("{WIDGETS}/a"),
            "application/merge-patch+json",
            &json!({"spec": {"capacity": 3}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        message(&r.json()).contains("spec.capacity: Invalid value: \"integer\": capacity may not shrink"),
        "{}",
        r.text()
    );
    let r = raw
        .patch(
            &format!("{WIDGETS}/a"),
            "application/merge-patch+json",
            &json!({"spec": {"capacity": 9}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Printer columns (priority 1 only in wide) and the short name.
    let out = k.ok(&["get", "wg"]);
    let header: Vec<&str> = out.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "REPLICAS", "AGE"], "{out}");
    let wide = k.ok(&["get", "widgets", "-o", "wide"]);
    assert!(wide.lines().next().expect("header").contains("PORT"), "{wide}");
    assert!(
        wide.lines().any(|l| l.starts_with("b ") && l.contains("http")),
        "{wide}"
    );

    // The scale subresource, as autoscaling/v1 Scale; kubectl scale uses it.
    let r = raw
        .patch(
            &format!("{WIDGETS}/a/status"),
            "application/merge-patch+json",
            &json!({"status": {"replicas": 1, "selector": "app=a"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let scale = raw.get(&format!("{WIDGETS}/a/scale")).await;
    assert_eq!(scale.status, 200, "{}", scale.text());
    let scale = scale.json();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["metadata"]["name"], "a");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=a");
    let out = k.ok(&["scale", "widget/a", "--replicas=4"]);
    assert!(out.contains("widget.stories.sluice.dev/a scaled"), "{out}");
    assert_eq!(raw.get(&format!("{WIDGETS}/a")).await.json()["spec"]["replicas"], 4);
    let r = raw
        .patch(
            &format!("{WIDGETS}/a/scale"),
            "application/merge-patch+json",
            &json!({"spec": {"replicas": 7}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["spec"]["replicas"], 7);
    assert_eq!(raw.get(&format!("{WIDGETS}/a")).await.json()["spec"]["replicas"], 7);
    // Scale goes through validation of the main object (CEL: > 10 needs large).
    let r = raw
        .patch(
            &format!("{WIDGETS}/a/scale"),
            "application/merge-patch+json",
            &json!({"spec": {"replicas": 11}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());

    // Two versions with None conversion: the deprecated one warns and shows
    // the same objects under its own apiVersion.
    let alpha = "/apis/stories.sluice.dev/v1alpha1/namespaces/default/widgets";
    let r = raw
        .post(
            alpha,
            &json!({"apiVersion": "stories.sluice.dev/v1alpha1", "kind": "Widget", "metadata": {"name": "old"}, "spec": {}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let warning = r
        .headers
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        warning,
        "299 - \"stories.sluice.dev/v1alpha1 Widget is deprecated; use stories.sluice.dev/v1\""
    );
    assert_eq!(r.json()["apiVersion"], "stories.sluice.dev/v1alpha1");
    let old = raw.get(&format!("{WIDGETS}/old")).await.json();
    assert_eq!(old["apiVersion"], "stories.sluice.dev/v1");
    assert_eq!(old["spec"]["size"], "small");
    let as_alpha = raw.get(&format!("{alpha}/a")).await.json();
    assert_eq!(as_alpha["apiVersion"], "stories.sluice.dev/v1alpha1");
    assert_eq!(as_alpha["spec"]["replicas"], 7);

    // Moving storage to v1alpha1 records both versions in status.storedVersions.
    let crd_path = format!("{CRDS}/widgets.stories.sluice.dev");
    let crd = raw.get(&crd_path).await.json();
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    let mut moved = widget_crd("v1alpha1");
    moved["metadata"]["resourceVersion"] = crd["metadata"]["resourceVersion"].clone();
    let r = raw.put(&crd_path, &moved).await;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(10), "storedVersions [v1, v1alpha1]", || async {
        (raw.get(&crd_path).await.json()["status"]["storedVersions"] == json!(["v1", "v1alpha1"])).then_some(())
    })
    .await;
    let r = raw.post(WIDGETS, &widget("after-move", json!({}))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(raw.get(WIDGETS).await.json()["items"].as_array().map(Vec::len), Some(6));
    // Two storage versions at once are refused.
    let mut both = widget_crd("v1");
    both["spec"]["versions"][0]["storage"] = json!(true);
    both["metadata"]["resourceVersion"] = raw.get(&crd_path).await.json()["metadata"]["resourceVersion"].clone();
    let r = raw.put(&crd_path, &both).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        message(&r.json()).contains("spec.versions: Invalid value: ")
            && message(&r.json()).contains("must have exactly one version marked as storage version"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn finalizers_hold_custom_resources_and_deleting_the_crd_deletes_its_objects() {
    let cp = ControlPlane::start().await;
    let k = Kubectl::new(&cp);
    let raw = cp.raw().await;
    create_widget_crd(&raw).await;

    for name in ["one", "two", "three"] {
        assert_eq!(raw.post(WIDGETS, &widget(name, json!({}))).await.status, 201);
    }
    // In another namespace too.
    raw.post("/api/v1/namespaces", &json!({"metadata": {"name": "team"}}))
        .await;
    let r = raw
        .post(
            "/apis/stories.sluice.dev/v1/namespaces/team/widgets",
            &widget("elsewhere", json!({})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let all = raw.get("/apis/stories.sluice.dev/v1/widgets").await.json();
    assert_eq!(all["kind"], "WidgetList");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(4), "list across namespaces");

    // A finalizer holds a deleted object until it is removed.
    let mut held = widget("held", json!({}));
    held["metadata"]["finalizers"] = json!(["stories.sluice.dev/hold"]);
    assert_eq!(raw.post(WIDGETS, &held).await.status, 201);
    let r = raw.delete(&format!("{WIDGETS}/held")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string(), "{}", r.text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = raw.get(&format!("{WIDGETS}/held")).await;
    assert_eq!(still.status, 200);
    assert!(still.json()["metadata"]["deletionTimestamp"].is_string());
    // Removing the finalizer completes the delete.
    let r = raw
        .patch(
            &format!("{WIDGETS}/held"),
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(5), "held widget gone", || async {
        (raw.get(&format!("{WIDGETS}/held")).await.status == 404).then_some(())
    })
    .await;

    // Deleting the CRD deletes every object of it, then the CRD itself.
    let mut held = widget("held-again", json!({}));
    held["metadata"]["finalizers"] = json!(["stories.sluice.dev/hold"]);
    assert_eq!(raw.post(WIDGETS, &held).await.status, 201);
    let out = k.run(&["delete", "crd", "widgets.stories.sluice.dev", "--wait=false"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // While an object's finalizer holds, the CRD is Terminating (and keeps its cleanup finalizer).
    let crd_path = format!("{CRDS}/widgets.stories.sluice.dev");
    eventually(Duration::from_secs(10), "CRD Terminating", || async {
        let crd = raw.get(&crd_path).await.json();
        (crd["metadata"]["deletionTimestamp"].is_string()
            && condition(&crd, "Terminating")["status"] == "True"
            && crd["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "customresourcecleanup.apiextensions.k8s.io")))
        .then_some(())
    })
    .await;
    // New objects cannot be created while it terminates (405, as Kubernetes answers).
    let r = raw.post(WIDGETS, &widget("late", json!({}))).await;
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.json()["reason"], "MethodNotAllowed", "{}", r.text());
    let r = raw
        .patch(
            &format!("{WIDGETS}/held-again"),
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(30), "CRD deleted", || async {
        (raw.get(&crd_path).await.status == 404).then_some(())
    })
    .await;
    assert_eq!(raw.get(WIDGETS).await.status, 404);
    let groups = raw.get("/apis").await.json();
    assert!(
        !groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["name"] == "stories.sluice.dev"),
        "discovery drops the group: {groups}"
    );
    // (kubectl keeps discovery on disk for hours, as it does against
    // Kubernetes: a fresh cache sees the type gone.)
    let err = Kubectl::new(&cp).fails(&["get", "wg"]);
    assert!(err.contains("the server doesn't have a resource type \"wg\""), "{err}");

    // The objects are gone from storage, not hidden: a new CRD of the same name starts empty.
    create_widget_crd(&raw).await;
    let list = raw.get("/apis/stories.sluice.dev/v1/widgets").await.json();
    assert_eq!(list["items"], json!([]), "{list}");
}
