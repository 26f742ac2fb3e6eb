//! How the fields of the built-in kinds merge in a strategic merge patch:
//! Kubernetes' `patchStrategy`/`patchMergeKey` struct tags, as one table
//! keyed by OpenAPI definition and property.
//!
//! Two readers, so they cannot disagree: the OpenAPI documents publish each
//! entry as `x-kubernetes-patch-strategy`/`x-kubernetes-patch-merge-key`
//! (what `kubectl apply` builds its patch from), and
//! [`crate::registry::patch`] merges lists by the same entries while walking
//! the kind's schema. A list not named here is atomic: a patch replaces it.
//!
//! A new kind whose lists merge by key adds its entries here, under the
//! definition names its k8s-openapi types have.

/// How one list (or struct) field merges in a strategic merge patch.
#[derive(Debug, Clone, Copy)]
pub struct PatchStrategy {
    /// Schema name, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub definition: &'static str,
    /// Property of that schema, e.g. `containers`.
    pub property: &'static str,
    /// `merge`, `retainKeys` or `merge,retainKeys`.
    pub strategy: &'static str,
    /// Key identifying list items (for lists of objects merged by key).
    pub merge_key: Option<&'static str>,
    /// Keys of a `map` list type (server-side apply), when the list is one.
    pub list_map_keys: &'static [&'static str],
}

const fn by_key(
    definition: &'static str,
    property: &'static str,
    merge_key: &'static str,
    list_map_keys: &'static [&'static str],
) -> PatchStrategy {
    PatchStrategy {
        definition,
        property,
        strategy: "merge",
        merge_key: Some(merge_key),
        list_map_keys,
    }
}

/// How list fields of the served kinds merge, as Kubernetes defines them.
///
/// Lists not named here are replaced whole by a patch (atomic), which is
/// also Kubernetes' default.
pub static PATCH_STRATEGIES: &[PatchStrategy] = &[
    // Pod spec: containers and friends merge by name.
    by_key("io.k8s.api.core.v1.PodSpec", "containers", "name", &["name"]),
    by_key("io.k8s.api.core.v1.PodSpec", "initContainers", "name", &["name"]),
    by_key("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "name", &["name"]),
    by_key("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "name", &["name"]),
    by_key("io.k8s.api.core.v1.PodSpec", "hostAliases", "ip", &["ip"]),
    by_key("io.k8s.api.core.v1.PodSpec", "schedulingGates", "name", &["name"]),
    by_key(
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "topologyKey",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    PatchStrategy {
        definition: "io.k8s.api.core.v1.PodSpec",
        property: "volumes",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
        list_map_keys: &["name"],
    },
    PatchStrategy {
        definition: "io.k8s.api.core.v1.PodSpec",
        property: "resourceClaims",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
        list_map_keys: &["name"],
    },
    // Containers: env by name, ports by containerPort, mounts by path.
    by_key("io.k8s.api.core.v1.Container", "env", "name", &["name"]),
    by_key(
        "io.k8s.api.core.v1.Container",
        "ports",
        "containerPort",
        &["containerPort", "protocol"],
    ),
    by_key(
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "mountPath",
        &["mountPath"],
    ),
    by_key(
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "devicePath",
        &["devicePath"],
    ),
    by_key("io.k8s.api.core.v1.EphemeralContainer", "env", "name", &["name"]),
    by_key(
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        "containerPort",
        &["containerPort", "protocol"],
    ),
    by_key(
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "mountPath",
        &["mountPath"],
    ),
    by_key(
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "devicePath",
        &["devicePath"],
    ),
    // Pod status.
    by_key("io.k8s.api.core.v1.PodStatus", "conditions", "type", &["type"]),
    PatchStrategy {
        definition: "io.k8s.api.core.v1.PodStatus",
        property: "resourceClaimStatuses",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
        list_map_keys: &["name"],
    },
    by_key("io.k8s.api.core.v1.PodStatus", "podIPs", "ip", &["ip"]),
    by_key("io.k8s.api.core.v1.PodStatus", "hostIPs", "ip", &["ip"]),
    // Services: ports by port.
    by_key("io.k8s.api.core.v1.ServiceSpec", "ports", "port", &["port", "protocol"]),
    by_key("io.k8s.api.core.v1.ServiceStatus", "conditions", "type", &["type"]),
    // Nodes and namespaces.
    PatchStrategy {
        definition: "io.k8s.api.core.v1.NodeSpec",
        property: "podCIDRs",
        strategy: "merge",
        merge_key: None,
        list_map_keys: &[],
    },
    by_key("io.k8s.api.core.v1.NodeStatus", "conditions", "type", &["type"]),
    by_key("io.k8s.api.core.v1.NodeStatus", "addresses", "type", &["type"]),
    by_key("io.k8s.api.core.v1.NamespaceStatus", "conditions", "type", &["type"]),
    by_key(
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "type",
        &["type"],
    ),
    by_key(
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        "type",
        &["type"],
    ),
    by_key("io.k8s.api.core.v1.ServiceAccount", "secrets", "name", &["name"]),
    // Workloads.
    by_key("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type", &["type"]),
    by_key("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "type", &["type"]),
    by_key("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "type", &["type"]),
    by_key("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "type", &["type"]),
    PatchStrategy {
        definition: "io.k8s.api.apps.v1.DeploymentSpec",
        property: "strategy",
        strategy: "retainKeys",
        merge_key: None,
        list_map_keys: &[],
    },
    // Object metadata.
    PatchStrategy {
        definition: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        property: "finalizers",
        strategy: "merge",
        merge_key: None,
        list_map_keys: &[],
    },
    by_key(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "uid",
        &["uid"],
    ),
];

/// The entry for `property` of the OpenAPI definition `definition`, if any.
pub fn lookup(definition: &str, property: &str) -> Option<&'static PatchStrategy> {
    PATCH_STRATEGIES
        .iter()
        .find(|p| p.definition == definition && p.property == property)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_unique_and_merge_or_retain() {
        for (i, a) in PATCH_STRATEGIES.iter().enumerate() {
            assert!(
                !PATCH_STRATEGIES[i + 1..]
                    .iter()
                    .any(|b| b.definition == a.definition && b.property == a.property),
                "{}.{} twice",
                a.definition,
                a.property
            );
            assert!(
                a.strategy.split(',').all(|s| s == "merge" || s == "retainKeys"),
                "{}",
                a.strategy
            );
        }
        assert_eq!(
            lookup("io.k8s.api.core.v1.PodSpec", "schedulingGates").and_then(|p| p.merge_key),
            Some("name")
        );
        assert!(lookup("io.k8s.api.core.v1.PodSpec", "readinessGates").is_none());
    }
}
