//! RoleBindings (`rbac.authorization.k8s.io/v1`): grant a Role of the same
//! namespace, or a ClusterRole within this namespace, to users, groups and
//! service accounts. The role reference is immutable; who may create one
//! (`bind`, or holding every granted permission) is decided in
//! `registry::rbac`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::Value;

use crate::kinds::strategy::{openapi_ref, NameRule};
use crate::kinds::{rbac, table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `RoleBinding` resource.
pub static RESOURCE: Resource = Resource {
    group: rbac::GROUP,
    version: "v1",
    kind: "RoleBinding",
    plural: "rolebindings",
    singular: "rolebinding",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `RoleBinding` objects behave.
pub struct RoleBindings;

impl Strategy for RoleBindings {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<RoleBinding>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<RoleBinding>(generator)
    }

    fn name_rule(&self) -> NameRule {
        rbac::path_segment_name
    }

    fn default(&self, obj: &mut Value) {
        rbac::default_binding(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        rbac::validate_binding(obj, true, &["Role", "ClusterRole"])
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(rbac::validate_role_ref_unchanged(old, new));
        errs
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(&rbac::binding_columns("roleBinding"))
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        rbac::binding_row(obj, now)
    }
}
