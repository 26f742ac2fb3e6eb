//! Which webhooks apply to a request: rules, scope, namespace and object
//! selectors and `matchPolicy: Equivalent`.

use std::fmt;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::AdmissionError;
use crate::selector::{self, Labels};

/// Group, version and kind (`metav1.GroupVersionKind` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// Group, version and resource (`metav1.GroupVersionResource` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct GroupVersionResource {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl GroupVersionKind {
    /// Shorthand constructor.
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        GroupVersionKind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }
}

impl GroupVersionResource {
    /// Shorthand constructor.
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        GroupVersionResource {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
        }
    }
}

/// The admission operation of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// The wire spelling: `CREATE`, `UPDATE`, `DELETE`, `CONNECT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything admission needs to know about one API request.
///
/// `namespace` is empty for cluster-scoped objects; for Namespace objects
/// Kubernetes puts the namespace's own name here.
#[derive(Debug, Clone)]
pub struct AdmissionAttributes {
    pub operation: Operation,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    /// Empty when the request is for the main resource.
    pub sub_resource: String,
    pub name: String,
    pub namespace: String,
    pub user_info: UserInfo,
    /// The new object (absent for DELETE); mutated in place by mutating webhooks.
    pub object: Option<Value>,
    /// The stored object for UPDATE and DELETE.
    pub old_object: Option<Value>,
    /// CreateOptions/UpdateOptions/DeleteOptions as JSON.
    pub options: Option<Value>,
    pub dry_run: bool,
}

/// Resources served in other groups/versions that are the same objects
/// (for `matchPolicy: Equivalent`). The API server implements this.
pub trait ResourceEquivalence: Send + Sync {
    /// All resources equivalent to `resource` (the resource itself may be included).
    fn equivalents(&self, resource: &GroupVersionResource, sub_resource: &str) -> Vec<GroupVersionResource>;
    /// The kind served for `resource` (and `sub_resource`), if known.
    fn kind_for(&self, resource: &GroupVersionResource, sub_resource: &str) -> Option<GroupVersionKind>;
    /// Converts `object` to `to`. The default only rewrites `apiVersion` and `kind`,
    /// which is right when the schemas are identical.
    fn convert(&self, object: &Value, to: &GroupVersionKind) -> Result<Value, String> {
        let mut out = object.clone();
        if let Some(map) = out.as_object_mut() {
            let api_version = if to.group.is_empty() {
                to.version.clone()
            } else {
                format!("{}/{}", to.group, to.version)
            };
            map.insert("apiVersion".into(), Value::String(api_version));
            map.insert("kind".into(), Value::String(to.kind.clone()));
        }
        Ok(out)
    }
}

/// Mutating or validating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Mutating,
    Validating,
}

/// One webhook of a configuration, mutating or validating, in a common shape.
#[derive(Debug, Clone)]
pub struct Hook {
    pub kind: HookKind,
    /// Name of the MutatingWebhookConfiguration/ValidatingWebhookConfiguration.
    pub configuration: String,
    /// Position of the webhook in its configuration.
    pub index: usize,
    pub name: String,
    pub client_config: WebhookClientConfig,
    pub rules: Vec<RuleWithOperations>,
    /// `true` unless failurePolicy is `Ignore`.
    pub fail_closed: bool,
    /// `true` unless matchPolicy is `Exact` (v1 defaults to Equivalent).
    pub match_equivalent: bool,
    pub namespace_selector: Option<LabelSelector>,
    pub object_selector: Option<LabelSelector>,
    pub side_effects: String,
    /// The `timeoutSeconds`, defaulted to 10 and clamped to 1..=30.
    pub timeout_seconds: u64,
    /// `reinvocationPolicy: IfNeeded` (mutating only).
    pub reinvoke_if_needed: bool,
    /// Number of matchConditions (unsupported: a matching hook with any fails).
    pub match_conditions: usize,
}

impl Hook {
    /// A unique key of this hook within its kind: `<configuration>/<name>/<index>`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.configuration, self.name, self.index)
    }
}

fn timeout(t: Option<i32>) -> u64 {
    u64::try_from(t.unwrap_or(10).clamp(1, 30)).unwrap_or(10)
}

