//! Custom resources: the [`Strategy`] of one served version of a
//! CustomResourceDefinition, built from the CRD by `registry::crds` when the
//! CRD is established (and rebuilt when it changes).
//!
//! What Kubernetes' apiextensions-apiserver does for a custom resource, with
//! the schema work done by `sluice-apiextensions`:
//! - decoding prunes unknown fields (so they are dropped, warned about or
//!   refused per `fieldValidation`), honouring
//!   `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-int-or-string`
//!   and `x-kubernetes-embedded-resource`;
//! - schema `default`s are applied on every write and on every read;
//! - validation is the structural schema plus `x-kubernetes-validations` CEL
//!   rules, with transition rules (`oldSelf`) on update, each error carrying
//!   its field path;
//! - objects are stored in the storage version and served in the requested
//!   one (`conversion: None` only changes `apiVersion`);
//! - the status subresource, when declared, splits status from the rest;
//!   the scale subresource reads and writes the declared replica paths;
//! - Tables show the version's `additionalPrinterColumns`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};
use sluice_apiextensions::crd::{PrinterColumn, ScalePaths};
use sluice_apiextensions::CustomResourceSchema;

use crate::kinds::{Resource, Strategy};
use crate::status::{ApiError, ApiResult, FieldError};

/// One served version of a CustomResourceDefinition.
pub struct CustomResource {
    /// The interned description (names, scope, subresources).
    pub resource: &'static Resource,
    /// Name of the CRD (`<plural>.<group>`).
    pub crd: String,
    /// `apiVersion` objects are stored with.
    pub storage_api_version: String,
    /// The version's schema.
    pub schema: Arc<CustomResourceSchema>,
    /// The version's `openAPIV3Schema`, for OpenAPI documents.
    pub openapi_schema: Value,
    /// Table columns.
    pub columns: Vec<PrinterColumn>,
    /// Scale subresource paths, if the version serves `/scale`.
    pub scale: Option<ScalePaths>,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
    /// The warning responses carry when the version is deprecated.
    pub deprecation: Option<String>,
}

/// Converts a schema error to the API server's field error.
pub fn field_error(e: &sluice_apiextensions::FieldError) -> FieldError {
    FieldError {
        reason: e.error_type.reason(),
        field: e.path.to_string(),
        message: e.body(),
    }
}

/// OpenAPI definition name of a custom kind, as Kubernetes builds it: the
/// group reversed, then version and kind (`io.cert-manager.v1.Certificate`).
pub fn definition_name(r: &Resource) -> String {
    let mut parts: Vec<&str> = r.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), r.version, r.kind)
}

impl CustomResource {
    fn errors(errs: Vec<sluice_apiextensions::FieldError>) -> Vec<FieldError> {
        errs.iter().map(field_error).collect()
    }

    /// The Scale (autoscaling/v1) view of `obj`.
    pub fn scale_of(&self, obj: &Value) -> ApiResult<Value> {
        let paths = self.scale.as_ref().ok_or_else(|| ApiError::path_not_found("scale"))?;
        let values = sluice_apiextensions::crd::read_scale(paths, obj).map_err(ApiError::internal)?;
        Ok(crate::kinds::strategy::scale_object(
            obj,
            json!(values.spec_replicas),
            json!(values.status_replicas),
            &values.selector,
        ))
    }
}

impl Strategy for CustomResource {
    fn resource(&self) -> &'static Resource {
        self.resource
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        let mut known = obj.clone();
        self.schema.prune(&mut known);
        Ok(Some(crate::meta::typed::dropped_fields(obj, &known)))
    }

    fn deprecation(&self) -> Option<String> {
        self.deprecation.clone()
    }

    fn check_create(&self) -> ApiResult<()> {
        if !self.terminating {
            return Ok(());
        }
        Err(ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: "create not allowed while custom resource definition is terminating".into(),
            details: Some(json!({"group": self.resource.group, "kind": self.resource.plural})),
        })
    }

    fn default(&self, obj: &mut Value) {
        self.schema.apply_defaults(obj);
    }

    fn converts_on_read(&self) -> bool {
        true
    }

    fn on_read(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("apiVersion".into(), json!(self.resource.api_version()));
        }
        self.schema.apply_defaults(obj);
    }

    fn to_storage(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("apiVersion".into(), json!(self.storage_api_version));
        }
    }

    fn empty_status(&self, _obj: &mut Value) {}

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        Self::errors(self.schema.validate(obj))
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        Self::errors(self.schema.validate_update(new, Some(old)))
    }

    fn validate_status_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        Self::errors(self.schema.validate_update(new, Some(old)))
    }

    fn strategic_merge(&self) -> bool {
        false
    }

    fn apply_schema(&self) -> crate::kinds::apply_schema::ApplySchema {
        crate::kinds::apply_schema::ApplySchema::Structural(self.schema.clone())
    }

    fn scale(&self, obj: &Value) -> Option<ApiResult<Value>> {
        self.scale.as_ref()?;
        Some(self.scale_of(obj))
    }

    fn set_replicas(&self, obj: &mut Value, replicas: i64) -> Option<ApiResult<()>> {
        let paths = self.scale.as_ref()?;
        Some(sluice_apiextensions::crd::write_spec_replicas(paths, obj, replicas).map_err(ApiError::internal))
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        let name = definition_name(self.resource);
        let mut schema = self.openapi_schema.clone();
        if let Some(o) = schema.as_object_mut() {
            let props = o.entry("properties").or_insert_with(|| json!({}));
            if let Some(p) = props.as_object_mut() {
                // ObjectMeta is the API server's, whatever the CRD says.
                let meta_ref = generator
                    .subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>()
                    .get("$ref")
                    .cloned()
                    .unwrap_or(Value::Null);
                p.insert(
                    "metadata".into(),
                    json!({"$ref": meta_ref, "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
                );
                p.entry("apiVersion").or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
                p.entry("kind").or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            }
        }
        generator.definitions_mut().insert(name.clone(), schema);
        Some(name)
    }

    fn columns(&self) -> Vec<Value> {
        self.columns
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect()
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        sluice_apiextensions::crd::printer_cells(&self.columns, obj, now)
    }
}
