//! PodTemplates (core/v1): a named pod template, defaulted and validated
//! like a workload's (`template.spec` gets the pod-spec defaults; fields the
//! node cannot honour are refused), with kubectl's columns.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::default_pod_spec;
use crate::kinds::pod_support::{self, PodSpecAt};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{self, arr, col, map_selector_string, name, s, Column, NAME};
use crate::kinds::validation::{self, Errors};
use crate::kinds::{Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `PodTemplate` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "PodTemplate",
    plural: "podtemplates",
    singular: "podtemplate",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// Where a PodTemplate's pod spec is.
const SPEC_AT: PodSpecAt = PodSpecAt {
    path: "template.spec",
    pointer: "/template/spec",
};

/// How PodTemplates behave.
pub struct PodTemplates;

impl PodTemplates {
    fn check(&self, old: Option<&Value>, obj: &Value) -> Vec<FieldError> {
        let mut errs = Errors::default();
        validation::validate_pod_spec(&mut errs, obj.pointer("/template/spec"), "template.spec");
        errs.0.extend(pod_support::refuse_unsupported(SPEC_AT, old, obj));
        errs.0
    }
}

impl Strategy for PodTemplates {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::PodTemplate>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::PodTemplate>(generator)
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.pointer_mut("/template/spec").and_then(Value::as_object_mut) {
            default_pod_spec(spec);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        self.check(None, obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        self.check(Some(old), new)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
        row(obj)
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("Containers", "string", 0, "Names of each container in the template."),
    col("Images", "string", 0, "Images referenced by each container in the template."),
    col("Pod Labels", "string", 0, "The labels for the pod template."),
];

fn row(pt: &Value) -> Vec<Value> {
    let containers = arr(pt, &["template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| s(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, &["image"])).collect();
    let labels = map_selector_string(pt.pointer("/template/metadata/labels").and_then(Value::as_object));
    vec![name(pt), json!(names.join(",")), json!(images.join(",")), json!(labels)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validates_the_template_spec() {
        let mut pt = json!({"metadata": {"name": "web"}, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.22.1"}]}}});
        PodTemplates.default(&mut pt);
        assert_eq!(pt["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(pt["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert!(PodTemplates.validate(&pt).is_empty());
        let empty = json!({"template": {"spec": {"containers": []}}});
        assert_eq!(PodTemplates.validate(&empty)[0].to_line(), "template.spec.containers: Required value");
        assert_eq!(row(&pt)[1], "web");
    }
}
