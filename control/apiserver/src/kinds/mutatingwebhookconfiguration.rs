//! MutatingWebhookConfigurations (admissionregistration.k8s.io/v1): the
//! mutating admission webhooks the registry calls (see
//! `crate::registry::admission`). Defaults and validation are Kubernetes'
//! (`SetDefaults_MutatingWebhook`, `ValidateMutatingWebhookConfiguration`),
//! the latter from the `sluice-admission` crate. The helpers shared with
//! ValidatingWebhookConfigurations live here.

use chrono::{DateTime, Utc};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{self, age, col, name, Column, AGE, NAME};
use crate::kinds::{Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `MutatingWebhookConfiguration` resource.
pub static RESOURCE: Resource = Resource {
    group: "admissionregistration.k8s.io",
    version: "v1",
    kind: "MutatingWebhookConfiguration",
    plural: "mutatingwebhookconfigurations",
    singular: "mutatingwebhookconfiguration",
    namespaced: false,
    short_names: &[],
    categories: &["api-extensions"],
    subresources: &[],
    field_labels: None,
};

/// How `MutatingWebhookConfiguration` objects behave.
pub struct MutatingWebhookConfigurations;

impl Strategy for MutatingWebhookConfigurations {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<MutatingWebhookConfiguration>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<MutatingWebhookConfiguration>(generator)
    }

    fn default(&self, obj: &mut Value) {
        default_webhooks(obj, true);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        match serde_json::from_value::<MutatingWebhookConfiguration>(obj.clone()) {
            Ok(c) => field_errors(sluice_admission::validation::validate_mutating_configuration(&c)),
            Err(e) => vec![FieldError::invalid("webhooks", &Value::Null, e.to_string())],
        }
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

/// Kubernetes' v1 defaults of every webhook of a configuration:
/// failurePolicy Fail, matchPolicy Equivalent, empty namespace and object
/// selectors, timeoutSeconds 10, rule scope `*`, service port 443, and for
/// mutating webhooks reinvocationPolicy Never.
pub(crate) fn default_webhooks(obj: &mut Value, mutating: bool) {
    let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for hook in hooks.iter_mut().filter_map(Value::as_object_mut) {
        let mut set = |key: &str, value: Value| {
            if hook.get(key).is_none_or(Value::is_null) {
                hook.insert(key.to_string(), value);
            }
        };
        set("failurePolicy", json!("Fail"));
        set("matchPolicy", json!("Equivalent"));
        set("namespaceSelector", json!({}));
        set("objectSelector", json!({}));
        set("timeoutSeconds", json!(10));
        if mutating {
            set("reinvocationPolicy", json!("Never"));
        }
        if let Some(rules) = hook.get_mut("rules").and_then(Value::as_array_mut) {
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                if rule.get("scope").is_none_or(Value::is_null) {
                    rule.insert("scope".into(), json!("*"));
                }
            }
        }
        if let Some(svc) = hook
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            if svc.get("port").is_none_or(Value::is_null) {
                svc.insert("port".into(), json!(443));
            }
        }
    }
}

/// The crate's field errors as the registry's (the crate's messages carry
/// the field path in front, Kubernetes' `field.Error` does not).
pub(crate) fn field_errors(errs: Vec<sluice_admission::FieldError>) -> Vec<FieldError> {
    errs.into_iter()
        .map(|e| {
            let prefix = format!("{}: ", e.field);
            let message = e.message.strip_prefix(&prefix).unwrap_or(&e.message).to_string();
            FieldError {
                reason: e.reason,
                field: e.field,
                message,
            }
        })
        .collect()
}

// ---- Table ----

/// kubectl's columns for webhook configurations: NAME, WEBHOOKS, AGE.
pub(crate) const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Webhooks",
        "integer",
        0,
        "Webhooks indicates the number of webhooks registered in this configuration.",
    ),
    AGE,
];

pub(crate) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let count = obj.get("webhooks").and_then(Value::as_array).map_or(0, Vec::len);
    vec![name(obj), json!(count), age(obj, now)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_defaults() {
        let mut obj = json!({"webhooks": [{
            "name": "a.b.c",
            "clientConfig": {"service": {"namespace": "ns", "name": "svc"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "timeoutSeconds": 3,
        }]});
        default_webhooks(&mut obj, true);
        let h = &obj["webhooks"][0];
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["matchPolicy"], "Equivalent");
        assert_eq!(h["reinvocationPolicy"], "Never");
        assert_eq!(h["namespaceSelector"], json!({}));
        assert_eq!(h["objectSelector"], json!({}));
        assert_eq!(h["timeoutSeconds"], 3, "kept");
        assert_eq!(h["rules"][0]["scope"], "*");
        assert_eq!(h["clientConfig"]["service"]["port"], 443);
        assert!(h.get("sideEffects").is_none(), "sideEffects has no default in v1");
        let mut v = json!({"webhooks": [{"name": "a.b.c"}]});
        default_webhooks(&mut v, false);
        assert!(v["webhooks"][0].get("reinvocationPolicy").is_none());
    }

    #[test]
    fn validation_names_the_field() {
        let mut obj = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "x"},
            "webhooks": [{
                "name": "a.b.c",
                "clientConfig": {"url": "http://127.0.0.1/x"},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "admissionReviewVersions": ["v1"],
            }]
        });
        default_webhooks(&mut obj, true);
        let errs = MutatingWebhookConfigurations.validate(&obj);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"webhooks[0].sideEffects"), "{errs:?}");
        let url = errs
            .iter()
            .find(|e| e.field == "webhooks[0].clientConfig.url")
            .expect("url");
        assert!(url.message.starts_with("Invalid value: "), "{}", url.message);
        assert!(url.message.contains("'https' is the only allowed URL scheme"));
    }

    #[test]
    fn table_counts_webhooks() {
        let obj = json!({"metadata": {"name": "m", "creationTimestamp": "2025-01-01T00:00:00Z"}, "webhooks": [{}, {}]});
        let now = table::parse_time("2025-01-01T00:01:00Z").expect("time");
        assert_eq!(row(&obj, now), vec![json!("m"), json!(2), json!("60s")]);
    }
}
