//! APIServices (apiregistration.k8s.io/v1): which server answers a
//! group/version. `spec.service` unset is a Local APIService (served by this
//! server; one is kept per served group/version, as Kubernetes' autoregister
//! controller does); otherwise requests under `/apis/<group>/<version>` are
//! proxied to that Service (see `crate::http::aggregator`), and the
//! availability controller (`crate::registry::apiservices`) keeps the
//! `Available` condition. Validation is Kubernetes' `ValidateAPIService`.

use chrono::{DateTime, Utc};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{self, age, col, name, s, Column, AGE, NAME};
use crate::kinds::{status, Resource, Strategy};
use crate::meta::names;
use crate::status::{ApiResult, FieldError};

/// The `APIService` resource.
pub static RESOURCE: Resource = Resource {
    group: "apiregistration.k8s.io",
    version: "v1",
    kind: "APIService",
    plural: "apiservices",
    singular: "apiservice",
    namespaced: false,
    short_names: &[],
    categories: &["api-extensions"],
    subresources: &[status("APIService", "apiregistration.k8s.io", "v1")],
    field_labels: None,
};

/// How `APIService` objects behave.
pub struct ApiServices;

/// A path segment name, as `path.IsValidPathSegmentName`.
fn path_segment_name(name: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            return Err(format!("may not contain '{bad}'"));
        }
    }
    Ok(())
}

impl Strategy for ApiServices {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<APIService>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<APIService>(generator)
    }

    fn default(&self, obj: &mut Value) {
        if let Some(svc) = obj.pointer_mut("/spec/service").and_then(Value::as_object_mut) {
            if svc.get("port").is_none_or(Value::is_null) {
                svc.insert("port".into(), json!(443));
            }
        }
    }

    fn name_rule(&self) -> crate::kinds::strategy::NameRule {
        path_segment_name
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_apiservice(obj)
    }

    fn validate_status_update(&self, _old: &Value, _new: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![
            name(obj),
            json!(service_column(obj)),
            json!(available_column(obj)),
            age(obj, now),
        ]
    }
}

fn validate_apiservice(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let group = s(&spec, &["group"]);
    let version = s(&spec, &["version"]);
    let name = s(obj, &["metadata", "name"]);
    let required_name = format!("{version}.{group}");
    if !name.is_empty() && path_segment_name(name).is_ok() && name != required_name {
        errs.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            format!("must be `spec.version+\".\"+spec.group`: {required_name:?}"),
        ));
    }
    if group.is_empty() && version != "v1" {
        errs.push(FieldError::required(
            "spec.group",
            "only v1 may have an empty group and it better be legacy kube",
        ));
    }
    if !group.is_empty() {
        if let Err(e) = names::check_dns1123_subdomain(group) {
            errs.push(FieldError::invalid("spec.group", &json!(group), e));
        }
    }
    if let Err(e) = names::check_dns1035_label(version) {
        errs.push(FieldError::invalid("spec.version", &json!(version), e));
    }
    let group_priority = spec.get("groupPriorityMinimum").and_then(Value::as_i64).unwrap_or(0);
    if group_priority <= 0 || group_priority > 20000 {
        errs.push(FieldError::invalid(
            "spec.groupPriorityMinimum",
            &json!(group_priority),
            "must be positive and less than 20000",
        ));
    }
    let version_priority = spec.get("versionPriority").and_then(Value::as_i64).unwrap_or(0);
    if version_priority <= 0 || version_priority > 1000 {
        errs.push(FieldError::invalid(
            "spec.versionPriority",
            &json!(version_priority),
            "must be positive and less than 1000",
        ));
    }
    let ca_bundle = s(&spec, &["caBundle"]);
    let insecure = spec
        .get("insecureSkipTLSVerify")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some(service) = spec.get("service").filter(|v| !v.is_null()) else {
        if !ca_bundle.is_empty() {
            let bytes = base64_len(ca_bundle);
            errs.push(FieldError::invalid(
                "spec.caBundle",
                &json!(format!("{bytes} bytes")),
                "local APIServices may not have a caBundle",
            ));
        }
        if insecure {
            errs.push(FieldError::invalid(
                "spec.insecureSkipTLSVerify",
                &json!(insecure),
                "local APIServices may not have insecureSkipTLSVerify",
            ));
        }
        return errs;
    };
    if s(service, &["namespace"]).is_empty() {
        errs.push(FieldError::required("spec.service.namespace", ""));
    }
    if s(service, &["name"]).is_empty() {
        errs.push(FieldError::required("spec.service.name", ""));
    }
    let port = service.get("port").and_then(Value::as_i64).unwrap_or(443);
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(
            "spec.service.port",
            &json!(port),
            "port is not valid: must be between 1 and 65535, inclusive",
        ));
    }
    if insecure && !ca_bundle.is_empty() {
        errs.push(FieldError::invalid(
            "spec.insecureSkipTLSVerify",
            &json!(insecure),
            "may not be true if caBundle is present",
        ));
    }
    errs
}

