//! Schema checks against the k8s-openapi types.
//!
//! Every incoming object is decoded into its k8s-openapi type (wrong types
//! are a 400 naming the field) and encoded back; fields present in the input
//! but absent from the round trip are unknown fields. They are dropped from
//! the stored object and reported per `fieldValidation` (Strict: 400;
//! Warn/Ignore: a warning / nothing). The stored JSON keeps the client's own
//! representation of every known field.

use serde_json::Value;

use crate::kinds::BUILTIN;
use crate::status::ApiError;

/// Round-trip `v` through the typed representation of `group`/`kind`: a
/// built-in kind's own decoding, or the model a built-in subresource
/// declares for the kind it exchanges (`Binding`, `Scale`).
/// Returns `None` for kinds without a typed model.
pub fn typed_round_trip(group: &str, kind: &str, v: &Value) -> Result<Option<Value>, ApiError> {
    if let Some(k) = crate::kinds::builtin(group, kind) {
        return k.decode(v);
    }
    let model = BUILTIN
        .iter()
        .flat_map(|k| k.resource().subresources)
        .find(|s| s.kind_group == group && s.kind == kind)
        .and_then(|s| s.model);
    model.map(|m| m.decode(v)).transpose()
}

/// Paths (dotted, `[i]` for list items) present in `input` but not in `known`.
pub fn unknown_fields(input: &Value, known: &Value) -> Vec<String> {
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

/// Remove the fields at `paths` (as produced by [`unknown_fields`]).
pub fn remove_fields(v: &mut Value, paths: &[String]) {
    for p in paths {
        remove_path(v, p);
    }
}

fn remove_path(v: &mut Value, path: &str) {
    // Split the last segment off; navigate the rest.
    let mut cur = v;
    let segments = split_path(path);
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    for seg in parents {
        let next = match seg {
            Seg::Key(k) => cur.get_mut(k.as_str()),
            Seg::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let (Seg::Key(k), Some(o)) = (last, cur.as_object_mut()) {
        o.remove(k.as_str());
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(idx) = rest.find('[') {
            out.push(Seg::Key(rest[..idx].to_string()));
            rest = &rest[idx..];
            while let Some(end) = rest.find(']') {
                if let Ok(i) = rest[1..end].parse() {
                    out.push(Seg::Index(i));
                }
                rest = &rest[end + 1..];
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_and_removes_unknown_fields() {
        let input = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": null, "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolcy": "Always"}]},
            "extra": true
        });
        let known = typed_round_trip("", "Pod", &input).unwrap().unwrap();
        let mut unknown = unknown_fields(&input, &known);
        unknown.sort();
        assert_eq!(
            unknown,
            ["extra", "metadata.bogus", "spec.containers[0].imagePullPolcy"]
        );
        let mut cleaned = input.clone();
        remove_fields(&mut cleaned, &unknown);
        assert!(cleaned.get("extra").is_none());
        assert!(cleaned.pointer("/spec/containers/0/imagePullPolcy").is_none());
        assert_eq!(cleaned.pointer("/spec/containers/0/image"), Some(&json!("i")));
    }

    #[test]
    fn wrong_types_are_bad_requests_naming_the_field() {
        let input = json!({"metadata": {"name": "d"}, "spec": {"replicas": "three", "selector": {}, "template": {}}});
        let err = typed_round_trip("apps", "Deployment", &input).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("spec.replicas"), "{}", err.message);
    }

    #[test]
    fn subresource_kinds_decode_by_their_declared_models() {
        let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "d"}, "spec": {"replicas": 2}, "bogus": 1});
        let known = typed_round_trip("autoscaling", "Scale", &scale).unwrap().unwrap();
        assert_eq!(unknown_fields(&scale, &known), ["bogus"]);
        let err = typed_round_trip("autoscaling", "Scale", &json!({"spec": {"replicas": "two"}})).unwrap_err();
        assert_eq!(err.code, 400);
        let binding = json!({"kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n"}});
        assert!(typed_round_trip("", "Binding", &binding).unwrap().is_some());
        assert!(typed_round_trip("example.com", "Widget", &json!({})).unwrap().is_none());
    }
}
