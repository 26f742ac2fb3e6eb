//! Merging an applied configuration into the live object, and removing the
//! fields an applier gave up, along the schema (structured-merge-diff's
//! `Merge` and `RemoveItems`).
//!
//! - Leaves (scalars, atomic lists, atomic objects) take the applied value.
//! - Objects merge field by field.
//! - List-maps merge item by item (matched by key) and sets by value; the
//!   applied order wins for the items it names, live-only items keep
//!   their place.

use serde_json::{Map, Value};

use crate::kinds::apply_schema::{ListType, Ty};
use crate::registry::apply::fieldset::{PathElement, Set};
use crate::registry::apply::typed::item_element;

/// `config` merged into `live` (either may be absent); `None`: nothing.
pub fn merge(live: Option<&Value>, config: Option<&Value>, ty: Ty<'_>) -> Result<Option<Value>, String> {
    let (Some(l), Some(c)) = (live, config) else {
        if let Some(c) = config {
            check_config(c, ty)?;
        }
        return Ok(config.or(live).cloned());
    };
    let empty = |v: &Value| v.as_object().is_some_and(Map::is_empty) || v.as_array().is_some_and(Vec::is_empty);
    match (l, c) {
        (Value::Object(lm), Value::Object(cm)) => {
            if ty.atomic_map() || (lm.is_empty() && cm.is_empty()) {
                return Ok(Some(c.clone()));
            }
            let mut out = Map::new();
            for (k, lv) in lm {
                let (cty, _) = ty.field(k);
                if let Some(v) = merge(Some(lv), cm.get(k), cty)? {
                    out.insert(k.clone(), v);
                }
            }
            for (k, cv) in cm {
                if lm.contains_key(k) {
                    continue;
                }
                let (cty, _) = ty.field(k);
                if let Some(v) = merge(None, Some(cv), cty)? {
                    out.insert(k.clone(), v);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        (Value::Array(la), Value::Array(ca)) => {
            let lt = ty.list_type();
            if lt == ListType::Atomic || (empty(l) && empty(c)) {
                return Ok(Some(c.clone()));
            }
            let merged = merge_list(la, ca, &lt, ty.items())?;
            Ok((!merged.is_empty()).then_some(Value::Array(merged)))
        }
        _ => Ok(Some(c.clone())),
    }
}

/// An applied configuration names every list-map item by its keys, once.
pub fn check_config(v: &Value, ty: Ty<'_>) -> Result<(), String> {
    match v {
        Value::Object(m) if !ty.atomic_map() => {
            for (k, child) in m {
                check_config(child, ty.field(k).0)?;
            }
        }
        Value::Array(items) => {
            let lt = ty.list_type();
            if lt == ListType::Atomic {
                return Ok(());
            }
            let ity = ty.items();
            let pes = elements(items, &lt, ity, "applied")?;
            for (i, pe) in pes.iter().enumerate() {
                if pes[..i].contains(pe) {
                    return Err(format!("duplicate entries for key {pe}"));
                }
            }
            for item in items {
                check_config(item, ity)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn elements(items: &[Value], lt: &ListType, ity: Ty<'_>, what: &str) -> Result<Vec<PathElement>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| item_element(lt, ity, i, v).map_err(|e| format!("{what}: {e}")))
        .collect()
}

/// Merge two non-atomic lists. The applied configuration may not name an
/// item twice; the live object may (those items are left as they are).
fn merge_list(live: &[Value], config: &[Value], lt: &ListType, ity: Ty<'_>) -> Result<Vec<Value>, String> {
    let lpes = elements(live, lt, ity, "live")?;
    let cpes = elements(config, lt, ity, "applied")?;
    for (i, pe) in cpes.iter().enumerate() {
        if cpes[..i].contains(pe) {
            return Err(format!("duplicate entries for key {pe}"));
        }
    }
    let live_of = |pe: &PathElement| -> Option<&Value> {
        let mut hits = lpes.iter().zip(live).filter(|(p, _)| *p == pe);
        let first = hits.next().map(|(_, v)| v);
        // A duplicated live item merges as absent.
        if hits.next().is_some() {
            None
        } else {
            first
        }
    };
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    // Walk both lists as structured-merge-diff does: shared items come in
    // the applied order, a live-only item keeps its place after the items
    // before it, an applied item new to the list follows the applied item
    // before it.
    let shared: Vec<&PathElement> = cpes.iter().filter(|p| lpes.contains(p)).collect();
    let mut next_shared = 0;
    let mut merged: Vec<&PathElement> = Vec::new();
    let (mut li, mut ci) = (0, 0);
    while li < lpes.len() || ci < cpes.len() {
        if li < lpes.len() && ci < cpes.len() {
            let lpe = &lpes[li];
            if *lpe == cpes[ci] {
                merged.push(lpe);
                if let Some(v) = merge(live_of(lpe), Some(&config[ci]), ity)? {
                    out.push(v);
                }
                li += 1;
                ci += 1;
                next_shared += 1;
                continue;
            }
            if cpes.contains(lpe) && shared.get(next_shared).is_some_and(|s| *s != lpe) {
                li += 1;
                continue;
            }
        }
        if li < lpes.len() {
            let lpe = &lpes[li];
            if !cpes.contains(lpe) {
                if let Some(v) = merge(Some(&live[li]), None, ity)? {
                    out.push(v);
                }
                li += 1;
                continue;
            } else if merged.contains(&lpe) {
                li += 1;
            }
        }
        if ci < cpes.len() {
            let cpe = &cpes[ci];
            merged.push(cpe);
            if let Some(v) = merge(live_of(cpe), Some(&config[ci]), ity)? {
                out.push(v);
            }
            ci += 1;
            if shared.get(next_shared) == Some(&cpe) {
                next_shared += 1;
            }
        }
    }
    Ok(out)
}

/// `v` without the paths in `remove` (members are dropped with everything
/// below them; objects and lists left empty by the removal go too).
pub fn remove_items(v: &Value, remove: &Set, ty: Ty<'_>) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if ty.atomic_map() || m.is_empty() {
                return Some(v.clone());
            }
            let mut out = Map::new();
            let mut touched = false;
            for (k, child) in m {
                let pe = PathElement::Field(k.clone());
                if remove.has_member(&pe) {
                    touched = true;
                    continue;
                }
                match remove.child(&pe) {
                    Some(sub) => {
                        touched = true;
                        if let Some(c) = remove_items(child, sub, ty.field(k).0) {
                            out.insert(k.clone(), c);
                        }
                    }
                    None => {
                        out.insert(k.clone(), child.clone());
                    }
                }
            }
            if touched && out.is_empty() {
                return None;
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => {
            let lt = ty.list_type();
            if lt == ListType::Atomic || items.is_empty() {
                return Some(v.clone());
            }
            let ity = ty.items();
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Ok(pe) = item_element(&lt, ity, i, item) else {
                    out.push(item.clone());
                    continue;
                };
                if remove.has_member(&pe) {
                    continue;
                }
                match remove.child(&pe) {
                    Some(sub) => {
                        if let Some(c) = remove_items(item, sub, ity) {
                            out.push(c);
                        }
                    }
                    None => out.push(item.clone()),
                }
            }
            if out.is_empty() {
                return None;
            }
            Some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::apply_schema::ApplySchema;
    use crate::registry::apply::fieldset::set_of;
    use serde_json::json;
    use std::sync::Arc;

    fn schema() -> ApplySchema {
        ApplySchema::Structural(Arc::new(
            sluice_apiextensions::CustomResourceSchema::from_json(&json!({
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "a": {"type": "string"}, "b": {"type": "string"},
                    "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}, "w": {"type": "integer"}}}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "ref": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {"n": {"type": "string"}, "k": {"type": "string"}}}
                }}}
            }))
            .unwrap(),
        ))
    }

    #[test]
    fn merges_by_schema() {
        let s = schema();
        let it = |name: &str, v: i64| json!({"name": name, "v": v});
        let cases = [
            // Leaves: applied wins, the rest is kept.
            (
                json!({"spec": {"a": "1", "b": "2"}}),
                json!({"spec": {"a": "x"}}),
                json!({"spec": {"a": "x", "b": "2"}}),
            ),
            // List-map: merged per key, live-only items kept.
            (
                json!({"spec": {"items": [{"name": "p", "v": 1, "w": 9}, it("q", 2)]}}),
                json!({"spec": {"items": [it("p", 5), it("r", 3)]}}),
                json!({"spec": {"items": [{"name": "p", "v": 5, "w": 9}, it("q", 2), it("r", 3)]}}),
            ),
            // Applied order wins for shared items.
            (
                json!({"spec": {"items": [it("a", 1), it("b", 2), it("c", 3)]}}),
                json!({"spec": {"items": [it("c", 3), it("a", 1)]}}),
                json!({"spec": {"items": [it("b", 2), it("c", 3), it("a", 1)]}}),
            ),
            // Sets union; atomic lists and objects are replaced.
            (
                json!({"spec": {"tags": ["x", "y"], "args": ["1", "2"], "ref": {"n": "a", "k": "b"}}}),
                json!({"spec": {"tags": ["z", "x"], "args": ["3"], "ref": {"n": "c"}}}),
                json!({"spec": {"tags": ["z", "x", "y"], "args": ["3"], "ref": {"n": "c"}}}),
            ),
        ];
        for (live, config, want) in cases {
            let got = merge(Some(&live), Some(&config), s.root()).unwrap().unwrap();
            assert_eq!(got, want, "{live} + {config}");
        }
        let dup = json!({"spec": {"items": [it("a", 1), it("a", 2)]}});
        assert!(merge(Some(&json!({})), Some(&dup), s.root())
            .unwrap_err()
            .contains("duplicate entries"));
    }

    #[test]
    fn removes_items_by_path() {
        let s = schema();
        let obj = json!({"spec": {"a": "1", "b": "2",
            "items": [{"name": "p", "v": 1, "w": 2}, {"name": "q", "v": 2}],
            "tags": ["x", "y"], "ref": {"n": "a"}}});
        let cases = [
            (
                set_of(&["spec.a"]),
                json!({"spec": {"b": "2", "items": [{"name": "p", "v": 1, "w": 2}, {"name": "q", "v": 2}], "tags": ["x", "y"], "ref": {"n": "a"}}}),
            ),
            (
                set_of(&[
                    "spec.items.#k:{\"name\":\"q\"}",
                    "spec.items.#k:{\"name\":\"p\"}.w",
                    "spec.tags.#v:\"x\"",
                    "spec.ref",
                ]),
                json!({"spec": {"a": "1", "b": "2", "items": [{"name": "p", "v": 1}], "tags": ["y"]}}),
            ),
            // What is left empty goes.
            (
                set_of(&["spec.a", "spec.b", "spec.items", "spec.tags", "spec.ref"]),
                json!({}),
            ),
        ];
        for (remove, want) in cases {
            assert_eq!(
                remove_items(&obj, &remove, s.root()).unwrap_or(json!({})),
                want,
                "{remove:?}"
            );
        }
    }
}
