//! Role-based access control over the stored Roles, ClusterRoles and
//! bindings, as Kubernetes' RBAC authorizer and `pkg/registry/rbac`:
//!
//! - [`Snapshot`]: every role and binding, held in memory; [`start`] loads
//!   it and a watch of the group's etcd prefix reloads it on each change, so
//!   authorizing a request never reads etcd. [`Snapshot::authorize`] walks
//!   the ClusterRoleBindings and the request namespace's RoleBindings whose
//!   subjects are the user (by name, group, or service account name) and
//!   asks whether a rule of the role they reference allows the request
//!   ([`rules`]); [`Snapshot::rules_for`] lists those rules (the
//!   SelfSubjectRulesReview and the escalation checks use it).
//! - Escalation prevention ([`Registry::admit_rbac`], a step of every
//!   create and main-resource update): a Role or ClusterRole may only be
//!   written by a user who holds every permission it grants or may
//!   `escalate` it; a binding only by a user who holds every permission of
//!   the role it references or may `bind` that role; `system:masters` may
//!   always. Changes of nothing but owner references and finalizers pass
//!   (the garbage collector's).
//! - [`bootstrap`]: the default roles and bindings Kubernetes ships,
//!   reconciled at start.

pub mod bootstrap;
pub mod rules;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
use serde_json::Value;
use tracing::Instrument;

pub use rules::Attributes;

use crate::kinds::{self, Kind, Resource};
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult};

/// The group every administrator is in: always allowed, never checked.
pub const MASTERS: &str = "system:masters";
/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group of requests without credentials.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";

/// Who is asking: a user name and groups (`system:authenticated` included
/// when the user is authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name.
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
}

impl User {
    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// One RoleBinding or ClusterRoleBinding.
#[derive(Debug, Clone)]
struct Binding {
    namespace: Option<String>,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_object(obj: &Value) -> Option<Binding> {
        Some(Binding {
            namespace: obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(String::from),
            role_ref: serde_json::from_value(obj.get("roleRef")?.clone()).ok()?,
            subjects: obj
                .get("subjects")
                .cloned()
                .and_then(|s| serde_json::from_value(s).ok())
                .unwrap_or_default(),
        })
    }

    /// Whether one of the subjects is `user` (Kubernetes' `appliesTo`).
    fn applies_to(&self, user: &User) -> bool {
        self.subjects.iter().any(|s| match s.kind.as_str() {
            "User" => s.name == user.name,
            "Group" => user.in_group(&s.name),
            "ServiceAccount" => {
                let ns = s
                    .namespace
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .or(self.namespace.as_deref())
                    .unwrap_or_default();
                user.name == format!("system:serviceaccount:{ns}:{}", s.name)
            }
            _ => false,
        })
    }
}

/// Every role and binding, as of one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    role_bindings: HashMap<String, Vec<Binding>>,
    cluster_role_bindings: Vec<Binding>,
}

fn name_of(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    obj.get("rules")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default()
}

impl Snapshot {
    /// A snapshot of these objects (Roles, ClusterRoles, RoleBindings and
    /// ClusterRoleBindings as stored).
    pub fn from_objects(
        roles: &[Value],
        cluster_roles: &[Value],
        role_bindings: &[Value],
        cluster_role_bindings: &[Value],
    ) -> Self {
        let mut s = Snapshot::default();
        for r in roles {
            let ns = r
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            s.roles.insert((ns.to_string(), name_of(r)), rules_of(r));
        }
        for r in cluster_roles {
            s.cluster_roles.insert(name_of(r), rules_of(r));
        }
        for b in role_bindings.iter().filter_map(Binding::from_object) {
            let ns = b.namespace.clone().unwrap_or_default();
            s.role_bindings.entry(ns).or_default().push(b);
        }
        s.cluster_role_bindings = cluster_role_bindings.iter().filter_map(Binding::from_object).collect();
        s
    }

