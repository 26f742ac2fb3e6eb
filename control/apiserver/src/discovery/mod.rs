//! API discovery: the documents clients read to learn what the server serves.
//!
//! kubectl and client-go find resources, their verbs, scope, short names and
//! subresources here before doing anything else. Everything is derived from
//! [`crate::kinds::Catalog`], so a kind added there (built-in or custom) shows up in
//! discovery, `kubectl api-resources` and short-name resolution at once.
//!
//! Two forms are served on `/api` and `/apis`:
//! - the classic documents (`APIVersions`, `APIGroupList`, and per group-version
//!   `APIResourceList` under `/api/v1` and `/apis/<group>/<version>`);
//! - aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`),
//!   which kubectl 1.32 asks for first through the `Accept` header and which
//!   saves it one request per group-version.

pub mod openapi;
pub mod version;

use std::sync::Arc;

use crate::kinds::{Catalog, Kind};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

pub use version::{GIT_VERSION, KUBE_VERSION_MAJOR, KUBE_VERSION_MINOR};

/// Media type of aggregated discovery, as clients put it in `Accept` and we
/// echo in `Content-Type`.
pub const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Routes for `/version`, discovery and OpenAPI, answering from `catalog`
/// on every request (custom resources come and go); merged into the API
/// server's router.
pub fn routes(catalog: Arc<Catalog>) -> Router {
    let openapi = openapi::routes(openapi::OpenApi::new(catalog.clone()));
    Router::new()
        .route("/version", get(version))
        .route("/version/", get(version))
        .route("/api", get(core_versions))
        .route("/api/", get(core_versions))
        .route("/api/v1", get(core_v1))
        .route("/api/v1/", get(core_v1))
        .route("/apis", get(group_list))
        .route("/apis/", get(group_list))
        .route("/apis/{group}", get(group))
        .route("/apis/{group}/", get(group))
        .route("/apis/{group}/{version}", get(group_version))
        .route("/apis/{group}/{version}/", get(group_version))
        .with_state(catalog)
        .merge(openapi)
}

/// The `/version` document.
pub fn version_info() -> Value {
    json!({
        "major": KUBE_VERSION_MAJOR,
        "minor": KUBE_VERSION_MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": option_env!("SLUICE_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Whether an `Accept` header asks for aggregated discovery (`apidiscovery.k8s.io/v2`).
///
/// Clients list media ranges in preference order; we serve the aggregated
/// form only when a JSON range naming it comes before any plain one (we do not
/// speak protobuf, so protobuf ranges are skipped).
pub fn wants_aggregated(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if media != "application/json" && media != "*/*" && media != "application/*" {
            continue;
        }
        let (mut g, mut v, mut r#as) = (None, None, None);
        for p in parts {
            if let Some((k, val)) = p.split_once('=') {
                match k.trim() {
                    "g" => g = Some(val.trim()),
                    "v" => v = Some(val.trim()),
                    "as" => r#as = Some(val.trim()),
                    _ => {}
                }
            }
        }
        if g == Some("apidiscovery.k8s.io") && v == Some("v2") && r#as == Some("APIGroupDiscoveryList") {
            return true;
        }
        if g.is_none() && r#as.is_none() {
            // A plain JSON range preferred before any aggregated one.
            return false;
        }
    }
    false
}

fn json_response(content_type: &'static str, body: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn not_found(path: &str) -> Response {
    let body = crate::status::ApiError::path_not_found(path).to_status();
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

async fn version() -> Response {
    json_response("application/json", &version_info())
}

async fn core_versions(State(c): State<Arc<Catalog>>, headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        json_response(AGGREGATED_V2, &aggregated(&c, true))
    } else {
        json_response("application/json", &api_versions(&c))
    }
}

async fn core_v1(State(c): State<Arc<Catalog>>) -> Response {
    json_response("application/json", &resource_list(&c, "", "v1"))
}

async fn group_list(State(c): State<Arc<Catalog>>, headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        json_response(AGGREGATED_V2, &aggregated(&c, false))
    } else {
        json_response("application/json", &api_group_list(&c))
    }
}

async fn group(State(c): State<Arc<Catalog>>, axum::extract::Path(group): axum::extract::Path<String>) -> Response {
    match api_group(&c, &group) {
        Some(doc) => json_response("application/json", &doc),
        None => not_found(&format!("/apis/{group}")),
    }
}

async fn group_version(
    State(c): State<Arc<Catalog>>,
    axum::extract::Path((group, version)): axum::extract::Path<(String, String)>,
) -> Response {
    if c.versions_of(&group).contains(&version.as_str()) {
        json_response("application/json", &resource_list(&c, &group, &version))
    } else {
        not_found(&format!("/apis/{group}/{version}"))
    }
}

/// `GET /api`: the legacy core group's versions.
pub fn api_versions(c: &Catalog) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": c.versions_of(""),
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    })
}