fn base64_len(b64: &str) -> usize {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_or(b64.len(), |b| b.len())
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Service",
        "string",
        0,
        "The reference to the service that hosts this API endpoint.",
    ),
    col("Available", "string", 0, "Whether this service is available."),
    AGE,
];

/// `Local`, or `<namespace>/<name>` of the Service.
fn service_column(obj: &Value) -> String {
    match obj.pointer("/spec/service").filter(|v| !v.is_null()) {
        None => "Local".to_string(),
        Some(svc) => format!("{}/{}", s(svc, &["namespace"]), s(svc, &["name"])),
    }
}

/// `True`, `False (<reason>)`, or `Unknown` when there is no condition.
fn available_column(obj: &Value) -> String {
    let condition = table::arr(obj, &["status", "conditions"])
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Available"));
    match condition {
        None => "Unknown".to_string(),
        Some(c) => {
            let status = s(c, &["status"]);
            let reason = s(c, &["reason"]);
            if status == "True" || reason.is_empty() {
                status.to_string()
            } else {
                format!("{status} ({reason})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> Value {
        json!({
            "metadata": {"name": "v1alpha1.metrics.example.com"},
            "spec": {"group": "metrics.example.com", "version": "v1alpha1", "groupPriorityMinimum": 1000,
                     "versionPriority": 15, "service": {"namespace": "default", "name": "metrics"}},
        })
    }

    #[test]
    fn name_must_be_version_dot_group() {
        assert!(validate_apiservice(&remote()).is_empty());
        let mut wrong = remote();
        wrong["metadata"]["name"] = json!("metrics");
        let errs = validate_apiservice(&wrong);
        assert_eq!(errs[0].field, "metadata.name");
        assert_eq!(
            errs[0].message,
            "Invalid value: \"metrics\": must be `spec.version+\".\"+spec.group`: \"v1alpha1.metrics.example.com\""
        );
        let mut zero = remote();
        zero["spec"]["groupPriorityMinimum"] = json!(0);
        assert_eq!(validate_apiservice(&zero)[0].field, "spec.groupPriorityMinimum");
        let local = json!({"metadata": {"name": "v1."}, "spec": {"version": "v1", "groupPriorityMinimum": 18000, "versionPriority": 1}});
        assert!(validate_apiservice(&local).is_empty());
    }

    #[test]
    fn table_cells_as_kubectl() {
        let mut a = remote();
        assert_eq!(service_column(&a), "default/metrics");
        assert_eq!(available_column(&a), "Unknown");
        a["status"] = json!({"conditions": [{"type": "Available", "status": "False", "reason": "ServiceNotFound"}]});
        assert_eq!(available_column(&a), "False (ServiceNotFound)");
        a["status"]["conditions"][0]["status"] = json!("True");
        assert_eq!(available_column(&a), "True");
        assert_eq!(service_column(&json!({"spec": {"service": null}})), "Local");
    }
}