fn from_mutating(configuration: &str, index: usize, w: &MutatingWebhook) -> Hook {
    Hook {
        kind: HookKind::Mutating,
        configuration: configuration.to_owned(),
        index,
        name: w.name.clone(),
        client_config: w.client_config.clone(),
        rules: w.rules.clone().unwrap_or_default(),
        fail_closed: w.failure_policy.as_deref() != Some("Ignore"),
        match_equivalent: w.match_policy.as_deref() != Some("Exact"),
        namespace_selector: w.namespace_selector.clone(),
        object_selector: w.object_selector.clone(),
        side_effects: w.side_effects.clone(),
        timeout_seconds: timeout(w.timeout_seconds),
        reinvoke_if_needed: w.reinvocation_policy.as_deref() == Some("IfNeeded"),
        match_conditions: w.match_conditions.as_ref().map_or(0, Vec::len),
    }
}

fn from_validating(configuration: &str, index: usize, w: &ValidatingWebhook) -> Hook {
    Hook {
        kind: HookKind::Validating,
        configuration: configuration.to_owned(),
        index,
        name: w.name.clone(),
        client_config: w.client_config.clone(),
        rules: w.rules.clone().unwrap_or_default(),
        fail_closed: w.failure_policy.as_deref() != Some("Ignore"),
        match_equivalent: w.match_policy.as_deref() != Some("Exact"),
        namespace_selector: w.namespace_selector.clone(),
        object_selector: w.object_selector.clone(),
        side_effects: w.side_effects.clone(),
        timeout_seconds: timeout(w.timeout_seconds),
        reinvoke_if_needed: false,
        match_conditions: w.match_conditions.as_ref().map_or(0, Vec::len),
    }
}

/// The webhooks of all mutating configurations in the order Kubernetes calls
/// them: configurations sorted by name, webhooks in their listed order.
pub fn mutating_hooks(configs: &[MutatingWebhookConfiguration]) -> Vec<Hook> {
    let mut sorted: Vec<&MutatingWebhookConfiguration> = configs.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    sorted
        .into_iter()
        .flat_map(|c| {
            let name = c.metadata.name.clone().unwrap_or_default();
            c.webhooks
                .iter()
                .flatten()
                .enumerate()
                .map(move |(i, w)| from_mutating(&name, i, w))
        })
        .collect()
}

/// The webhooks of all validating configurations, ordered like [`mutating_hooks`].
pub fn validating_hooks(configs: &[ValidatingWebhookConfiguration]) -> Vec<Hook> {
    let mut sorted: Vec<&ValidatingWebhookConfiguration> = configs.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    sorted
        .into_iter()
        .flat_map(|c| {
            let name = c.metadata.name.clone().unwrap_or_default();
            c.webhooks
                .iter()
                .flatten()
                .enumerate()
                .map(move |(i, w)| from_validating(&name, i, w))
        })
        .collect()
}

/// What a matching webhook is called with: the request's resource, or for a
/// match through `matchPolicy: Equivalent` the equivalent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub resource: GroupVersionResource,
    pub sub_resource: String,
    pub kind: GroupVersionKind,
}

fn split_resource(r: &str) -> (&str, &str) {
    r.split_once('/').unwrap_or((r, ""))
}

fn any_or(list: Option<&Vec<String>>, value: &str) -> bool {
    list.into_iter().flatten().any(|v| v == "*" || v == value)
}

/// Whether one rule matches `operation` on `resource`/`sub_resource` in `namespace`.
pub fn rule_matches(
    rule: &RuleWithOperations,
    operation: Operation,
    resource: &GroupVersionResource,
    sub_resource: &str,
    namespace: &str,
) -> bool {
    if !any_or(rule.operations.as_ref(), operation.as_str())
        || !any_or(rule.api_groups.as_ref(), &resource.group)
        || !any_or(rule.api_versions.as_ref(), &resource.version)
    {
        return false;
    }
    let resource_ok = rule.resources.iter().flatten().any(|r| {
        let (res, sub) = split_resource(r);
        (res == "*" || res == resource.resource) && (sub == "*" || sub == sub_resource)
    });
    if !resource_ok {
        return false;
    }
    let is_namespace = resource.group.is_empty() && resource.version == "v1" && resource.resource == "namespaces";
    match rule.scope.as_deref() {
        None | Some("*") => true,
        Some("Cluster") => is_namespace || namespace.is_empty(),
        Some("Namespaced") => !is_namespace && !namespace.is_empty(),
        Some(_) => false,
    }
}

