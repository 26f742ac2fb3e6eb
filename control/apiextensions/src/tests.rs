//! End-to-end tests of [`CustomResourceSchema`] on real-world CRD fragments, and property
//! tests: no input panics.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// A trimmed cert-manager `Certificate` v1 schema (spec and status), with a default and a
/// CEL rule added the way CRD authors commonly do.
fn certificate_schema() -> Value {
    json!({
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["issuerRef", "secretName"],
                "x-kubernetes-validations": [
                    {"rule": "!has(self.renewBefore) || !has(self.duration) || self.renewBefore < self.duration",
                     "message": "renewBefore must be shorter than duration"}
                ],
                "properties": {
                    "commonName": {"type": "string", "maxLength": 64},
                    "dnsNames": {"type": "array", "items": {"type": "string"}},
                    "duration": {"type": "string", "format": "duration"},
                    "renewBefore": {"type": "string", "format": "duration"},
                    "isCA": {"type": "boolean"},
                    "issuerRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "group": {"type": "string"},
                            "kind": {"type": "string", "default": "Issuer"},
                            "name": {"type": "string"}
                        }
                    },
                    "privateKey": {
                        "type": "object",
                        "properties": {
                            "algorithm": {"type": "string", "enum": ["RSA", "ECDSA", "Ed25519"]},
                            "encoding": {"type": "string", "enum": ["PKCS1", "PKCS8"], "default": "PKCS1"},
                            "rotationPolicy": {"type": "string", "enum": ["Never", "Always"]},
                            "size": {"type": "integer"}
                        }
                    },
                    "secretName": {"type": "string"},
                    "secretTemplate": {
                        "type": "object",
                        "properties": {
                            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                        }
                    },
                    "usages": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["signing", "digital signature", "key encipherment", "server auth", "client auth"]}
                    }
                }
            },
            "status": {
                "type": "object",
                "properties": {
                    "conditions": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["type"],
                        "items": {
                            "type": "object",
                            "required": ["status", "type"],
                            "properties": {
                                "lastTransitionTime": {"type": "string", "format": "date-time"},
                                "message": {"type": "string"},
                                "reason": {"type": "string"},
                                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                                "type": {"type": "string"}
                            }
                        }
                    },
                    "notAfter": {"type": "string", "format": "date-time"},
                    "revision": {"type": "integer"}
                }
            }
        }
    })
}

fn strings(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(|e| e.to_string()).collect()
}

#[test]
fn certificate_schema_is_accepted_by_crd_validation() {
    let base = FieldPath::new("spec")
        .child("versions")
        .index(0)
        .child("schema")
        .child("openAPIV3Schema");
    let errs = structural::validate_openapi_schema(&certificate_schema(), &base);
    assert!(errs.is_empty(), "{:#?}", strings(&errs));
}

