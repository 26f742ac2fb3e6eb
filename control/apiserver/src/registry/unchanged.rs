//! Writes that change nothing are not made. Kubernetes' storage compares the
//! object about to be written with the stored one and, when they are equal,
//! skips the etcd write: the object keeps its resourceVersion, watchers see
//! no event, and clients can tell (`kubectl patch` prints "patched (no
//! change)", `kubectl edit` and `apply` report nothing changed). The field
//! manager likewise keeps managedFields' timestamps when nothing else moved.

use serde_json::Value;

/// Whether `new` (about to be stored) equals `old` (as stored), apart from
/// `metadata.resourceVersion` and the `time` of each managedFields entry.
/// Compared in place: every update asks, and copying both objects to strip
/// those fields cost more than the comparison.
pub fn is_unchanged(old: &Value, new: &Value) -> bool {
    match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => same_except(o, n, &[], &|key, a, b| {
            if key == "metadata" {
                same_metadata(a, b)
            } else {
                a == b
            }
        }),
        _ => old == new,
    }
}

type Map = serde_json::Map<String, Value>;

/// Maps equal apart from the `ignored` keys, values compared by `same(key, a, b)`.
fn same_except(a: &Map, b: &Map, ignored: &[&str], same: &dyn Fn(&str, &Value, &Value) -> bool) -> bool {
    let kept = |m: &Map| m.keys().filter(|k| !ignored.contains(&k.as_str())).count();
    kept(a) == kept(b)
        && a.iter()
            .filter(|(k, _)| !ignored.contains(&k.as_str()))
            .all(|(k, va)| b.get(k).is_some_and(|vb| same(k, va, vb)))
}

fn same_metadata(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    same_except(a, b, &["resourceVersion"], &|key, a, b| {
        if key != "managedFields" {
            return a == b;
        }
        let (Some(a), Some(b)) = (a.as_array(), b.as_array()) else {
            return a == b;
        };
        a.len() == b.len()
            && a.iter().zip(b).all(|(ea, eb)| match (ea.as_object(), eb.as_object()) {
                (Some(ea), Some(eb)) => same_except(ea, eb, &["time"], &|_, x, y| x == y),
                _ => ea == eb,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(rv: &str, time: &str, mode: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "resourceVersion": rv, "managedFields": [
                {"manager": "kubectl", "operation": "Update", "time": time,
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:mode": {}}}}
            ]},
            "data": {"mode": mode}
        })
    }

    #[test]
    fn resource_version_and_managed_fields_times_do_not_make_a_change() {
        assert!(is_unchanged(
            &cm("7", "2026-01-01T00:00:00Z", "blue"),
            &cm("7", "2026-01-02T00:00:00Z", "blue")
        ));
        assert!(is_unchanged(
            &cm("7", "2026-01-01T00:00:00Z", "blue"),
            &cm("", "2026-01-01T00:00:00Z", "blue")
        ));
    }

    #[test]
    fn any_other_difference_is_a_change() {
        let old = cm("7", "2026-01-01T00:00:00Z", "blue");
        assert!(!is_unchanged(&old, &cm("7", "2026-01-01T00:00:00Z", "green")));
        let mut relabelled = old.clone();
        relabelled["metadata"]["labels"] = json!({"tier": "web"});
        assert!(!is_unchanged(&old, &relabelled));
        let mut extra_meta = old.clone();
        extra_meta["metadata"]["generation"] = json!(2);
        assert!(!is_unchanged(&old, &extra_meta));
        assert!(!is_unchanged(&extra_meta, &old));
        let mut no_rv = old.clone();
        no_rv["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        assert!(is_unchanged(&old, &no_rv) && is_unchanged(&no_rv, &old));
        let mut two_managers = old.clone();
        let entry = two_managers["metadata"]["managedFields"][0].clone();
        two_managers["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .push(entry);
        assert!(!is_unchanged(&old, &two_managers));
        let mut other_manager = old.clone();
        other_manager["metadata"]["managedFields"][0]["manager"] = json!("kubectl-edit");
        assert!(!is_unchanged(&old, &other_manager));
    }
}
