//! The default ClusterRoles and ClusterRoleBindings Kubernetes ships
//! (`bootstrappolicy`), written in our own terms, and their reconciliation
//! at API server start ([`reconcile`]).
//!
//! Every default object carries the label `kubernetes.io/bootstrapping:
//! rbac-defaults` and the annotation `rbac.authorization.kubernetes.io/
//! autoupdate: "true"`. At start a missing one is created; an existing one
//! whose annotation is not `"false"` gets back the labels, annotations,
//! rules (aggregated roles: selectors) and subjects it lacks — extra ones
//! are kept, as Kubernetes' reconciliation without removal does. Setting the
//! annotation to `"false"` leaves an object to its administrators.
//!
//! `admin`, `edit` and `view` are aggregated ClusterRoles: their rules come
//! from the `system:aggregate-to-*` roles (and any ClusterRole labelled
//! `rbac.authorization.k8s.io/aggregate-to-<role>: "true"`), filled in by the
//! controller-manager's `clusterrole-aggregation` controller.
//!
//! The component roles (`system:node`, `system:node-proxier`,
//! `system:kube-scheduler`, `system:kube-controller-manager`,
//! `system:node-bootstrapper`, `system:volume-scheduler`) are the ones
//! Kubernetes ships. `xtask up` runs the scheduler as `system:kube-scheduler`
//! (that role and `system:volume-scheduler`), the controller-manager as
//! `system:kube-controller-manager` (that role and every
//! `system:controller:<name>` role of [`controller_roles`], as Kubernetes'
//! `--use-service-account-credentials=false` needs), noded as its node (the
//! Node authorizer in `http::node_authorizer`).

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{json, Value};

use crate::kinds::{self, Kind};
use crate::registry::rbac::rules::{rule, url_rule};
use crate::registry::rbac::{AUTHENTICATED, MASTERS, UNAUTHENTICATED};
use crate::registry::{Registry, UpdateMode, WriteOptions};
use crate::status::{ApiError, ApiResult};

/// The annotation that lets reconciliation update a default object.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The label every default object carries.
pub const BOOTSTRAPPING: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const EVENT_WRITE: &[&str] = &["create", "patch", "update"];

fn aggregate_label(role: &str) -> String {
    format!("rbac.authorization.k8s.io/aggregate-to-{role}")
}

/// One default ClusterRole: name, extra labels, rules, and the role names
/// it aggregates (`aggregate-to-<name>`), if it is an aggregated role.
struct DefaultRole {
    name: &'static str,
    labels: Vec<String>,
    rules: Vec<PolicyRule>,
    aggregates: Option<&'static str>,
}

fn plain(name: &'static str, rules: Vec<PolicyRule>) -> DefaultRole {
    DefaultRole {
        name,
        labels: Vec::new(),
        rules,
        aggregates: None,
    }
}

fn events() -> Vec<PolicyRule> {
    vec![
        rule(EVENT_WRITE, &[""], &["events"]),
        rule(EVENT_WRITE, &["events.k8s.io"], &["events"]),
    ]
}

