//! ValidatingWebhookConfigurations (admissionregistration.k8s.io/v1): the
//! validating admission webhooks the registry calls (see
//! `crate::registry::admission`). Defaults and Table columns are shared
//! with MutatingWebhookConfigurations; validation is the `sluice-admission`
//! crate's.

use chrono::{DateTime, Utc};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::Value;

use crate::kinds::mutatingwebhookconfiguration::{default_webhooks, field_errors, row, COLUMNS};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::{table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `ValidatingWebhookConfiguration` resource.
pub static RESOURCE: Resource = Resource {
    group: "admissionregistration.k8s.io",
    version: "v1",
    kind: "ValidatingWebhookConfiguration",
    plural: "validatingwebhookconfigurations",
    singular: "validatingwebhookconfiguration",
    namespaced: false,
    short_names: &[],
    categories: &["api-extensions"],
    subresources: &[],
    field_labels: None,
};

/// How `ValidatingWebhookConfiguration` objects behave.
pub struct ValidatingWebhookConfigurations;

impl Strategy for ValidatingWebhookConfigurations {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<ValidatingWebhookConfiguration>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<ValidatingWebhookConfiguration>(generator)
    }

    fn default(&self, obj: &mut Value) {
        default_webhooks(obj, false);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        match serde_json::from_value::<ValidatingWebhookConfiguration>(obj.clone()) {
            Ok(c) => field_errors(sluice_admission::validation::validate_validating_configuration(&c)),
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
