//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! Kubernetes strategic merge patch.
//!
//! Strategic merge is type-aware, as Kubernetes' is: the patch is walked
//! along the kind's schema (the k8s-openapi definitions OpenAPI publishes,
//! built once), and each list merges as [`crate::kinds::merge_keys`] says
//! for its (definition, property): objects by their merge key (containers
//! by name, container ports by containerPort, service ports by port,
//! conditions by type, ...), primitives as a set (`finalizers`,
//! `podCIDRs`); every other list is atomic and replaced. It honours the
//! directives `kubectl apply` sends: `$patch: delete|replace`,
//! `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>` and
//! `$retainKeys`.

use std::sync::OnceLock;

use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value};

use crate::kinds::merge_keys;

/// How a list field merges in a strategic merge patch.
#[derive(Debug, PartialEq)]
enum ListStrategy {
    /// Objects merged by this key.
    MergeKey(&'static str),
    /// Primitive values unioned.
    Set,
    /// The patch replaces the list.
    Replace,
}

/// The schemas of the built-in kinds (and of the kinds their subresources
/// exchange), by definition name, and the root definition of each kind.
struct Schemas {
    definitions: Map<String, Value>,
    /// (group, kind, root definition name).
    roots: Vec<(&'static str, &'static str, String)>,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut generator: SchemaGenerator = SchemaSettings::draft07()
            .with(|s| {
                s.meta_schema = None;
                s.transforms = Vec::new();
                s.definitions_path = "/definitions".into();
            })
            .into_generator();
        let mut roots = Vec::new();
        for k in crate::kinds::BUILTIN {
            let r = k.resource();
            if let Some(name) = k.openapi(&mut generator) {
                roots.push((r.group, r.kind, name));
            }
            for s in r.subresources {
                if let Some(name) = s.model.and_then(|m| m.openapi(&mut generator)) {
                    roots.push((s.kind_group, s.kind, name));
                }
            }
        }
        Schemas {
            definitions: generator.take_definitions(false),
            roots,
        }
    })
}

/// Where the walk is in the kind's schema: the definition's name and its
/// schema. `None`: no schema (every list below is atomic).
type Ty<'a> = Option<(&'a str, &'a Value)>;

/// The definition a schema refers to (`$ref`, possibly inside `allOf`/
/// `anyOf`/`oneOf` as schemars writes optional and described fields).
fn resolve(s: &'static Schemas, schema: &'static Value) -> Ty<'static> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next()?;
        return s.definitions.get_key_value(name).map(|(k, v)| (k.as_str(), v));
    }
    ["allOf", "anyOf", "oneOf"]
        .iter()
        .filter_map(|k| schema.get(*k).and_then(Value::as_array))
        .flatten()
        .find_map(|sub| resolve(s, sub))
}

/// The schema of field `key` of an object of type `ty`: a property of a
/// struct, or the value type of a map.
fn field_schema(ty: Ty<'static>, key: &str) -> Option<&'static Value> {
    let (_, def) = ty?;
    def.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| def.get("additionalProperties").filter(|v| v.is_object()))
}

/// The root type of `obj`'s kind, from its `apiVersion` and `kind`.
fn root_type(obj: &Value) -> Ty<'static> {
    let kind = obj.get("kind").and_then(Value::as_str)?;
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let s = schemas();
    let (_, _, name) = s.roots.iter().find(|(g, k, _)| *g == group && *k == kind)?;
    s.definitions.get_key_value(name).map(|(k, v)| (k.as_str(), v))
}

fn list_strategy(ty: Ty<'static>, field: &str) -> ListStrategy {
    let Some(p) = ty.and_then(|(name, _)| merge_keys::lookup(name, field)) else {
        return ListStrategy::Replace;
    };
    if !p.strategy.split(',').any(|s| s == "merge") {
        return ListStrategy::Replace;
    }
    match p.merge_key {
        Some(key) => ListStrategy::MergeKey(key),
        None => ListStrategy::Set,
    }
}

/// Apply a JSON merge patch.
pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// Apply a JSON patch (list of operations).
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| e.to_string())?;
    Ok(doc)
}

/// Apply a strategic merge patch, merging lists as the schema of the kind
/// of `original` (or else of `patch`), named by `apiVersion`/`kind`, says.
/// Objects of kinds without a built-in schema have only atomic lists.
pub fn strategic_merge(original: &Value, patch: &Value) -> Result<Value, String> {
    let ty = root_type(original).or_else(|| root_type(patch));
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) => {
            let mut out = o.clone();
            match merge_map(&mut out, p, ty)? {
                MapOutcome::Keep => Ok(Value::Object(out)),
                MapOutcome::Delete => Ok(Value::Object(Map::new())),
            }
        }
        (_, Value::Object(_)) => strategic_merge(&Value::Object(Map::new()), patch),
        _ => Err("a strategic merge patch must be a JSON object".into()),
    }
}

