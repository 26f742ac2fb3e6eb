//! Typed decoding: an object decoded into its k8s-openapi type (wrong types
//! are a 400 naming the field) and encoded back. Fields present in the input
//! but absent from the round trip are unknown fields (see
//! [`crate::registry::schema`]).

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