    /// The rules of the role `kind`/`name` (a Role is looked up in
    /// `namespace`), or Kubernetes' words for a missing one.
    pub fn role_rules(&self, kind: &str, name: &str, namespace: Option<&str>) -> Result<&[PolicyRule], String> {
        let found = match kind {
            "Role" => self
                .roles
                .get(&(namespace.unwrap_or_default().to_string(), name.to_string())),
            "ClusterRole" => self.cluster_roles.get(name),
            other => return Err(format!("unsupported role reference kind: {other:?}")),
        };
        found.map(Vec::as_slice).ok_or_else(|| {
            format!(
                "{}.{} {name:?} not found",
                kind.to_ascii_lowercase(),
                kinds::rbac::GROUP
            )
        })
    }

    /// Calls `visit` with the rules of every binding that applies to `user`
    /// (cluster-wide ones, then those of `namespace`) until it returns
    /// `true`; the errors are the bindings whose role is missing.
    fn visit(&self, user: &User, namespace: Option<&str>, mut visit: impl FnMut(&[PolicyRule]) -> bool) -> Vec<String> {
        let mut errors = Vec::new();
        for b in self.cluster_role_bindings.iter().filter(|b| b.applies_to(user)) {
            match self.role_rules(&b.role_ref.kind, &b.role_ref.name, None) {
                Ok(rules) if visit(rules) => return errors,
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        let local = namespace.and_then(|ns| self.role_bindings.get(ns).map(|b| (ns, b)));
        if let Some((ns, bindings)) = local {
            for b in bindings.iter().filter(|b| b.applies_to(user)) {
                match self.role_rules(&b.role_ref.kind, &b.role_ref.name, Some(ns)) {
                    Ok(rules) if visit(rules) => return errors,
                    Ok(_) => {}
                    Err(e) => errors.push(e),
                }
            }
        }
        errors
    }

    /// `Ok` when a rule bound to `user` allows `a`; otherwise the reason
    /// Kubernetes' RBAC authorizer gives (`RBAC: ...` naming missing roles,
    /// or empty).
    pub fn authorize(&self, user: &User, a: &Attributes) -> Result<(), String> {
        let mut allowed = false;
        let errors = self.visit(user, a.namespace.as_deref(), |rules| {
            allowed = rules::any_allows(rules, a);
            allowed
        });
        if allowed {
            return Ok(());
        }
        // As Go's error aggregate prints one error, or several in brackets.
        match errors.as_slice() {
            [] => Err(String::new()),
            [one] => Err(format!("RBAC: {one}")),
            many => Err(format!("RBAC: [{}]", many.join(", "))),
        }
    }

    /// Every rule bound to `user` in `namespace` (cluster-wide ones
    /// included), and the errors of bindings whose role is missing.
    pub fn rules_for(&self, user: &User, namespace: Option<&str>) -> (Vec<PolicyRule>, Vec<String>) {
        let mut out = Vec::new();
        let errors = self.visit(user, namespace, |rules| {
            out.extend_from_slice(rules);
            false
        });
        (out, errors)
    }
}

/// The RBAC state of the API server: the snapshot in effect.
#[derive(Default)]
pub struct Rbac {
    snapshot: RwLock<Arc<Snapshot>>,
    started: Mutex<bool>,
}

impl Rbac {
    /// The snapshot in effect.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, s: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
    }
}

/// Loads every role and binding now, then follows their changes in the
/// background.
pub async fn start(registry: Arc<Registry>) -> anyhow::Result<()> {
    {
        let mut started = registry.rbac.started.lock().unwrap_or_else(|p| p.into_inner());
        if *started {
            return Ok(());
        }
        *started = true;
    }
    let rev = reload(&registry).await?;
    tokio::spawn(follow(registry, rev).instrument(tracing::info_span!("rbac-cache")));
    Ok(())
}

/// Reads every role and binding; returns the lowest revision read at.
async fn reload(registry: &Registry) -> anyhow::Result<i64> {
    let q = crate::registry::ListQuery::default();
    let mut lists = Vec::new();
    let mut rev = i64::MAX;
    for k in [
        Kind::Builtin(&kinds::role::Roles),
        Kind::Builtin(&kinds::clusterrole::ClusterRoles),
        Kind::Builtin(&kinds::rolebinding::RoleBindings),
        Kind::Builtin(&kinds::clusterrolebinding::ClusterRoleBindings),
    ] {
        let list = registry.list(&k, None, &q).await?;
        rev = rev.min(
            list.pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0),
        );
        lists.push(list["items"].as_array().cloned().unwrap_or_default());
    }
    let s = Snapshot::from_objects(&lists[0], &lists[1], &lists[2], &lists[3]);
    registry.rbac.set(s);
    Ok(rev)
}

