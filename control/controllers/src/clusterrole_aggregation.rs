//! ClusterRole aggregation, as Kubernetes' `clusterrole-aggregation`
//! controller: a ClusterRole with an `aggregationRule` gets as its `rules`
//! the rules of every other ClusterRole one of its `clusterRoleSelectors`
//! matches (by labels), in name order, each distinct rule once. That is how
//! `admin`, `edit` and `view` pick up the rules of ClusterRoles labelled
//! `rbac.authorization.k8s.io/aggregate-to-<role>: "true"`.
//!
//! ClusterRoles are watched by an informer of this controller's own (no other
//! controller reads them); any ClusterRole change requeues every aggregating
//! ClusterRole, whose rules are rewritten only when they differ.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Patch, PatchParams};
use kube::core::SelectorExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::informer::Informer;
use crate::{runner, Context, Error};

/// Subscribes the aggregation controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let informer = Arc::new(Informer::<ClusterRole>::new(
        Api::all(ctx.client.clone()),
        watcher::Config::default(),
    ));
    let store = informer.store();
    let lookup = store.clone();
    let every_aggregate = informer.trigger(move |_: &ClusterRole| aggregating(&lookup));
    async move {
        informer.start();
        informer.wait_synced().await;
        runner::run(
            "clusterrole-aggregation",
            ctx,
            store.clone(),
            vec![every_aggregate.boxed()],
            move |role, ctx| reconcile(role, ctx, store.clone()),
        )
        .await;
    }
    .boxed()
}

/// Keys of every ClusterRole with an aggregation rule.
fn aggregating(store: &Store<ClusterRole>) -> Vec<ObjectRef<ClusterRole>> {
    store
        .state()
        .iter()
        .filter(|r| r.aggregation_rule.is_some())
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// The rules `target` aggregates from `roles`: those of every other role
/// matched by one of its selectors, in name order, each distinct rule once.
/// `None` when `target` has no aggregation rule.
pub fn aggregate(target: &ClusterRole, roles: &[Arc<ClusterRole>]) -> Result<Option<Vec<PolicyRule>>, Error> {
    let Some(rule) = &target.aggregation_rule else {
        return Ok(None);
    };
    let name = target.name_any();
    let mut selectors = Vec::new();
    for s in rule.cluster_role_selectors.iter().flatten() {
        selectors.push(crate::pods::selector(Some(s), &name)?);
    }
    let mut sorted: Vec<&Arc<ClusterRole>> = roles.iter().filter(|r| r.name_any() != name).collect();
    sorted.sort_by_key(|r| r.name_any());
    let mut rules: Vec<PolicyRule> = Vec::new();
    for r in sorted {
        let labels: BTreeMap<String, String> = r.labels().clone();
        if !selectors.iter().any(|s| s.matches(&labels)) {
            continue;
        }
        for rule in r.rules.iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Ok(Some(rules))
}

async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<Context>, store: Store<ClusterRole>) -> Result<Action, Error> {
    let all = store.state();
    let Some(rules) = aggregate(&role, &all)? else {
        return Ok(Action::await_change());
    };
    if role.rules.clone().unwrap_or_default() == rules {
        return Ok(Action::await_change());
    }
    tracing::info!(clusterrole = %role.name_any(), rules = rules.len(), "aggregating rules");
    let api: Api<ClusterRole> = Api::all(ctx.client.clone());
    // A merge patch guarded by the resourceVersion the rules were computed from.
    let patch = json!({"metadata": {"resourceVersion": role.resource_version()}, "rules": rules});
    match api
        .patch(&role.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn role(name: &str, labels: &[(&str, &str)], verbs: &[&str]) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            rules: Some(
                verbs
                    .iter()
                    .map(|v| PolicyRule {
                        api_groups: Some(vec![String::new()]),
                        resources: Some(vec!["pods".into()]),
                        verbs: vec![v.to_string()],
                        ..Default::default()
                    })
                    .collect(),
            ),
            aggregation_rule: None,
        })
    }

    #[test]
    fn aggregates_matching_roles_in_name_order_once() {
        let mut monitoring = (*role("monitoring", &[], &[])).clone();
        monitoring.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some([("agg".to_string(), "true".to_string())].into()),
                ..Default::default()
            }]),
        });
        let roles = vec![
            role("b", &[("agg", "true")], &["list", "get"]),
            role("a", &[("agg", "true")], &["get"]),
            role("c", &[("agg", "false")], &["delete"]),
        ];
        let rules = aggregate(&monitoring, &roles).unwrap().unwrap();
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, ["get", "list"]);
        assert!(aggregate(&roles[0], &roles).unwrap().is_none());
    }
}