enum MapOutcome {
    Keep,
    Delete,
}

fn strip_directives(p: &Map<String, Value>) -> Map<String, Value> {
    p.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), clean(v)))
        .collect()
}

/// Remove directive keys from a value that is inserted as-is.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives(m)),
        Value::Array(a) => Value::Array(a.iter().filter(|i| i.get("$patch").is_none()).map(clean).collect()),
        other => other.clone(),
    }
}

fn merge_map(orig: &mut Map<String, Value>, patch: &Map<String, Value>, ty: Ty<'static>) -> Result<MapOutcome, String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(MapOutcome::Delete),
        Some("replace") => {
            *orig = strip_directives(patch);
            return Ok(MapOutcome::Keep);
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type {other:?}")),
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let Some(a) = v.as_array() {
                orders.push((field.to_string(), a.clone()));
            }
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (orig.get_mut(field), v.as_array()) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        let schema = field_schema(ty, k);
        match v {
            Value::Null => {
                orig.remove(k);
            }
            Value::Object(pm) => {
                let entry = orig.entry(k.clone()).or_insert(Value::Null);
                if !entry.is_object() {
                    if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                        orig.remove(k);
                        continue;
                    }
                    *entry = Value::Object(Map::new());
                }
                let om = entry.as_object_mut().expect("object");
                if let MapOutcome::Delete = merge_map(om, pm, schema.and_then(|f| resolve(schemas(), f)))? {
                    orig.remove(k);
                }
            }
            Value::Array(pa) => {
                let current = orig.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
                let merged = match list_strategy(ty, k) {
                    ListStrategy::Replace => pa.iter().filter(|i| i.get("$patch").is_none()).map(clean).collect(),
                    ListStrategy::Set => {
                        let mut out = current.clone();
                        for item in pa {
                            if !out.contains(item) {
                                out.push(item.clone());
                            }
                        }
                        out
                    }
                    ListStrategy::MergeKey(key) => {
                        let item = schema.and_then(|f| f.get("items")).and_then(|i| resolve(schemas(), i));
                        merge_list(current, pa, key, item)?
                    }
                };
                orig.insert(k.clone(), Value::Array(merged));
            }
            other => {
                orig.insert(k.clone(), other.clone());
            }
        }
    }
    for (field, order) in orders {
        if let Some(Value::Array(list)) = orig.get_mut(&field) {
            reorder(list, &order);
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(MapOutcome::Keep)
}

fn merge_list(mut current: Vec<Value>, patch: &[Value], key: &str, item_ty: Ty<'static>) -> Result<Vec<Value>, String> {
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch.iter().filter(|i| i.get("$patch").is_none()).map(clean).collect());
    }
    for item in patch {
        let Some(pm) = item.as_object() else {
            current.push(item.clone());
            continue;
        };
        let id = pm.get(key);
        let pos = id.and_then(|id| current.iter().position(|c| c.get(key) == Some(id)));
        if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(id) = id {
                current.retain(|c| c.get(key) != Some(id));
            }
            continue;
        }
        match pos {
            Some(i) => {
                if let Value::Object(om) = &mut current[i] {
                    if let MapOutcome::Delete = merge_map(om, pm, item_ty)? {
                        current.remove(i);
                    }
                } else {
                    current[i] = clean(item);
                }
            }
            None => current.push(clean(item)),
        }
    }
    Ok(current)
}

