//! Defaulting: `default` values applied recursively, as the API server does when it
//! decodes a request and when it reads an object from storage.
//!
//! A property missing from an object (or `null` where the schema is not nullable) takes
//! its schema's `default`; defaults are then applied inside the value, so a defaulted
//! object gets its own nested defaults. Array items and `additionalProperties` values
//! that are `null` take the item/value schema's default. `metadata` at the resource root
//! is never defaulted (defaults there are refused at CRD validation).

use serde_json::Value;

use crate::schema::{AdditionalProperties, Schema};

/// Applies the defaults of `schema` to a whole custom resource.
pub fn apply_defaults(schema: &Schema, obj: &mut Value) {
    default_node(schema, obj, true);
}

/// Applies the defaults of `schema` to `value` (not treated as a resource root).
pub fn apply_defaults_at(schema: &Schema, value: &mut Value) {
    default_node(schema, value, false);
}

fn is_non_nullable_null(v: &Value, s: &Schema) -> bool {
    v.is_null() && !s.nullable
}

fn default_node(s: &Schema, v: &mut Value, is_resource_root: bool) {
    match v {
        Value::Object(m) => {
            for (k, prop) in &s.properties {
                if is_resource_root && k == "metadata" {
                    continue;
                }
                let Some(d) = &prop.default else { continue };
                let missing = match m.get(k) {
                    None => true,
                    Some(existing) => is_non_nullable_null(existing, prop),
                };
                if missing {
                    m.insert(k.clone(), d.clone());
                }
            }
            let ap = match &s.additional_properties {
                Some(AdditionalProperties::Schema(ap)) => Some(ap.as_ref()),
                _ => None,
            };
            for (k, child) in m.iter_mut() {
                if is_resource_root && k == "metadata" {
                    continue;
                }
                if let Some(prop) = s.properties.get(k) {
                    default_node(prop, child, prop.x_embedded_resource);
                } else if let Some(ap) = ap {
                    if let Some(d) = &ap.default {
                        if is_non_nullable_null(child, ap) {
                            *child = d.clone();
                        }
                    }
                    default_node(ap, child, ap.x_embedded_resource);
                }
            }
        }
        Value::Array(items) => {
            let Some(is) = &s.items else { return };
            for item in items.iter_mut() {
                if let Some(d) = &is.default {
                    if is_non_nullable_null(item, is) {
                        *item = d.clone();
                    }
                }
                default_node(is, item, is.x_embedded_resource);
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
    fn defaults_missing_and_null_fields_recursively() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object", "properties": {"name": {"type": "string", "default": "never"}}},
                "spec": {
                    "type": "object",
                    "default": {},
                    "properties": {
                        "replicas": {"type": "integer", "default": 1},
                        "nullable": {"type": "string", "nullable": true, "default": "d"},
                        "strategy": {
                            "type": "object",
                            "default": {"type": "RollingUpdate"},
                            "properties": {
                                "type": {"type": "string"},
                                "maxSurge": {"type": "integer", "default": 25}
                            }
                        },
                        "ports": {"type": "array", "items": {
                            "type": "object",
                            "default": {"name": "fromnull"},
                            "properties": {"protocol": {"type": "string", "default": "TCP"}, "name": {"type": "string"}}
                        }},
                        "limits": {"type": "object", "additionalProperties": {
                            "type": "object",
                            "properties": {"value": {"type": "integer", "default": 7}}
                        }}
                    }
                }
            }
        }));
        let mut obj = json!({
            "metadata": {},
            "spec": {
                "replicas": null,
                "nullable": null,
                "ports": [{"name": "http"}, null],
                "limits": {"cpu": {}, "mem": {"value": 3}}
            }
        });
        apply_defaults(&s, &mut obj);
        assert_eq!(
            obj,
            json!({
                "metadata": {},
                "spec": {
                    "replicas": 1,
                    "nullable": null,
                    "strategy": {"type": "RollingUpdate", "maxSurge": 25},
                    "ports": [{"name": "http", "protocol": "TCP"}, {"name": "fromnull", "protocol": "TCP"}],
                    "limits": {"cpu": {"value": 7}, "mem": {"value": 3}}
                }
            })
        );

        let mut empty = json!({});
        apply_defaults(&s, &mut empty);
        assert_eq!(empty["spec"]["strategy"]["maxSurge"], json!(25));
        assert_eq!(empty["spec"]["replicas"], json!(1));
        assert!(empty.get("metadata").is_none());
    }

    #[test]
    fn defaulting_is_idempotent_and_ignores_mismatched_types() {
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
                "a": {"type": "integer", "default": 1}
            }}}}),
        );
        let mut obj = json!({"spec": "not-an-object"});
        apply_defaults(&s, &mut obj);
        assert_eq!(obj, json!({"spec": "not-an-object"}));
        let mut obj = json!({"spec": {}});
        apply_defaults(&s, &mut obj);
        let once = obj.clone();
        apply_defaults(&s, &mut obj);
        assert_eq!(obj, once);
    }
}
