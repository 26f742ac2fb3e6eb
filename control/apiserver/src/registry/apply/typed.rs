//! Field sets of objects, walked along their schema, as
//! structured-merge-diff's `ToFieldSet` and `Compare`.
//!
//! - Scalars, atomic lists and atomic objects are leaves.
//! - Objects contribute their fields; a key of a map (not a declared
//!   field), a `null` and an empty object are members themselves.
//! - List-map items are `k:{...}` and set items `v:...`, both members with
//!   their contents below; other non-atomic lists use `i:<index>`.
//! - Comparing two objects gives the paths added, modified and removed;
//!   an object or list item that appears or disappears is itself added or
//!   removed (the `".": {}` in Update entries), as are its contents.

use serde_json::Value;

use crate::kinds::apply_schema::{ListType, Ty};
use crate::registry::apply::fieldset::{Path, PathElement, Set};

/// The path element of a list item, or why there is none (a list-map
/// item missing a key field that has no default).
pub fn item_element(list_type: &ListType, items: Ty<'_>, index: usize, item: &Value) -> Result<PathElement, String> {
    match list_type {
        ListType::Set => Ok(PathElement::Value(item.clone())),
        ListType::Map(keys) => {
            let mut fields = Vec::with_capacity(keys.len());
            for k in keys {
                match item.get(k) {
                    Some(v) if !v.is_null() => fields.push((k.clone(), v.clone())),
                    _ => match items.field(k).0.default_value() {
                        Some(d) => fields.push((k.clone(), d)),
                        None => {
                            return Err(format!(
                                "element {index}: associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                            ))
                        }
                    },
                }
            }
            Ok(PathElement::key(fields))
        }
        ListType::Atomic => Ok(PathElement::Index(index as i64)),
    }
}

/// The paths set in `v`, an object of type `ty` (ToFieldSet). Errors name
/// the list whose items cannot be identified.
pub fn to_field_set(v: &Value, ty: Ty<'_>) -> Result<Set, String> {
    let mut set = Set::new();
    let mut path = Vec::new();
    walk_set(v, ty, &mut path, &mut set)?;
    Ok(set)
}

fn walk_set(v: &Value, ty: Ty<'_>, path: &mut Path, set: &mut Set) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            if ty.atomic_map() {
                set.insert(path);
                return Ok(());
            }
            for (k, child) in m {
                let (cty, declared) = ty.field(k);
                path.push(PathElement::Field(k.clone()));
                walk_set(child, cty, path, set)?;
                let empty = child.is_null() || child.as_object().is_some_and(|o| o.is_empty());
                if empty || !declared {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let lt = ty.list_type();
            if lt == ListType::Atomic {
                set.insert(path);
                return Ok(());
            }
            let ity = ty.items();
            let mut seen: Vec<PathElement> = Vec::new();
            let mut dups: Vec<PathElement> = Vec::new();
            let mut elements = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let pe = item_element(&lt, ity, i, item).map_err(|e| format!("{}: {e}", show(path)))?;
                if seen.contains(&pe) {
                    if !dups.contains(&pe) {
                        dups.push(pe.clone());
                        path.push(pe.clone());
                        set.insert(path);
                        path.pop();
                    }
                } else {
                    seen.push(pe.clone());
                }
                elements.push(pe);
            }
            for (item, pe) in items.iter().zip(elements) {
                if dups.contains(&pe) {
                    continue;
                }
                path.push(pe);
                walk_set(item, ity, path, set)?;
                set.insert(path);
                path.pop();
            }
        }
        _ => set.insert(path),
    }
    Ok(())
}

fn show(path: &[PathElement]) -> String {
    crate::registry::apply::fieldset::path_string(path)
}

/// What changed between two objects.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Comparison {
    /// Paths present only in the new object.
    pub added: Set,
    /// Leaves whose value changed.
    pub modified: Set,
    /// Paths present only in the old object.
    pub removed: Set,
}