fn reorder(list: &mut [Value], order: &[Value]) {
    let rank = |v: &Value| -> usize {
        order
            .iter()
            .position(|o| match o.as_object() {
                Some(om) => om.iter().all(|(k, ov)| v.get(k) == Some(ov)),
                None => o == v,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_ports_by_container_port() {
        let orig = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "a:2", "ports": [{"containerPort": 8080}]}]
        }});
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(out["spec"]["containers"][0]["image"], "a:2");
        assert_eq!(out["spec"]["containers"][0]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(out["spec"]["containers"][1]["image"], "b:1");
    }

    #[test]
    fn directives_delete_and_replace() {
        let orig = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}],
                           "template": {"k": 1, "j": 2}},
                          "metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]}});
        let patch = json!({
            "spec": {"containers": [{"name": "a", "env": [{"name": "X", "$patch": "delete"}]}],
                     "template": {"$patch": "replace", "z": 3}},
            "metadata": {"labels": {"b": null}, "finalizers": ["y"]}
        });
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "Y", "value": "2"}])
        );
        assert_eq!(out["spec"]["template"], json!({"z": 3}));
        assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
    }

    #[test]
    fn service_ports_merge_by_port_and_other_lists_replace() {
        let orig = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80, "nodePort": 30001}], "externalIPs": ["1.2.3.4", "5.6.7.8"]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "externalIPs": ["9.9.9.9"]}});
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "nodePort": 30001, "targetPort": 8080}])
        );
        assert_eq!(out["spec"]["externalIPs"], json!(["9.9.9.9"]));
    }

    // The four lists the old field-name guess merged differently from what
    // OpenAPI (and so kubectl) says: now both read `merge_keys`.

    #[test]
    fn scheduling_gates_merge_by_name() {
        let orig =
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"schedulingGates": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"schedulingGates": [{"name": "c"}, {"name": "a", "$patch": "delete"}]}});
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(out["spec"]["schedulingGates"], json!([{"name": "b"}, {"name": "c"}]));
    }

    #[test]
    fn host_ips_merge_by_ip() {
        let orig = json!({"apiVersion": "v1", "kind": "Pod", "status": {"hostIPs": [{"ip": "10.0.0.1"}], "podIPs": [{"ip": "10.244.0.5"}]}});
        let patch = json!({"status": {"hostIPs": [{"ip": "fd00::1"}]}});
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(out["status"]["hostIPs"], json!([{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]));
        assert_eq!(out["status"]["podIPs"], json!([{"ip": "10.244.0.5"}]));
    }

    #[test]
    fn pod_cidrs_merge_as_a_set() {
        let orig = json!({"apiVersion": "v1", "kind": "Node", "spec": {"podCIDRs": ["10.244.1.0/24"]}});
        let patch = json!({"spec": {"podCIDRs": ["10.244.1.0/24", "fd00:1::/64"]}});
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(out["spec"]["podCIDRs"], json!(["10.244.1.0/24", "fd00:1::/64"]));
    }

    #[test]
    fn service_account_secrets_merge_by_name_and_image_pull_secrets_are_atomic() {
        let orig = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                          "secrets": [{"name": "a"}], "imagePullSecrets": [{"name": "x"}]});
        let patch = json!({"secrets": [{"name": "b"}], "imagePullSecrets": [{"name": "y"}]});
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(out["secrets"], json!([{"name": "a"}, {"name": "b"}]));
        assert_eq!(out["imagePullSecrets"], json!([{"name": "y"}]));
    }

    #[test]
    fn lists_merge_by_their_type_not_their_name() {
        // Deployment template: PodSpec lists merge, down to container ports.
        let orig = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}],
            "readinessGates": [{"conditionType": "a"}]}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "c", "ports": [{"containerPort": 81}]}],
            "readinessGates": [{"conditionType": "b"}]}},
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = strategic_merge(&orig, &patch).unwrap();
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][0]["image"], "i");
        assert_eq!(
            spec["containers"][0]["ports"],
            json!([{"containerPort": 80}, {"containerPort": 81}])
        );
        // PodSpec.readinessGates has no patch strategy in Kubernetes: atomic.
        assert_eq!(spec["readinessGates"], json!([{"conditionType": "b"}]));
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        // EndpointSlice ports are atomic although they have a `port`.
        let orig = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "ports": [{"port": 80}]});
        let out = strategic_merge(&orig, &json!({"ports": [{"port": 81}]})).unwrap();
        assert_eq!(out["ports"], json!([{"port": 81}]));
        // Metadata: finalizers are a set, ownerReferences merge by uid.
        let orig = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"finalizers": ["a"], "ownerReferences": [{"uid": "1", "name": "x"}]}});
        let patch = json!({"metadata": {"finalizers": ["b", "a"], "ownerReferences": [{"uid": "1", "name": "y"}]}});
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(out["metadata"]["ownerReferences"], json!([{"uid": "1", "name": "y"}]));
        // A Scale (kind of a subresource) has a schema too; no kind at all: atomic.
        let out = strategic_merge(&json!({"a": [{"name": "x"}]}), &json!({"a": [{"name": "y"}]})).unwrap();
        assert_eq!(out["a"], json!([{"name": "y"}]));
    }

    #[test]
    fn merge_and_json_patch() {
        let orig = json!({"a": {"b": 1, "c": 2}});
        assert_eq!(
            merge_patch(&orig, &json!({"a": {"b": null, "d": 3}})),
            json!({"a": {"c": 2, "d": 3}})
        );
        let out = json_patch(
            &orig,
            &json!([{"op": "replace", "path": "/a/b", "value": 5}, {"op": "remove", "path": "/a/c"}]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"b": 5}}));
        assert!(json_patch(&orig, &json!([{"op": "remove", "path": "/x"}])).is_err());
    }
}
