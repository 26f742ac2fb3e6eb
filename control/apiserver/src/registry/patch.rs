//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! Kubernetes strategic merge patch.
//!
//! Strategic merge merges lists of objects by their patch merge key
//! (containers by name, container ports by containerPort, service ports by
//! port, volumeMounts by mountPath, conditions by type, ...), unions
//! `finalizers`, and honours the directives `kubectl apply` sends:
//! `$patch: delete|replace`, `$setElementOrder/<list>`,
//! `$deleteFromPrimitiveList/<list>` and `$retainKeys`.

use serde_json::{Map, Value};

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

fn list_strategy(field: &str, sample: &[&Value]) -> ListStrategy {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => ListStrategy::MergeKey("name"),
        "volumeMounts" => ListStrategy::MergeKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeKey("devicePath"),
        "conditions" => ListStrategy::MergeKey("type"),
        "hostAliases" | "podIPs" => ListStrategy::MergeKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeKey("topologyKey"),
        "ownerReferences" => ListStrategy::MergeKey("uid"),
        "readinessGates" => ListStrategy::MergeKey("conditionType"),
        "addresses" if sample.iter().any(|v| v.get("type").is_some()) => ListStrategy::MergeKey("type"),
        "ports" => {
            if sample.iter().any(|v| v.get("containerPort").is_some()) {
                ListStrategy::MergeKey("containerPort")
            } else if sample.iter().any(|v| v.get("port").is_some()) {
                ListStrategy::MergeKey("port")
            } else {
                ListStrategy::Replace
            }
        }
        "finalizers" => ListStrategy::Set,
        _ => ListStrategy::Replace,
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

/// Apply a strategic merge patch.
pub fn strategic_merge(original: &Value, patch: &Value) -> Result<Value, String> {
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) => {
            let mut out = o.clone();
            match merge_map(&mut out, p)? {
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

fn merge_map(orig: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<MapOutcome, String> {
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
                if let MapOutcome::Delete = merge_map(om, pm)? {
                    orig.remove(k);
                }
            }
            Value::Array(pa) => {
                let current = orig.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
                let sample: Vec<&Value> = pa.iter().chain(current.iter()).collect();
                let merged = match list_strategy(k, &sample) {
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
                    ListStrategy::MergeKey(key) => merge_list(current, pa, key)?,
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

fn merge_list(mut current: Vec<Value>, patch: &[Value], key: &str) -> Result<Vec<Value>, String> {
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
                    if let MapOutcome::Delete = merge_map(om, pm)? {
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
        let orig = json!({"spec": {"containers": [
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
        let orig = json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}],
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
        let orig = json!({"spec": {"ports": [{"port": 80, "nodePort": 30001}], "args": ["a", "b"]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "args": ["c"]}});
        let out = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "nodePort": 30001, "targetPort": 8080}])
        );
        assert_eq!(out["spec"]["args"], json!(["c"]));
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