/// `GET /apis/<group>`: one named group.
pub fn api_group(c: &Catalog, group: &str) -> Option<Value> {
    let versions = c.versions_of(group);
    if versions.is_empty() {
        return remote_group(c, group);
    }
    if group.is_empty() {
        return None;
    }
    group_document(group, &versions)
}

/// The `APIGroup` document of `group` serving `versions`, the first preferred.
fn group_document<V: AsRef<str>>(group: &str, versions: &[V]) -> Option<Value> {
    let preferred = versions.first()?.as_ref();
    Some(json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{}", v.as_ref()), "version": v.as_ref()}))
            .collect::<Vec<_>>(),
        "preferredVersion": {"groupVersion": format!("{group}/{preferred}"), "version": preferred},
    }))
}

/// A group only other servers serve (remote APIServices), from what they
/// registered: versions by priority, the first preferred.
fn remote_group(c: &Catalog, group: &str) -> Option<Value> {
    let versions: Vec<String> = c
        .remote()
        .into_iter()
        .filter(|r| r.group == group)
        .map(|r| r.version)
        .collect();
    group_document(group, &versions)
}

/// The groups only other servers serve, in discovery order.
fn remote_groups(c: &Catalog) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for r in c.remote() {
        if !groups.contains(&r.group) {
            groups.push(r.group);
        }
    }
    groups
}

