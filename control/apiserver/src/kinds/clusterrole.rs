//! ClusterRoles (`rbac.authorization.k8s.io/v1`): cluster-wide sets of
//! policy rules, optionally aggregated: a ClusterRole with an
//! `aggregationRule` gets its `rules` from the ClusterRoles its selectors
//! match (the controller-manager's `clusterrole_aggregation` writes them).

use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::Value;

use crate::kinds::strategy::{openapi_ref, NameRule};
use crate::kinds::{rbac, table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `ClusterRole` resource.
pub static RESOURCE: Resource = Resource {
    group: rbac::GROUP,
    version: "v1",
    kind: "ClusterRole",
    plural: "clusterroles",
    singular: "clusterrole",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `ClusterRole` objects behave.
pub struct ClusterRoles;

impl Strategy for ClusterRoles {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<ClusterRole>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<ClusterRole>(generator)
    }

    fn name_rule(&self) -> NameRule {
        rbac::path_segment_name
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = rbac::validate_rules(obj, false);
        errs.extend(rbac::validate_aggregation_rule(obj));
        errs
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(rbac::ROLE_COLUMNS)
    }

    fn cells(&self, obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
        rbac::role_row(obj)
    }
}