impl Comparison {
    /// Whether nothing changed.
    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Compare `old` and `new`, objects of type `ty`.
pub fn compare(old: &Value, new: &Value, ty: Ty<'_>) -> Comparison {
    let mut c = Comparison::default();
    let mut path = Vec::new();
    walk_compare(Some(old), Some(new), ty, &mut path, &mut c);
    c
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

fn leaf(old: Option<&Value>, new: Option<&Value>, path: &Path, c: &mut Comparison) {
    match (old, new) {
        (None, Some(_)) => c.added.insert(path),
        (Some(_), None) => c.removed.insert(path),
        (Some(a), Some(b)) if a != b => c.modified.insert(path),
        _ => {}
    }
}

fn walk_compare<'v>(old: Option<&'v Value>, new: Option<&'v Value>, ty: Ty<'_>, path: &mut Path, c: &mut Comparison) {
    // Equal values add nothing (no leaf differs, nothing appears or goes):
    // most of an update's object is untouched, and comparing it for
    // equality allocates nothing, where walking it builds every path.
    if let (Some(a), Some(b)) = (old, new) {
        if a == b {
            return;
        }
    }
    let is_obj = |v: Option<&Value>| v.is_none_or(Value::is_object);
    let is_list = |v: Option<&Value>| v.is_none_or(Value::is_array);
    let container =
        old.is_some_and(|v| v.is_object() || v.is_array()) || new.is_some_and(|v| v.is_object() || v.is_array());
    if !container || !(is_obj(old) && is_obj(new) || is_list(old) && is_list(new)) {
        leaf(old, new, path, c);
        return;
    }
    let both_empty = is_empty_container(old) && is_empty_container(new);
    if is_obj(old) && is_obj(new) {
        if ty.atomic_map() || both_empty {
            leaf(old, new, path, c);
            return;
        }
        let empty = serde_json::Map::new();
        let om = old.and_then(Value::as_object).unwrap_or(&empty);
        let nm = new.and_then(Value::as_object).unwrap_or(&empty);
        for (k, ov) in om {
            let (cty, _) = ty.field(k);
            path.push(PathElement::Field(k.clone()));
            walk_compare(Some(ov), nm.get(k), cty, path, c);
            path.pop();
        }
        for (k, nv) in nm {
            if om.contains_key(k) {
                continue;
            }
            let (cty, _) = ty.field(k);
            path.push(PathElement::Field(k.clone()));
            walk_compare(None, Some(nv), cty, path, c);
            path.pop();
        }
    } else {
        let lt = ty.list_type();
        if lt == ListType::Atomic || both_empty {
            leaf(old, new, path, c);
            return;
        }
        let ity = ty.items();
        let index = |v: Option<&'v Value>| -> Vec<(PathElement, Vec<&'v Value>)> {
            let mut out: Vec<(PathElement, Vec<&Value>)> = Vec::new();
            for (i, item) in v.and_then(Value::as_array).into_iter().flatten().enumerate() {
                let pe = item_element(&lt, ity, i, item).unwrap_or(PathElement::Index(i as i64));
                match out.iter_mut().find(|(p, _)| *p == pe) {
                    Some((_, vs)) => vs.push(item),
                    None => out.push((pe, vec![item])),
                }
            }
            out
        };
        let lhs = index(old);
        let rhs = index(new);
        let mut order: Vec<&PathElement> = lhs.iter().map(|(p, _)| p).collect();
        for (p, _) in &rhs {
            if !order.contains(&p) {
                order.push(p);
            }
        }
        for pe in order {
            let l = lhs
                .iter()
                .find(|(p, _)| p == pe)
                .map(|(_, v)| v.as_slice())
                .unwrap_or(&[]);
            let r = rhs
                .iter()
                .find(|(p, _)| p == pe)
                .map(|(_, v)| v.as_slice())
                .unwrap_or(&[]);
            path.push(pe.clone());
            match (l.len(), r.len()) {
                (0..=1, 0..=1) => walk_compare(l.first().copied(), r.first().copied(), ity, path, c),
                (_, _) if l.len() >= 2 && r.len() >= 2 => {
                    if l != r {
                        c.modified.insert(path);
                    }
                }
                (_, _) if l.len() >= 2 => {
                    if let Some(&rv) = r.first() {
                        walk_compare(None, Some(rv), ity, path, c);
                    }
                    c.removed.insert(path);
                }
                _ => {
                    if let Some(&lv) = l.first() {
                        walk_compare(Some(lv), None, ity, path, c);
                    }
                    c.added.insert(path);
                }
            }
            path.pop();
        }
    }
    // An object or list that appears or disappears is itself added/removed.
    if old.is_none() {
        c.added.insert(path);
    } else if new.is_none() {
        c.removed.insert(path);
    }
}

