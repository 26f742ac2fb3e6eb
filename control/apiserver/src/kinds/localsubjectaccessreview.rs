//! LocalSubjectAccessReviews (`authorization.k8s.io/v1`): a SubjectAccessReview kept to one namespace, so namespace admins may ask it.
//!
//! Created only, never stored: the API server answers the create with the
//! object's `status` filled in (`http::reviews`), as Kubernetes does.

use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::Value;

use crate::kinds::strategy::openapi_ref;
use crate::kinds::{Resource, Strategy};
use crate::status::ApiResult;

/// The `LocalSubjectAccessReview` resource.
pub static RESOURCE: Resource = Resource {
    group: "authorization.k8s.io",
    version: "v1",
    kind: "LocalSubjectAccessReview",
    plural: "localsubjectaccessreviews",
    singular: "localsubjectaccessreview",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `LocalSubjectAccessReview` objects behave: created and answered, nothing else.
pub struct LocalSubjectAccessReviews;

impl Strategy for LocalSubjectAccessReviews {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn verbs(&self) -> &'static [&'static str] {
        &["create"]
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::authorization::v1::LocalSubjectAccessReview>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::authorization::v1::LocalSubjectAccessReview>(generator)
    }
}
