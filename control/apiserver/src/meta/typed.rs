//! Typed decoding: an object decoded into its k8s-openapi type (wrong types
//! are a 400 naming the field) and encoded back. Fields present in the input
//! but absent from the round trip are unknown fields (see
//! [`crate::registry::schema`]).

use k8s_openapi::schemars::generate::SchemaGenerator;
use k8s_openapi::schemars::JsonSchema;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::status::ApiError;

/// Round-trip `v` through the k8s-openapi type `T`.
pub fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, ApiError> {
    let typed: T = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        ApiError::bad_request(format!("failed to decode object: {path}: {}", e.inner()))
    })?;
    serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))
}

/// The typed model of a kind that is only exchanged on a subresource (a
/// Pod's `Binding`, the `Scale` of workloads and custom resources): how its
/// objects decode and its OpenAPI schema. Declared with the subresource
/// (`crate::kinds::Subresource::model`), so nothing looks kinds up by name.
#[derive(Clone, Copy)]
pub struct Model {
    decode: fn(&Value) -> Result<Value, ApiError>,
    openapi: fn(&mut SchemaGenerator) -> Option<String>,
}

impl Model {
    /// The model of the k8s-openapi type `T`.
    pub const fn of<T: DeserializeOwned + Serialize + JsonSchema>() -> Model {
        Model {
            decode: round_trip::<T>,
            openapi: schema_name::<T>,
        }
    }

    /// Round-trip `v` through the type (see [`round_trip`]).
    pub fn decode(&self, v: &Value) -> Result<Value, ApiError> {
        (self.decode)(v)
    }

    /// Adds the type's schema to `generator`, returning its definition name.
    pub fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        (self.openapi)(generator)
    }
}

impl PartialEq for Model {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.decode, other.decode)
    }
}

impl Eq for Model {}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Model")
    }
}

/// Adds the schema of `T` to `generator`, returning its definition name.
fn schema_name<T: JsonSchema>(generator: &mut SchemaGenerator) -> Option<String> {
    generator
        .subschema_for::<T>()
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .map(str::to_string)
}
