//! CustomResourceDefinitions (apiextensions.k8s.io/v1): cluster-scoped,
//! named `<plural>.<group>`, validated as Kubernetes does (names, scope,
//! exactly one storage version, structural schemas, CEL rules that compile,
//! scale paths), with `conversion: None` only (a conversion webhook is
//! refused, not ignored). A new CRD carries the
//! `customresourcecleanup.apiextensions.k8s.io` finalizer: deleting it
//! deletes its objects first (see `registry::crds`, which also sets the
//! `NamesAccepted`/`Established` conditions and serves the custom resources).

use chrono::{DateTime, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::custom::field_error;
use crate::kinds::strategy::openapi_ref;
use crate::kinds::{status, validation, Resource, Strategy};
use crate::meta::names::{check_dns1035_label, check_dns1123_subdomain};
use crate::status::{ApiResult, FieldError};

/// The annotation that approves a CRD in a protected group.
pub const APPROVAL_ANNOTATION: &str = "api-approved.kubernetes.io";

/// The finalizer that makes deletion remove the custom resources first.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The `CustomResourceDefinition` resource.
pub static RESOURCE: Resource = Resource {
    group: "apiextensions.k8s.io",
    version: "v1",
    kind: "CustomResourceDefinition",
    plural: "customresourcedefinitions",
    singular: "customresourcedefinition",
    namespaced: false,
    short_names: &["crd", "crds"],
    categories: &["api-extensions"],
    subresources: &[status("CustomResourceDefinition", "apiextensions.k8s.io", "v1")],
    field_labels: None,
};

/// How CustomResourceDefinitions behave.
pub struct CustomResourceDefinitions;

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

impl Strategy for CustomResourceDefinitions {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<CustomResourceDefinition>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<CustomResourceDefinition>(generator)
    }

    fn default(&self, obj: &mut Value) {
        let kind = s(obj, "/spec/names/kind").to_string();
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if !spec.get("conversion").is_some_and(Value::is_object) {
            spec.insert("conversion".into(), json!({"strategy": "None"}));
        }
        if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
            if names.get("singular").and_then(Value::as_str).unwrap_or_default().is_empty() && !kind.is_empty() {
                names.insert("singular".into(), json!(kind.to_lowercase()));
            }
            if names.get("listKind").and_then(Value::as_str).unwrap_or_default().is_empty() && !kind.is_empty() {
                names.insert("listKind".into(), json!(format!("{kind}List")));
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let m = &mut obj["metadata"];
        let mut fins: Vec<Value> = m.get("finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
        if !fins.iter().any(|f| f == CLEANUP_FINALIZER) {
            fins.push(json!(CLEANUP_FINALIZER));
        }
        m["finalizers"] = json!(fins);
        obj["status"] = json!({"acceptedNames": {"plural": "", "kind": ""}, "conditions": [], "storedVersions": []});
    }

    fn empty_status(&self, _obj: &mut Value) {}

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_crd(obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = validate_crd(new);
        errs.extend(validation::immutable(old, new, "/spec/scope", "spec.scope"));
        errs.extend(validation::immutable(old, new, "/spec/group", "spec.group"));
        errs
    }

    fn columns(&self) -> Vec<Value> {
        vec![
            json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
            json!({"name": "Created At", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}),
        ]
    }

    fn cells(&self, obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
        vec![
            json!(s(obj, "/metadata/name")),
            json!(s(obj, "/metadata/creationTimestamp")),
        ]
    }
}

/// Kubernetes' `ValidateCustomResourceDefinition`, the parts Sluice honours.
fn validate_crd(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = s(obj, "/spec/group");
    let plural = s(obj, "/spec/names/plural");
    let name = s(obj, "/metadata/name");
    if name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if let Err(e) = check_dns1123_subdomain(group) {
        errs.push(FieldError::invalid("spec.group", &json!(group), e));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    let protected = ["k8s.io", "kubernetes.io"]
        .iter()
        .any(|p| group == *p || group.ends_with(&format!(".{p}")));
    let approved = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(APPROVAL_ANNOTATION))
        .is_some();
    if protected && !approved {
        errs.push(FieldError::required(
            format!("metadata.annotations[{APPROVAL_ANNOTATION}]"),
            format!("protected groups must have approval annotation {APPROVAL_ANNOTATION:?}, see https://github.com/kubernetes/enhancements/pull/1111"),
        ));
    }
    match s(obj, "/spec/scope") {
        "Cluster" | "Namespaced" => {}
        "" => errs.push(FieldError::required("spec.scope", "")),
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            &json!(other),
            &["Cluster", "Namespaced"],
        )),
    }
    for (field, value) in [("plural", plural), ("singular", s(obj, "/spec/names/singular"))] {
        if value.is_empty() {
            errs.push(FieldError::required(format!("spec.names.{field}"), ""));
        } else if let Err(e) = check_dns1035_label(value) {
            errs.push(FieldError::invalid(format!("spec.names.{field}"), &json!(value), e));
        }
    }
    for field in ["kind", "listKind"] {
        if s(obj, &format!("/spec/names/{field}")).is_empty() {
            errs.push(FieldError::required(format!("spec.names.{field}"), ""));
        }
    }
    let strategy = s(obj, "/spec/conversion/strategy");
    if !strategy.is_empty() && strategy != "None" {
        errs.push(FieldError::not_supported(
            "spec.conversion.strategy",
            &json!(strategy),
            &["None"],
        ));
    }
    let versions = obj.pointer("/spec/versions").and_then(Value::as_array);
    if versions.is_none_or(|v| v.is_empty()) {
        errs.push(FieldError::required("spec.versions", "must have exactly one version marked as storage version"));
    }
    for (i, v) in versions.into_iter().flatten().enumerate() {
        let vname = s(v, "/name");
        if let Err(e) = check_dns1035_label(vname) {
            errs.push(FieldError::invalid(format!("spec.versions[{i}].name"), &json!(vname), e));
        }
        if v.pointer("/schema/openAPIV3Schema").is_none() {
            errs.push(FieldError::required(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            ));
        }
    }
    if errs.is_empty() {
        match serde_json::from_value::<CustomResourceDefinition>(obj.clone()) {
            Ok(crd) => errs.extend(sluice_apiextensions::crd::validate_crd(&crd).iter().map(field_error)),
            Err(e) => errs.push(FieldError::invalid("spec", &Value::Null, e.to_string())),
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object"}}}]}
        })
    }

    #[test]
    fn defaults_names_and_conversion_then_validates() {
        let mut c = crd();
        CustomResourceDefinitions.default(&mut c);
        assert_eq!(c["spec"]["names"]["singular"], "widget");
        assert_eq!(c["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(c["spec"]["conversion"]["strategy"], "None");
        assert_eq!(CustomResourceDefinitions.validate(&c), vec![]);
    }

    #[test]
    fn refuses_wrong_name_dotless_group_and_webhook_conversion() {
        let mut c = crd();
        c["metadata"]["name"] = json!("gadgets.example.com");
        c["spec"]["conversion"] = json!({"strategy": "Webhook"});
        CustomResourceDefinitions.default(&mut c);
        let fields: Vec<String> = CustomResourceDefinitions.validate(&c).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["metadata.name", "spec.conversion.strategy"]);
        let mut c = crd();
        c["spec"]["group"] = json!("example");
        c["metadata"]["name"] = json!("widgets.example");
        CustomResourceDefinitions.default(&mut c);
        assert_eq!(CustomResourceDefinitions.validate(&c)[0].field, "spec.group");
    }
}
