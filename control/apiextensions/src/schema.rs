//! A CRD version's `openAPIV3Schema` parsed into a tree the other modules walk.
//!
//! [`Schema::from_json`] accepts the JSON form of `JSONSchemaProps` (what k8s-openapi's
//! `apiextensions::v1::JSONSchemaProps` serializes to); [`Schema::from_props`] takes the
//! typed form. Parsing is lenient about fields it does not use and never panics: a
//! field of the wrong JSON type is a [`SchemaError`].

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use regex::Regex;
use serde_json::{Map, Value};

/// Nesting deeper than this is refused, so that walking a schema never overflows the stack.
pub const MAX_SCHEMA_DEPTH: usize = 128;

/// Why a schema could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    #[error("{path}: {message}")]
    InvalidField { path: String, message: String },
    #[error("schema nested deeper than {MAX_SCHEMA_DEPTH} levels")]
    TooDeep,
    #[error("cannot serialize schema: {0}")]
    Serialize(String),
}

/// One `x-kubernetes-validations` rule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValidationRule {
    pub rule: String,
    pub message: String,
    pub message_expression: String,
    pub field_path: String,
    pub reason: String,
    pub optional_old_self: bool,
}

/// `additionalProperties`: a boolean or a schema.
#[derive(Clone, Debug)]
pub enum AdditionalProperties {
    Bool(bool),
    Schema(Box<Schema>),
}

/// One node of a CRD schema.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    pub type_: String,
    pub format: String,
    pub title: String,
    pub description: String,
    pub nullable: bool,
    pub properties: BTreeMap<String, Schema>,
    pub additional_properties: Option<AdditionalProperties>,
    pub items: Option<Box<Schema>>,
    pub required: Vec<String>,
    pub enum_: Option<Vec<Value>>,
    pub default: Option<Value>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub multiple_of: Option<f64>,
    pub max_length: Option<i64>,
    pub min_length: Option<i64>,
    pub pattern: Option<String>,
    /// `pattern` compiled; `None` if absent or not a valid regular expression.
    pub pattern_regex: Option<Regex>,
    pub max_items: Option<i64>,
    pub min_items: Option<i64>,
    pub unique_items: bool,
    pub max_properties: Option<i64>,
    pub min_properties: Option<i64>,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    pub x_preserve_unknown_fields: bool,
    pub x_embedded_resource: bool,
    pub x_int_or_string: bool,
    pub x_list_type: Option<String>,
    pub x_list_map_keys: Vec<String>,
    pub x_map_type: Option<String>,
    pub x_validations: Vec<ValidationRule>,
}

impl Schema {
    /// Parses the JSON form of a `JSONSchemaProps`.
    pub fn from_json(v: &Value) -> Result<Schema, SchemaError> {
        parse(v, "", 0)
    }

    /// Converts k8s-openapi's typed `JSONSchemaProps`.
    pub fn from_props(props: &JSONSchemaProps) -> Result<Schema, SchemaError> {
        let v = serde_json::to_value(props).map_err(|e| SchemaError::Serialize(e.to_string()))?;
        Self::from_json(&v)
    }

    /// The schema of property `name`, or of `additionalProperties`.
    pub fn property(&self, name: &str) -> Option<&Schema> {
        self.properties.get(name).or(match &self.additional_properties {
            Some(AdditionalProperties::Schema(s)) => Some(s),
            _ => None,
        })
    }

    /// The schema applying to values under `additionalProperties`, if a schema.
    pub fn additional_properties_schema(&self) -> Option<&Schema> {
        match &self.additional_properties {
            Some(AdditionalProperties::Schema(s)) => Some(s),
            _ => None,
        }
    }
}

fn err(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::InvalidField {
        path: if path.is_empty() { "<root>".into() } else { path.into() },
        message: message.into(),
    }
}

fn join(path: &str, child: &str) -> String {
    if path.is_empty() {
        child.to_string()
    } else {
        format!("{path}.{child}")
    }
}