/// Admission configuration objects are never sent to webhooks (so that a
/// broken webhook cannot lock out its own repair).
pub fn is_exempt(resource: &GroupVersionResource) -> bool {
    resource.group == "admissionregistration.k8s.io"
        && matches!(
            resource.resource.as_str(),
            "mutatingwebhookconfigurations"
                | "validatingwebhookconfigurations"
                | "validatingadmissionpolicies"
                | "validatingadmissionpolicybindings"
                | "mutatingadmissionpolicies"
                | "mutatingadmissionpolicybindings"
        )
}

fn selector_error(which: &str, hook: &Hook, e: selector::SelectorError) -> AdmissionError {
    AdmissionError::Internal(format!("invalid {which} of webhook {:?}: {e}", hook.name))
}

/// Whether the namespace selector lets the request through. `namespace_labels`
/// are the labels of the request's namespace (`None` if it does not exist).
fn namespace_selected(
    hook: &Hook,
    attrs: &AdmissionAttributes,
    namespace_labels: Option<&Labels>,
) -> Result<bool, AdmissionError> {
    let is_namespace = attrs.resource.resource == "namespaces" && attrs.resource.group.is_empty();
    if attrs.namespace.is_empty() && !is_namespace {
        return Ok(true); // cluster-scoped resources are never exempted by a namespace selector
    }
    let Some(sel) = hook.namespace_selector.as_ref().filter(|s| !selector::is_empty(s)) else {
        return Ok(true);
    };
    let labels = if is_namespace && attrs.operation != Operation::Delete {
        // The namespace being created or updated: its new labels count.
        attrs.object.as_ref().map(selector::labels_of).unwrap_or_default()
    } else if let Some(l) = namespace_labels {
        l.clone()
    } else if is_namespace {
        attrs.old_object.as_ref().map(selector::labels_of).unwrap_or_default()
    } else {
        return Err(AdmissionError::Internal(format!(
            "namespaces {:?} not found",
            attrs.namespace
        )));
    };
    selector::matches(sel, &labels).map_err(|e| selector_error("namespaceSelector", hook, e))
}

fn object_selected(hook: &Hook, attrs: &AdmissionAttributes) -> Result<bool, AdmissionError> {
    let Some(sel) = hook.object_selector.as_ref().filter(|s| !selector::is_empty(s)) else {
        return Ok(true);
    };
    let mut any = false;
    for obj in [attrs.object.as_ref(), attrs.old_object.as_ref()].into_iter().flatten() {
        if selector::matches(sel, &selector::labels_of(obj)).map_err(|e| selector_error("objectSelector", hook, e))? {
            any = true;
        }
    }
    Ok(any)
}

