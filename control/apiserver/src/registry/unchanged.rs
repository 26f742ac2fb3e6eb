//! Writes that change nothing are not made. Kubernetes' storage compares the
//! object about to be written with the stored one and, when they are equal,
//! skips the etcd write: the object keeps its resourceVersion, watchers see
//! no event, and clients can tell (`kubectl patch` prints "patched (no
//! change)", `kubectl edit` and `apply` report nothing changed). The field
//! manager likewise keeps managedFields' timestamps when nothing else moved.

use serde_json::Value;

/// Whether `new` (about to be stored) equals `old` (as stored), apart from
/// `metadata.resourceVersion` and the `time` of each managedFields entry.
pub fn is_unchanged(old: &Value, new: &Value) -> bool {
    normalized(old) == normalized(new)
}

fn normalized(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        if let Some(entries) = meta.get_mut("managedFields").and_then(Value::as_array_mut) {
            for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                entry.remove("time");
            }
        }
    }
    v
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
        let mut other_manager = old.clone();
        other_manager["metadata"]["managedFields"][0]["manager"] = json!("kubectl-edit");
        assert!(!is_unchanged(&old, &other_manager));
    }
}
