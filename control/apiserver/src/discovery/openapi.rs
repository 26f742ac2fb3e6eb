//! OpenAPI documents (`/openapi/v2`, `/openapi/v3`) for the served kinds.
//!
//! kubectl reads these to validate manifests (it checks that the server
//! accepts `fieldValidation` on PATCH, then lets the server validate), to
//! build the strategic merge patch of `kubectl apply` (the
//! `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy` extensions
//! say that containers merge by `name`, ports by `containerPort`, ...), and to
//! print `kubectl explain`.
//!
//! The schemas themselves come from k8s-openapi's `schemars` implementations
//! (the Kubernetes API types, field by field, with their descriptions). That
//! output carries neither group-version-kind markers nor patch strategies, so
//! this module adds them from [`PATCH_STRATEGIES`], the table of how list
//! fields merge that strategic merge patching reads too. Paths and operations are generated from
//! [`crate::kinds::RESOURCES`]. Every document is built once and cached.

mod proto_v2;

use crate::discovery::version::GIT_VERSION;
use crate::kinds::merge_keys::PATCH_STRATEGIES;
use crate::kinds::{Catalog, Kind, Resource, Subresource};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Media type kubectl asks for on `/openapi/v2` (gnostic's protobuf encoding).
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The Content-Type of the protobuf answer: the same media type spelled
/// without `@`, which Go's `mime.ParseMediaType` (in kubectl) refuses.
pub const V2_PROTOBUF_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Which OpenAPI flavour a schema set is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// Swagger 2.0: refs to `#/definitions/`, `$ref` siblings allowed.
    V2,
    /// OpenAPI 3.0: refs to `#/components/schemas/`, siblings wrapped in `allOf`.
    V3,
}

impl Flavor {
    fn ref_prefix(self) -> &'static str {
        match self {
            Flavor::V2 => "#/definitions/",
            Flavor::V3 => "#/components/schemas/",
        }
    }
}

/// A group-version-kind as OpenAPI extensions spell it.
fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

fn new_generator(flavor: Flavor) -> SchemaGenerator {
    let path = match flavor {
        Flavor::V2 => "/definitions",
        Flavor::V3 => "/components/schemas",
    };
    SchemaSettings::draft07()
        .with(|s| {
            s.meta_schema = None;
            s.transforms = Vec::new();
            s.definitions_path = path.into();
        })
        .into_generator()
}

