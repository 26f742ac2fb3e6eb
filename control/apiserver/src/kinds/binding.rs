//! Bindings (core/v1 `bindings`): the older way to assign a pod to a node,
//! a namespaced collection that is only created. The pod is the binding's
//! own name. `pods/{name}/binding` is the same request on the pod; both are
//! carried out by `registry::binding`, and nothing is stored as a Binding.

use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::Value;

use crate::kinds::strategy::openapi_ref;
use crate::kinds::{Resource, Strategy};
use crate::status::ApiResult;

/// The `Binding` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Binding",
    plural: "bindings",
    singular: "binding",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `Binding` objects behave: created, carried out, never stored.
pub struct Bindings;

impl Strategy for Bindings {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn verbs(&self) -> &'static [&'static str] {
        &["create"]
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::Binding>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::Binding>(generator)
    }
}
