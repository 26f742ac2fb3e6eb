//! The checks the API server makes on a CRD version's `openAPIV3Schema` when the CRD is
//! created or updated: the generic OpenAPI restrictions, the structural-schema rules,
//! default values (valid and pruned) and CEL rule compilation.
//!
//! [`validate_openapi_schema`] works on the raw JSON so that fields Kubernetes forbids
//! (`$ref`, `patternProperties`, `definitions`, ...) are seen. Errors carry full paths such
//! as `spec.versions[0].schema.openAPIV3Schema.properties[spec].type`, and are sorted like
//! Kubernetes sorts its structural errors.
//!
//! Not checked: the cost estimation of CEL rules, the `metadata` schema restrictions
//! beyond "only `name`/`generateName`" (their own types), and type-checking of CEL rules
//! (an undeclared field is only found when a rule runs).

use serde_json::{Map, Value};

use crate::field::{BadValue, FieldError, FieldPath};
use crate::schema::{Schema, MAX_SCHEMA_DEPTH};

const OPENAPI_V3_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];
const META_FIELDS: [&str; 3] = ["metadata", "kind", "apiVersion"];

/// Every check Kubernetes makes on `openAPIV3Schema` at `path`
/// (e.g. `spec.versions[0].schema.openAPIV3Schema`).
pub fn validate_openapi_schema(schema: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(root) = schema.as_object() else {
        errs.push(FieldError::invalid(
            path,
            BadValue::from_json(schema),
            "must be an object",
        ));
        return errs;
    };
    if get_bool(root, "nullable") {
        errs.push(FieldError::forbidden(
            &path.child("nullable"),
            "nullable cannot be true at the root",
        ));
    }
    generic(
        root,
        path,
        Ctx {
            is_root: true,
            inside_meta: false,
            defaults_forbidden: None,
        },
        &mut errs,
        0,
    );

    let parsed = match Schema::from_json(schema) {
        Ok(s) => s,
        Err(e) => {
            if errs.is_empty() {
                errs.push(FieldError::invalid(path, "", e.to_string()));
            }
            return errs;
        }
    };

    let mut structural = validate_structural(schema, path);
    structural.sort_by_key(|e| e.to_string());
    let structural_ok = structural.is_empty();
    errs.extend(structural);

    errs.extend(crate::cel::compile_errors(&parsed, path));

    if structural_ok {
        validate_defaults(&parsed, path, true, false, &mut errs, 0);
    }
    errs
}

/// Only the structural-schema rules (Kubernetes' `ValidateStructural`); the CRD's
/// `NonStructuralSchema` condition lists these.
pub fn validate_structural(schema: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(m) = schema.as_object() {
        invariants(m, Level::Root, path, &mut errs, 0);
        completeness(m, path, &mut errs, 0);
    }
    errs.sort_by_key(|e| e.to_string());
    errs
}

/// Whether a schema is structural.
pub fn is_structural(schema: &Value) -> bool {
    validate_structural(schema, &FieldPath::root()).is_empty()
}

fn get_bool(m: &Map<String, Value>, k: &str) -> bool {
    matches!(m.get(k), Some(Value::Bool(true)))
}

fn get_str<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

fn present(m: &Map<String, Value>, k: &str) -> bool {
    m.get(k).is_some_and(|v| !v.is_null())
}

fn props(m: &Map<String, Value>) -> Option<&Map<String, Value>> {
    m.get("properties").and_then(Value::as_object)
}

fn items_obj(m: &Map<String, Value>) -> Option<&Map<String, Value>> {
    m.get("items").and_then(Value::as_object)
}

fn additional_schema(m: &Map<String, Value>) -> Option<&Map<String, Value>> {
    m.get("additionalProperties").and_then(Value::as_object)
}

fn list<'a>(m: &'a Map<String, Value>, k: &str) -> impl Iterator<Item = (usize, &'a Map<String, Value>)> {
    m.get(k)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, v)| v.as_object().map(|o| (i, o)))
}

fn sorted_props(m: &Map<String, Value>) -> Vec<(&String, &Map<String, Value>)> {
    let mut v: Vec<(&String, &Map<String, Value>)> = props(m)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_object().map(|o| (k, o)))
        .collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