/// Schemas for the given kinds (and everything they reference, and the
/// kinds their subresources exchange), with GVK markers, list kinds and
/// patch strategies added.
fn definitions(kinds: &[Kind], flavor: Flavor) -> Map<String, Value> {
    let mut generator = new_generator(flavor);
    let mut named: Vec<(String, (&str, &str, &str))> = Vec::new();
    for k in kinds {
        let r = k.resource();
        if let Some(name) = k.openapi(&mut generator) {
            named.push((name, (r.group, r.version, r.kind)));
        }
        for s in r.subresources {
            let gvk = (s.kind_group, s.kind_version, s.kind);
            if s.kind == r.kind || named.iter().any(|(_, k)| *k == gvk) {
                continue;
            }
            if let Some(name) = s.model.and_then(|m| m.openapi(&mut generator)) {
                named.push((name, gvk));
            }
        }
    }
    let _ = generator.subschema_for::<meta::ListMeta>();
    let _ = generator.subschema_for::<meta::Status>();
    let _ = generator.subschema_for::<meta::DeleteOptions>();
    let _ = generator.subschema_for::<meta::WatchEvent<()>>();
    let mut defs = generator.take_definitions(false);

    let prefix = flavor.ref_prefix();
    for (name, (group, version, kind)) in &named {
        if let Some(schema) = defs.get_mut(name).and_then(Value::as_object_mut) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk(group, version, kind)]),
            );
            // k8s-openapi marks metadata/spec required because its Rust fields are not
            // optional; Kubernetes does not, and manifests routinely omit status or spec.
            if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
                required.retain(|f| !matches!(f.as_str(), Some("metadata" | "spec" | "status")));
                if required.is_empty() {
                    schema.remove("required");
                }
            }
        }
    }
    // `<Kind>List` for every resource, as list responses are typed.
    for r in kinds.iter().map(|k| k.resource()) {
        let Some((name, _)) = named.iter().find(|(_, k)| k.0 == r.group && k.2 == r.kind) else {
            continue;
        };
        let list_name = format!("{name}List");
        defs.insert(
            list_name,
            json!({
                "description": format!("{} is a list of {} objects.", r.list_kind(), r.kind),
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string", "description": "Versioned schema of this representation of an object."},
                    "kind": {"type": "string", "description": "The kind of this list."},
                    "metadata": {"$ref": format!("{prefix}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"), "description": "Standard list metadata."},
                    "items": {"type": "array", "description": format!("The {} objects.", r.kind), "items": {"$ref": format!("{prefix}{name}")}},
                },
                "x-kubernetes-group-version-kind": [gvk(r.group, r.version, &r.list_kind())],
            }),
        );
    }
    if let Some(status) = defs
        .get_mut("io.k8s.apimachinery.pkg.apis.meta.v1.Status")
        .and_then(Value::as_object_mut)
    {
        status.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([gvk("", "v1", "Status")]),
        );
    }
    defs.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({"type": "object", "description": "A patch document; its format is given by the request's Content-Type."}),
    );
    apply_patch_strategies(&mut defs);
    match flavor {
        Flavor::V2 => v2_scalar_types(&mut defs),
        Flavor::V3 => {
            for schema in defs.values_mut() {
                wrap_ref_siblings(schema);
            }
        }
    }
    defs
}

