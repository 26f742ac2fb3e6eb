//! Typed decoding: an object decoded into its k8s-openapi type (wrong types
//! are a 400 naming the field). The fields the type does not know are the
//! unknown fields (see [`crate::registry::schema`]); a round trip (decoded
//! and encoded back) is kept for the callers that read the typed form.

use k8s_openapi::schemars::generate::SchemaGenerator;
use k8s_openapi::schemars::JsonSchema;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::status::ApiError;

/// Round-trip `v` through the k8s-openapi type `T`.
pub fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, ApiError> {
    let typed: T = serde_path_to_error::deserialize(v).map_err(decode_error)?;
    serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))
}

/// The fields of `v` the k8s-openapi type `T` does not know, in input
/// order, as dotted paths with `[i]` for list items (`spec.containers[0].foo`).
/// A field set to `null` is not reported (as absent). A wrong type is a 400
/// naming the field.
///
/// The type's decoding tells them: it skips every key it does not know
/// (`serde_ignored` reports those), so nothing is encoded back and compared,
/// as a round trip would. The decoding path is tracked only when decoding
/// fails, to name the field.
pub fn unknown_fields<T: DeserializeOwned>(v: &Value) -> Result<Vec<String>, ApiError> {
    let mut unknown = Vec::new();
    let decoded: Result<T, _> = serde_ignored::deserialize(v, |path| {
        if !value_at(v, &path).is_some_and(Value::is_null) {
            unknown.push(dotted(&path));
        }
    });
    match decoded {
        Ok(_) => Ok(unknown),
        Err(first) => Err(match serde_path_to_error::deserialize::<_, T>(v) {
            Err(e) => decode_error(e),
            Ok(_) => ApiError::bad_request(format!("failed to decode object: {first}")),
        }),
    }
}

/// The value of `root` at `path`.
fn value_at<'v>(root: &'v Value, path: &serde_ignored::Path) -> Option<&'v Value> {
    use serde_ignored::Path;
    match path {
        Path::Root => Some(root),
        Path::Seq { parent, index } => value_at(root, parent)?.get(*index),
        Path::Map { parent, key } => value_at(root, parent)?.get(key.as_str()),
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            value_at(root, parent)
        }
    }
}

/// Paths (dotted, `[i]` for list items) present in `input` but not in
/// `known` (fields set to null are not reported): the fields a custom
/// resource's structural pruning drops.
pub fn dropped_fields(input: &Value, known: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, known, "", &mut out);
    out
}

fn walk(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => walk(v, kv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) if i.len() == k.len() => {
            for (n, (a, b)) in i.iter().zip(k).enumerate() {
                walk(a, b, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// A decoding error as a 400 naming the field.
fn decode_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    ApiError::bad_request(format!("failed to decode object: {path}: {}", e.inner()))
}

/// `path` as [`unknown_fields`] spells it: keys joined by dots, list items as `[i]`.
fn dotted(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", dotted(parent)),
        Path::Map { parent, key } => match dotted(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => dotted(parent),
    }
}

/// The typed model of a kind that is only exchanged on a subresource (a
/// Pod's `Binding`, the `Scale` of workloads and custom resources): how its
/// objects decode and its OpenAPI schema. Declared with the subresource
/// (`crate::kinds::Subresource::model`), so nothing looks kinds up by name.
#[derive(Clone, Copy)]
pub struct Model {
    unknown_fields: fn(&Value) -> Result<Vec<String>, ApiError>,
    openapi: fn(&mut SchemaGenerator) -> Option<String>,
}

impl Model {
    /// The model of the k8s-openapi type `T`.
    pub const fn of<T: DeserializeOwned + JsonSchema>() -> Model {
        Model {
            unknown_fields: unknown_fields::<T>,
            openapi: schema_name::<T>,
        }
    }

    /// The fields of `v` the type does not know (see [`unknown_fields`]).
    pub fn unknown_fields(&self, v: &Value) -> Result<Vec<String>, ApiError> {
        (self.unknown_fields)(v)
    }

    /// Adds the type's schema to `generator`, returning its definition name.
    pub fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        (self.openapi)(generator)
    }
}

impl PartialEq for Model {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.unknown_fields, other.unknown_fields)
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
