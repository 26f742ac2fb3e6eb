//! What a policy rule allows, as Kubernetes' RBAC authorizer and its
//! escalation checks read rules (pure; table-tested below):
//!
//! - matching a request ([`allows`]): verbs (`*` for all), API groups (`*`),
//!   resources (`*`, `pods/log` for a subresource, `*/scale` for one
//!   subresource of everything), `resourceNames` (empty for any), and
//!   `nonResourceURLs` (exact, or a prefix ending in `*`);
//! - coverage ([`covers`]): whether one set of rules grants everything
//!   another does, rule by rule broken down to single verbs, groups,
//!   resources and names (Kubernetes' `Covers`), with what is missing
//!   compacted and printed as Kubernetes prints it.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// `*`: every verb, group, resource or URL.
pub const ALL: &str = "*";

/// What a request does, for authorization: a resource request (`path` is
/// `None`) or a request for a non-resource URL such as `/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Kubernetes verb (get, list, watch, create, update, patch, delete,
    /// deletecollection, or escalate, bind, impersonate ...; for
    /// non-resource URLs the lower-case HTTP method: get, post, put ...).
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// Resource plural.
    pub resource: String,
    /// Subresource, if any.
    pub subresource: Option<String>,
    /// Namespace, if any.
    pub namespace: Option<String>,
    /// Object name, if any.
    pub name: Option<String>,
    /// The URL path of a non-resource request.
    pub path: Option<String>,
}

impl Attributes {
    /// A resource request.
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: Option<&str>, name: Option<&str>) -> Self {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_string())),
            None => (resource, None),
        };
        Self {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource,
            namespace: namespace.filter(|n| !n.is_empty()).map(String::from),
            name: name.filter(|n| !n.is_empty()).map(String::from),
            path: None,
        }
    }

    /// A non-resource request.
    pub fn non_resource(verb: &str, path: &str) -> Self {
        Self {
            verb: verb.into(),
            path: Some(path.into()),
            ..Self::default()
        }
    }

    /// `resource` or `resource/subresource`.
    pub fn combined_resource(&self) -> String {
        match &self.subresource {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.clone(),
        }
    }
}

fn has(list: &[String], s: &str) -> bool {
    list.iter().any(|x| x == s)
}

fn opt(list: &Option<Vec<String>>) -> &[String] {
    list.as_deref().unwrap_or_default()
}

fn resource_matches(rule: &PolicyRule, combined: &str, sub: Option<&str>) -> bool {
    opt(&rule.resources)
        .iter()
        .any(|r| r == ALL || r == combined || sub.is_some_and(|s| r.strip_prefix("*/").is_some_and(|rs| rs == s)))
}

fn url_matches(rule_url: &str, path: &str) -> bool {
    rule_url == ALL
        || rule_url == path
        || rule_url
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// Whether `rule` allows the request `a`.
pub fn allows(rule: &PolicyRule, a: &Attributes) -> bool {
    if !(has(&rule.verbs, ALL) || has(&rule.verbs, &a.verb)) {
        return false;
    }
    if let Some(path) = &a.path {
        return opt(&rule.non_resource_urls).iter().any(|u| url_matches(u, path));
    }
    let groups = opt(&rule.api_groups);
    if !(has(groups, ALL) || has(groups, &a.group)) {
        return false;
    }
    if !resource_matches(rule, &a.combined_resource(), a.subresource.as_deref()) {
        return false;
    }
    let names = opt(&rule.resource_names);
    names.is_empty() || a.name.as_deref().is_some_and(|n| has(names, n))
}

/// Whether any of `rules` allows `a`.
pub fn any_allows(rules: &[PolicyRule], a: &Attributes) -> bool {
    rules.iter().any(|r| allows(r, a))
}

fn single(
    verb: &str,
    group: Option<&str>,
    resource: Option<&str>,
    name: Option<&str>,
    url: Option<&str>,
) -> PolicyRule {
    let v = |s: Option<&str>| s.map(|s| vec![s.to_string()]);
    PolicyRule {
        verbs: vec![verb.to_string()],
        api_groups: v(group),
        resources: v(resource),
        resource_names: v(name),
        non_resource_urls: v(url),
    }
}

/// `rule` as rules of one verb, group, resource and name (or one verb and
/// URL), as Kubernetes' `BreakdownRule`.
pub fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for group in opt(&rule.api_groups) {
        for resource in opt(&rule.resources) {
            for verb in &rule.verbs {
                let names = opt(&rule.resource_names);
                if names.is_empty() {
                    out.push(single(verb, Some(group), Some(resource), None, None));
                }
                for n in names {
                    out.push(single(verb, Some(group), Some(resource), Some(n), None));
                }
            }
        }
    }
    for url in opt(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            out.push(single(verb, None, None, None, Some(url)));
        }
    }
    out
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(set, w))
}