fn apply_patch_strategies(defs: &mut Map<String, Value>) {
    for p in PATCH_STRATEGIES {
        let Some(prop) = defs
            .get_mut(p.definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|props| props.get_mut(p.property))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        prop.insert("x-kubernetes-patch-strategy".into(), json!(p.strategy));
        if let Some(key) = p.merge_key {
            prop.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
        if !p.list_map_keys.is_empty() {
            prop.insert("x-kubernetes-list-type".into(), json!("map"));
            prop.insert("x-kubernetes-list-map-keys".into(), json!(p.list_map_keys));
        } else if p.merge_key.is_none() && prop.get("type") == Some(&json!("array")) {
            prop.insert("x-kubernetes-list-type".into(), json!("set"));
        }
    }
}

/// Swagger 2.0 has no int-or-string marker; Kubernetes spells those as strings
/// with a format, which is what kubectl's v2 models expect.
fn v2_scalar_types(defs: &mut Map<String, Value>) {
    if let Some(d) = defs
        .get_mut("io.k8s.apimachinery.pkg.util.intstr.IntOrString")
        .and_then(Value::as_object_mut)
    {
        d.remove("x-kubernetes-int-or-string");
        d.insert("type".into(), json!("string"));
        d.insert("format".into(), json!("int-or-string"));
    }
    if let Some(d) = defs
        .get_mut("io.k8s.apimachinery.pkg.api.resource.Quantity")
        .and_then(Value::as_object_mut)
    {
        d.remove("x-kubernetes-int-or-string");
        d.insert("type".into(), json!("string"));
    }
}

/// OpenAPI 3.0 ignores siblings of `$ref`: wrap the reference in `allOf` so
/// descriptions and extensions next to it stay meaningful.
fn wrap_ref_siblings(schema: &mut Value) {
    let Value::Object(obj) = schema else { return };
    if obj.len() > 1 && obj.get("$ref").is_some_and(Value::is_string) {
        if let Some(r) = obj.remove("$ref") {
            obj.insert("allOf".into(), json!([{"$ref": r}]));
        }
    }
    // Walk only where schemas are: a `properties` map's keys are field
    // names (JSONSchemaProps has fields called `$ref` and `allOf`).
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(wrap_ref_siblings);
    }
    for key in ["additionalProperties", "not", "items"] {
        match obj.get_mut(key) {
            Some(Value::Array(items)) => items.iter_mut().for_each(wrap_ref_siblings),
            Some(v) => wrap_ref_siblings(v),
            None => {}
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = obj.get_mut(key) {
            items.iter_mut().for_each(wrap_ref_siblings);
        }
    }
}

// ---------------------------------------------------------------------------
// Paths and operations (OpenAPI v3)
// ---------------------------------------------------------------------------

fn query_param(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn write_params() -> Vec<Value> {
    vec![
        query_param(
            "dryRun",
            "string",
            "When present (`All`), the modification is validated but not persisted.",
        ),
        query_param(
            "fieldManager",
            "string",
            "Name of the actor making the change, recorded in managedFields.",
        ),
        query_param(
            "fieldValidation",
            "string",
            "How to treat unknown or duplicate fields: Ignore, Warn or Strict.",
        ),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query_param(
            "labelSelector",
            "string",
            "Only objects whose labels match this selector.",
        ),
        query_param(
            "fieldSelector",
            "string",
            "Only objects whose fields match this selector.",
        ),
        query_param("limit", "integer", "Maximum number of objects in one response."),
        query_param("continue", "string", "Token from a previous page of the same list."),
        query_param(
            "resourceVersion",
            "string",
            "Serve the list (or start the watch) at this version.",
        ),
        query_param("timeoutSeconds", "integer", "Timeout of the list or watch call."),
        query_param("watch", "boolean", "Stream changes instead of returning a list."),
        query_param("allowWatchBookmarks", "boolean", "Ask for BOOKMARK events on a watch."),
    ]
}

fn json_content(schema_ref: &str) -> Value {
    let schema = json!({"$ref": schema_ref});
    json!({
        "application/json": {"schema": schema},
        "application/yaml": {"schema": schema},
    })
}

fn ok_response(schema_ref: &str) -> Value {
    json!({"200": {"description": "OK", "content": json_content(schema_ref)}})
}

fn operation(
    id: String,
    action: &str,
    gvk_value: &Value,
    mut params: Vec<Value>,
    body: Option<Value>,
    response_ref: &str,
    tag: &str,
) -> Value {
    let mut op = json!({
        "operationId": id,
        "tags": [tag],
        "responses": ok_response(response_ref),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk_value,
    });
    if action == "watchlist" || action == "list" {
        params.extend(list_params());
    }
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(body) = body {
        op["requestBody"] = json!({"required": true, "content": body});
    }
    op
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": format!("{name} of the object"), "schema": {"type": "string", "uniqueItems": true}})
}

/// The patch media types a kind accepts; kubectl's client-side apply sends
/// a strategic merge patch only where OpenAPI lists it (not for custom
/// resources).
fn patch_body(strategic: bool) -> Value {
    let schema = json!({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"});
    let mut body = json!({
        "application/apply-patch+yaml": {"schema": schema},
        "application/json-patch+json": {"schema": schema},
        "application/merge-patch+json": {"schema": schema},
    });
    if strategic {
        body["application/strategic-merge-patch+json"] = json!({"schema": schema});
    }
    body
}

fn tag_of(r: &Resource) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    format!("{group}_{}", r.version)
}

/// Paths and operations of one resource, each operation marked with the GVK
/// it exchanges and the query parameters it accepts.
fn resource_paths(k: &Kind, def_name: &str, paths: &mut BTreeMap<String, Value>) {
    let r = k.resource();
    let strategic = k.strategic_merge();
    let prefix = Flavor::V3.ref_prefix();
    let obj_ref = format!("{prefix}{def_name}");
    let list_ref = format!("{prefix}{def_name}List");
    let status_ref = format!("{prefix}io.k8s.apimachinery.pkg.apis.meta.v1.Status");
    let the_gvk = gvk(r.group, r.version, r.kind);
    let tag = tag_of(r);
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let collection = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let item = format!("{collection}/{{name}}");
    let ns_params: Vec<Value> = if r.namespaced {
        vec![path_param("namespace")]
    } else {
        vec![]
    };
    let with_name = {
        let mut p = vec![path_param("name")];
        p.extend(ns_params.clone());
        p
    };

    if r.namespaced {
        paths.insert(
            format!("{base}/{}", r.plural),
            json!({"get": operation(format!("list{}ForAllNamespaces", r.kind), "list", &the_gvk, vec![], None, &list_ref, &tag)}),
        );
    }
    let mut coll = json!({
        "get": operation(format!("list{scope}{}", r.kind), "list", &the_gvk, vec![], None, &list_ref, &tag),
        "post": operation(format!("create{scope}{}", r.kind), "post", &the_gvk, write_params(), Some(json_content(&obj_ref)), &obj_ref, &tag),
        "delete": operation(format!("deletecollection{scope}{}", r.kind), "deletecollection", &the_gvk, list_params(), None, &status_ref, &tag),
    });
    if !ns_params.is_empty() {
        coll["parameters"] = Value::Array(ns_params.clone());
    }
    paths.insert(collection, coll);

    let mut patch_params = write_params();
    patch_params.push(query_param(
        "force",
        "boolean",
        "Force an apply patch through conflicts.",
    ));
    paths.insert(
        item.clone(),
        json!({
            "parameters": with_name,
            "get": operation(format!("read{scope}{}", r.kind), "get", &the_gvk, vec![], None, &obj_ref, &tag),
            "put": operation(format!("replace{scope}{}", r.kind), "put", &the_gvk, write_params(), Some(json_content(&obj_ref)), &obj_ref, &tag),
            "patch": operation(format!("patch{scope}{}", r.kind), "patch", &the_gvk, patch_params.clone(), Some(patch_body(strategic)), &obj_ref, &tag),
            "delete": operation(format!("delete{scope}{}", r.kind), "delete", &the_gvk, vec![
                query_param("gracePeriodSeconds", "integer", "Seconds before the object is deleted."),
                query_param("propagationPolicy", "string", "Whether and how dependents are garbage collected."),
                query_param("dryRun", "string", "When present (`All`), the deletion is validated but not persisted."),
            ], None, &status_ref, &tag),
        }),
    );

    for s in r.subresources {
        subresource_paths(r, s, &item, &with_name, scope, &obj_ref, &tag, strategic, paths);
    }
}

#[allow(clippy::too_many_arguments)]
fn subresource_paths(
    r: &Resource,
    s: &Subresource,
    item: &str,
    with_name: &[Value],
    scope: &str,
    obj_ref: &str,
    tag: &str,
    strategic: bool,
    paths: &mut BTreeMap<String, Value>,
) {
    let prefix = Flavor::V3.ref_prefix();
    let sub_gvk = gvk(s.kind_group, s.kind_version, s.kind);
    let sub_ref = if s.kind == r.kind {
        obj_ref.to_string()
    } else {
        let pkg = if s.kind_group.is_empty() { "core" } else { s.kind_group };
        format!("{prefix}io.k8s.api.{pkg}.{}.{}", s.kind_version, s.kind)
    };
    let cap = |x: &str| {
        let mut c = x.chars();
        c.next()
            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
            .unwrap_or_default()
    };
    let suffix = cap(s.name);
    let mut ops = Map::new();
    ops.insert("parameters".into(), Value::Array(with_name.to_vec()));
    for verb in s.verbs {
        let (method, action, body, id) = match *verb {
            "get" => ("get", "get", None, format!("read{scope}{}{suffix}", r.kind)),
            "update" => (
                "put",
                "put",
                Some(json_content(&sub_ref)),
                format!("replace{scope}{}{suffix}", r.kind),
            ),
            "patch" => (
                "patch",
                "patch",
                Some(patch_body(strategic)),
                format!("patch{scope}{}{suffix}", r.kind),
            ),
            "create" => (
                "post",
                "post",
                Some(json_content(&sub_ref)),
                format!("create{scope}{}{suffix}", r.kind),
            ),
            _ => continue,
        };
        let params = if method == "get" { vec![] } else { write_params() };
        ops.insert(
            method.into(),
            operation(id, action, &sub_gvk, params, body, &sub_ref, tag),
        );
    }
    paths.insert(format!("{item}/{}", s.name), Value::Object(ops));
}

/// The OpenAPI v3 document of one group-version (`""` group for core), if served.
pub fn v3_document(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<Kind> = catalog
        .kinds()
        .into_iter()
        .filter(|k| k.resource().group == group && k.resource().version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let schemas = definitions(&kinds, Flavor::V3);
    let mut paths = BTreeMap::new();
    for k in &kinds {
        let r = k.resource();
        let def = schemas.iter().find_map(|(name, s)| {
            let g = s.get("x-kubernetes-group-version-kind")?.get(0)?;
            (g["group"] == r.group && g["kind"] == r.kind && g["version"] == r.version).then(|| name.clone())
        })?;
        resource_paths(k, &def, &mut paths);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The Swagger 2.0 document: every served kind's schema (kubectl uses it for
/// client-side validation models and as a fallback for patch strategies).
pub fn v2_document(catalog: &Catalog) -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": {},
        "definitions": definitions(&catalog.kinds(), Flavor::V2),
    })
}

/// A rendered document and the hash clients use to cache it.
struct Rendered {
    json: Vec<u8>,
    hash: String,
}

fn render(doc: &Value) -> Rendered {
    let json = serde_json::to_vec(doc).unwrap_or_default();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut hasher);
    Rendered {
        json,
        hash: format!("{:016X}", hasher.finish()),
    }
}

/// The group-versions served, as v3 index keys (`api/v1`, `apis/apps/v1`).
fn v3_keys(catalog: &Catalog) -> Vec<(String, &'static str, &'static str)> {
    let mut keys: Vec<(String, &'static str, &'static str)> = Vec::new();
    for r in catalog.kinds().iter().map(|k| k.resource()) {
        let key = if r.group.is_empty() {
            format!("api/{}", r.version)
        } else {
            format!("apis/{}/{}", r.group, r.version)
        };
        if !keys.iter().any(|k| k.0 == key) {
            keys.push((key, r.group, r.version));
        }
    }
    keys
}

/// Every document, rendered for one generation of the catalog.
struct Documents {
    generation: u64,
    /// Index keys in order, with their documents.
    v3: Vec<(String, Rendered)>,
    v2: Rendered,
    v2_proto: Vec<u8>,
}

/// The OpenAPI documents of what the catalog serves, rebuilt when it
/// changes (a CRD established, updated or deleted).
pub struct OpenApi {
    catalog: Arc<Catalog>,
    docs: Mutex<Option<Arc<Documents>>>,
}

impl OpenApi {
    /// Documents for `catalog`, built on first use.
    pub fn new(catalog: Arc<Catalog>) -> Arc<Self> {
        Arc::new(Self {
            catalog,
            docs: Mutex::new(None),
        })
    }

    fn documents(&self) -> Arc<Documents> {
        let generation = self.catalog.generation();
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = docs.as_ref().filter(|d| d.generation == generation) {
            return d.clone();
        }
        let v3 = v3_keys(&self.catalog)
            .into_iter()
            .filter_map(|(key, g, v)| v3_document(&self.catalog, g, v).map(|d| (key, render(&d))))
            .collect();
        let v2_doc = v2_document(&self.catalog);
        let built = Arc::new(Documents {
            generation,
            v3,
            v2_proto: proto_v2::encode_document(&v2_doc),
            v2: render(&v2_doc),
        });
        *docs = Some(built.clone());
        built
    }

    /// `GET /openapi/v3`: where each group-version's document is, with a content hash.
    pub fn v3_index(&self) -> Value {
        let docs = self.documents();
        let mut paths = BTreeMap::new();
        for (key, r) in &docs.v3 {
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", r.hash)}),
            );
        }
        json!({"paths": paths})
    }
}

/// Routes serving the OpenAPI documents.
pub fn routes(openapi: Arc<OpenApi>) -> Router {
    Router::new()
        .route("/openapi/v2", get(serve_v2))
        .route("/openapi/v3", get(serve_v3_index))
        .route("/openapi/v3/", get(serve_v3_index))
        .route("/openapi/v3/api/{version}", get(serve_v3_core))
        .route("/openapi/v3/apis/{group}/{version}", get(serve_v3_group))
        .with_state(openapi)
}

fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|r| r.split(';').next().map(str::trim) == Some(media)))
}