/// `GET /apis`: every named group.
pub fn api_group_list(c: &Catalog) -> Value {
    let mut groups = Vec::new();
    let remote = remote_groups(c);
    for g in c.groups().into_iter().chain(remote.iter().map(String::as_str)) {
        if let Some(mut doc) = api_group(c, g) {
            if let Some(obj) = doc.as_object_mut() {
                obj.remove("kind");
                obj.remove("apiVersion");
            }
            groups.push(doc);
        }
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /api/v1` or `/apis/<group>/<version>`: the resources of one group-version,
/// subresources listed as `<plural>/<subresource>`.
pub fn resource_list(c: &Catalog, group: &str, version: &str) -> Value {
    let mut list = Vec::new();
    let kinds = c.kinds();
    for k in kinds
        .iter()
        .filter(|k| k.resource().group == group && k.resource().version == version)
    {
        let r = k.resource();
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": k.verbs(),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.kind_group != r.group || s.kind_version != r.version {
                sub["group"] = json!(s.kind_group);
                sub["version"] = json!(s.kind_version);
            }
            list.push(sub);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    })
}

fn aggregated_resource(k: &Kind) -> Value {
    let r = k.resource();
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": k.verbs(),
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        entry["subresources"] = r
            .subresources
            .iter()
            .map(|s| {
                json!({
                    "subresource": s.name,
                    "responseKind": {"group": s.kind_group, "version": s.kind_version, "kind": s.kind},
                    "verbs": s.verbs,
                })
            })
            .collect();
    }
    entry
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`): the core group when `core`,
/// otherwise every named group, each with all its versions and resources.
pub fn aggregated(c: &Catalog, core: bool) -> Value {
    let groups: Vec<&str> = if core { vec![""] } else { c.groups() };
    let kinds = c.kinds();
    let mut items: Vec<Value> = groups
        .iter()
        .map(|g| {
            let versions: Vec<Value> = c
                .versions_of(g)
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = kinds
                        .iter()
                        .filter(|k| k.resource().group == *g && k.resource().version == *v)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let metadata = if g.is_empty() { json!({}) } else { json!({"name": g}) };
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    if !core {
        items.extend(aggregated_remote(c));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// Aggregated discovery of the groups other servers serve, from the
/// `APIResourceList`s they answered (resources `<plural>/<sub>` become
/// subresources).
fn aggregated_remote(c: &Catalog) -> Vec<Value> {
    let remote = c.remote();
    remote_groups(c)
        .iter()
        .map(|g| {
            let versions: Vec<Value> = remote
                .iter()
                .filter(|r| &r.group == g)
                .map(|r| {
                    let mut resources: Vec<Value> = Vec::new();
                    for res in &r.resources {
                        let name = res.get("name").and_then(Value::as_str).unwrap_or_default();
                        let scope = if res.get("namespaced").and_then(Value::as_bool).unwrap_or(false) {
                            "Namespaced"
                        } else {
                            "Cluster"
                        };
                        let kind = |e: &Value| {
                            json!({
                                "group": e.get("group").and_then(Value::as_str).unwrap_or(&r.group),
                                "version": e.get("version").and_then(Value::as_str).unwrap_or(&r.version),
                                "kind": e.get("kind").cloned().unwrap_or(json!("")),
                            })
                        };
                        if let Some((parent, sub)) = name.split_once('/') {
                            if let Some(p) = resources.iter_mut().find(|p| p["resource"] == parent) {
                                let entry = json!({"subresource": sub, "responseKind": kind(res), "verbs": res.get("verbs").cloned().unwrap_or(json!([]))});
                                match p.get_mut("subresources").and_then(Value::as_array_mut) {
                                    Some(subs) => subs.push(entry),
                                    None => p["subresources"] = json!([entry]),
                                }
                            }
                            continue;
                        }
                        let mut entry = json!({
                            "resource": name,
                            "responseKind": kind(res),
                            "scope": scope,
                            "singularResource": res.get("singularName").cloned().unwrap_or(json!("")),
                            "verbs": res.get("verbs").cloned().unwrap_or(json!([])),
                        });
                        for key in ["shortNames", "categories"] {
                            if let Some(v) = res.get(key).filter(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
                                entry[key] = v.clone();
                            }
                        }
                        resources.push(entry);
                    }
                    json!({"version": r.version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn kubectl_accept_header_selects_aggregated_discovery() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(&accept(kubectl)));
        let with_protobuf = "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(&accept(with_protobuf)));
        assert!(!wants_aggregated(&accept("application/json, */*")));
        assert!(!wants_aggregated(&accept(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        )));
        assert!(!wants_aggregated(&HeaderMap::new()));
    }

    #[test]
    fn core_resource_list_has_short_names_and_subresources() {
        let doc = resource_list(&Catalog::new(), "", "v1");
        assert_eq!(doc["groupVersion"], "v1");
        let res = doc["resources"].as_array().expect("resources");
        let pods = res.iter().find(|r| r["name"] == "pods").expect("pods");
        assert_eq!(pods["kind"], "Pod");
        assert_eq!(pods["namespaced"], true);
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(pods["verbs"].as_array().expect("verbs").contains(&json!("watch")));
        assert!(res.iter().any(|r| r["name"] == "pods/status"));
        let binding = res.iter().find(|r| r["name"] == "pods/binding").expect("binding");
        assert_eq!(binding["verbs"], json!(["create"]));
        let ns = res.iter().find(|r| r["name"] == "namespaces").expect("namespaces");
        assert_eq!(ns["namespaced"], false);
    }

    #[test]
    fn apps_scale_subresource_names_autoscaling_kind() {
        let doc = resource_list(&Catalog::new(), "apps", "v1");
        let res = doc["resources"].as_array().expect("resources");
        let scale = res
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .expect("deployments/scale");
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["version"], "v1");
    }

    #[test]
    fn group_list_and_groups() {
        let doc = api_group_list(&Catalog::new());
        let names: Vec<&str> = doc["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .filter_map(|g| g["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "apps",
                "authentication.k8s.io",
                "authorization.k8s.io",
                "autoscaling",
                "batch",
                "policy",
                "rbac.authorization.k8s.io",
                "discovery.k8s.io",
                "coordination.k8s.io",
                "scheduling.k8s.io",
                "events.k8s.io",
                "apiextensions.k8s.io",
                "admissionregistration.k8s.io",
                "apiregistration.k8s.io",
                "storage.k8s.io",
                "certificates.k8s.io"
            ]
        );
        assert_eq!(
            api_group(&Catalog::new(), "apps").expect("apps")["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
        assert!(api_group(&Catalog::new(), "nope").is_none());
        assert!(api_group(&Catalog::new(), "").is_none());
    }

    #[test]
    fn aggregated_documents_cover_every_resource() {
        let core = aggregated(&Catalog::new(), true);
        assert_eq!(core["kind"], "APIGroupDiscoveryList");
        let core_resources = core["items"][0]["versions"][0]["resources"].as_array().expect("core");
        let deploys = aggregated(&Catalog::new(), false);
        let total = core_resources.len()
            + deploys["items"]
                .as_array()
                .expect("items")
                .iter()
                .flat_map(|g| g["versions"].as_array().cloned().unwrap_or_default())
                .map(|v| v["resources"].as_array().map_or(0, Vec::len))
                .sum::<usize>();
        assert_eq!(total, crate::kinds::BUILTIN.len());
        let apps = &deploys["items"][0];
        assert_eq!(apps["metadata"]["name"], "apps");
        let d = apps["versions"][0]["resources"]
            .as_array()
            .expect("apps resources")
            .iter()
            .find(|r| r["resource"] == "deployments")
            .expect("deployments");
        assert_eq!(d["scope"], "Namespaced");
        assert_eq!(d["shortNames"], json!(["deploy"]));
        assert_eq!(d["subresources"][1]["responseKind"]["kind"], "Scale");
    }

    #[test]
    fn version_reports_kubectl_compatible_minor() {
        let v = version_info();
        assert_eq!(v["minor"], "32");
        assert!(v["gitVersion"].as_str().expect("gitVersion").starts_with("v1.32."));
    }
}