fn resources_cover(owned: &[String], wanted: &[String]) -> bool {
    if has(owned, ALL) || has_all(owned, wanted) {
        return true;
    }
    wanted.iter().all(|w| {
        has(owned, w)
            || w.split_once('/')
                .is_some_and(|(_, sub)| has(owned, &format!("*/{sub}")))
    })
}

fn urls_cover(owned: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| {
        owned
            .iter()
            .any(|o| o == w || o.strip_suffix('*').is_some_and(|p| w.starts_with(p)))
    })
}

/// Whether `owner` grants everything `sub` does (Kubernetes' `ruleCovers`).
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(opt(&owner.api_groups), ALL) || has_all(opt(&owner.api_groups), opt(&sub.api_groups));
    let resources = resources_cover(opt(&owner.resources), opt(&sub.resources));
    let urls = urls_cover(opt(&owner.non_resource_urls), opt(&sub.non_resource_urls));
    let owner_names = opt(&owner.resource_names);
    let names = owner_names.is_empty()
        || (!opt(&sub.resource_names).is_empty() && has_all(owner_names, opt(&sub.resource_names)));
    verbs && groups && resources && names && urls
}

/// `Ok` when `owned` grants everything in `wanted`, else the missing
/// permissions, each of one verb (see [`compact`] to merge them).
pub fn covers(owned: &[PolicyRule], wanted: &[PolicyRule]) -> Result<(), Vec<PolicyRule>> {
    let missing: Vec<PolicyRule> = wanted
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owned.iter().any(|o| rule_covers(o, sub)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// Merges the verbs of rules with one group, one resource and no names
/// (Kubernetes' `CompactRules`); other rules stay as they are.
pub fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for r in rules {
        let simple = |r: &PolicyRule| {
            opt(&r.api_groups).len() == 1
                && opt(&r.resources).len() == 1
                && opt(&r.resource_names).is_empty()
                && opt(&r.non_resource_urls).is_empty()
        };
        if simple(&r) {
            if let Some(o) = out
                .iter_mut()
                .find(|o| simple(o) && o.api_groups == r.api_groups && o.resources == r.resources)
            {
                for v in r.verbs {
                    if !o.verbs.contains(&v) {
                        o.verbs.push(v);
                    }
                }
                continue;
            }
        }
        out.push(r);
    }
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| crate::meta::go::go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// A rule as Kubernetes' `CompactString` prints it:
/// `{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`.
pub fn compact_string(r: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, list) in [
        ("APIGroups", opt(&r.api_groups)),
        ("Resources", opt(&r.resources)),
        ("NonResourceURLs", opt(&r.non_resource_urls)),
        ("ResourceNames", opt(&r.resource_names)),
        ("Verbs", r.verbs.as_slice()),
    ] {
        if !list.is_empty() {
            parts.push(format!("{label}:{}", go_list(list)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// A rule from string slices (for the bootstrap policy and tests).
pub fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PolicyRule {
        verbs: v(verbs),
        api_groups: Some(v(groups)),
        resources: Some(v(resources)),
        resource_names: None,
        non_resource_urls: None,
    }
}

/// A non-resource rule from string slices.
pub fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PolicyRule {
        verbs: v(verbs),
        api_groups: None,
        resources: None,
        resource_names: None,
        non_resource_urls: Some(v(urls)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(verb: &str, group: &str, resource: &str, name: Option<&str>) -> Attributes {
        Attributes::resource(verb, group, resource, Some("default"), name)
    }

    #[test]
    fn verbs_groups_and_resources_match_with_wildcards() {
        let r = rule(&["get", "list"], &[""], &["pods"]);
        assert!(allows(&r, &res("get", "", "pods", None)));
        assert!(!allows(&r, &res("delete", "", "pods", None)));
        assert!(!allows(&r, &res("get", "apps", "pods", None)));
        assert!(
            !allows(&r, &res("get", "", "pods/log", None)),
            "a subresource is its own resource"
        );
        assert!(!allows(&r, &res("get", "", "services", None)));
        let all = rule(&["*"], &["*"], &["*"]);
        assert!(allows(
            &all,
            &res("escalate", "rbac.authorization.k8s.io", "roles", None)
        ));
        assert!(allows(&all, &res("get", "", "pods/log", None)));
        let logs = rule(&["get"], &[""], &["pods/log"]);
        assert!(allows(&logs, &res("get", "", "pods/log", None)));
        assert!(!allows(&logs, &res("get", "", "pods", None)));
        let scale = rule(&["update"], &["apps"], &["*/scale"]);
        assert!(allows(&scale, &res("update", "apps", "deployments/scale", None)));
        assert!(!allows(&scale, &res("update", "apps", "deployments", None)));
    }

    #[test]
    fn resource_names_restrict_to_named_objects() {
        let mut r = rule(&["get", "update"], &[""], &["configmaps"]);
        r.resource_names = Some(vec!["app-config".into()]);
        assert!(allows(&r, &res("get", "", "configmaps", Some("app-config"))));
        assert!(!allows(&r, &res("get", "", "configmaps", Some("other"))));
        assert!(
            !allows(&r, &res("get", "", "configmaps", None)),
            "a list names no object"
        );
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_star_prefix() {
        let r = url_rule(&["get"], &["/healthz", "/apis/*"]);
        assert!(allows(&r, &Attributes::non_resource("get", "/healthz")));
        assert!(!allows(&r, &Attributes::non_resource("get", "/healthz/etcd")));
        assert!(allows(&r, &Attributes::non_resource("get", "/apis/apps/v1")));
        assert!(!allows(&r, &Attributes::non_resource("post", "/apis/apps")));
        assert!(!allows(&r, &Attributes::non_resource("get", "/api")));
        assert!(
            !allows(&r, &res("get", "", "pods", None)),
            "URL rules grant no resources"
        );
        assert!(!allows(
            &rule(&["get"], &["*"], &["*"]),
            &Attributes::non_resource("get", "/healthz")
        ));
    }

    #[test]
    fn coverage_breaks_rules_down_and_reports_what_is_missing() {
        let owned = vec![
            rule(&["get", "list", "watch"], &[""], &["pods", "pods/log"]),
            rule(&["*"], &["apps"], &["*/scale"]),
        ];
        assert!(covers(&owned, &[rule(&["get"], &[""], &["pods"])]).is_ok());
        assert!(covers(&owned, &[rule(&["update"], &["apps"], &["deployments/scale"])]).is_ok());
        let missing = covers(
            &owned,
            &[rule(&["get", "delete", "create"], &[""], &["pods", "secrets"])],
        )
        .unwrap_err();
        let shown: Vec<String> = compact(missing).iter().map(compact_string).collect();
        assert_eq!(
            shown,
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete" "create"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete" "create"]}"#,
            ]
        );
        let mut named = rule(&["get"], &[""], &["configmaps"]);
        named.resource_names = Some(vec!["a".into()]);
        assert!(covers(std::slice::from_ref(&named), &[named.clone()]).is_ok());
        assert!(covers(&[named], &[rule(&["get"], &[""], &["configmaps"])]).is_err());
        assert!(covers(&[url_rule(&["get"], &["/logs/*"])], &[url_rule(&["get"], &["/logs/x"])]).is_ok());
        assert!(covers(&[rule(&["*"], &["*"], &["*"])], &[url_rule(&["get"], &["/healthz"])]).is_err());
    }
}
