//! Roles (`rbac.authorization.k8s.io/v1`): namespaced sets of policy rules.
//! Validation and columns are shared with ClusterRoles in [`crate::kinds::rbac`];
//! whether a user may write one (escalation) is decided in `registry::rbac`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::Value;

use crate::kinds::strategy::{openapi_ref, NameRule};
use crate::kinds::{rbac, table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `Role` resource.
pub static RESOURCE: Resource = Resource {
    group: rbac::GROUP,
    version: "v1",
    kind: "Role",
    plural: "roles",
    singular: "role",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `Role` objects behave.
pub struct Roles;

impl Strategy for Roles {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<Role>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<Role>(generator)
    }

    fn name_rule(&self) -> NameRule {
        rbac::path_segment_name
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        rbac::validate_rules(obj, true)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(rbac::ROLE_COLUMNS)
    }

    fn cells(&self, obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
        rbac::role_row(obj)
    }
}
