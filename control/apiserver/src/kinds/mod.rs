//! What the API server serves: one file per built-in kind, and the
//! [`catalog`] of everything served (built-in kinds plus the versions of
//! every established CustomResourceDefinition).
//!
//! A kind's file holds its whole description: the [`Resource`] (group,
//! version, kind, plural, scope, short names, categories, subresources,
//! field selectors) and its [`Strategy`] (typed decoding, defaults,
//! validation, the status/spec split, immutable fields, deletion, Table
//! columns). Routing, storage keys, discovery, OpenAPI and Table printing
//! are all derived from them.
//!
//! **Adding a built-in kind** is one new file here (a `pub static RESOURCE`
//! and a `Strategy` implementation; copy `configmap.rs` for a plain kind)
//! plus one line in [`builtin_kinds!`] below. Its list-merge keys go in
//! [`merge_keys`] if its lists merge by key.

pub mod apply_schema;
pub mod catalog;
pub mod custom;
pub mod defaults;
pub mod merge_keys;
pub mod pod_scheduling;
pub mod pod_support;
pub mod rbac;
pub mod strategy;
pub mod table;
pub mod validation;

pub use catalog::Catalog;
pub use strategy::{Kind, Strategy};

/// Declares the built-in kind modules and the list [`BUILTIN`] in the order
/// discovery shows them: one line per kind, `module => StrategyType`.
macro_rules! builtin_kinds {
    ($($module:ident => $strategy:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every built-in kind, in discovery order.
        pub static BUILTIN: &[&dyn Strategy] = &[$(&$module::$strategy),*];
    };
}

builtin_kinds! {
    namespace => Namespaces,
    node => Nodes,
    binding => Bindings,
    pod => Pods,
    service => Services,
    endpoints => EndpointsStrategy,
    configmap => ConfigMaps,
    secret => Secrets,
    serviceaccount => ServiceAccounts,
    podtemplate => PodTemplates,
    limitrange => LimitRanges,
    resourcequota => ResourceQuotas,
    replicationcontroller => ReplicationControllers,
    componentstatus => ComponentStatuses,
    event => Events,
    deployment => Deployments,
    replicaset => ReplicaSets,
    statefulset => StatefulSets,
    daemonset => DaemonSets,
    controllerrevision => ControllerRevisions,
    selfsubjectreview => SelfSubjectReviews,
    tokenreview => TokenReviews,
    selfsubjectaccessreview => SelfSubjectAccessReviews,
    subjectaccessreview => SubjectAccessReviews,
    localsubjectaccessreview => LocalSubjectAccessReviews,
    selfsubjectrulesreview => SelfSubjectRulesReviews,
    horizontalpodautoscaler => HorizontalPodAutoscalers,
    horizontalpodautoscaler_v1 => HorizontalPodAutoscalersV1,
    job => Jobs,
    cronjob => CronJobs,
    poddisruptionbudget => PodDisruptionBudgets,
    role => Roles,
    clusterrole => ClusterRoles,
    rolebinding => RoleBindings,
    clusterrolebinding => ClusterRoleBindings,
    endpointslice => EndpointSlices,
    lease => Leases,
    priorityclass => PriorityClasses,
    event_v1 => EventsV1,
    customresourcedefinition => CustomResourceDefinitions,
    mutatingwebhookconfiguration => MutatingWebhookConfigurations,
    validatingwebhookconfiguration => ValidatingWebhookConfigurations,
    apiservice => ApiServices,
    persistentvolume => PersistentVolumes,
    persistentvolumeclaim => PersistentVolumeClaims,
    storageclass => StorageClasses,
    csidriver => CsiDrivers,
    csinode => CsiNodes,
    volumeattachment => VolumeAttachments,
    certificatesigningrequest => CertificateSigningRequests,
}

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
    /// The typed model of that kind when it is not the resource's own kind
    /// (`Binding`, `Scale`): its decoding and OpenAPI schema.
    pub model: Option<crate::meta::typed::Model>,
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

pub(crate) const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

pub(crate) const fn status(kind: &'static str, group: &'static str, version: &'static str) -> Subresource {
    Subresource {
        name: "status",
        kind,
        kind_group: group,
        kind_version: version,
        verbs: STATUS_VERBS,
        model: None,
    }
}

pub(crate) const SCALE: Subresource = Subresource {
    name: "scale",
    kind: "Scale",
    kind_group: "autoscaling",
    kind_version: "v1",
    verbs: STATUS_VERBS,
    model: Some(crate::meta::typed::Model::of::<k8s_openapi::api::autoscaling::v1::Scale>()),
};

pub(crate) const BINDING: Subresource = Subresource {
    name: "binding",
    kind: "Binding",
    kind_group: "",
    kind_version: "v1",
    verbs: &["create"],
    model: Some(crate::meta::typed::Model::of::<k8s_openapi::api::core::v1::Binding>()),
};

/// `pods/log`: container logs, proxied to the node daemon (see `node_proxy`).
pub(crate) const LOG: Subresource = Subresource {
    name: "log",
    kind: "Pod",
    kind_group: "",
    kind_version: "v1",
    verbs: &["get"],
    model: None,
};

/// The descriptions of the built-in kinds, in discovery order.
pub fn builtin_resources() -> impl Iterator<Item = &'static Resource> {
    BUILTIN.iter().map(|s| s.resource())
}

/// A built-in kind by group, version and plural (as in a request path).
/// What is served, custom resources included, is in the [`Catalog`].
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    builtin_resources().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// A built-in kind by group and kind (as in an object's apiVersion/kind).
pub fn by_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    builtin_resources().find(|r| r.group == group && r.kind == kind)
}

/// The strategy of a built-in kind, by group and kind.
pub fn builtin(group: &str, kind: &str) -> Option<&'static dyn Strategy> {
    BUILTIN
        .iter()
        .copied()
        .find(|s| s.resource().group == group && s.resource().kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_are_unique_per_group() {
        let all: Vec<&Resource> = builtin_resources().collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
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

        assert!(pods.subresource("binding").is_some());
    }
}