fn get_str(m: &Map<String, Value>, key: &str, path: &str) -> Result<String, SchemaError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(err(&join(path, key), "must be a string")),
    }
}

fn get_opt_str(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, SchemaError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(&join(path, key), "must be a string")),
    }
}

fn get_bool(m: &Map<String, Value>, key: &str, path: &str) -> Result<bool, SchemaError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(err(&join(path, key), "must be a boolean")),
    }
}

fn get_f64(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<f64>, SchemaError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(err(&join(path, key), "must be a number")),
    }
}

fn get_i64(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, SchemaError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None => Err(err(&join(path, key), "must be an integer")),
        },
        Some(_) => Err(err(&join(path, key), "must be an integer")),
    }
}

fn get_str_list(m: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<String>, SchemaError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err(err(&join(path, key), "must be a list of strings")),
            })
            .collect(),
        Some(_) => Err(err(&join(path, key), "must be a list of strings")),
    }
}

fn get_schema_list(m: &Map<String, Value>, key: &str, path: &str, depth: usize) -> Result<Vec<Schema>, SchemaError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, s)| parse(s, &format!("{}[{i}]", join(path, key)), depth + 1))
            .collect(),
        Some(_) => Err(err(&join(path, key), "must be a list of schemas")),
    }
}

fn parse(v: &Value, path: &str, depth: usize) -> Result<Schema, SchemaError> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(SchemaError::TooDeep);
    }
    let m = match v {
        Value::Object(m) => m,
        _ => return Err(err(path, "must be an object")),
    };
    let mut s = Schema {
        type_: get_str(m, "type", path)?,
        format: get_str(m, "format", path)?,
        title: get_str(m, "title", path)?,
        description: get_str(m, "description", path)?,
        nullable: get_bool(m, "nullable", path)?,
        required: get_str_list(m, "required", path)?,
        default: m.get("default").filter(|d| !d.is_null()).cloned(),
        maximum: get_f64(m, "maximum", path)?,
        exclusive_maximum: get_bool(m, "exclusiveMaximum", path)?,
        minimum: get_f64(m, "minimum", path)?,
        exclusive_minimum: get_bool(m, "exclusiveMinimum", path)?,
        multiple_of: get_f64(m, "multipleOf", path)?,
        max_length: get_i64(m, "maxLength", path)?,
        min_length: get_i64(m, "minLength", path)?,
        pattern: get_opt_str(m, "pattern", path)?,
        max_items: get_i64(m, "maxItems", path)?,
        min_items: get_i64(m, "minItems", path)?,
        unique_items: get_bool(m, "uniqueItems", path)?,
        max_properties: get_i64(m, "maxProperties", path)?,
        min_properties: get_i64(m, "minProperties", path)?,
        all_of: get_schema_list(m, "allOf", path, depth)?,
        any_of: get_schema_list(m, "anyOf", path, depth)?,
        one_of: get_schema_list(m, "oneOf", path, depth)?,
        x_preserve_unknown_fields: get_bool(m, "x-kubernetes-preserve-unknown-fields", path)?,
        x_embedded_resource: get_bool(m, "x-kubernetes-embedded-resource", path)?,
        x_int_or_string: get_bool(m, "x-kubernetes-int-or-string", path)?,
        x_list_type: get_opt_str(m, "x-kubernetes-list-type", path)?,
        x_list_map_keys: get_str_list(m, "x-kubernetes-list-map-keys", path)?,
        x_map_type: get_opt_str(m, "x-kubernetes-map-type", path)?,
        ..Schema::default()
    };
    if let Some(p) = &s.pattern {
        s.pattern_regex = Regex::new(p).ok();
    }
    match m.get("enum") {
        None | Some(Value::Null) => {}
        Some(Value::Array(values)) => s.enum_ = Some(values.clone()),
        Some(_) => return Err(err(&join(path, "enum"), "must be a list")),
    }
    match m.get("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(props)) => {
            for (k, v) in props {
                let p = format!("{}[{k}]", join(path, "properties"));
                s.properties.insert(k.clone(), parse(v, &p, depth + 1)?);
            }
        }
        Some(_) => return Err(err(&join(path, "properties"), "must be an object")),
    }
    match m.get("additionalProperties") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => s.additional_properties = Some(AdditionalProperties::Bool(*b)),
        Some(v @ Value::Object(_)) => {
            s.additional_properties = Some(AdditionalProperties::Schema(Box::new(parse(
                v,
                &join(path, "additionalProperties"),
                depth + 1,
            )?)))
        }
        Some(_) => {
            return Err(err(
                &join(path, "additionalProperties"),
                "must be a boolean or a schema",
            ))
        }
    }
    match m.get("items") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Object(_)) => s.items = Some(Box::new(parse(v, &join(path, "items"), depth + 1)?)),
        // A list of schemas is not supported by Kubernetes (reported by the structural
        // check); take the first for walking purposes.
        Some(Value::Array(list)) => {
            if let Some(first) = list.first() {
                s.items = Some(Box::new(parse(first, &join(path, "items"), depth + 1)?));
            }
        }
        Some(_) => return Err(err(&join(path, "items"), "must be a schema")),
    }
    match m.get("not") {
        None | Some(Value::Null) => {}
        Some(v) => s.not = Some(Box::new(parse(v, &join(path, "not"), depth + 1)?)),
    }
    match m.get("x-kubernetes-validations") {
        None | Some(Value::Null) => {}
        Some(Value::Array(rules)) => {
            for (i, r) in rules.iter().enumerate() {
                let rp = format!("{}[{i}]", join(path, "x-kubernetes-validations"));
                let rm = match r {
                    Value::Object(rm) => rm,
                    _ => return Err(err(&rp, "must be an object")),
                };
                s.x_validations.push(ValidationRule {
                    rule: get_str(rm, "rule", &rp)?,
                    message: get_str(rm, "message", &rp)?,
                    message_expression: get_str(rm, "messageExpression", &rp)?,
                    field_path: get_str(rm, "fieldPath", &rp)?,
                    reason: get_str(rm, "reason", &rp)?,
                    optional_old_self: get_bool(rm, "optionalOldSelf", &rp)?,
                });
            }
        }
        Some(_) => return Err(err(&join(path, "x-kubernetes-validations"), "must be a list")),
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_json_and_typed_props() {
        let v = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "pattern": "^[a-z]+$"},
                        "replicas": {"type": "integer", "default": 1, "minimum": 0},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                    "x-kubernetes-validations": [{"rule": "self.replicas >= 0", "message": "m"}]
                }
            }
        });
        let s = Schema::from_json(&v).unwrap();
        let spec = &s.properties["spec"];
        assert_eq!(spec.required, vec!["image"]);
        assert!(spec.properties["image"].pattern_regex.is_some());
        assert_eq!(spec.properties["replicas"].default, Some(json!(1)));
        assert!(spec.properties["labels"].additional_properties_schema().is_some());
        assert_eq!(spec.x_validations[0].rule, "self.replicas >= 0");

        let props: JSONSchemaProps = serde_json::from_value(v).unwrap();
        let s2 = Schema::from_props(&props).unwrap();
        assert_eq!(s2.properties["spec"].properties["replicas"].minimum, Some(0.0));
    }

    #[test]
    fn wrong_field_types_are_errors_not_panics() {
        let e = Schema::from_json(&json!({"type": 1})).unwrap_err();
        assert_eq!(e.to_string(), "type: must be a string");
        let e = Schema::from_json(&json!({"properties": {"a": {"maxLength": "x"}}})).unwrap_err();
        assert_eq!(e.to_string(), "properties[a].maxLength: must be an integer");
        assert!(Schema::from_json(&json!([])).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut v = json!({"type": "string"});
        for _ in 0..(MAX_SCHEMA_DEPTH + 5) {
            v = json!({"type": "array", "items": v});
        }
        assert_eq!(Schema::from_json(&v).unwrap_err(), SchemaError::TooDeep);
    }
}