#[test]
fn certificate_is_pruned_defaulted_and_validated() {
    let s = CustomResourceSchema::from_json(&certificate_schema()).unwrap();
    let mut cert = json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "secretName": "web-tls",
            "dnsNames": ["example.com", "www.example.com"],
            "issuerRef": {"name": "letsencrypt", "unknownRefField": true},
            "privateKey": {"algorithm": "ECDSA"},
            "usages": ["server auth"],
            "secretTemplate": {"labels": {"team": "web"}},
            "keystores": {"jks": {"create": true}}
        },
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"}]}
    });
    let pruned = s.prune(&mut cert);
    assert_eq!(pruned, vec!["spec.issuerRef.unknownRefField", "spec.keystores"]);
    s.apply_defaults(&mut cert);
    assert_eq!(cert["spec"]["issuerRef"]["kind"], json!("Issuer"));
    assert_eq!(cert["spec"]["privateKey"]["encoding"], json!("PKCS1"));
    assert!(s.validate(&cert).is_empty(), "{:#?}", strings(&s.validate(&cert)));

    let bad = json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "web"},
        "spec": {
            "issuerRef": {},
            "commonName": "x".repeat(65),
            "privateKey": {"algorithm": "DSA", "size": "2048"},
            "usages": ["server auth", "mining"],
            "duration": "1h",
            "renewBefore": "2h"
        },
        "status": {"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "Ready", "status": "Maybe", "lastTransitionTime": "yesterday"}
        ]}
    });
    assert_eq!(
        strings(&s.validate(&bad)),
        vec![
            "spec.secretName: Required value",
            "spec.commonName: Too long: may not be more than 64 bytes",
            "spec.issuerRef.name: Required value",
            r#"spec.privateKey.algorithm: Unsupported value: "DSA": supported values: "RSA", "ECDSA", "Ed25519""#,
            r#"spec.privateKey.size: Invalid value: "string": spec.privateKey.size in body must be of type integer: "string""#,
            r#"spec.usages[1]: Unsupported value: "mining": supported values: "signing", "digital signature", "key encipherment", "server auth", "client auth""#,
            r#"status.conditions[1]: Duplicate value: map[string]interface {}{"type":"Ready"}"#,
            r#"status.conditions[1].lastTransitionTime: Invalid value: "yesterday": status.conditions[1].lastTransitionTime in body must be of type date-time: "yesterday""#,
            r#"status.conditions[1].status: Unsupported value: "Maybe": supported values: "True", "False", "Unknown""#,
            r#"spec: Invalid value: "object": renewBefore must be shorter than duration"#,
        ]
    );
}

/// A trimmed Prometheus-operator `ServiceMonitor` schema: int-or-string ports, a label
/// selector with `matchExpressions`, free-form preserved fields.
#[test]
fn service_monitor_fragment() {
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["selector"],
                "properties": {
                    "endpoints": {"type": "array", "items": {
                        "type": "object",
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": true},
                            "interval": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                            "scheme": {"type": "string", "enum": ["http", "https"]},
                            "params": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
                        }
                    }},
                    "selector": {
                        "type": "object",
                        "x-kubernetes-map-type": "atomic",
                        "properties": {
                            "matchExpressions": {"type": "array", "items": {
                                "type": "object", "required": ["key", "operator"],
                                "properties": {"key": {"type": "string"}, "operator": {"type": "string"}, "values": {"type": "array", "items": {"type": "string"}}}
                            }},
                            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}
                        }
                    },
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }
            }
        }
    });
    let base = FieldPath::new("spec")
        .child("versions")
        .index(0)
        .child("schema")
        .child("openAPIV3Schema");
    assert!(structural::validate_openapi_schema(&schema, &base).is_empty());
    let s = CustomResourceSchema::from_json(&schema).unwrap();
    let mut sm = json!({
        "spec": {
            "endpoints": [{"port": "web", "interval": "30s", "targetPort": 8080, "bogus": 1}, {"targetPort": "metrics", "interval": "soon"}],
            "selector": {"matchLabels": {"app": "shop"}, "matchExpressions": [{"key": "tier"}]},
            "extra": {"anything": [1, 2, {"x": null}]}
        }
    });
    assert_eq!(s.prune(&mut sm), vec!["spec.endpoints[0].bogus"]);
    s.apply_defaults(&mut sm);
    assert_eq!(
        strings(&s.validate(&sm)),
        vec![
            r#"spec.endpoints[1].interval: Invalid value: "soon": spec.endpoints[1].interval in body should match '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'"#,
            "spec.selector.matchExpressions[0].operator: Required value",
        ]
    );
    assert_eq!(sm["spec"]["extra"], json!({"anything": [1, 2, {"x": null}]}));
}