fn accepts_json(headers: &HeaderMap) -> bool {
    match headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(a) => a.split(',').any(|r| {
            matches!(
                r.split(';').next().map(str::trim),
                Some("application/json" | "*/*" | "application/*" | "")
            )
        }),
    }
}

async fn serve_v2(State(o): State<Arc<OpenApi>>, headers: HeaderMap) -> Response {
    let docs = o.documents();
    let (json_doc, proto) = (&docs.v2, &docs.v2_proto);
    // kubectl asks for protobuf only and decodes the body as protobuf whatever the
    // Content-Type says, so protobuf wins whenever it is acceptable.
    if accepts(&headers, V2_PROTOBUF) || !accepts_json(&headers) {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, V2_PROTOBUF_CONTENT_TYPE)],
            proto.clone(),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json_doc.json.clone(),
    )
        .into_response()
}

async fn serve_v3_index(State(o): State<Arc<OpenApi>>) -> Response {
    let body = serde_json::to_vec(&o.v3_index()).unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn serve_v3_key(o: &OpenApi, key: &str, query: &HashMap<String, String>) -> Response {
    let docs = o.documents();
    match docs.v3.iter().find(|(k, _)| k == key).map(|(_, r)| r) {
        Some(r) => {
            let cache_control = if query.get("hash") == Some(&r.hash) {
                "public, immutable"
            } else {
                "no-cache, private"
            };
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, cache_control),
                    (header::ETAG, &format!("\"{}\"", r.hash)),
                ],
                r.json.clone(),
            )
                .into_response()
        }
        None => {
            let body = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("no OpenAPI document for {key}"), "reason": "NotFound", "code": 404,
            });
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

