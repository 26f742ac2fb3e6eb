//! Validation of a value against a CRD schema (the OpenAPI part; CEL rules are in
//! [`crate::cel`]).
//!
//! Errors are worded as the API server words them after converting kube-openapi's
//! validation errors into `field.Error`s: the path is `<base>.<name>` and the detail
//! repeats the name (`spec.replicas in body must be of type integer: "string"`).

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::field::{go_float, go_quote, go_repr, BadValue, FieldError, FieldPath};
use crate::formats;
use crate::schema::{AdditionalProperties, Schema};

/// Validates a custom resource (the whole object) against its version's schema.
///
/// `metadata` at the root is skipped (it is validated as `ObjectMeta` elsewhere), as is
/// `metadata` of embedded resources.
pub fn validate(schema: &Schema, obj: &Value) -> Vec<FieldError> {
    validate_at(schema, obj, &FieldPath::root(), true)
}

/// Validates `value` against `schema`, reporting paths under `base`; `is_resource_root`
/// skips `metadata` as at the root of a resource.
pub fn validate_at(schema: &Schema, value: &Value, base: &FieldPath, is_resource_root: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let v = Validator { base };
    v.node(schema, value, "", is_resource_root, &mut errs);
    errs
}

/// The JSON type name kube-openapi reports for a value.
pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(v: &Value) -> bool {
    matches!(v, Value::Number(n) if n.is_i64())
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn child_name(name: &str, key: &str) -> String {
    if name.is_empty() {
        key.to_string()
    } else {
        format!("{name}.{key}")
    }
}

/// `<name> in body <rest>`, or `in body <rest>` at the root.
fn msg(name: &str, rest: &str) -> String {
    if name.is_empty() {
        format!("in body {rest}")
    } else {
        format!("{name} in body {rest}")
    }
}

/// A canonical, hashable rendering of a JSON value (object keys are sorted by serde_json's
/// map; numbers normalized).
fn canonical(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => go_float(n.as_f64().unwrap_or(0.0)),
        },
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(m) => {
            let mut parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), canonical(v)))
                .collect();
            parts.sort();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

fn is_int_or_string_any_of(list: &[Schema]) -> bool {
    list.len() == 2 && list[0].type_ == "integer" && list[1].type_ == "string"
}

struct Validator<'a> {
    base: &'a FieldPath,
}

