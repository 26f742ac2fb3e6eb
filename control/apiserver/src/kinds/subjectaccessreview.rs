//! SubjectAccessReviews (`authorization.k8s.io/v1`): may this user (and groups) do this?
//!
//! Created only, never stored: the API server answers the create with the
//! object's `status` filled in (`http::reviews`), as Kubernetes does.

use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::Value;

use crate::kinds::strategy::openapi_ref;
use crate::kinds::{Resource, Strategy};
use crate::status::ApiResult;

/// The `SubjectAccessReview` resource.
pub static RESOURCE: Resource = Resource {
    group: "authorization.k8s.io",
    version: "v1",
    kind: "SubjectAccessReview",
    plural: "subjectaccessreviews",
    singular: "subjectaccessreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `SubjectAccessReview` objects behave: created and answered, nothing else.
pub struct SubjectAccessReviews;

impl Strategy for SubjectAccessReviews {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn verbs(&self) -> &'static [&'static str] {
        &["create"]
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::authorization::v1::SubjectAccessReview>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::authorization::v1::SubjectAccessReview>(generator)
    }
}