#[test]
fn building_from_a_crd_and_update_validation() {
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_json::from_value(json!({
            "metadata": {"name": "dbs.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "dbs", "kind": "DB"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "properties": {
                        "engine": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "engine is immutable"}]},
                        "storageGB": {"type": "integer", "minimum": 1, "x-kubernetes-validations": [{"rule": "self >= oldSelf", "message": "storage may not shrink"}]}
                    }}}
                }}}]
            }
        }))
        .unwrap();
    let s = CustomResourceSchema::for_version(&crd, "v1").unwrap();
    assert!(matches!(
        CustomResourceSchema::for_version(&crd, "v2"),
        Err(BuildError::NoSchema(_))
    ));
    let old = json!({"spec": {"engine": "postgres", "storageGB": 10}});
    let new = json!({"spec": {"engine": "mysql", "storageGB": 5}});
    assert!(s.validate(&new).is_empty());
    assert_eq!(
        strings(&s.validate_update(&new, Some(&old))),
        vec![
            r#"spec.engine: Invalid value: "string": engine is immutable"#,
            r#"spec.storageGB: Invalid value: "integer": storage may not shrink"#,
        ]
    );
    let props: JSONSchemaProps =
        serde_json::from_value(json!({"type": "object", "x-kubernetes-validations": [{"rule": "1 +"}]})).unwrap();
    let e = CustomResourceSchema::from_props(&props).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("x-kubernetes-validations do not compile: [0].rule: compilation failed"),
        "{e}"
    );
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9 .:/_-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("2024-01-01T00:00:00Z"),
            Just("1h"),
            Just("TCP"),
            Just("Ready"),
            Just("server auth"),
            Just("10.0.0.1")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z]{1,8}",
                    Just("spec".to_string()),
                    Just("status".to_string()),
                    Just("metadata".to_string()),
                    Just("type".to_string()),
                    Just("issuerRef".to_string()),
                    Just("conditions".to_string()),
                    Just("privateKey".to_string()),
                    Just("endpoints".to_string()),
                    Just("properties".to_string()),
                    Just("items".to_string()),
                    Just("x-kubernetes-validations".to_string()),
                    Just("rule".to_string()),
                    Just("default".to_string()),
                    Just("anyOf".to_string()),
                    Just("additionalProperties".to_string()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random objects against a real schema: pruning, defaulting and validation never
    /// panic, and after pruning nothing unknown is left to prune.
    #[test]
    fn random_objects_never_panic(spec in arb_json(), status in arb_json(), extra in arb_json()) {
        let s = CustomResourceSchema::from_json(&certificate_schema()).unwrap();
        let mut obj = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "spec": spec, "status": status, "extra": extra});
        let old = obj.clone();
        let _ = s.validate_update(&obj, Some(&old));
        s.prune(&mut obj);
        prop_assert!(s.prune(&mut obj).is_empty());
        s.apply_defaults(&mut obj);
        let _ = s.validate(&obj);
        let _ = s.validate_update(&obj, Some(&old));
    }

    /// Random JSON as a schema: parsing, CRD validation and (when it builds) every
    /// operation on a random object never panic.
    #[test]
    fn random_schemas_never_panic(schema in arb_json(), obj in arb_json()) {
        let _ = structural::validate_openapi_schema(&schema, &FieldPath::new("schema"));
        let _ = structural::is_structural(&schema);
        if let Ok(s) = CustomResourceSchema::from_json(&schema) {
            let mut o = obj.clone();
            let _ = s.validate_update(&o, Some(&obj));
            s.prune(&mut o);
            s.apply_defaults(&mut o);
            let _ = s.validate(&o);
        }
    }

    /// Random rule texts compile or fail to compile without panicking.
    #[test]
    fn random_rules_never_panic(rule in "[a-z .()<>=!&|'\\[\\]0-9+*-]{0,24}", value in arb_json()) {
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
            "x-kubernetes-validations": [{"rule": rule}]});
        let _ = structural::validate_openapi_schema(&schema, &FieldPath::new("s"));
        if let Ok(s) = CustomResourceSchema::from_json(&schema) {
            let _ = s.validate(&json!({"spec": value}));
        }
    }
}