async fn serve_v3_core(
    State(o): State<Arc<OpenApi>>,
    Path(version): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    serve_v3_key(&o, &format!("api/{version}"), &q)
}

async fn serve_v3_group(
    State(o): State<Arc<OpenApi>>,
    Path((group, version)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    serve_v3_key(&o, &format!("apis/{group}/{version}"), &q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        &doc["components"]["schemas"][name]
    }

    #[test]
    fn every_served_kind_has_a_schema_with_its_gvk() {
        for r in crate::kinds::builtin_resources() {
            let doc = v3_document(&Catalog::new(), r.group, r.version).expect("document");
            let schemas = doc["components"]["schemas"].as_object().expect("schemas");
            let found = schemas.values().any(|s| {
                s["x-kubernetes-group-version-kind"]
                    .get(0)
                    .is_some_and(|g| g["kind"] == r.kind && g["group"] == r.group && g["version"] == r.version)
            });
            assert!(found, "no schema for {}", r.kind);
            assert!(schemas.contains_key(&format!(
                "{}List",
                schemas
                    .iter()
                    .find(|(_, s)| s["x-kubernetes-group-version-kind"][0]["kind"] == r.kind)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default()
            )));
        }
    }

    #[test]
    fn apps_document_carries_patch_strategies_kubectl_apply_needs() {
        let doc = v3_document(&Catalog::new(), "apps", "v1").expect("apps/v1");
        let containers = &schema(&doc, "io.k8s.api.core.v1.PodSpec")["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        let volumes = &schema(&doc, "io.k8s.api.core.v1.PodSpec")["properties"]["volumes"];
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let env = &schema(&doc, "io.k8s.api.core.v1.Container")["properties"]["env"];
        assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
        let ports = &schema(&doc, "io.k8s.api.core.v1.Container")["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        let mounts = &schema(&doc, "io.k8s.api.core.v1.Container")["properties"]["volumeMounts"];
        assert_eq!(mounts["x-kubernetes-patch-merge-key"], "mountPath");
        let conds = &schema(&doc, "io.k8s.api.apps.v1.DeploymentStatus")["properties"]["conditions"];
        assert_eq!(conds["x-kubernetes-patch-merge-key"], "type");
        // Scale is exchanged on deployments/scale.
        assert_eq!(
            schema(&doc, "io.k8s.api.autoscaling.v1.Scale")["x-kubernetes-group-version-kind"][0]["group"],
            "autoscaling"
        );
        // The strategy table names only properties that exist (no typo silently ignored).
        let core = v3_document(&Catalog::new(), "", "v1").expect("v1");
        for p in PATCH_STRATEGIES {
            let found = [&doc, &core]
                .iter()
                .any(|d| schema(d, p.definition)["properties"].get(p.property).is_some());
            assert!(found, "{}.{} not in any schema", p.definition, p.property);
        }
    }

    #[test]
    fn service_ports_merge_by_port() {
        let doc = v3_document(&Catalog::new(), "", "v1").expect("v1");
        let ports = &schema(&doc, "io.k8s.api.core.v1.ServiceSpec")["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "port");
        assert_eq!(ports["x-kubernetes-patch-strategy"], "merge");
    }

    #[test]
    fn patch_operations_accept_field_validation_and_dry_run() {
        let doc = v3_document(&Catalog::new(), "apps", "v1").expect("apps/v1");
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        let patch = &item["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .expect("params")
            .iter()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"fieldValidation") && names.contains(&"dryRun"));
        assert!(patch["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_some());
        let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(scale["patch"]["x-kubernetes-group-version-kind"]["kind"], "Scale");
        assert!(doc["paths"].get("/apis/apps/v1/deployments").is_some());
        let core = v3_document(&Catalog::new(), "", "v1").expect("v1");
        assert!(core["paths"].get("/api/v1/nodes/{name}/status").is_some());
        assert!(core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/binding"]
            .get("post")
            .is_some());
    }

    #[test]
    fn v3_refs_resolve_and_siblings_are_wrapped() {
        let doc = v3_document(&Catalog::new(), "apps", "v1").expect("apps/v1");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        fn walk(v: &Value, schemas: &Map<String, Value>) {
            match v {
                Value::Object(o) => {
                    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                        assert_eq!(o.len(), 1, "sibling next to $ref {r}");
                        let name = r.strip_prefix("#/components/schemas/").expect("v3 ref");
                        assert!(schemas.contains_key(name), "dangling ref {r}");
                    }
                    o.values().for_each(|x| walk(x, schemas));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, schemas)),
                _ => {}
            }
        }
        walk(&doc, schemas);
        let deploy = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert!(deploy.get("required").is_none(), "metadata/spec must not be required");
    }

    #[test]
    fn v3_index_lists_every_group_version_with_hash() {
        let index = OpenApi::new(Arc::new(Catalog::new())).v3_index();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .expect("url");
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        assert!(index["paths"].get("api/v1").is_some());
        assert!(index["paths"].get("apis/coordination.k8s.io/v1").is_some());
    }

    #[test]
    fn v2_uses_definitions_refs_and_string_int_or_string() {
        let doc = v2_document(&Catalog::new());
        let defs = doc["definitions"].as_object().expect("definitions");
        assert_eq!(
            defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
            "int-or-string"
        );
        let spec = &defs["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
        assert_eq!(spec["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentSpec");
        assert_eq!(
            defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
    }
}
