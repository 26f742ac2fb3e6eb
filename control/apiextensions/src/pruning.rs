//! Pruning of fields a structural schema does not specify.
//!
//! Unknown fields are dropped except under `x-kubernetes-preserve-unknown-fields: true`
//! (known properties below such a node are still pruned recursively) and under
//! `additionalProperties: true`. At the root of a resource and of every embedded
//! resource (`x-kubernetes-embedded-resource`), `apiVersion`, `kind` and `metadata` are
//! kept. The paths of the dropped fields are returned as the API server reports them
//! (`spec.foo`, `spec.items[0].bar`), for `unknown field "spec.foo"` warnings or, with
//! `fieldValidation=Strict`, errors.

use serde_json::Value;

use crate::schema::{AdditionalProperties, Schema};

/// Prunes a whole custom resource; returns the pruned field paths in document order.
pub fn prune(schema: &Schema, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_node(schema, obj, true, "", &mut pruned);
    pruned
}

/// Prunes `value` against `schema` (not treated as a resource root unless the schema is
/// an embedded resource); paths are relative to `value`.
pub fn prune_at(schema: &Schema, value: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_node(schema, value, schema.x_embedded_resource, "", &mut pruned);
    pruned
}

/// The `unknown field "<path>"` wording of a pruned path.
pub fn unknown_field_message(path: &str) -> String {
    format!("unknown field {}", crate::field::go_quote(path))
}

/// The fields of ObjectMeta (`metadata` of a resource root or an embedded
/// resource keeps only these).
const OBJECT_META_FIELDS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

fn prune_object_meta(meta: &mut Value, path: &str, pruned: &mut Vec<String>) {
    let Some(m) = meta.as_object_mut() else { return };
    let mut keys: Vec<String> = m
        .keys()
        .filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    keys.sort();
    for k in keys {
        m.remove(&k);
        pruned.push(join(path, &k));
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_node(s: &Schema, v: &mut Value, is_resource_root: bool, path: &str, pruned: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<String> = m.keys().cloned().collect();
            keys.sort();
            for k in keys {
                if is_resource_root && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if is_resource_root && k == "metadata" {
                    if let Some(meta) = m.get_mut(&k) {
                        prune_object_meta(meta, &join(path, &k), pruned);
                    }
                    continue;
                }
                let child_path = join(path, &k);
                let child_schema = match s.properties.get(&k) {
                    Some(p) => Some(p),
                    None => match &s.additional_properties {
                        Some(AdditionalProperties::Schema(ap)) => Some(ap.as_ref()),
                        Some(AdditionalProperties::Bool(true)) => continue,
                        _ => None,
                    },
                };
                match child_schema {
                    Some(cs) => {
                        if let Some(child) = m.get_mut(&k) {
                            prune_node(cs, child, cs.x_embedded_resource, &child_path, pruned);
                        }
                    }
                    None if s.x_preserve_unknown_fields => {}
                    None => {
                        m.remove(&k);
                        pruned.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            let Some(is) = &s.items else { return };
            for (i, item) in items.iter_mut().enumerate() {
                prune_node(is, item, is.x_embedded_resource, &format!("{path}[{i}]"), pruned);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        Schema::from_json(&v).unwrap()
    }

    #[test]
    fn prunes_unknown_fields_and_reports_paths() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "a": {"type": "string"},
                        "items": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}},
                        "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
                            "known": {"type": "object", "properties": {"k": {"type": "string"}}}
                        }},
                        "any": {"type": "object", "additionalProperties": true},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {
                            "spec": {"type": "object", "properties": {"c": {"type": "string"}}}
                        }}
                    }
                }
            }
        }));
        let mut obj = json!({
            "apiVersion": "example.com/v1",
            "kind": "Thing",
            "metadata": {"name": "t", "whatever": 1},
            "status": {"x": 1},
            "spec": {
                "a": "ok",
                "b": "gone",
                "items": [{"x": 1, "y": 2}, {"x": 2}],
                "labels": {"one": {"v": "1", "w": "2"}},
                "free": {"anything": {"deep": true}, "known": {"k": "v", "drop": 1}},
                "any": {"z": {"q": 1}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1}, "spec": {"c": "c", "d": "d"}, "extra": 1}
            }
        });
        let pruned = prune(&s, &mut obj);
        assert_eq!(
            pruned,
            vec![
                "metadata.whatever",
                "spec.b",
                "spec.free.known.drop",
                "spec.items[0].y",
                "spec.labels.one.w",
                "spec.template.extra",
                "spec.template.metadata.bogus",
                "spec.template.spec.d",
                "status",
            ]
        );
        assert_eq!(
            obj,
            json!({
                "apiVersion": "example.com/v1",
                "kind": "Thing",
                "metadata": {"name": "t"},
                "spec": {
                    "a": "ok",
                    "items": [{"x": 1}, {"x": 2}],
                    "labels": {"one": {"v": "1"}},
                    "free": {"anything": {"deep": true}, "known": {"k": "v"}},
                    "any": {"z": {"q": 1}},
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"c": "c"}}
                }
            })
        );
        assert_eq!(unknown_field_message("spec.b"), r#"unknown field "spec.b""#);
    }

    #[test]
    fn preserve_unknown_fields_at_the_root() {
        let s = schema(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        let mut obj = json!({"spec": {"a": 1}, "status": 2});
        assert!(prune(&s, &mut obj).is_empty());
        assert_eq!(obj, json!({"spec": {"a": 1}, "status": 2}));
    }
}