async fn follow(registry: Arc<Registry>, mut rev: i64) {
    let prefix = format!("/registry/{}/", kinds::rbac::GROUP);
    loop {
        match registry.store.watch(&prefix, rev + 1).await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(resp)) if resp.events().is_empty() => continue,
                    Ok(Some(_)) => match reload(&registry).await {
                        Ok(r) => rev = rev.max(r),
                        Err(e) => tracing::warn!(error = %e, "reloading roles and bindings"),
                    },
                    Ok(None) | Err(_) => break,
                }
            },
            Err(e) => tracing::warn!(error = %e, "watching roles and bindings"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(r) = reload(&registry).await {
            rev = rev.max(r);
        }
    }
}

/// Whether `old` and `new` differ only in what the garbage collector
/// writes (owner references, finalizers) and server-kept metadata.
fn only_gc_fields_change(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "ownerReferences",
                "finalizers",
                "managedFields",
                "resourceVersion",
                "generation",
            ] {
                m.remove(k);
            }
        }
        v
    };
    strip(old) == strip(new)
}

/// Full authority: what setting an `aggregationRule` requires.
fn full_authority() -> Vec<PolicyRule> {
    vec![
        rules::rule(&[rules::ALL], &[rules::ALL], &[rules::ALL]),
        rules::url_rule(&[rules::ALL], &[rules::ALL]),
    ]
}

/// `Err(message)` unless `owned` covers `wanted`, worded as Kubernetes'
/// `ConfirmNoEscalation`.
fn confirm_no_escalation(user: &User, owned: &[PolicyRule], wanted: &[PolicyRule]) -> Result<(), String> {
    let Err(missing) = rules::covers(owned, wanted) else {
        return Ok(());
    };
    let mut lines: Vec<String> = rules::compact(missing).iter().map(rules::compact_string).collect();
    lines.sort();
    lines.dedup();
    Err(format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        crate::meta::go::go_quote(&user.name),
        rules::go_list(&user.groups),
        lines.join("\n")
    ))
}

/// Whether `r` is one of the four RBAC kinds.
fn is_rbac(r: &Resource) -> bool {
    r.group == kinds::rbac::GROUP && r.version == "v1"
}