#[derive(Clone)]
struct Ctx {
    is_root: bool,
    inside_meta: bool,
    defaults_forbidden: Option<String>,
}

/// Kubernetes' `ValidateCustomResourceDefinitionOpenAPISchema` (generic restrictions).
fn generic(m: &Map<String, Value>, path: &FieldPath, ctx: Ctx, errs: &mut Vec<FieldError>, depth: usize) {
    if depth > MAX_SCHEMA_DEPTH {
        errs.push(FieldError::forbidden(
            path,
            format!("must not be nested deeper than {MAX_SCHEMA_DEPTH} levels"),
        ));
        return;
    }
    let ty = get_str(m, "type");
    if !ty.is_empty() && !OPENAPI_V3_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(&path.child("type"), ty, &OPENAPI_V3_TYPES));
    }
    if present(m, "default") {
        if let Some(reason) = &ctx.defaults_forbidden {
            errs.push(FieldError::forbidden(
                &path.child("default"),
                format!("must not be set {reason}"),
            ));
        }
    }
    for (k, detail) in [
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ] {
        let set = match m.get(k) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Object(o)) => k == "additionalItems" || !o.is_empty(),
            Some(_) => true,
        };
        if set {
            errs.push(FieldError::forbidden(&path.child(k), detail));
        }
    }
    if ty == "null" {
        errs.push(FieldError::forbidden(
            &path.child("type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if m.get("items").is_some_and(Value::is_array) {
        errs.push(FieldError::forbidden(
            &path.child("items"),
            "items must be a schema object and not an array",
        ));
    }
    let embedded = get_bool(m, "x-kubernetes-embedded-resource");
    if ctx.inside_meta && embedded {
        errs.push(FieldError::forbidden(
            &path.child("x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
    if get_bool(m, "uniqueItems") {
        errs.push(FieldError::forbidden(
            &path.child("uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    let has_props = props(m).is_some_and(|p| !p.is_empty());
    let child_ctx = Ctx {
        is_root: false,
        ..ctx.clone()
    };
    if let Some(ap) = m.get("additionalProperties").filter(|v| !v.is_null()) {
        if has_props && (matches!(ap, Value::Bool(false)) || ap.is_object()) {
            errs.push(FieldError::forbidden(
                &path.child("additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let Some(aps) = ap.as_object() {
            let mut sub = child_ctx.clone();
            if ctx.inside_meta {
                sub.defaults_forbidden = Some("inside additionalProperties applying to object metadata".into());
            }
            generic(aps, &path.child("additionalProperties"), sub, errs, depth + 1);
        }
    }
    for (k, p) in sorted_props(m) {
        let mut sub = child_ctx.clone();
        if (ctx.is_root || embedded) && META_FIELDS.contains(&k.as_str()) {
            sub.inside_meta = true;
            if ctx.is_root {
                sub.defaults_forbidden = Some(format!("in top-level {k}"));
            }
        }
        generic(p, &path.child("properties").key(k), sub, errs, depth + 1);
    }
    if let Some(not) = m.get("not").and_then(Value::as_object) {
        generic(not, &path.child("not"), child_ctx.clone(), errs, depth + 1);
    }
    for junctor in ["allOf", "oneOf", "anyOf"] {
        for (i, s) in list(m, junctor) {
            generic(s, &path.child(junctor).index(i), child_ctx.clone(), errs, depth + 1);
        }
    }
    if let Some(items) = items_obj(m) {
        generic(items, &path.child("items"), child_ctx.clone(), errs, depth + 1);
    }
    if matches!(m.get("x-kubernetes-preserve-unknown-fields"), Some(Value::Bool(false))) {
        errs.push(FieldError::invalid(
            &path.child("x-kubernetes-preserve-unknown-fields"),
            false,
            "must be true or undefined",
        ));
    }
    if let Some(map_type) = m.get("x-kubernetes-map-type").and_then(Value::as_str) {
        if ty != "object" {
            if ty.is_empty() {
                errs.push(FieldError::required(
                    &path.child("type"),
                    "must be object if x-kubernetes-map-type is specified",
                ));
            } else {
                errs.push(FieldError::invalid(
                    &path.child("type"),
                    ty,
                    "must be object if x-kubernetes-map-type is specified",
                ));
            }
        }
        if map_type != "atomic" && map_type != "granular" {
            errs.push(FieldError::not_supported(
                &path.child("x-kubernetes-map-type"),
                map_type,
                &["atomic", "granular"],
            ));
        }
    }
    list_type_checks(m, ty, path, errs);
    rule_text_checks(m, path, errs);
}

fn list_type_checks(m: &Map<String, Value>, ty: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let list_type = m.get("x-kubernetes-list-type").and_then(Value::as_str);
    let map_keys: Vec<&str> = m
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let keys_value = || {
        BadValue::Raw(format!(
            "[]string{{{}}}",
            map_keys
                .iter()
                .map(|k| crate::field::go_quote(k))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    if let Some(lt) = list_type {
        if ty != "array" {
            if ty.is_empty() {
                errs.push(FieldError::required(
                    &path.child("type"),
                    "must be array if x-kubernetes-list-type is specified",
                ));
            } else {
                errs.push(FieldError::invalid(
                    &path.child("type"),
                    ty,
                    "must be array if x-kubernetes-list-type is specified",
                ));
            }
        } else if lt == "set" {
            if let Some(is) = items_obj(m) {
                match get_str(is, "type") {
                    "array" => {
                        if let Some(ilt) = is.get("x-kubernetes-list-type").and_then(Value::as_str) {
                            if ilt != "atomic" {
                                errs.push(FieldError::invalid(
                                    &path.child("items").child("x-kubernetes-list-type"),
                                    ilt,
                                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                                ));
                            }
                        }
                    }
                    "object" if is.get("x-kubernetes-map-type").and_then(Value::as_str) != Some("atomic") => {
                        errs.push(FieldError::invalid(
                            &path.child("items").child("x-kubernetes-map-type"),
                            BadValue::Null,
                            "must be atomic as item of a list with x-kubernetes-list-type=set",
                        ));
                    }
                    _ => {}
                }
            }
        }
        if !["atomic", "set", "map"].contains(&lt) {
            errs.push(FieldError::not_supported(
                &path.child("x-kubernetes-list-type"),
                lt,
                &["atomic", "set", "map"],
            ));
        }
    }
    if !map_keys.is_empty() {
        match list_type {
            None => errs.push(FieldError::required(
                &path.child("x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some("map") => {}
            Some(lt) => errs.push(FieldError::invalid(
                &path.child("x-kubernetes-list-type"),
                lt,
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
        }
    }
    if list_type == Some("map") {
        if map_keys.is_empty() {
            errs.push(FieldError::required(
                &path.child("x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match items_obj(m) {
            None => errs.push(FieldError::required(
                &path.child("items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(is) => {
                let ity = get_str(is, "type");
                if ity != "object" {
                    errs.push(FieldError::invalid(
                        &path.child("items").child("type"),
                        ity,
                        "must be object if parent array's x-kubernetes-list-type is map",
                    ));
                } else {
                    let mut seen = std::collections::HashSet::new();
                    for k in &map_keys {
                        match props(is).and_then(|p| p.get(*k)).and_then(Value::as_object) {
                            Some(ks) => {
                                let kt = get_str(ks, "type");
                                if kt == "array" || kt == "object" {
                                    errs.push(FieldError::invalid(
                                        &path.child("items").child("properties").key(k).child("type"),
                                        ity,
                                        "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                    ));
                                }
                            }
                            None => errs.push(FieldError::invalid(
                                &path.child("x-kubernetes-list-map-keys"),
                                keys_value(),
                                "entries must all be names of item properties",
                            )),
                        }
                        if !seen.insert(*k) {
                            errs.push(FieldError::invalid(
                                &path.child("x-kubernetes-list-map-keys"),
                                keys_value(),
                                "must not contain duplicate entries",
                            ));
                        }
                    }
                }
            }
        }
    }
    // map/set items must not be nullable; map keys must be required or defaulted
    if let (Some(lt @ ("set" | "map")), Some(is)) = (list_type, items_obj(m)) {
        if get_bool(is, "nullable") {
            errs.push(FieldError::forbidden(
                &path.child("items").child("nullable"),
                format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required: Vec<&str> = is
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for k in &map_keys {
                let Some(ks) = props(is).and_then(|p| p.get(*k)).and_then(Value::as_object) else {
                    continue;
                };
                let kp = path.child("items").child("properties").key(k);
                if !required.contains(k) && !present(ks, "default") {
                    errs.push(FieldError::required(
                        &kp.child("default"),
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    ));
                }
                if get_bool(ks, "nullable") {
                    errs.push(FieldError::forbidden(
                        &kp.child("nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

fn rule_text_checks(m: &Map<String, Value>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, r) in list(m, "x-kubernetes-validations") {
        let rp = path.child("x-kubernetes-validations").index(i);
        let rule = get_str(r, "rule");
        let message = get_str(r, "message");
        let (trimmed_rule, trimmed_msg) = (rule.trim(), message.trim());
        if trimmed_rule.is_empty() {
            errs.push(FieldError::required(&rp.child("rule"), "rule is not specified"));
        } else if !message.is_empty() && trimmed_msg.is_empty() {
            errs.push(FieldError::invalid(
                &rp.child("message"),
                message,
                "message must be non-empty if specified",
            ));
        } else if trimmed_msg.contains(['\n', '\r']) {
            errs.push(FieldError::invalid(
                &rp.child("message"),
                message,
                "message must not contain line breaks",
            ));
        } else if trimmed_rule.contains(['\n', '\r']) && trimmed_msg.is_empty() {
            errs.push(FieldError::required(
                &rp.child("message"),
                "message must be specified if rule contains line breaks",
            ));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

fn is_int_or_string_any_of(m: &Map<String, Value>) -> bool {
    let Some(a) = m.get("anyOf").and_then(Value::as_array) else {
        return false;
    };
    let only_type = |v: &Value, t: &str| v.as_object().is_some_and(|o| o.len() == 1 && get_str(o, "type") == t);
    a.len() == 2 && only_type(&a[0], "integer") && only_type(&a[1], "string")
}

fn is_int_or_string_all_of(m: &Map<String, Value>) -> bool {
    m.get("allOf")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_object)
        .is_some_and(is_int_or_string_any_of)
}

/// Kubernetes' `validateStructuralInvariants`.
fn invariants(m: &Map<String, Value>, lvl: Level, path: &FieldPath, errs: &mut Vec<FieldError>, depth: usize) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    let ty = get_str(m, "type");
    if ty == "array" && !present(m, "items") {
        errs.push(FieldError::required(&path.child("items"), "must be specified"));
    }
    if let Some(items) = items_obj(m) {
        invariants(items, Level::Item, &path.child("items"), errs, depth + 1);
    }
    for (k, p) in sorted_props(m) {
        invariants(p, Level::Field, &path.child("properties").key(k), errs, depth + 1);
    }
    // generic: additionalProperties
    if let Some(ap) = m.get("additionalProperties").filter(|v| !v.is_null()) {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(
                &path.child("additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let Some(aps) = ap.as_object() {
            invariants(aps, Level::Field, &path.child("additionalProperties"), errs, depth + 1);
        }
    }
    let preserve = get_bool(m, "x-kubernetes-preserve-unknown-fields");
    let embedded = get_bool(m, "x-kubernetes-embedded-resource");
    let int_or_string = get_bool(m, "x-kubernetes-int-or-string");
    if int_or_string && preserve {
        errs.push(FieldError::invalid(
            &path.child("x-kubernetes-preserve-unknown-fields"),
            true,
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        errs.push(FieldError::invalid(
            &path.child("x-kubernetes-embedded-resource"),
            true,
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }

    let skip_any_of = is_int_or_string_any_of(m);
    let skip_first_all_of_any_of = is_int_or_string_all_of(m);
    value_validation(m, skip_any_of, skip_first_all_of_any_of, path, errs, depth);

    let check_metadata = lvl == Level::Root || embedded;
    if embedded && ty != "object" {
        if ty.is_empty() {
            errs.push(FieldError::required(
                &path.child("type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            errs.push(FieldError::invalid(
                &path.child("type"),
                ty,
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if ty.is_empty() && !int_or_string && !preserve {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(&path.child("type"), detail));
    }
    if embedded && present(m, "additionalProperties") {
        errs.push(FieldError::forbidden(
            &path.child("additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        errs.push(FieldError::invalid(
            &path.child("type"),
            ty,
            "must be object at the root",
        ));
    }
    let p = props(m);
    if check_metadata {
        for (k, want) in [("kind", "string"), ("apiVersion", "string"), ("metadata", "object")] {
            if let Some(s) = p.and_then(|p| p.get(k)).and_then(Value::as_object) {
                let t = get_str(s, "type");
                if t != want {
                    errs.push(FieldError::invalid(
                        &path.child("properties").key(k).child("type"),
                        t,
                        format!("must be {want}"),
                    ));
                }
            }
        }
    }
    if lvl == Level::Root {
        if let Some(meta) = p.and_then(|p| p.get("metadata")).and_then(Value::as_object) {
            if !metadata_only_names(meta) {
                errs.push(FieldError::forbidden(
                    &path.child("properties").key("metadata"),
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
            }
        }
    }
    if embedded && !preserve && p.is_none_or(|p| p.is_empty()) {
        errs.push(FieldError::required(
            &path.child("properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// Whether a root `metadata` schema restricts nothing but `name` and `generateName`
/// (descriptions aside; a `default` is checked elsewhere).
fn metadata_only_names(meta: &Map<String, Value>) -> bool {
    meta.iter().all(|(k, v)| match k.as_str() {
        "type" | "description" | "default" => true,
        "properties" => {
            v.as_object()
                .is_some_and(|p| p.keys().all(|k| k == "name" || k == "generateName") && !p.is_empty())
                || v.as_object().is_some_and(|p| p.is_empty())
        }
        _ => v.is_null(),
    })
}

/// Kubernetes' `validateValueValidation`: what is allowed inside logical junctors.
fn value_validation(
    m: &Map<String, Value>,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    if !skip_any_of {
        for (i, s) in list(m, "anyOf") {
            nested(s, false, &path.child("anyOf").index(i), errs, depth + 1);
        }
    }
    for (i, s) in list(m, "allOf") {
        nested(
            s,
            skip_first_all_of_any_of && i == 0,
            &path.child("allOf").index(i),
            errs,
            depth + 1,
        );
    }
    for (i, s) in list(m, "oneOf") {
        nested(s, false, &path.child("oneOf").index(i), errs, depth + 1);
    }
    if let Some(not) = m.get("not").and_then(Value::as_object) {
        nested(not, false, &path.child("not"), errs, depth + 1);
    }
    if let Some(p) = m.get("pattern").and_then(Value::as_str) {
        if let Err(e) = regex::Regex::new(p) {
            let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
            errs.push(FieldError::invalid(
                &path.child("pattern"),
                p,
                format!("must be a valid regular expression, but isn't: {first}"),
            ));
        }
    }
}

fn nested(m: &Map<String, Value>, skip_any_of: bool, path: &FieldPath, errs: &mut Vec<FieldError>, depth: usize) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    value_validation(m, skip_any_of, false, path, errs, depth);
    if let Some(items) = items_obj(m) {
        nested(items, false, &path.child("items"), errs, depth + 1);
    }
    for (k, p) in sorted_props(m) {
        nested(p, false, &path.child("properties").key(k), errs, depth + 1);
    }
    let forbid = |errs: &mut Vec<FieldError>, k: &str, detail: &str| {
        errs.push(FieldError::forbidden(&path.child(k), detail));
    };
    if !get_str(m, "type").is_empty() {
        forbid(errs, "type", "must be empty to be structural");
    }
    if present(m, "additionalProperties") {
        forbid(errs, "additionalProperties", "must be undefined to be structural");
    }
    if present(m, "default") {
        forbid(errs, "default", "must be undefined to be structural");
    }
    if !get_str(m, "title").is_empty() {
        forbid(errs, "title", "must be empty to be structural");
    }
    if !get_str(m, "description").is_empty() {
        forbid(errs, "description", "must be empty to be structural");
    }
    if get_bool(m, "nullable") {
        forbid(errs, "nullable", "must be false to be structural");
    }
    if get_bool(m, "x-kubernetes-preserve-unknown-fields") {
        forbid(
            errs,
            "x-kubernetes-preserve-unknown-fields",
            "must be false to be structural",
        );
    }
    if get_bool(m, "x-kubernetes-embedded-resource") {
        forbid(errs, "x-kubernetes-embedded-resource", "must be false to be structural");
    }
    if get_bool(m, "x-kubernetes-int-or-string") {
        forbid(errs, "x-kubernetes-int-or-string", "must be false to be structural");
    }
    if m.get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        forbid(errs, "x-kubernetes-list-map-keys", "must be empty to be structural");
    }
    if present(m, "x-kubernetes-list-type") {
        forbid(errs, "x-kubernetes-list-type", "must be undefined to be structural");
    }
    if props(m).is_some_and(|p| p.contains_key("metadata")) {
        errs.push(FieldError::forbidden(
            &path.child("properties").key("metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// Kubernetes' `validateStructuralCompleteness`: whatever the junctors specify must also
/// be specified in the structural part of the schema.
fn completeness(m: &Map<String, Value>, path: &FieldPath, errs: &mut Vec<FieldError>, depth: usize) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, v) in list(m, junctor) {
            nested_completeness(v, Some(m), path, &path.child(junctor).index(i), errs, depth + 1);
        }
    }
    if let Some(not) = m.get("not").and_then(Value::as_object) {
        nested_completeness(not, Some(m), path, &path.child("not"), errs, depth + 1);
    }
    if let Some(items) = items_obj(m) {
        completeness(items, &path.child("items"), errs, depth + 1);
    }
    for (k, p) in sorted_props(m) {
        completeness(p, &path.child("properties").key(k), errs, depth + 1);
    }
    if let Some(ap) = additional_schema(m) {
        completeness(ap, &path.child("additionalProperties"), errs, depth + 1);
    }
}

fn nested_completeness(
    v: &Map<String, Value>,
    s: Option<&Map<String, Value>>,
    s_path: &FieldPath,
    v_path: &FieldPath,
    errs: &mut Vec<FieldError>,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    let Some(s) = s else {
        errs.push(FieldError::required(
            s_path,
            format!("because it is defined in {v_path}"),
        ));
        return;
    };
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, nv) in list(v, junctor) {
            nested_completeness(nv, Some(s), s_path, &v_path.child(junctor).index(i), errs, depth + 1);
        }
    }
    if let Some(not) = v.get("not").and_then(Value::as_object) {
        nested_completeness(not, Some(s), s_path, &v_path.child("not"), errs, depth + 1);
    }
    if let Some(vi) = items_obj(v) {
        nested_completeness(
            vi,
            items_obj(s),
            &s_path.child("items"),
            &v_path.child("items"),
            errs,
            depth + 1,
        );
    }
    for (k, vp) in sorted_props(v) {
        let sp = props(s)
            .and_then(|p| p.get(k.as_str()))
            .and_then(Value::as_object)
            .or_else(|| additional_schema(s));
        nested_completeness(
            vp,
            sp,
            &s_path.child("properties").key(k),
            &v_path.child("properties").key(k),
            errs,
            depth + 1,
        );
    }
}

/// Kubernetes' `ValidateDefaults`: every `default` must be pruned (no unknown fields)
/// and valid against its schema (OpenAPI and CEL rules).
fn validate_defaults(
    s: &Schema,
    path: &FieldPath,
    is_root: bool,
    inside_meta: bool,
    errs: &mut Vec<FieldError>,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    if let Some(d) = &s.default {
        if !inside_meta {
            let dpath = path.child("default");
            let mut pruned = d.clone();
            if !crate::pruning::prune_at(s, &mut pruned).is_empty() {
                errs.push(FieldError::invalid(
                    &dpath,
                    BadValue::from_json(d),
                    "must not have unknown fields",
                ));
            }
            let verrs = crate::validation::validate_at(s, d, &dpath, s.x_embedded_resource);
            if verrs.is_empty() {
                if let Ok(rules) = crate::cel::CelRules::compile(s) {
                    errs.extend(rules.validate_at(s, d, None, &dpath));
                }
            } else {
                errs.extend(verrs);
            }
        }
    }
    for (k, p) in &s.properties {
        let meta = inside_meta || ((is_root || s.x_embedded_resource) && k == "metadata");
        validate_defaults(p, &path.child("properties").key(k), false, meta, errs, depth + 1);
    }
    if let Some(ap) = s.additional_properties_schema() {
        validate_defaults(
            ap,
            &path.child("additionalProperties"),
            false,
            inside_meta,
            errs,
            depth + 1,
        );
    }
    if let Some(items) = &s.items {
        validate_defaults(items, &path.child("items"), false, inside_meta, errs, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> FieldPath {
        FieldPath::new("spec")
            .child("versions")
            .index(0)
            .child("schema")
            .child("openAPIV3Schema")
    }

    fn errors(schema: Value) -> Vec<String> {
        validate_openapi_schema(&schema, &base())
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn missing_types() {
        assert_eq!(
            errors(json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}, "list": {"type": "array"}}})),
            vec![
                "spec.versions[0].schema.openAPIV3Schema.properties[list].items: Required value: must be specified",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
            ]
        );
        assert_eq!(
            errors(json!({"properties": {"l": {"type": "array", "items": {}}}})),
            vec![
                "spec.versions[0].schema.openAPIV3Schema.properties[l].items.type: Required value: must not be empty for specified array items",
                "spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty at the root",
            ]
        );
        assert!(errors(json!({"type": "object", "properties": {
            "free": {"x-kubernetes-preserve-unknown-fields": true},
            "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}
        }}))
        .is_empty());
    }

    #[test]
    fn generic_restrictions() {
        let errs = errors(json!({
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}},
                "b": {"$ref": "#/definitions/x", "type": "string"},
                "c": {"type": "array", "uniqueItems": true, "items": {"type": "string"}},
                "d": {"type": "null"},
                "e": {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
                "f": {"type": "array", "items": [{"type": "string"}]},
                "g": {"type": "string", "x-kubernetes-preserve-unknown-fields": false}
            }
        }));
        let p = "spec.versions[0].schema.openAPIV3Schema.properties";
        for want in [
            format!("{p}[a].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"),
            format!("{p}[b].$ref: Forbidden: $ref is not supported"),
            format!("{p}[c].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"),
            format!(r#"{p}[d].type: Unsupported value: "null": supported values: "array", "boolean", "integer", "number", "object", "string""#),
            format!("{p}[d].type: Forbidden: type cannot be set to null, use nullable as an alternative"),
            format!("{p}[e].patternProperties: Forbidden: patternProperties is not supported"),
            format!("{p}[f].items: Forbidden: items must be a schema object and not an array"),
            format!("{p}[g].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"),
        ] {
            assert!(errs.contains(&want), "missing {want}\nin {errs:#?}");
        }
    }

    #[test]
    fn junctors_must_not_specify_types_or_unknown_fields() {
        let errs = errors(json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "anyOf": [{"type": "object", "required": ["a"]}, {"properties": {"b": {"minLength": 1}}}],
                "allOf": [{"properties": {"metadata": {}}}, {"description": "x", "nullable": true, "default": 1}]
            }}
        }));
        let p = "spec.versions[0].schema.openAPIV3Schema.properties[spec]";
        for want in [
            format!("{p}.anyOf[0].type: Forbidden: must be empty to be structural"),
            format!("{p}.properties[b]: Required value: because it is defined in {p}.anyOf[1].properties[b]"),
            format!("{p}.allOf[0].properties[metadata]: Forbidden: must not be specified in a nested context"),
            format!("{p}.allOf[1].description: Forbidden: must be empty to be structural"),
            format!("{p}.allOf[1].nullable: Forbidden: must be false to be structural"),
            format!("{p}.allOf[1].default: Forbidden: must be undefined to be structural"),
        ] {
            assert!(errs.contains(&want), "missing {want}\nin {errs:#?}");
        }
    }

    #[test]
    fn metadata_and_root_restrictions() {
        let errs = errors(json!({
            "type": "object",
            "additionalProperties": {"type": "string"},
            "nullable": true,
            "properties": {
                "metadata": {"type": "object", "properties": {"labels": {"type": "object"}, "name": {"type": "string", "default": "x"}}},
                "kind": {"type": "integer"}
            }
        }));
        let p = "spec.versions[0].schema.openAPIV3Schema";
        for want in [
            format!("{p}.nullable: Forbidden: nullable cannot be true at the root"),
            format!("{p}.additionalProperties: Forbidden: must not be used at the root"),
            format!(r#"{p}.properties[kind].type: Invalid value: "integer": must be string"#),
            format!("{p}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"),
            format!("{p}.properties[metadata].properties[name].default: Forbidden: must not be set in top-level metadata"),
        ] {
            assert!(errs.contains(&want), "missing {want}\nin {errs:#?}");
        }
        assert!(errors(
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 10}
            }}}})
        )
        .is_empty());
    }

    #[test]
    fn list_and_embedded_resource_rules() {
        let errs = errors(json!({
            "type": "object",
            "properties": {
                "m": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                "n": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k", "z"], "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                "o": {"type": "string", "x-kubernetes-list-type": "bogus"},
                "e": {"type": "object", "x-kubernetes-embedded-resource": true}
            }
        }));
        let p = "spec.versions[0].schema.openAPIV3Schema.properties";
        for want in [
            format!("{p}[m].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"),
            format!(r#"{p}[n].x-kubernetes-list-map-keys: Invalid value: []string{{"k", "z"}}: entries must all be names of item properties"#),
            format!("{p}[n].items.properties[k].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"),
            format!(r#"{p}[o].type: Invalid value: "string": must be array if x-kubernetes-list-type is specified"#),
            format!(r#"{p}[o].x-kubernetes-list-type: Unsupported value: "bogus": supported values: "atomic", "set", "map""#),
            format!("{p}[e].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"),
        ] {
            assert!(errs.contains(&want), "missing {want}\nin {errs:#?}");
        }
    }

    #[test]
    fn defaults_must_validate_and_be_pruned() {
        let errs = errors(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "a": {"type": "integer", "default": "x"},
                "b": {"type": "object", "properties": {"c": {"type": "string"}}, "default": {"c": "y", "d": 1}},
                "e": {"type": "string", "format": "email", "default": "abc"},
                "f": {"type": "integer", "default": 1, "x-kubernetes-validations": [{"rule": "self > 5"}]}
            }}}
        }));
        let p = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties";
        assert_eq!(
            errs,
            vec![
                format!(r#"{p}[a].default: Invalid value: "string": in body must be of type integer: "string""#),
                format!(
                    r#"{p}[b].default: Invalid value: map[string]interface {{}}{{"c":"y", "d":1}}: must not have unknown fields"#
                ),
                format!(r#"{p}[e].default: Invalid value: "abc": in body must be of type email: "abc""#),
                format!(r#"{p}[f].default: Invalid value: "integer": failed rule: self > 5"#),
            ]
        );
    }

    #[test]
    fn invalid_patterns_and_rules() {
        let errs = errors(json!({
            "type": "object",
            "properties": {"s": {"type": "string", "pattern": "([a-z]"}},
            "x-kubernetes-validations": [{"rule": "  "}, {"rule": "self.s ==", "message": "m"}]
        }));
        let p = "spec.versions[0].schema.openAPIV3Schema";
        assert!(errs.iter().any(|e| e.starts_with(&format!(
            r#"{p}.properties[s].pattern: Invalid value: "([a-z]": must be a valid regular expression, but isn't: "#
        ))));
        assert!(errs.contains(&format!(
            "{p}.x-kubernetes-validations[0].rule: Required value: rule is not specified"
        )));
        assert!(errs.iter().any(|e| e.starts_with(&format!(
            "{p}.x-kubernetes-validations[1].rule: Invalid value: apiextensions.ValidationRule{{Rule:\"self.s ==\""
        ))));
    }
}
