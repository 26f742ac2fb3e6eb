//! The table of resources the API server serves.
//!
//! This is the single description of every resource (group, version, kind,
//! plural, scope, short names, verbs, subresources). Routing, storage keys,
//! discovery documents, OpenAPI and Table printing are all derived from it,
//! so adding a resource means adding one entry here (plus its validation and
//! defaulting, if any).

pub mod defaults;
pub mod pod_support;
pub mod table;
pub mod validation;

/// Verbs a resource supports, as discovery reports them.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A subresource of a resource (`status`, `scale`, `binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    /// Path segment after the object name, e.g. `status`.
    pub name: &'static str,
    /// Kind of the object exchanged on this subresource.
    pub kind: &'static str,
    /// Group of that kind ("" for core).
    pub kind_group: &'static str,
    /// Version of that kind.
    pub kind_version: &'static str,
    /// Verbs allowed on the subresource.
    pub verbs: &'static [&'static str],
}

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// API group; "" is the legacy core group served under `/api/v1`.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Kind, e.g. `Pod`.
    pub kind: &'static str,
    /// Lower-case plural used in paths and etcd keys, e.g. `pods`.
    pub plural: &'static str,
    /// Lower-case singular, e.g. `pod`.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// kubectl short names, e.g. `po`.
    pub short_names: &'static [&'static str],
    /// Discovery categories (`all` makes `kubectl get all` include it).
    pub categories: &'static [&'static str],
    /// Subresources served under `<object>/<subresource>`.
    pub subresources: &'static [Subresource],
    /// Field labels accepted by `fieldSelector` when the kind declares its
    /// own (Kubernetes' field label conversion funcs; anything else is
    /// `field label not supported: X`); `None` = only `metadata.name` and
    /// `metadata.namespace`, refused with the default conversion's words.
    pub field_labels: Option<&'static [&'static str]>,
}

impl Resource {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of this resource, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The group as it appears in etcd keys (`core` for the legacy group).
    pub fn storage_group(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }

    /// The subresource with this name, if served.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

const fn status(kind: &'static str, group: &'static str, version: &'static str) -> Subresource {
    Subresource {
        name: "status",
        kind,
        kind_group: group,
        kind_version: version,
        verbs: STATUS_VERBS,
    }
}

const SCALE: Subresource = Subresource {
    name: "scale",
    kind: "Scale",
    kind_group: "autoscaling",
    kind_version: "v1",
    verbs: STATUS_VERBS,
};

const BINDING: Subresource = Subresource {
    name: "binding",
    kind: "Binding",
    kind_group: "",
    kind_version: "v1",
    verbs: &["create"],
};

/// `pods/log`: container logs, proxied to the node daemon (see `node_proxy`).
const LOG: Subresource = Subresource {
    name: "log",
    kind: "Pod",
    kind_group: "",
    kind_version: "v1",
    verbs: &["get"],
};

/// Every resource the API server serves.
pub static RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &[status("Namespace", "", "v1")],
        field_labels: Some(&["metadata.name", "status.phase"]),
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: &[status("Node", "", "v1")],
        field_labels: Some(&["metadata.name", "spec.unschedulable"]),
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        subresources: &[status("Pod", "", "v1"), BINDING, LOG],
        field_labels: Some(&[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ]),
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        subresources: &[status("Service", "", "v1")],
        field_labels: Some(&["metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"]),
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        subresources: &[],
        field_labels: None,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        field_labels: None,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        field_labels: Some(&["metadata.name", "metadata.namespace", "type"]),
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        subresources: &[],
        field_labels: None,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        field_labels: Some(&[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]),
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &[status("Deployment", "apps", "v1"), SCALE],
        field_labels: None,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        subresources: &[status("ReplicaSet", "apps", "v1"), SCALE],
        field_labels: Some(&["metadata.name", "metadata.namespace", "status.replicas"]),
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        field_labels: None,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        field_labels: None,
    },
];

/// Look a resource up by group, version and plural (as in a request path).
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Look a resource up by group and kind (as in an object's apiVersion/kind).
pub fn by_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind)
}

/// The API groups served under `/apis` (every group but core), in a stable order.
pub fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !groups.contains(&r.group) {
            groups.push(r.group);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_are_unique_per_group() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.plural == b.plural),
                    "{} served twice",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn lookups_agree() {
        let pods = by_path("", "v1", "pods").expect("pods");
        assert_eq!(pods.kind, "Pod");
        assert_eq!(by_kind("apps", "Deployment").map(|r| r.plural), Some("deployments"));
        assert_eq!(groups(), ["apps", "discovery.k8s.io", "coordination.k8s.io"]);
        assert!(pods.subresource("binding").is_some());
    }
}