/// Decides whether `hook` is called for the request, and with which resource.
///
/// Follows Kubernetes: selectors first (a selector error only counts if the
/// rules match too), then the rules against the request's own resource, then
/// (for `matchPolicy: Equivalent`) against each equivalent resource.
pub fn should_call(
    hook: &Hook,
    attrs: &AdmissionAttributes,
    namespace_labels: Option<&Labels>,
    equivalence: Option<&dyn ResourceEquivalence>,
) -> Result<Option<Invocation>, AdmissionError> {
    if is_exempt(&attrs.resource) {
        return Ok(None);
    }
    let ns = namespace_selected(hook, attrs, namespace_labels);
    if matches!(ns, Ok(false)) {
        return Ok(None);
    }
    let obj = object_selected(hook, attrs);
    if matches!(obj, Ok(false)) {
        return Ok(None);
    }
    let own = hook.rules.iter().any(|r| {
        rule_matches(
            r,
            attrs.operation,
            &attrs.resource,
            &attrs.sub_resource,
            &attrs.namespace,
        )
    });
    let mut invocation = own.then(|| Invocation {
        resource: attrs.resource.clone(),
        sub_resource: attrs.sub_resource.clone(),
        kind: attrs.kind.clone(),
    });
    if invocation.is_none() && hook.match_equivalent {
        if let Some(eq) = equivalence {
            let equivalents = eq.equivalents(&attrs.resource, &attrs.sub_resource);
            'rules: for rule in &hook.rules {
                for candidate in equivalents.iter().filter(|c| **c != attrs.resource) {
                    if rule_matches(rule, attrs.operation, candidate, &attrs.sub_resource, &attrs.namespace) {
                        let Some(kind) = eq.kind_for(candidate, &attrs.sub_resource) else {
                            return Err(AdmissionError::Internal(format!(
                                "unable to convert to {}/{}, Resource={}: unknown kind",
                                candidate.group, candidate.version, candidate.resource
                            )));
                        };
                        invocation = Some(Invocation {
                            resource: candidate.clone(),
                            sub_resource: attrs.sub_resource.clone(),
                            kind,
                        });
                        break 'rules;
                    }
                }
            }
        }
    }
    let Some(invocation) = invocation else {
        return Ok(None);
    };
    ns?;
    obj?;
    Ok(Some(invocation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    fn rule(
        groups: &[&str],
        versions: &[&str],
        resources: &[&str],
        ops: &[&str],
        scope: Option<&str>,
    ) -> RuleWithOperations {
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect());
        RuleWithOperations {
            api_groups: v(groups),
            api_versions: v(versions),
            resources: v(resources),
            operations: v(ops),
            scope: scope.map(Into::into),
        }
    }

    fn pods() -> GroupVersionResource {
        GroupVersionResource::new("", "v1", "pods")
    }

    #[test]
    fn rule_groups_versions_operations() {
        let r = rule(&[""], &["v1"], &["pods"], &["CREATE"], None);
        assert!(rule_matches(&r, Operation::Create, &pods(), "", "ns"));
        assert!(!rule_matches(&r, Operation::Update, &pods(), "", "ns"));
        assert!(!rule_matches(
            &r,
            Operation::Create,
            &GroupVersionResource::new("apps", "v1", "pods"),
            "",
            "ns"
        ));
        assert!(!rule_matches(
            &r,
            Operation::Create,
            &GroupVersionResource::new("", "v2", "pods"),
            "",
            "ns"
        ));
        let any = rule(&["*"], &["*"], &["*"], &["*"], None);
        assert!(rule_matches(
            &any,
            Operation::Connect,
            &GroupVersionResource::new("apps", "v1", "deployments"),
            "",
            ""
        ));
        let empty = RuleWithOperations::default();
        assert!(!rule_matches(&empty, Operation::Create, &pods(), "", "ns"));
    }

    #[test]
    fn rule_subresources() {
        let star = rule(&["*"], &["*"], &["*"], &["*"], None);
        assert!(rule_matches(&star, Operation::Update, &pods(), "", "ns"));
        assert!(!rule_matches(&star, Operation::Update, &pods(), "status", "ns"));
        let all = rule(&["*"], &["*"], &["*/*"], &["*"], None);
        assert!(rule_matches(&all, Operation::Update, &pods(), "status", "ns"));
        assert!(rule_matches(&all, Operation::Update, &pods(), "", "ns"));
        let status = rule(&[""], &["v1"], &["pods/status"], &["UPDATE"], None);
        assert!(rule_matches(&status, Operation::Update, &pods(), "status", "ns"));
        assert!(!rule_matches(&status, Operation::Update, &pods(), "", "ns"));
        assert!(!rule_matches(&status, Operation::Update, &pods(), "exec", "ns"));
        let any_status = rule(&[""], &["v1"], &["*/status"], &["UPDATE"], None);
        assert!(rule_matches(
            &any_status,
            Operation::Update,
            &GroupVersionResource::new("", "v1", "nodes"),
            "status",
            ""
        ));
        let pod_subs = rule(&[""], &["v1"], &["pods/*"], &["*"], None);
        assert!(rule_matches(&pod_subs, Operation::Connect, &pods(), "exec", "ns"));
        assert!(rule_matches(&pod_subs, Operation::Create, &pods(), "", "ns"));
    }

    #[test]
    fn rule_scope() {
        let cluster = rule(&["*"], &["*"], &["*"], &["*"], Some("Cluster"));
        let namespaced = rule(&["*"], &["*"], &["*"], &["*"], Some("Namespaced"));
        let star = rule(&["*"], &["*"], &["*"], &["*"], Some("*"));
        let nodes = GroupVersionResource::new("", "v1", "nodes");
        let namespaces = GroupVersionResource::new("", "v1", "namespaces");
        assert!(rule_matches(&cluster, Operation::Create, &nodes, "", ""));
        assert!(!rule_matches(&cluster, Operation::Create, &pods(), "", "ns"));
        assert!(rule_matches(&namespaced, Operation::Create, &pods(), "", "ns"));
        assert!(!rule_matches(&namespaced, Operation::Create, &nodes, "", ""));
        // Namespace objects are cluster-scoped even though their namespace attribute is set.
        assert!(rule_matches(&cluster, Operation::Create, &namespaces, "", "team-a"));
        assert!(!rule_matches(&namespaced, Operation::Create, &namespaces, "", "team-a"));
        assert!(rule_matches(&star, Operation::Create, &nodes, "", ""));
        assert!(rule_matches(&star, Operation::Create, &pods(), "", "ns"));
    }

    fn hook(rules: Vec<RuleWithOperations>) -> Hook {
        from_validating(
            "cfg",
            0,
            &ValidatingWebhook {
                name: "h.example.com".into(),
                rules: Some(rules),
                ..Default::default()
            },
        )
    }

    fn attrs(op: Operation, obj: Option<Value>, old: Option<Value>) -> AdmissionAttributes {
        AdmissionAttributes {
            operation: op,
            kind: GroupVersionKind::new("", "v1", "Pod"),
            resource: pods(),
            sub_resource: String::new(),
            name: "p".into(),
            namespace: "ns".into(),
            user_info: UserInfo::default(),
            object: obj,
            old_object: old,
            options: None,
            dry_run: false,
        }
    }

    fn all_rule() -> RuleWithOperations {
        rule(&["*"], &["*"], &["*"], &["*"], None)
    }

    fn label_sel(k: &str, v: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some([(k.to_string(), v.to_string())].into()),
            match_expressions: None,
        }
    }

    #[test]
    fn namespace_selector() {
        let mut h = hook(vec![all_rule()]);
        h.namespace_selector = Some(label_sel("env", "prod"));
        let a = attrs(Operation::Create, Some(json!({})), None);
        let prod: Labels = [("env".to_string(), "prod".to_string())].into();
        let dev: Labels = [("env".to_string(), "dev".to_string())].into();
        assert!(should_call(&h, &a, Some(&prod), None).unwrap().is_some());
        assert!(should_call(&h, &a, Some(&dev), None).unwrap().is_none());
        // Missing namespace: an error, since the rules match.
        assert!(matches!(
            should_call(&h, &a, None, None),
            Err(AdmissionError::Internal(_))
        ));
        // Cluster-scoped resources are never exempted.
        let mut node = attrs(Operation::Create, Some(json!({})), None);
        node.namespace.clear();
        node.resource = GroupVersionResource::new("", "v1", "nodes");
        assert!(should_call(&h, &node, None, None).unwrap().is_some());
        // Namespace objects: their own labels.
        let mut ns = attrs(
            Operation::Create,
            Some(json!({"metadata": {"labels": {"env": "prod"}}})),
            None,
        );
        ns.resource = GroupVersionResource::new("", "v1", "namespaces");
        ns.namespace = "team".into();
        assert!(should_call(&h, &ns, None, None).unwrap().is_some());
        ns.object = Some(json!({"metadata": {"labels": {"env": "dev"}}}));
        assert!(should_call(&h, &ns, Some(&prod), None).unwrap().is_none());
        // Deleting a namespace: the stored namespace's labels.
        ns.operation = Operation::Delete;
        ns.object = None;
        ns.old_object = Some(json!({"metadata": {"labels": {"env": "prod"}}}));
        assert!(should_call(&h, &ns, None, None).unwrap().is_some());
    }

    #[test]
    fn object_selector_old_or_new() {
        let mut h = hook(vec![all_rule()]);
        h.object_selector = Some(label_sel("app", "web"));
        let web = json!({"metadata": {"labels": {"app": "web"}}});
        let db = json!({"metadata": {"labels": {"app": "db"}}});
        assert!(
            should_call(&h, &attrs(Operation::Create, Some(web.clone()), None), None, None)
                .unwrap()
                .is_some()
        );
        assert!(
            should_call(&h, &attrs(Operation::Create, Some(db.clone()), None), None, None)
                .unwrap()
                .is_none()
        );
        assert!(should_call(
            &h,
            &attrs(Operation::Update, Some(db.clone()), Some(web.clone())),
            None,
            None
        )
        .unwrap()
        .is_some());
        assert!(should_call(&h, &attrs(Operation::Delete, None, Some(web)), None, None)
            .unwrap()
            .is_some());
        assert!(should_call(&h, &attrs(Operation::Delete, None, Some(db)), None, None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn selector_error_only_when_rules_match() {
        let bad = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "a".into(),
                    operator: "Bogus".into(),
                    values: None,
                },
            ]),
        };
        let mut h = hook(vec![rule(&["apps"], &["v1"], &["deployments"], &["*"], None)]);
        h.object_selector = Some(bad);
        let a = attrs(Operation::Create, Some(json!({})), None);
        assert!(should_call(&h, &a, None, None).unwrap().is_none());
        h.rules = vec![all_rule()];
        assert!(matches!(
            should_call(&h, &a, None, None),
            Err(AdmissionError::Internal(_))
        ));
    }

    struct Deployments;
    impl ResourceEquivalence for Deployments {
        fn equivalents(&self, r: &GroupVersionResource, _: &str) -> Vec<GroupVersionResource> {
            if r.resource == "deployments" {
                vec![
                    GroupVersionResource::new("apps", "v1", "deployments"),
                    GroupVersionResource::new("extensions", "v1beta1", "deployments"),
                ]
            } else {
                vec![]
            }
        }
        fn kind_for(&self, r: &GroupVersionResource, _: &str) -> Option<GroupVersionKind> {
            Some(GroupVersionKind::new(&r.group, &r.version, "Deployment"))
        }
    }

    #[test]
    fn match_policy_equivalent_and_exact() {
        let mut h = hook(vec![rule(
            &["extensions"],
            &["v1beta1"],
            &["deployments"],
            &["CREATE"],
            None,
        )]);
        let mut a = attrs(Operation::Create, Some(json!({})), None);
        a.resource = GroupVersionResource::new("apps", "v1", "deployments");
        a.kind = GroupVersionKind::new("apps", "v1", "Deployment");
        let inv = should_call(&h, &a, None, Some(&Deployments)).unwrap().unwrap();
        assert_eq!(
            inv.resource,
            GroupVersionResource::new("extensions", "v1beta1", "deployments")
        );
        assert_eq!(inv.kind, GroupVersionKind::new("extensions", "v1beta1", "Deployment"));
        // Without an equivalence function nothing else matches.
        assert!(should_call(&h, &a, None, None).unwrap().is_none());
        h.match_equivalent = false;
        assert!(should_call(&h, &a, None, Some(&Deployments)).unwrap().is_none());
        // A direct match wins and keeps the request's own resource.
        h.match_equivalent = true;
        h.rules
            .push(rule(&["apps"], &["v1"], &["deployments"], &["CREATE"], None));
        let inv = should_call(&h, &a, None, Some(&Deployments)).unwrap().unwrap();
        assert_eq!(inv.resource, a.resource);
    }

    #[test]
    fn webhook_configurations_are_exempt() {
        let h = hook(vec![all_rule()]);
        let mut a = attrs(Operation::Create, Some(json!({})), None);
        a.namespace.clear();
        a.resource = GroupVersionResource::new("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations");
        assert!(should_call(&h, &a, None, None).unwrap().is_none());
    }

    #[test]
    fn ordering_by_configuration_name_then_position() {
        let cfg = |name: &str, hooks: &[&str]| MutatingWebhookConfiguration {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            webhooks: Some(
                hooks
                    .iter()
                    .map(|h| MutatingWebhook {
                        name: h.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
        };
        let hooks = mutating_hooks(&[cfg("zeta", &["z1", "z0"]), cfg("alpha", &["a2", "a1"]), cfg("mid", &[])]);
        let names: Vec<_> = hooks.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["a2", "a1", "z1", "z0"]);
        assert_eq!(hooks[3].key(), "zeta/z0/1");
    }

    #[test]
    fn hook_defaults() {
        let h = from_mutating(
            "c",
            0,
            &MutatingWebhook {
                name: "m".into(),
                timeout_seconds: Some(99),
                ..Default::default()
            },
        );
        assert!(h.fail_closed);
        assert!(h.match_equivalent);
        assert!(!h.reinvoke_if_needed);
        assert_eq!(h.timeout_seconds, 30);
        let h = from_mutating(
            "c",
            0,
            &MutatingWebhook {
                failure_policy: Some("Ignore".into()),
                match_policy: Some("Exact".into()),
                reinvocation_policy: Some("IfNeeded".into()),
                timeout_seconds: Some(-1),
                ..Default::default()
            },
        );
        assert!(!h.fail_closed && !h.match_equivalent && h.reinvoke_if_needed);
        assert_eq!(h.timeout_seconds, 1);
        assert_eq!(timeout(None), 10);
    }
}
