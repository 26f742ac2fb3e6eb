//! SelfSubjectAccessReviews (`authorization.k8s.io/v1`): may I do this? (`kubectl auth can-i`).
//!
//! Created only, never stored: the API server answers the create with the
//! object's `status` filled in (`http::reviews`), as Kubernetes does.

use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::Value;

use crate::kinds::strategy::openapi_ref;
use crate::kinds::{Resource, Strategy};
use crate::status::ApiResult;

/// The `SelfSubjectAccessReview` resource.
pub static RESOURCE: Resource = Resource {
    group: "authorization.k8s.io",
    version: "v1",
    kind: "SelfSubjectAccessReview",
    plural: "selfsubjectaccessreviews",
    singular: "selfsubjectaccessreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `SelfSubjectAccessReview` objects behave: created and answered, nothing else.
pub struct SelfSubjectAccessReviews;

impl Strategy for SelfSubjectAccessReviews {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn verbs(&self) -> &'static [&'static str] {
        &["create"]
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview>(generator)
    }
}
