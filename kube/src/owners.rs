//! Owner references: who controls an object, and the reference a
//! controller puts on what it creates (Kubernetes' `metav1.GetControllerOf`
//! and `NewControllerRef`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

/// The owner reference with `controller: true`, if any.
pub fn controller_of<K: Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// An owner reference to `owner` marking it as the controller, blocking the
/// owner's foreground deletion until this dependent is gone.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn the_controller_is_the_owner_marked_controller() {
        let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "uid": "u-rs"}
        }))
        .unwrap();
        let r = controller_ref(&rs);
        assert_eq!(
            (r.api_version.as_str(), r.kind.as_str(), r.name.as_str()),
            ("apps/v1", "ReplicaSet", "web-1")
        );
        assert_eq!((r.controller, r.block_owner_deletion), (Some(true), Some(true)));
        let mut pod = Pod::default();
        let other = OwnerReference {
            controller: None,
            ..r.clone()
        };
        pod.metadata.owner_references = Some(vec![other, r.clone()]);
        assert_eq!(controller_of(&pod), Some(&r));
        pod.metadata.owner_references = Some(vec![]);
        assert_eq!(controller_of(&pod), None);
    }
}
