//! CustomResourceDefinition schemas for the Sluice API server, as Kubernetes'
//! apiextensions-apiserver handles them. A pure library over `serde_json::Value` and
//! k8s-openapi's `apiextensions::v1` types; no I/O.
//!
//! # API
//!
//! - [`CustomResourceSchema`]: one CRD version's schema, parsed and with its CEL rules
//!   compiled once; share it (it is `Send + Sync`) and call
//!   [`prune`](CustomResourceSchema::prune) → [`apply_defaults`](CustomResourceSchema::apply_defaults)
//!   → [`validate`](CustomResourceSchema::validate) /
//!   [`validate_update`](CustomResourceSchema::validate_update) per request, and
//!   `apply_defaults` again on every read from storage.
//! - [`structural::validate_openapi_schema`]: the CRD-time checks of an `openAPIV3Schema`
//!   (generic restrictions, structural rules, defaults, CEL compilation), and
//!   [`crd::validate_crd`] for a whole CRD (one storage version, schemas, scale paths).
//! - [`validation`], [`defaulting`], [`pruning`], [`cel`]: the pieces, usable alone.
//! - [`crd`]: storage/served versions, printer columns and their cells, the
//!   `NamesAccepted`/`Established` conditions, scale subresource paths.
//! - [`field`]: `FieldPath`/`FieldError` rendering exactly as Kubernetes'
//!   `field.Error` (`spec.replicas: Invalid value: "string": spec.replicas in body must be
//!   of type integer: "string"`).
//!
//! # Known gaps
//!
//! - CEL: no cost estimation or runtime cost limits; no type-checking at compile time
//!   (an undeclared field or a type mismatch is found when a rule runs and reported as
//!   `rule evaluation error: ...`); Kubernetes' library extensions `quantity`, `url`, `ip`,
//!   `cidr`, `format`, `authz` and `optional` old values (`optionalOldSelf` binds `null`
//!   when there is no old value) are not available; transition rules correlate old values
//!   through object properties, map keys, `x-kubernetes-list-type: map` keys and equal
//!   `set` items only; `messageExpression` failures silently fall back to `message`.
//! - Validation: `anyOf`/`oneOf`/`not` failures are worded approximately; the
//!   `metadata` of the resource and of embedded resources is not validated (ObjectMeta
//!   validation belongs to the API server) and embedded `apiVersion` is not parsed as a
//!   group/version; string lengths count Unicode scalar values; `uri` is accepted as
//!   leniently as Go's `url.Parse`; numeric formats (`int32`, `int64`, `float`,
//!   `double`) are not range-checked — Kubernetes does not check them either.
//! - Pruning keeps the whole `metadata` of the root and of embedded resources (Kubernetes
//!   prunes embedded `metadata` to ObjectMeta's fields).
//! - Structural check: the root `metadata` restriction compares a few keys rather than the
//!   whole schema; `x-kubernetes-int-or-string` with a `type` is not flagged; defaults in
//!   embedded resources' metadata are not validated as ObjectMeta.
//! - Printer columns: JSONPath is limited to fields, indices and quoted keys (no `[*]`,
//!   filters or ranges); a `string` column renders non-strings as JSON text.

pub mod cel;
pub mod crd;
pub mod defaulting;
pub mod field;
pub mod formats;
pub mod pruning;
pub mod schema;
pub mod structural;
pub mod validation;

pub use field::{BadValue, ErrorType, FieldError, FieldPath};
pub use schema::{Schema, SchemaError};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSONSchemaProps};
use serde_json::Value;

/// Why a [`CustomResourceSchema`] could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("x-kubernetes-validations do not compile: {}", .0.iter().map(|e| format!("{}[{}].{}: {}", e.schema_path, e.index, e.part, e.message)).collect::<Vec<_>>().join("; "))]
    Cel(Vec<cel::CompileError>),
    #[error("version {0:?} not found or without a schema")]
    NoSchema(String),
}

/// One CRD version's schema, ready to prune, default and validate custom resources.
#[derive(Debug)]
pub struct CustomResourceSchema {
    schema: Schema,
    rules: cel::CelRules,
}

impl CustomResourceSchema {
    /// From the JSON form of `openAPIV3Schema`.
    pub fn from_json(schema: &Value) -> Result<Self, BuildError> {
        let schema = Schema::from_json(schema)?;
        let rules = cel::CelRules::compile(&schema).map_err(BuildError::Cel)?;
        Ok(Self { schema, rules })
    }

    /// From k8s-openapi's `JSONSchemaProps`.
    pub fn from_props(props: &JSONSchemaProps) -> Result<Self, BuildError> {
        let schema = Schema::from_props(props)?;
        let rules = cel::CelRules::compile(&schema).map_err(BuildError::Cel)?;
        Ok(Self { schema, rules })
    }

    /// The schema of version `version` of `crd`.
    pub fn for_version(crd: &CustomResourceDefinition, version: &str) -> Result<Self, BuildError> {
        let json = crd::version_schema(crd, version).ok_or_else(|| BuildError::NoSchema(version.to_string()))?;
        Self::from_json(&json)
    }

    /// The parsed schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Drops unknown fields; returns their paths (`unknown field "<path>"` warnings, or
    /// errors under `fieldValidation=Strict`).
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        pruning::prune(&self.schema, obj)
    }

    /// Applies `default`s (on request decode and on read from storage).
    pub fn apply_defaults(&self, obj: &mut Value) {
        defaulting::apply_defaults(&self.schema, obj)
    }

    /// Validates a new object: the OpenAPI schema errors, then the CEL rule errors.
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        self.validate_update(obj, None)
    }

    /// Validates an object on update: transition rules (`oldSelf`) run against `old`.
    pub fn validate_update(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errs = validation::validate(&self.schema, obj);
        errs.extend(self.rules.validate(&self.schema, obj, old));
        errs
    }
}

#[cfg(test)]
mod tests;