fn roles() -> Vec<DefaultRole> {
    let mut out = vec![
        plain(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])],
        ),
        plain(
            "system:discovery",
            vec![url_rule(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        plain(
            "system:public-info-viewer",
            vec![url_rule(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        plain(
            "system:monitoring",
            vec![url_rule(
                &["get"],
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/metrics/slis",
                    "/readyz",
                    "/readyz/*",
                ],
            )],
        ),
        plain(
            "system:basic-user",
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
            ],
        ),
    ];
    for (name, extra_label) in [("admin", None), ("edit", Some("admin")), ("view", Some("edit"))] {
        out.push(DefaultRole {
            name,
            labels: extra_label.map(aggregate_label).into_iter().collect(),
            rules: Vec::new(),
            aggregates: Some(name),
        });
    }
    out.push(DefaultRole {
        name: "system:aggregate-to-admin",
        labels: vec![aggregate_label("admin")],
        rules: vec![
            rule(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
            rule(READ_WRITE, &[kinds::rbac::GROUP], &["roles", "rolebindings"]),
        ],
        aggregates: None,
    });
    out.push(DefaultRole {
        name: "system:aggregate-to-edit",
        labels: vec![aggregate_label("edit")],
        rules: vec![
            rule(
                READ,
                &[""],
                &[
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                    "secrets",
                    "services/proxy",
                ],
            ),
            rule(&["impersonate"], &[""], &["serviceaccounts"]),
            rule(
                WRITE,
                &[""],
                &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
            ),
            rule(&["create"], &[""], &["pods/eviction", "serviceaccounts/token"]),
            rule(
                WRITE,
                &[""],
                &[
                    "configmaps",
                    "events",
                    "persistentvolumeclaims",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "secrets",
                    "serviceaccounts",
                    "services",
                    "services/proxy",
                ],
            ),
            rule(
                WRITE,
                &["apps"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "replicasets",
                    "replicasets/scale",
                    "statefulsets",
                    "statefulsets/scale",
                ],
            ),
            rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
            rule(WRITE, &["batch"], &["cronjobs", "jobs"]),
            rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
            rule(WRITE, &["networking.k8s.io"], &["ingresses", "networkpolicies"]),
        ],
        aggregates: None,
    });
    out.push(DefaultRole {
        name: "system:aggregate-to-view",
        labels: vec![aggregate_label("view")],
        rules: vec![
            rule(
                READ,
                &[""],
                &[
                    "configmaps",
                    "endpoints",
                    "persistentvolumeclaims",
                    "persistentvolumeclaims/status",
                    "pods",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/status",
                ],
            ),
            rule(
                READ,
                &[""],
                &[
                    "bindings",
                    "events",
                    "limitranges",
                    "namespaces/status",
                    "pods/log",
                    "pods/status",
                    "replicationcontrollers/status",
                    "resourcequotas",
                    "resourcequotas/status",
                ],
            ),
            rule(READ, &[""], &["namespaces"]),
            rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
            rule(
                READ,
                &["apps"],
                &[
                    "controllerrevisions",
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "statefulsets",
                    "statefulsets/scale",
                    "statefulsets/status",
                ],
            ),
            rule(
                READ,
                &["autoscaling"],
                &["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
            ),
            rule(
                READ,
                &["batch"],
                &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            ),
            rule(
                READ,
                &["policy"],
                &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            ),
            rule(
                READ,
                &["networking.k8s.io"],
                &["ingresses", "ingresses/status", "networkpolicies"],
            ),
        ],
        aggregates: None,
    });
    out.push(plain("system:node", node_rules()));
    out.push(plain("system:node-proxier", node_proxier_rules()));
    out.push(plain("system:kube-scheduler", scheduler_rules()));
    out.push(plain(
        "system:volume-scheduler",
        vec![
            rule(
                &["get", "list", "watch", "patch", "update"],
                &[""],
                &["persistentvolumes", "persistentvolumeclaims"],
            ),
            rule(READ, &["storage.k8s.io"], &["storageclasses"]),
        ],
    ));
    out.push(plain("system:kube-controller-manager", controller_manager_rules()));
    for (name, rules) in controller_roles() {
        out.push(plain(name, rules));
    }
    out.push(plain(
        "system:service-account-issuer-discovery",
        vec![url_rule(
            &["get"],
            &[
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            ],
        )],
    ));
    out.push(plain(
        "system:node-bootstrapper",
        vec![rule(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        )],
    ));
    // Full access to the kubelet API (Kubernetes ships it unbound; grant it to a kubelet client).
    out.push(plain(
        "system:kubelet-api-admin",
        vec![
            rule(&["get", "list", "watch"], &[""], &["nodes"]),
            rule(&["proxy"], &[""], &["nodes"]),
            rule(
                &["*"],
                &[""],
                &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"],
            ),
        ],
    ));
    out.extend(certificate_roles());
    out.extend(metrics_server_roles());
    out
}

/// What Kubernetes' metrics-server manifest brings: `system:aggregated-
/// metrics-reader` (aggregated into view, edit and admin) and the server's
/// own role `system:metrics-server` (read nodes, their metrics and pods). The
/// server runs as user `system:metrics-server` (`xtask up`); its role also
/// holds what Kubernetes grants it through `system:auth-delegator`
/// (SubjectAccessReviews) and what its registration at start writes (the
/// Service, EndpointSlice and APIService named below; `create` cannot be
/// limited by name).
fn metrics_server_roles() -> Vec<DefaultRole> {
    let named = |verbs: &[&str], group: &str, resource: &str, name: &str| PolicyRule {
        resource_names: Some(vec![name.to_string()]),
        ..rule(verbs, &[group], &[resource])
    };
    vec![
        DefaultRole {
            name: "system:aggregated-metrics-reader",
            labels: vec![
                aggregate_label("view"),
                aggregate_label("edit"),
                aggregate_label("admin"),
            ],
            rules: vec![rule(READ, &["metrics.k8s.io"], &["pods", "nodes"])],
            aggregates: None,
        },
        plain(
            "system:metrics-server",
            vec![
                rule(&["get"], &[""], &["nodes/metrics"]),
                rule(READ, &[""], &["pods", "nodes"]),
                rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
                rule(&["create"], &[""], &["services"]),
                rule(&["create"], &["discovery.k8s.io"], &["endpointslices"]),
                rule(&["create"], &["apiregistration.k8s.io"], &["apiservices"]),
                named(&["get", "patch", "update"], "", "services", "metrics-server"),
                named(
                    &["get", "patch", "update"],
                    "discovery.k8s.io",
                    "endpointslices",
                    "metrics-server",
                ),
                named(
                    &["get", "patch", "update"],
                    "apiregistration.k8s.io",
                    "apiservices",
                    "v1beta1.metrics.k8s.io",
                ),
            ],
        ),
    ]
}

/// The CSR roles Kubernetes ships: what the csrapproving controller's
/// SubjectAccessReviews ask for (`create` on
/// `certificatesigningrequests/nodeclient` and `/selfnodeclient`), and one
/// approver role per built-in signer (`approve` on `signers/<name>`).
fn certificate_roles() -> Vec<DefaultRole> {
    let csr = |sub: &'static str| {
        plain(
            if sub == "nodeclient" {
                NODE_CLIENT_ROLE
            } else {
                SELF_NODE_CLIENT_ROLE
            },
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &[format!("certificatesigningrequests/{sub}").as_str()],
            )],
        )
    };
    let approver = |role: &'static str, signer: &str| {
        plain(
            role,
            vec![PolicyRule {
                resource_names: Some(vec![signer.into()]),
                ..rule(&["approve"], &["certificates.k8s.io"], &["signers"])
            }],
        )
    };
    vec![
        csr("nodeclient"),
        csr("selfnodeclient"),
        approver(
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            "kubernetes.io/kube-apiserver-client",
        ),
        approver(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
        approver(
            "system:certificates.k8s.io:kubelet-serving-approver",
            "kubernetes.io/kubelet-serving",
        ),
        approver(
            "system:certificates.k8s.io:legacy-unknown-approver",
            "kubernetes.io/legacy-unknown",
        ),
    ]
}

/// Lets bootstrappers' node client requests be auto-approved (bound to
/// `system:bootstrappers`, as kubeadm binds it).
pub const NODE_CLIENT_ROLE: &str = "system:certificates.k8s.io:certificatesigningrequests:nodeclient";
/// Lets nodes' renewals of their own client certificate be auto-approved
/// (bound to `system:nodes`, as kubeadm binds it).
pub const SELF_NODE_CLIENT_ROLE: &str = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient";

/// What Kubernetes' `system:node` role grants a kubelet.
pub fn node_rules() -> Vec<PolicyRule> {
    let mut r = vec![
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews", "subjectaccessreviews"],
        ),
        rule(READ, &[""], &["services"]),
        rule(&["create", "get", "list", "watch"], &[""], &["nodes"]),
        rule(&["patch", "update"], &[""], &["nodes/status"]),
        rule(&["delete", "patch", "update"], &[""], &["nodes"]),
        rule(READ, &[""], &["pods"]),
        rule(&["create", "delete"], &[""], &["pods"]),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(READ, &[""], &["configmaps", "secrets"]),
        rule(&["get"], &[""], &["persistentvolumeclaims", "persistentvolumes"]),
        rule(&["get"], &[""], &["endpoints"]),
        rule(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
        rule(
            &["create", "delete", "get", "patch", "update"],
            &["coordination.k8s.io"],
            &["leases"],
        ),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(&["patch", "update"], &[""], &["persistentvolumeclaims/status"]),
        rule(READ, &["node.k8s.io"], &["runtimeclasses"]),
        rule(READ, &["storage.k8s.io"], &["csidrivers"]),
    ];
    r.extend(events());
    r
}

/// What Kubernetes' `system:node-proxier` role grants kube-proxy.
pub fn node_proxier_rules() -> Vec<PolicyRule> {
    let mut r = vec![
        rule(&["list", "watch"], &[""], &["endpoints", "services"]),
        rule(READ, &[""], &["nodes"]),
        rule(&["list", "watch"], &["discovery.k8s.io"], &["endpointslices"]),
    ];
    r.extend(events());
    r
}

fn scheduler_rules() -> Vec<PolicyRule> {
    let mut r = events();
    r.extend([
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        rule(&["get", "update"], &["coordination.k8s.io"], &["leases"]),
        rule(READ, &[""], &["nodes", "namespaces"]),
        rule(&["delete", "get", "list", "watch"], &[""], &["pods"]),
        rule(&["create"], &[""], &["bindings", "pods/binding"]),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(READ, &[""], &["replicationcontrollers", "services"]),
        rule(READ, &["apps", "extensions"], &["replicasets"]),
        rule(READ, &["apps"], &["statefulsets"]),
        rule(READ, &["policy"], &["poddisruptionbudgets"]),
        rule(READ, &[""], &["persistentvolumeclaims", "persistentvolumes"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
        rule(
            READ,
            &["storage.k8s.io"],
            &["csinodes", "csidrivers", "csistoragecapacities", "storageclasses"],
        ),
        rule(READ, &["scheduling.k8s.io"], &["priorityclasses"]),
    ]);
    r
}

fn controller_manager_rules() -> Vec<PolicyRule> {
    let mut r = events();
    r.extend([
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        rule(&["get", "update"], &["coordination.k8s.io"], &["leases"]),
        rule(&["create"], &[""], &["secrets", "serviceaccounts"]),
        rule(&["delete"], &[""], &["secrets"]),
        rule(
            &["get"],
            &[""],
            &["configmaps", "namespaces", "secrets", "serviceaccounts"],
        ),
        rule(&["update"], &[""], &["secrets", "serviceaccounts"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
        rule(&["list", "watch"], &["*"], &["*"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
    ]);
    r
}

/// The controller-manager's user.
pub const CONTROLLER_MANAGER: &str = "system:kube-controller-manager";

/// The per-controller roles Kubernetes ships (`system:controller:<name>`)
/// for the controllers Sluice's controller-manager runs, plus Sluice's own
/// local-path provisioner; all bound to [`CONTROLLER_MANAGER`].
pub fn controller_roles() -> Vec<(&'static str, Vec<PolicyRule>)> {
    let with_events = |mut r: Vec<PolicyRule>| {
        r.extend(events());
        r
    };
    let owner = |group: &'static str, plural: &'static str| {
        vec![
            rule(&["get", "list", "patch", "update", "watch"], &[group], &[plural]),
            rule(
                &["patch", "update"],
                &[group],
                &[&format!("{plural}/status"), &format!("{plural}/finalizers")],
            ),
        ]
    };
    let pods_rw = rule(
        &["create", "delete", "get", "list", "patch", "update", "watch"],
        &[""],
        &["pods"],
    );
    vec![
        (
            "system:controller:attachdetach-controller",
            with_events(vec![
                rule(
                    &["list", "watch"],
                    &[""],
                    &["persistentvolumes", "persistentvolumeclaims"],
                ),
                rule(READ, &[""], &["nodes"]),
                rule(&["patch", "update"], &[""], &["nodes/status"]),
                rule(&["list", "watch"], &[""], &["pods"]),
                rule(
                    &["create", "delete", "get", "list", "watch"],
                    &["storage.k8s.io"],
                    &["volumeattachments"],
                ),
                rule(READ, &["storage.k8s.io"], &["csidrivers", "csinodes"]),
            ]),
        ),
        (
            "system:controller:clusterrole-aggregation-controller",
            vec![rule(
                &["escalate", "get", "list", "patch", "update", "watch"],
                &["rbac.authorization.k8s.io"],
                &["clusterroles"],
            )],
        ),
        ("system:controller:cronjob-controller", {
            let mut r = owner("batch", "cronjobs");
            r.push(rule(
                &["create", "delete", "get", "list", "patch", "update", "watch"],
                &["batch"],
                &["jobs"],
            ));
            r.push(rule(&["delete", "list"], &[""], &["pods"]));
            with_events(r)
        }),
        ("system:controller:daemon-set-controller", {
            let mut r = owner("apps", "daemonsets");
            r.push(rule(READ, &[""], &["nodes"]));
            r.push(rule(&["create", "delete", "list", "patch", "watch"], &[""], &["pods"]));
            r.push(rule(&["create"], &[""], &["pods/binding"]));
            r.push(rule(READ_WRITE, &["apps"], &["controllerrevisions"]));
            with_events(r)
        }),
        ("system:controller:deployment-controller", {
            let mut r = owner("apps", "deployments");
            r.push(rule(READ_WRITE, &["apps"], &["replicasets"]));
            r.push(rule(&["get", "list", "patch", "update", "watch"], &[""], &["pods"]));
            with_events(r)
        }),
        (
            "system:controller:disruption-controller",
            with_events(vec![
                rule(READ, &["apps", "extensions"], &["deployments", "replicasets"]),
                rule(READ, &[""], &["replicationcontrollers", "pods"]),
                rule(READ, &["policy"], &["poddisruptionbudgets"]),
                rule(READ, &["apps"], &["statefulsets"]),
                rule(&["patch", "update"], &["policy"], &["poddisruptionbudgets/status"]),
                rule(&["get"], &["*"], &["*/scale"]),
                rule(&["patch", "update"], &[""], &["pods/status"]),
            ]),
        ),
        (
            "system:controller:horizontal-pod-autoscaler",
            with_events(vec![
                rule(
                    &["get", "list", "watch"],
                    &["autoscaling"],
                    &["horizontalpodautoscalers"],
                ),
                rule(&["update"], &["autoscaling"], &["horizontalpodautoscalers/status"]),
                rule(&["get", "update"], &["*"], &["*/scale"]),
                rule(&["list"], &[""], &["pods"]),
                rule(&["list"], &["metrics.k8s.io"], &["pods"]),
                rule(&["get", "list"], &["custom.metrics.k8s.io"], &["*"]),
                rule(&["get", "list"], &["external.metrics.k8s.io"], &["*"]),
            ]),
        ),
        (
            "system:controller:endpoint-controller",
            with_events(vec![
                rule(READ, &[""], &["services", "pods"]),
                rule(
                    &["create", "delete", "get", "list", "patch", "update"],
                    &[""],
                    &["endpoints"],
                ),
                rule(&["create"], &[""], &["endpoints/restricted"]),
            ]),
        ),
        (
            "system:controller:endpointslice-controller",
            with_events(vec![
                rule(READ, &[""], &["services", "pods", "nodes"]),
                rule(
                    &["create", "delete", "get", "list", "patch", "update"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
            ]),
        ),
        (
            "system:controller:generic-garbage-collector",
            vec![rule(
                &["delete", "get", "list", "patch", "update", "watch"],
                &["*"],
                &["*"],
            )],
        ),
        ("system:controller:job-controller", {
            let mut r = owner("batch", "jobs");
            r.push(rule(&["patch"], &["batch"], &["jobs/status"]));
            r.push(pods_rw.clone());
            with_events(r)
        }),
        (
            "system:controller:namespace-controller",
            vec![
                rule(&["delete", "get", "list", "watch"], &[""], &["namespaces"]),
                rule(
                    &["patch", "update"],
                    &[""],
                    &["namespaces/finalize", "namespaces/status"],
                ),
                rule(&["delete", "deletecollection", "get", "list"], &["*"], &["*"]),
            ],
        ),
        (
            "system:controller:node-controller",
            with_events(vec![
                rule(&["delete", "get", "list", "patch", "update"], &[""], &["nodes"]),
                rule(&["patch", "update"], &[""], &["nodes/status"]),
                rule(&["patch", "update"], &[""], &["pods/status"]),
                rule(&["delete", "list"], &[""], &["pods"]),
                rule(
                    &["create", "delete", "get", "list", "patch", "update", "watch"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
            ]),
        ),
        (
            "system:controller:persistent-volume-binder",
            with_events(vec![
                rule(
                    &["create", "delete", "get", "list", "patch", "update", "watch"],
                    &[""],
                    &["persistentvolumes"],
                ),
                rule(&["patch", "update"], &[""], &["persistentvolumes/status"]),
                rule(
                    &["get", "list", "patch", "update", "watch"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
                rule(&["patch", "update"], &[""], &["persistentvolumeclaims/status"]),
                rule(&["get", "list", "watch"], &[""], &["pods", "nodes"]),
                rule(READ, &["storage.k8s.io"], &["storageclasses", "csidrivers", "csinodes"]),
            ]),
        ),
        (
            "system:controller:expand-controller",
            with_events(vec![
                rule(
                    &["get", "list", "patch", "update", "watch"],
                    &[""],
                    &["persistentvolumes"],
                ),
                rule(&["patch", "update"], &[""], &["persistentvolumeclaims/status"]),
                rule(READ, &[""], &["persistentvolumeclaims"]),
                rule(READ, &["storage.k8s.io"], &["storageclasses"]),
            ]),
        ),
        (
            "system:controller:local-path-provisioner",
            with_events(vec![
                rule(
                    &["create", "delete", "get", "list", "patch", "update", "watch"],
                    &[""],
                    &["persistentvolumes"],
                ),
                rule(
                    &["get", "list", "patch", "update", "watch"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
                rule(
                    &["patch", "update"],
                    &[""],
                    &["persistentvolumeclaims/status", "persistentvolumes/status"],
                ),
                rule(READ, &[""], &["nodes"]),
                // It creates the default `local-path` StorageClass at start.
                rule(
                    &["create", "get", "list", "watch"],
                    &["storage.k8s.io"],
                    &["storageclasses"],
                ),
            ]),
        ),
        (
            "system:controller:pod-garbage-collector",
            vec![
                rule(&["delete", "list", "watch"], &[""], &["pods"]),
                rule(&["get", "list", "watch"], &[""], &["nodes"]),
                rule(&["patch"], &[""], &["pods/status"]),
            ],
        ),
        ("system:controller:replicaset-controller", {
            let mut r = owner("apps", "replicasets");
            r.push(pods_rw.clone());
            with_events(r)
        }),
        ("system:controller:replication-controller", {
            let mut r = owner("", "replicationcontrollers");
            r.push(pods_rw.clone());
            with_events(r)
        }),
        (
            "system:controller:resourcequota-controller",
            with_events(vec![
                rule(&["list", "watch"], &["*"], &["*"]),
                rule(&["patch", "update"], &[""], &["resourcequotas/status"]),
            ]),
        ),
        (
            "system:controller:service-account-controller",
            with_events(vec![rule(&["create"], &[""], &["serviceaccounts"])]),
        ),
        (
            "system:controller:root-ca-cert-publisher",
            with_events(vec![rule(&["create", "patch", "update"], &[""], &["configmaps"])]),
        ),
        (
            "system:controller:certificate-controller",
            with_events(vec![
                rule(
                    &["delete", "get", "list", "watch"],
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests"],
                ),
                rule(
                    &["update"],
                    &["certificates.k8s.io"],
                    &[
                        "certificatesigningrequests/approval",
                        "certificatesigningrequests/status",
                    ],
                ),
                PolicyRule {
                    resource_names: Some(vec!["kubernetes.io/kube-apiserver-client-kubelet".into()]),
                    ..rule(&["approve"], &["certificates.k8s.io"], &["signers"])
                },
                PolicyRule {
                    resource_names: Some(
                        [
                            "kubernetes.io/kube-apiserver-client",
                            "kubernetes.io/kube-apiserver-client-kubelet",
                            "kubernetes.io/kubelet-serving",
                            "kubernetes.io/legacy-unknown",
                        ]
                        .map(String::from)
                        .to_vec(),
                    ),
                    ..rule(&["sign"], &["certificates.k8s.io"], &["signers"])
                },
                rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
            ]),
        ),
        (
            "system:controller:service-controller",
            with_events(vec![
                rule(READ, &[""], &["services"]),
                rule(&["patch", "update"], &[""], &["services/status"]),
                rule(READ, &[""], &["nodes"]),
            ]),
        ),
        ("system:controller:statefulset-controller", {
            let mut r = owner("apps", "statefulsets");
            r.push(pods_rw);
            r.push(rule(&["create", "get"], &[""], &["persistentvolumeclaims"]));
            r.push(rule(&["patch", "update"], &[""], &["persistentvolumeclaims"]));
            r.push(rule(READ_WRITE, &["apps"], &["controllerrevisions"]));
            with_events(r)
        }),
        (
            "system:controller:ttl-after-finished-controller",
            with_events(vec![rule(&["delete", "get", "list", "watch"], &["batch"], &["jobs"])]),
        ),
    ]
}

/// The default bindings: ClusterRole name and subjects (kind, name).
fn bindings() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        ("cluster-admin", vec![("Group", MASTERS)]),
        ("system:discovery", vec![("Group", AUTHENTICATED)]),
        ("system:basic-user", vec![("Group", AUTHENTICATED)]),
        ("system:monitoring", vec![("Group", "system:monitoring")]),
        (
            "system:public-info-viewer",
            vec![("Group", AUTHENTICATED), ("Group", UNAUTHENTICATED)],
        ),
        // Nodes are authorized by the Node authorizer, not by this binding.
        ("system:node", vec![]),
        ("system:node-proxier", vec![("User", "system:kube-proxy")]),
        (
            "system:kube-controller-manager",
            vec![("User", "system:kube-controller-manager")],
        ),
        ("system:kube-scheduler", vec![("User", "system:kube-scheduler")]),
        ("system:volume-scheduler", vec![("User", "system:kube-scheduler")]),
        (
            "system:service-account-issuer-discovery",
            vec![("Group", "system:serviceaccounts")],
        ),
        (NODE_CLIENT_ROLE, vec![("Group", "system:bootstrappers")]),
        (SELF_NODE_CLIENT_ROLE, vec![("Group", "system:nodes")]),
        ("system:metrics-server", vec![("User", "system:metrics-server")]),
    ]
    .into_iter()
    // The controller-manager runs every controller under its own identity
    // (Kubernetes' `--use-service-account-credentials=false`).
    .chain(
        controller_roles()
            .into_iter()
            .map(|(name, _)| (name, vec![("User", CONTROLLER_MANAGER)])),
    )
    .collect()
}

fn metadata(name: &str, extra_labels: &[String]) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert(BOOTSTRAPPING.0.into(), json!(BOOTSTRAPPING.1));
    for l in extra_labels {
        labels.insert(l.clone(), json!("true"));
    }
    json!({"name": name, "labels": labels, "annotations": {AUTOUPDATE: "true"}})
}

/// The default ClusterRoles as objects.
pub fn cluster_roles() -> Vec<Value> {
    roles()
        .into_iter()
        .map(|r| {
            let mut obj = json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": metadata(r.name, &r.labels),
                "rules": r.rules,
            });
            if let Some(a) = r.aggregates {
                obj["aggregationRule"] =
                    json!({"clusterRoleSelectors": [{"matchLabels": {aggregate_label(a): "true"}}]});
            }
            obj
        })
        .collect()
}

/// The default ClusterRoleBindings as objects (each named as its role).
pub fn cluster_role_bindings() -> Vec<Value> {
    bindings()
        .into_iter()
        .map(|(role, subjects)| {
            let subjects: Vec<Value> = subjects
                .iter()
                .map(|(kind, name)| json!({"kind": kind, "apiGroup": kinds::rbac::GROUP, "name": name}))
                .collect();
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": metadata(role, &[]),
                "roleRef": {"apiGroup": kinds::rbac::GROUP, "kind": "ClusterRole", "name": role},
                "subjects": subjects,
            })
        })
        .collect()
}

/// Adds to `into` (an array) every element of `from` it lacks.
fn union(into: &mut Value, from: &Value) {
    let Some(from) = from.as_array() else { return };
    if !into.is_array() {
        *into = json!([]);
    }
    if let Some(list) = into.as_array_mut() {
        for item in from {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
    }
}

/// `existing` with what `wanted` (a default object) says it must have;
/// `None` when nothing is missing or its annotation says not to update it.
pub fn reconciled(existing: &Value, wanted: &Value) -> Option<Value> {
    let auto = existing
        .pointer(&format!("/metadata/annotations/{}", AUTOUPDATE.replace('/', "~1")))
        .and_then(Value::as_str);
    if auto == Some("false") {
        return None;
    }
    let mut out = existing.clone();
    for field in ["labels", "annotations"] {
        if let Some(map) = wanted["metadata"][field].as_object() {
            let target = &mut out["metadata"][field];
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in map {
                if target.get(k).is_none() {
                    target[k] = v.clone();
                }
            }
        }
    }
    if wanted.get("aggregationRule").is_some() {
        // The aggregation controller owns the rules of an aggregated role.
        let selectors = &wanted["aggregationRule"]["clusterRoleSelectors"];
        union(&mut out["aggregationRule"]["clusterRoleSelectors"], selectors);
    } else if wanted.get("rules").is_some() {
        let have: Vec<PolicyRule> = out
            .get("rules")
            .cloned()
            .and_then(|r| serde_json::from_value(r).ok())
            .unwrap_or_default();
        let want: Vec<PolicyRule> = serde_json::from_value(wanted["rules"].clone()).unwrap_or_default();
        // What is missing is added one permission per rule, as Kubernetes' reconciliation does.
        if let Err(missing) = super::rules::covers(&have, &want) {
            let missing: Vec<Value> = missing.iter().filter_map(|w| serde_json::to_value(w).ok()).collect();
            union(&mut out["rules"], &json!(missing));
        }
    }
    if let Some(subjects) = wanted
        .get("subjects")
        .filter(|s| s.as_array().is_some_and(|a| !a.is_empty()))
    {
        union(&mut out["subjects"], subjects);
    }
    (out != *existing).then_some(out)
}

async fn ensure(registry: &Registry, k: &Kind, wanted: Value) -> ApiResult<()> {
    let name = wanted["metadata"]["name"].as_str().unwrap_or_default().to_string();
    match registry.get(k, None, &name).await {
        Ok(stored) => {
            if reconciled(&stored.object, &wanted).is_none() {
                return Ok(());
            }
            registry
                .update(k, None, &name, UpdateMode::Main, WriteOptions::default(), |cur| {
                    Ok(reconciled(cur, &wanted).unwrap_or_else(|| cur.clone()))
                })
                .await?;
            tracing::info!(kind = k.resource().kind, name, "reconciled default RBAC object");
            Ok(())
        }
        Err(e) if e.code == 404 => match registry.create(k, None, wanted, WriteOptions::default()).await {
            Ok(_) => {
                tracing::info!(kind = k.resource().kind, name, "created default RBAC object");
                Ok(())
            }
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Creates the default ClusterRoles and ClusterRoleBindings, or brings
/// them back to what they must at least hold.
pub async fn reconcile(registry: &Registry) -> ApiResult<()> {
    let roles = Kind::Builtin(&kinds::clusterrole::ClusterRoles);
    for r in cluster_roles() {
        ensure(registry, &roles, r).await?;
    }
    let bindings = Kind::Builtin(&kinds::clusterrolebinding::ClusterRoleBindings);
    for b in cluster_role_bindings() {
        ensure(registry, &bindings, b).await?;
    }
    Ok::<(), ApiError>(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_cluster_admin_is_bound_to_masters() {
        for r in cluster_roles() {
            let errs = crate::kinds::Strategy::validate(&kinds::clusterrole::ClusterRoles, &r);
            assert!(errs.is_empty(), "{}: {errs:?}", r["metadata"]["name"]);
            assert_eq!(r["metadata"]["annotations"][AUTOUPDATE], "true");
        }
        let b = cluster_role_bindings();
        let admin = b.iter().find(|b| b["metadata"]["name"] == "cluster-admin").unwrap();
        assert_eq!(admin["subjects"][0]["name"], MASTERS);
        let edit = cluster_roles()
            .into_iter()
            .find(|r| r["metadata"]["name"] == "edit")
            .unwrap();
        assert_eq!(
            edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"],
            "true"
        );
        assert_eq!(
            edit["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
                ["rbac.authorization.k8s.io/aggregate-to-edit"],
            "true"
        );
    }

    #[test]
    fn reconciliation_adds_what_is_missing_and_respects_autoupdate_false() {
        let wanted = cluster_roles()
            .into_iter()
            .find(|r| r["metadata"]["name"] == "system:basic-user")
            .unwrap();
        let mut trimmed = wanted.clone();
        trimmed["rules"] = json!([{"apiGroups": ["x"], "resources": ["y"], "verbs": ["get"]}]);
        let fixed = reconciled(&trimmed, &wanted).unwrap();
        assert_eq!(
            fixed["rules"].as_array().unwrap().len(),
            4,
            "extra rule kept, three single permissions added"
        );
        assert!(reconciled(&fixed, &wanted).is_none());
        trimmed["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert!(reconciled(&trimmed, &wanted).is_none());
    }
}
