//! ServiceAccounts (core/v1).

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, arr, col, name, Column, AGE, NAME};
use crate::kinds::{table, Resource, Strategy, Subresource};
use crate::status::ApiResult;

/// `serviceaccounts/token`: an `authentication.k8s.io/v1` TokenRequest,
/// answered by `http::token_request` (`kubectl create token`).
const TOKEN: Subresource = Subresource {
    name: "token",
    kind: "TokenRequest",
    kind_group: "authentication.k8s.io",
    kind_version: "v1",
    verbs: &["create"],
    model: Some(crate::meta::typed::Model::of::<
        k8s_openapi::api::authentication::v1::TokenRequest,
    >()),
};

/// The `ServiceAccount` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ServiceAccount",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    subresources: &[TOKEN],
    field_labels: None,
};

/// How `ServiceAccount` objects behave.
pub struct ServiceAccounts;

impl Strategy for ServiceAccounts {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::ServiceAccount>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::ServiceAccount>(generator)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[NAME, col("Secrets", "integer", 0, "Number of secrets."), AGE];

fn row(sa: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(sa), json!(arr(sa, &["secrets"]).len()), age(sa, now)]
}