impl Validator<'_> {
    fn path(&self, name: &str) -> FieldPath {
        if name.is_empty() {
            self.base.clone()
        } else {
            self.base.child(name)
        }
    }

    fn node(&self, s: &Schema, v: &Value, name: &str, is_resource_root: bool, errs: &mut Vec<FieldError>) {
        let path = self.path(name);
        if v.is_null() {
            if s.nullable {
                return;
            }
            let expected = if s.x_int_or_string {
                "integer,string"
            } else {
                s.type_.as_str()
            };
            if !expected.is_empty() {
                errs.push(FieldError::type_invalid(
                    &path,
                    "null",
                    msg(name, &format!("must be of type {expected}: \"null\"")),
                ));
            }
            return;
        }

        // type
        let type_ok = match s.type_.as_str() {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => is_integer(v),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "" if s.x_int_or_string => is_integer(v) || v.is_string(),
            _ => true,
        };
        if !type_ok {
            let expected = if s.type_.is_empty() {
                "integer,string"
            } else {
                s.type_.as_str()
            };
            let actual = json_type_name(v);
            errs.push(FieldError::type_invalid(
                &path,
                actual,
                msg(name, &format!("must be of type {expected}: {}", go_quote(actual))),
            ));
            return;
        }

        // format (strings only, as kube-openapi)
        if let Value::String(sv) = v {
            if !s.format.is_empty() && !formats::is_valid(&s.format, sv) {
                errs.push(FieldError::type_invalid(
                    &path,
                    sv.as_str(),
                    msg(name, &format!("must be of type {}: {}", s.format, go_quote(sv))),
                ));
            }
        }

        // enum
        if let Some(values) = &s.enum_ {
            if !values.iter().any(|e| json_equal(e, v)) {
                let supported: Vec<String> = values
                    .iter()
                    .map(|e| match e {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                errs.push(FieldError::not_supported(&path, BadValue::from_json(v), &supported));
            }
        }

        match v {
            Value::String(sv) => self.string(s, sv, name, &path, errs),
            Value::Number(n) => self.number(s, v, n.as_f64().unwrap_or(0.0), name, &path, errs),
            Value::Array(items) => self.array(s, items, name, &path, errs),
            Value::Object(m) => self.object(s, m, name, &path, is_resource_root, errs),
            _ => {}
        }

        self.junctors(s, v, name, &path, is_resource_root, errs);
    }

    fn string(&self, s: &Schema, sv: &str, name: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
        let len = sv.chars().count() as i64;
        if let Some(max) = s.max_length {
            if len > max {
                errs.push(FieldError::too_long(path, max));
            }
        }
        if let Some(min) = s.min_length {
            if len < min {
                errs.push(FieldError::invalid(
                    path,
                    sv,
                    msg(name, &format!("should be at least {min} chars long")),
                ));
            }
        }
        if let (Some(p), Some(re)) = (&s.pattern, &s.pattern_regex) {
            if !re.is_match(sv) {
                errs.push(FieldError::invalid(path, sv, msg(name, &format!("should match '{p}'"))));
            }
        }
    }

    fn number(&self, s: &Schema, v: &Value, x: f64, name: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
        let bad = BadValue::from_json(v);
        if let Some(max) = s.maximum {
            if (s.exclusive_maximum && x >= max) || x > max {
                let rel = if s.exclusive_maximum {
                    "less than"
                } else {
                    "less than or equal to"
                };
                errs.push(FieldError::invalid(
                    path,
                    bad.clone(),
                    msg(name, &format!("should be {rel} {}", go_float(max))),
                ));
            }
        }
        if let Some(min) = s.minimum {
            if (s.exclusive_minimum && x <= min) || x < min {
                let rel = if s.exclusive_minimum {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                errs.push(FieldError::invalid(
                    path,
                    bad.clone(),
                    msg(name, &format!("should be {rel} {}", go_float(min))),
                ));
            }
        }
        if let Some(m) = s.multiple_of {
            if m > 0.0 {
                let q = x / m;
                if q.is_finite() && (q - q.round()).abs() > 1e-9 {
                    errs.push(FieldError::invalid(
                        path,
                        bad,
                        msg(name, &format!("should be a multiple of {}", go_float(m))),
                    ));
                }
            }
        }
    }

    fn array(&self, s: &Schema, items: &[Value], name: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
        let len = items.len() as i64;
        if let Some(max) = s.max_items {
            if len > max {
                errs.push(FieldError::too_many(path, len, max));
            }
        }
        if let Some(min) = s.min_items {
            if len < min {
                errs.push(FieldError::invalid(
                    path,
                    len,
                    msg(name, &format!("should have at least {min} items")),
                ));
            }
        }
        if s.unique_items {
            let mut seen = HashSet::new();
            if !items.iter().all(|i| seen.insert(canonical(i))) {
                errs.push(FieldError::invalid(path, "", msg(name, "shouldn't contain duplicates")));
            }
        }
        match s.x_list_type.as_deref() {
            Some("set") => {
                let mut seen = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    if !seen.insert(canonical(item)) {
                        errs.push(FieldError::duplicate(&path.index(i), BadValue::from_json(item)));
                    }
                }
            }
            Some("map") if !s.x_list_map_keys.is_empty() => {
                let mut seen = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    let Value::Object(m) = item else { continue };
                    let mut keys = Map::new();
                    for k in &s.x_list_map_keys {
                        // a missing key takes its default, if the schema has one
                        let kv = m.get(k).cloned().or_else(|| {
                            s.items
                                .as_ref()
                                .and_then(|is| is.properties.get(k))
                                .and_then(|p| p.default.clone())
                        });
                        if let Some(kv) = kv {
                            keys.insert(k.clone(), kv);
                        }
                    }
                    if !seen.insert(canonical(&Value::Object(keys.clone()))) {
                        errs.push(FieldError::duplicate(
                            &path.index(i),
                            BadValue::Raw(go_repr(&Value::Object(keys))),
                        ));
                    }
                }
            }
            _ => {}
        }
        if let Some(is) = &s.items {
            for (i, item) in items.iter().enumerate() {
                let child = format!("{name}[{i}]");
                self.node(is, item, &child, is.x_embedded_resource, errs);
            }
        }
    }

    fn object(
        &self,
        s: &Schema,
        m: &Map<String, Value>,
        name: &str,
        path: &FieldPath,
        is_resource_root: bool,
        errs: &mut Vec<FieldError>,
    ) {
        let len = m.len() as i64;
        if let Some(max) = s.max_properties {
            if len > max {
                errs.push(FieldError::too_many(path, len, max));
            }
        }
        if let Some(min) = s.min_properties {
            if len < min {
                errs.push(FieldError::invalid(
                    path,
                    min,
                    msg(name, &format!("should have at least {min} properties")),
                ));
            }
        }
        for r in &s.required {
            if is_resource_root && r == "metadata" {
                continue;
            }
            if !m.contains_key(r) {
                errs.push(FieldError::required(&self.path(&child_name(name, r)), ""));
            }
        }
        if s.x_embedded_resource {
            for k in ["apiVersion", "kind"] {
                let empty = match m.get(k) {
                    Some(Value::String(s)) => s.is_empty(),
                    _ => true,
                };
                if empty {
                    errs.push(FieldError::required(
                        &self.path(&child_name(name, k)),
                        "must not be empty",
                    ));
                }
            }
        }
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort();
        for k in keys {
            let Some(child) = m.get(k) else { continue };
            if is_resource_root && k == "metadata" {
                continue;
            }
            let cname = child_name(name, k);
            if let Some(ps) = s.properties.get(k) {
                self.node(ps, child, &cname, ps.x_embedded_resource, errs);
            } else {
                match &s.additional_properties {
                    Some(AdditionalProperties::Schema(ap)) => {
                        self.node(ap, child, &cname, ap.x_embedded_resource, errs)
                    }
                    Some(AdditionalProperties::Bool(false)) => errs.push(FieldError::invalid(
                        path,
                        k.as_str(),
                        msg(&child_name(name, k), "is a forbidden property"),
                    )),
                    _ => {}
                }
            }
        }
    }

    fn junctors(
        &self,
        s: &Schema,
        v: &Value,
        name: &str,
        path: &FieldPath,
        is_resource_root: bool,
        errs: &mut Vec<FieldError>,
    ) {
        let skip_first_all_of_any_of = s.x_int_or_string
            && s.all_of.first().is_some_and(|a| is_int_or_string_any_of(&a.any_of))
            && !is_int_or_string_any_of(&s.any_of);
        for (i, branch) in s.all_of.iter().enumerate() {
            if i == 0 && skip_first_all_of_any_of {
                let mut b = branch.clone();
                b.any_of.clear();
                self.node(&b, v, name, is_resource_root, errs);
            } else {
                self.node(branch, v, name, is_resource_root, errs);
            }
        }
        let skip_any_of = s.x_int_or_string && is_int_or_string_any_of(&s.any_of);
        if !s.any_of.is_empty() && !skip_any_of {
            let mut best: Option<Vec<FieldError>> = None;
            for branch in &s.any_of {
                let mut e = Vec::new();
                self.node(branch, v, name, is_resource_root, &mut e);
                if e.is_empty() {
                    best = None;
                    break;
                }
                if best.as_ref().is_none_or(|b| e.len() < b.len()) {
                    best = Some(e);
                }
            }
            if let Some(b) = best {
                errs.push(FieldError::invalid(
                    path,
                    "",
                    format!("{} must validate at least one schema (anyOf)", go_quote(name)),
                ));
                errs.extend(b);
            }
        }
        if !s.one_of.is_empty() {
            let passing = s
                .one_of
                .iter()
                .filter(|branch| {
                    let mut e = Vec::new();
                    self.node(branch, v, name, is_resource_root, &mut e);
                    e.is_empty()
                })
                .count();
            if passing != 1 {
                errs.push(FieldError::invalid(
                    path,
                    "",
                    format!("{} must validate one and only one schema (oneOf)", go_quote(name)),
                ));
            }
        }
        if let Some(not) = &s.not {
            let mut e = Vec::new();
            self.node(not, v, name, is_resource_root, &mut e);
            if e.is_empty() {
                errs.push(FieldError::invalid(
                    path,
                    "",
                    format!("{} must not validate the schema (not)", go_quote(name)),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        Schema::from_json(&v).unwrap()
    }

    fn errors(s: &Schema, v: Value) -> Vec<String> {
        validate(s, &v).iter().map(|e| e.to_string()).collect()
    }

    fn spec_schema(spec: Value) -> Schema {
        schema(json!({"type": "object", "properties": {"spec": spec}}))
    }

    #[test]
    fn type_errors() {
        let s = spec_schema(json!({"type": "object", "properties": {"replicas": {"type": "integer"}}}));
        assert_eq!(
            errors(&s, json!({"spec": {"replicas": "3"}})),
            vec![r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"replicas": 1.5}})),
            vec![r#"spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number""#]
        );
        assert_eq!(
            errors(&s, json!({"spec": "x"})),
            vec![r#"spec: Invalid value: "string": spec in body must be of type object: "string""#]
        );
        assert!(errors(&s, json!({"spec": {"replicas": 3}})).is_empty());
        assert_eq!(
            errors(&s, json!({"spec": {"replicas": null}})),
            vec![r#"spec.replicas: Invalid value: "null": spec.replicas in body must be of type integer: "null""#]
        );
        let n = spec_schema(json!({"type": "object", "properties": {"r": {"type": "integer", "nullable": true}}}));
        assert!(errors(&n, json!({"spec": {"r": null}})).is_empty());
        let num = spec_schema(json!({"type": "number"}));
        assert!(errors(&num, json!({"spec": 3})).is_empty());
    }

    #[test]
    fn required_enum_and_bounds() {
        let s = spec_schema(json!({
            "type": "object",
            "required": ["image"],
            "properties": {
                "image": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                "size": {"type": "string", "enum": ["small", "large"]},
                "n": {"type": "integer", "minimum": 1, "maximum": 10, "exclusiveMaximum": true, "multipleOf": 3},
                "f": {"type": "number", "minimum": 0.5, "exclusiveMinimum": true}
            }
        }));
        assert_eq!(errors(&s, json!({"spec": {}})), vec!["spec.image: Required value"]);
        assert_eq!(
            errors(&s, json!({"spec": {"image": "abc", "size": "huge"}})),
            vec![r#"spec.size: Unsupported value: "huge": supported values: "small", "large""#]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"image": "ABCDEF"}})),
            vec![
                "spec.image: Too long: may not be more than 5 bytes",
                r#"spec.image: Invalid value: "ABCDEF": spec.image in body should match '^[a-z]+$'"#
            ]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"image": "a"}})),
            vec![r#"spec.image: Invalid value: "a": spec.image in body should be at least 2 chars long"#]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"image": "ab", "n": 12}})),
            vec!["spec.n: Invalid value: 12: spec.n in body should be less than 10",]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"image": "ab", "n": 0}})),
            vec!["spec.n: Invalid value: 0: spec.n in body should be greater than or equal to 1"]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"image": "ab", "n": 4}})),
            vec!["spec.n: Invalid value: 4: spec.n in body should be a multiple of 3"]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"image": "ab", "f": 0.5}})),
            vec!["spec.f: Invalid value: 0.5: spec.f in body should be greater than 0.5"]
        );
    }

    #[test]
    fn arrays_and_list_types() {
        let s = spec_schema(json!({
            "type": "object",
            "properties": {
                "tags": {"type": "array", "maxItems": 3, "minItems": 1, "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "u": {"type": "array", "uniqueItems": true, "items": {"type": "integer"}},
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["port", "protocol"],
                    "items": {"type": "object", "required": ["port"], "properties": {
                        "port": {"type": "integer"},
                        "protocol": {"type": "string", "default": "TCP"}
                    }}
                }
            }
        }));
        assert_eq!(
            errors(&s, json!({"spec": {"tags": ["a", "b", "a", "c"]}})),
            vec![
                "spec.tags: Too many: 4: must have at most 3 items",
                r#"spec.tags[2]: Duplicate value: "a""#
            ]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"tags": []}})),
            vec!["spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"u": [1, 2, 1]}})),
            vec![r#"spec.u: Invalid value: "": spec.u in body shouldn't contain duplicates"#]
        );
        assert_eq!(
            errors(
                &s,
                json!({"spec": {"ports": [{"port": 80}, {"port": 80, "protocol": "UDP"}, {"port": 80, "protocol": "TCP"}]}})
            ),
            vec![r#"spec.ports[2]: Duplicate value: map[string]interface {}{"port":80, "protocol":"TCP"}"#]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"ports": [{"protocol": "UDP"}, {"port": "x"}]}})),
            vec![
                "spec.ports[0].port: Required value",
                r#"spec.ports[1].port: Invalid value: "string": spec.ports[1].port in body must be of type integer: "string""#
            ]
        );
    }

    #[test]
    fn objects_additional_properties_and_counts() {
        let s = spec_schema(json!({
            "type": "object",
            "properties": {
                "labels": {"type": "object", "maxProperties": 2, "minProperties": 1, "additionalProperties": {"type": "string"}},
                "closed": {"type": "object", "additionalProperties": false}
            }
        }));
        assert_eq!(
            errors(&s, json!({"spec": {"labels": {"a": "x", "b": 1, "c": "z"}}})),
            vec![
                "spec.labels: Too many: 3: must have at most 2 items",
                r#"spec.labels.b: Invalid value: "integer": spec.labels.b in body must be of type string: "integer""#
            ]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"labels": {}}})),
            vec!["spec.labels: Invalid value: 1: spec.labels in body should have at least 1 properties"]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"closed": {"x": 1}}})),
            vec![r#"spec.closed: Invalid value: "x": spec.closed.x in body is a forbidden property"#]
        );
    }

    #[test]
    fn formats() {
        let s = spec_schema(json!({
            "type": "object",
            "properties": {
                "when": {"type": "string", "format": "date-time"},
                "day": {"type": "string", "format": "date"},
                "ip": {"type": "string", "format": "ipv4"},
                "n": {"type": "integer", "format": "int32"},
                "id": {"type": "string", "format": "uuid"},
                "b": {"type": "string", "format": "byte"}
            }
        }));
        assert!(errors(
            &s,
            json!({"spec": {"when": "2024-01-02T03:04:05Z", "day": "2024-02-29", "ip": "10.0.0.1", "n": 5,
                "id": "123e4567-e89b-12d3-a456-426614174000", "b": "aGVsbG8="}})
        )
        .is_empty());
        assert_eq!(
            errors(&s, json!({"spec": {"when": "yesterday", "ip": "1.2.3", "b": "!!"}})),
            vec![
                r#"spec.b: Invalid value: "!!": spec.b in body must be of type byte: "!!""#,
                r#"spec.ip: Invalid value: "1.2.3": spec.ip in body must be of type ipv4: "1.2.3""#,
                r#"spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday""#,
            ]
        );
    }

    #[test]
    fn int_or_string_and_embedded_resources() {
        let s = spec_schema(json!({
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}
            }
        }));
        assert!(errors(&s, json!({"spec": {"port": 80}})).is_empty());
        assert!(errors(&s, json!({"spec": {"port": "http"}})).is_empty());
        assert_eq!(
            errors(&s, json!({"spec": {"port": true}})),
            vec![r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"template": {"metadata": {"name": 1}}}})),
            vec![
                "spec.template.apiVersion: Required value: must not be empty",
                "spec.template.kind: Required value: must not be empty"
            ]
        );
        assert!(errors(&s, json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod"}}})).is_empty());
    }

    #[test]
    fn root_metadata_is_skipped() {
        let s =
            schema(json!({"type": "object", "required": ["metadata"], "properties": {"metadata": {"type": "object"}}}));
        assert!(errors(&s, json!({"metadata": 5})).is_empty());
        assert!(errors(&s, json!({})).is_empty());
    }

    #[test]
    fn junctors() {
        let s = spec_schema(json!({
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
            "not": {"required": ["c"]}
        }));
        assert!(errors(&s, json!({"spec": {"a": "x"}})).is_empty());
        assert_eq!(
            errors(&s, json!({"spec": {"a": "x", "b": "y"}})),
            vec![r#"spec: Invalid value: "": "spec" must validate one and only one schema (oneOf)"#]
        );
        let any = spec_schema(json!({"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}));
        assert_eq!(
            errors(&any, json!({"spec": {}})),
            vec![
                r#"spec: Invalid value: "": "spec" must validate at least one schema (anyOf)"#,
                "spec.a: Required value"
            ]
        );
    }
}