/// The zero value a create is compared against: for built-in kinds, the
/// value-typed structs of `obj` (Go serializes them even when empty, so a
/// create does not add them), empty; for custom resources, nothing.
pub fn zero_of(obj: &Value, ty: Ty<'_>) -> Value {
    let mut out = serde_json::Map::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            let (cty, declared) = ty.field(k);
            if declared && v.is_object() && (cty.is_struct() || k == "metadata") {
                out.insert(k.clone(), zero_of(v, cty));
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::apply_schema::ApplySchema;
    use crate::registry::apply::fieldset::set_of;
    use serde_json::json;
    use std::sync::Arc;

    fn gateway_schema() -> ApplySchema {
        let schema = sluice_apiextensions::CustomResourceSchema::from_json(&json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "gatewayClassName": {"type": "string"},
                "listeners": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"},
                        "protocol": {"type": "string", "default": "HTTP"}}}},
                "hosts": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}},
                "extra": {"type": "object", "additionalProperties": {"type": "object", "properties": {"a": {"type": "string"}}}}
            }}}
        }))
        .unwrap();
        ApplySchema::Structural(Arc::new(schema))
    }

    #[test]
    fn field_sets_follow_the_schema() {
        let s = gateway_schema();
        let cases = [
            (
                json!({"spec": {"gatewayClassName": "a", "args": ["x", "y"]}}),
                json!({"f:spec": {"f:args": {}, "f:gatewayClassName": {}}}),
            ),
            (
                json!({"spec": {"listeners": [{"name": "http", "port": 80}]}}),
                json!({"f:spec": {"f:listeners": {"k:{\"name\":\"http\"}": {".": {}, "f:name": {}, "f:port": {}}}}}),
            ),
            (
                json!({"spec": {"hosts": ["a.example", "b.example"]}}),
                json!({"f:spec": {"f:hosts": {"v:\"a.example\"": {}, "v:\"b.example\"": {}}}}),
            ),
            (
                json!({"spec": {"extra": {"k1": {"a": "x"}}}, "metadata": {"labels": {"app": "web"}}}),
                json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:extra": {"f:k1": {".": {}, "f:a": {}}}}}),
            ),
            (json!({"spec": {}}), json!({"f:spec": {}})),
        ];
        for (obj, want) in cases {
            assert_eq!(to_field_set(&obj, s.root()).unwrap().to_fields_v1(), want, "{obj}");
        }
    }

    #[test]
    fn missing_list_map_keys_take_defaults_or_fail() {
        let s = ApplySchema::Structural(Arc::new(
            sluice_apiextensions::CustomResourceSchema::from_json(&json!({
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
                        "items": {"type": "object", "properties": {"port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}}}},
                }}}
            }))
            .unwrap(),
        ));
        let set = to_field_set(&json!({"spec": {"ports": [{"port": 80}]}}), s.root()).unwrap();
        assert!(set.to_fields_v1()["f:spec"]["f:ports"]["k:{\"port\":80,\"protocol\":\"TCP\"}"].is_object());
        let err = to_field_set(&json!({"spec": {"ports": [{"protocol": "UDP"}]}}), s.root()).unwrap_err();
        assert!(
            err.contains(
                ".spec.ports: element 0: associative list with keys has an element that omits key field \"port\""
            ),
            "{err}"
        );
    }

    #[test]
    fn comparisons() {
        let s = gateway_schema();
        let l = |name: &str, port: i64| json!({"name": name, "port": port});
        let cases = [
            // A changed leaf.
            (
                json!({"spec": {"gatewayClassName": "a"}}),
                json!({"spec": {"gatewayClassName": "b"}}),
                set_of(&[]),
                set_of(&["spec.gatewayClassName"]),
                set_of(&[]),
            ),
            // A new list-map item: the item and its fields are added.
            (
                json!({"spec": {"listeners": [l("a", 1)]}}),
                json!({"spec": {"listeners": [l("a", 1), l("b", 2)]}}),
                set_of(&[
                    "spec.listeners.#k:{\"name\":\"b\"}",
                    "spec.listeners.#k:{\"name\":\"b\"}.name",
                    "spec.listeners.#k:{\"name\":\"b\"}.port",
                ]),
                set_of(&[]),
                set_of(&[]),
            ),
            // An atomic list changes as a whole; a removed object is removed with its fields.
            (
                json!({"spec": {"args": ["a"], "extra": {"k": {"a": "x"}}}}),
                json!({"spec": {"args": ["b"]}}),
                set_of(&[]),
                set_of(&["spec.args"]),
                set_of(&["spec.extra", "spec.extra.k", "spec.extra.k.a"]),
            ),
        ];
        for (old, new, added, modified, removed) in cases {
            let c = compare(&old, &new, s.root());
            assert_eq!(c.added, added, "added {old} -> {new}");
            assert_eq!(c.modified, modified, "modified {old} -> {new}");
            assert_eq!(c.removed, removed, "removed {old} -> {new}");
        }
    }

    #[test]
    fn zero_values_of_built_in_structs() {
        let k = crate::kinds::BUILTIN
            .iter()
            .find(|k| k.resource().kind == "Deployment")
            .unwrap();
        let s = ApplySchema::builtin(k.resource(), |g| k.openapi(g));
        let d = json!({"metadata": {"name": "web", "labels": {"a": "b"}}, "spec": {"replicas": 1,
            "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}});
        assert_eq!(
            zero_of(&d, s.root()),
            json!({"metadata": {}, "spec": {"template": {"metadata": {}, "spec": {}}}})
        );
    }
}