impl Registry {
    /// Escalation prevention for a create (`old` = `None`) or main-resource
    /// update of `obj`, when it is a Role, ClusterRole or binding; other
    /// kinds pass.
    pub(super) fn admit_rbac(&self, r: &Resource, ns: Option<&str>, old: Option<&Value>, obj: &Value) -> ApiResult<()> {
        if !is_rbac(r) || old.is_some_and(|o| only_gc_fields_change(o, obj)) {
            return Ok(());
        }
        let Some(user) = crate::registry::admission::requesting_user() else {
            return Ok(());
        };
        if user.in_group(MASTERS) {
            return Ok(());
        }
        let snapshot = self.rbac.snapshot();
        let name = name_of(obj);
        let forbidden = |why: String| ApiError::forbidden(r, &name, why);
        let (owned, _) = snapshot.rules_for(&user, ns);
        match r.kind {
            "Role" | "ClusterRole" => {
                let escalate = Attributes::resource("escalate", r.group, r.plural, ns, Some(&name));
                if snapshot.authorize(&user, &escalate).is_ok() {
                    return Ok(());
                }
                confirm_no_escalation(&user, &owned, &rules_of(obj)).map_err(forbidden)?;
                if obj.get("aggregationRule").is_some_and(|a| !a.is_null())
                    && confirm_no_escalation(&user, &owned, &full_authority()).is_err()
                {
                    return Err(forbidden(
                        "must have cluster-admin privileges to use the aggregationRule".into(),
                    ));
                }
                Ok(())
            }
            _ => {
                let kind = obj.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or_default();
                let role = obj.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or_default();
                let plural = if kind == "Role" { "roles" } else { "clusterroles" };
                let bind = Attributes::resource("bind", r.group, plural, ns, Some(role));
                if snapshot.authorize(&user, &bind).is_ok() {
                    return Ok(());
                }
                let granted = snapshot.role_rules(kind, role, ns).map_err(forbidden)?;
                confirm_no_escalation(&user, &owned, granted).map_err(forbidden)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn snapshot() -> Snapshot {
        let roles = [json!({"metadata": {"name": "pod-reader", "namespace": "team-a"},
                            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]})];
        let cluster_roles = [json!({"metadata": {"name": "secret-reader"},
                                    "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})];
        let role_bindings = [
            json!({"metadata": {"name": "alice-reads", "namespace": "team-a"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                   "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "ci"}]}),
            json!({"metadata": {"name": "devs-secrets", "namespace": "team-a"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-reader"},
                   "subjects": [{"kind": "Group", "name": "devs"}]}),
            json!({"metadata": {"name": "dangling", "namespace": "team-a"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"},
                   "subjects": [{"kind": "User", "name": "bob"}]}),
        ];
        Snapshot::from_objects(&roles, &cluster_roles, &role_bindings, &[])
    }

    #[test]
    fn bindings_grant_their_roles_to_their_subjects_in_their_namespace() {
        let s = snapshot();
        let alice = user("alice", &["system:authenticated"]);
        let get = |ns: &str, res: &str| Attributes::resource("get", "", res, Some(ns), Some("p"));
        assert!(s.authorize(&alice, &get("team-a", "pods")).is_ok());
        assert!(s.authorize(&alice, &get("team-a", "pods/log")).is_ok());
        assert_eq!(s.authorize(&alice, &get("team-b", "pods")), Err(String::new()));
        assert!(s.authorize(&alice, &get("team-a", "secrets")).is_err());
        let dev = user("carol", &["devs"]);
        assert!(s.authorize(&dev, &get("team-a", "secrets")).is_ok());
        assert!(s.authorize(&dev, &get("team-b", "secrets")).is_err());
        let sa = user("system:serviceaccount:team-a:ci", &[]);
        assert!(s.authorize(&sa, &get("team-a", "pods")).is_ok());
        let bob = user("bob", &[]);
        assert_eq!(
            s.authorize(&bob, &get("team-a", "pods")),
            Err("RBAC: role.rbac.authorization.k8s.io \"gone\" not found".into())
        );
        let (rules, _) = s.rules_for(&alice, Some("team-a"));
        assert_eq!(rules.len(), 1);
    }

    #[test]
    fn escalation_message_names_what_is_missing() {
        let alice = user("alice", &["devs", "system:authenticated"]);
        let owned = [rules::rule(&["get"], &[""], &["pods"])];
        let wanted = [rules::rule(&["get", "delete"], &[""], &["pods"])];
        assert_eq!(
            confirm_no_escalation(&alice, &owned, &wanted).unwrap_err(),
            "user \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
        );
        assert!(confirm_no_escalation(&alice, &owned, &owned).is_ok());
    }

    #[test]
    fn garbage_collector_writes_are_not_escalations() {
        let old = json!({"metadata": {"name": "r", "resourceVersion": "1"}, "rules": []});
        let mut new = old.clone();
        new["metadata"]["ownerReferences"] = json!([{"uid": "u"}]);
        assert!(only_gc_fields_change(&old, &new));
        new["rules"] = json!([{"verbs": ["*"]}]);
        assert!(!only_gc_fields_change(&old, &new));
    }
}
