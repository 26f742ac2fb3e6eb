//! The storage admission steps Kubernetes runs by default, on writes of
//! PersistentVolumeClaims and PersistentVolumes:
//!
//! - `DefaultStorageClass`: a claim created without `storageClassName` (and
//!   without the beta class annotation) gets the default StorageClass (the
//!   newest when several are annotated default); none: it stays without;
//! - `StorageObjectInUseProtection`: new claims get the
//!   `kubernetes.io/pvc-protection` finalizer and new volumes
//!   `kubernetes.io/pv-protection`; the PV controller removes them once no
//!   pod uses the claim / the volume is no longer bound;
//! - `PersistentVolumeClaimResize`: a bound claim's storage request may grow
//!   only if its class has `allowVolumeExpansion: true` (403 otherwise, with
//!   Kubernetes' words).
//!
//! Classes are read from etcd at each admission, as `priority` does.

use serde_json::{json, Value};

use crate::kinds::{self, persistentvolume, persistentvolumeclaim, storageclass};
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult};
use crate::storage::store;

/// The finalizer that keeps a claim while pods use it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The finalizer that keeps a volume while it is bound.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// The default class among `classes`: annotated default, newest first
/// (then by name, as Kubernetes sorts equal times).
pub fn default_class(classes: &[Value]) -> Option<&Value> {
    let created = |c: &Value| {
        c.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let name = |c: &Value| {
        c.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    classes
        .iter()
        .filter(|c| storageclass::is_default(c))
        .max_by(|a, b| created(a).cmp(&created(b)).then_with(|| name(b).cmp(&name(a))))
}

fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if list.is_null() {
        *list = json!([]);
    }
    if let Some(list) = list.as_array_mut() {
        if !list.iter().any(|f| f.as_str() == Some(finalizer)) {
            list.push(json!(finalizer));
        }
    }
}

impl Registry {
    async fn storage_classes(&self) -> ApiResult<Vec<Value>> {
        let prefix = store::collection_prefix(&storageclass::RESOURCE, None);
        let classes = self.store.list(&prefix).await?;
        Ok(classes.into_iter().map(|s| s.object).collect())
    }

    /// The storage admission steps for a create of `obj`.
    pub(super) async fn admit_storage_create(&self, r: &kinds::Resource, obj: &mut Value) -> ApiResult<()> {
        if *r == persistentvolume::RESOURCE {
            add_finalizer(obj, PV_PROTECTION);
            return Ok(());
        }
        if *r != persistentvolumeclaim::RESOURCE {
            return Ok(());
        }
        add_finalizer(obj, PVC_PROTECTION);
        let named = obj.pointer("/spec/storageClassName").is_some_and(|c| !c.is_null())
            || obj
                .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
                .is_some();
        if !named {
            let classes = self.storage_classes().await?;
            if let Some(name) = default_class(&classes)
                .and_then(|c| c.pointer("/metadata/name"))
                .cloned()
            {
                if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("storageClassName".into(), name);
                }
            }
        }
        Ok(())
    }

    /// The `PersistentVolumeClaimResize` step for an update of a claim.
    pub(super) async fn admit_storage_update(&self, r: &kinds::Resource, old: &Value, new: &Value) -> ApiResult<()> {
        if *r != persistentvolumeclaim::RESOURCE {
            return Ok(());
        }
        let size = |v: &Value| persistentvolume::storage_bytes(v.pointer("/spec/resources/requests/storage"));
        let (Some(Ok(before)), Some(Ok(after))) = (size(old), size(new)) else {
            return Ok(());
        };
        if after <= before || old.pointer("/status/phase").and_then(Value::as_str) != Some("Bound") {
            return Ok(());
        }
        let class = persistentvolume::class_of(new).to_string();
        let allowed = if class.is_empty() {
            false
        } else {
            let key = store::object_key(&storageclass::RESOURCE, None, &class);
            self.store
                .get(&key)
                .await?
                .and_then(|s| s.object.get("allowVolumeExpansion").and_then(Value::as_bool))
                .unwrap_or(false)
        };
        if allowed {
            return Ok(());
        }
        let name = new.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        Err(ApiError::forbidden(
            r,
            name,
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, created: &str, default: bool) -> Value {
        let mut c = json!({"metadata": {"name": name, "creationTimestamp": created}, "provisioner": "p"});
        if default {
            c["metadata"]["annotations"] = json!({storageclass::DEFAULT_CLASS_ANNOTATION: "true"});
        }
        c
    }

    #[test]
    fn the_newest_default_class_wins() {
        let classes = [
            class("old", "2026-01-01T00:00:00Z", true),
            class("new", "2026-02-01T00:00:00Z", true),
            class("newest", "2026-03-01T00:00:00Z", false),
        ];
        assert_eq!(
            default_class(&classes).map(|c| c["metadata"]["name"].clone()),
            Some(json!("new"))
        );
        assert!(default_class(&classes[2..]).is_none());
    }

    #[test]
    fn finalizers_are_added_once() {
        let mut o = json!({"metadata": {"name": "x", "finalizers": [PVC_PROTECTION]}});
        add_finalizer(&mut o, PVC_PROTECTION);
        assert_eq!(o["metadata"]["finalizers"], json!([PVC_PROTECTION]));
    }
}
