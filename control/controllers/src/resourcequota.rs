//! ResourceQuota controller (Kubernetes' `resourcequota-controller`): keeps
//! each quota's `status.hard` equal to its `spec.hard` and computes
//! `status.used` from what exists in its namespace.
//!
//! For every resource name in `spec.hard` the controller finds the kind it
//! counts (`pods` and the compute names: pods; `services*`: services;
//! `persistentvolumeclaims`, `requests.storage` and the per-class names:
//! claims; `configmaps`, `secrets`, `replicationcontrollers`,
//! `resourcequotas`; `count/<resource>[.<group>]`: that resource, its
//! version found through discovery), lists that kind in the namespace, and
//! sums what each object selected by the quota's scopes uses — counted by
//! `sluice_kube::resource_quota`, the same code the ResourceQuota admission
//! step charges with, so terminal pods use no compute and no `pods`. A name
//! no kind counts gets no `used` entry; a counted name nobody uses is `0`.
//!
//! A quota is reconciled when its `hard` changes (recomputed at once),
//! when a pod, Service, ConfigMap, Secret, claim or ReplicationController
//! in its namespace changes (deletions release usage quickly, as
//! Kubernetes' replenishment does; the last four through metadata-only
//! watches), and every resync period (other `count/` kinds). The status is written with `replace_status` under the quota's
//! resourceVersion; a conflict with an admission charge retries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, ReplicationController, ResourceQuota, Secret};
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use sluice_kube::resource_quota::{
    matches_scopes, matching_resources, parse_list, to_json, usage, Amount, ResourceList,
};

use crate::informer::Informer;
use crate::{runner, Context, Error};

/// The kinds a quota may name without `count/`: (group, plural).
const NAMED_KINDS: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "services"),
    ("", "persistentvolumeclaims"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "replicationcontrollers"),
    ("", "resourcequotas"),
];

/// Subscribes the resourcequota controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let quotas: Informer<ResourceQuota> = Informer::new(Api::all(ctx.client.clone()), watcher::Config::default());
    // A quota whose status.hard lags its spec (new, or `hard` changed); not
    // the status writes of admission charges, which would recompute from a
    // list that may not have the charged object yet.
    let own = quotas.trigger(|q: &ResourceQuota| {
        let hard = q.spec.as_ref().and_then(|s| s.hard.clone());
        let observed = q.status.as_ref().and_then(|s| s.hard.clone());
        (hard != observed || q.status.as_ref().is_none_or(|s| s.used.is_none())).then(|| ObjectRef::from_obj(q))
    });
    let in_namespace = |store: Store<ResourceQuota>| {
        move |ns: Option<String>| -> Vec<ObjectRef<ResourceQuota>> {
            store
                .state()
                .iter()
                .filter(|q| q.namespace() == ns)
                .map(|q| ObjectRef::from_obj(&**q))
                .collect()
        }
    };
    let by_pod = in_namespace(quotas.store());
    let pods = ctx
        .informers
        .pods
        .trigger(move |p: &crate::cached_pod::CachedPod| by_pod(p.namespace()));
    let by_service = in_namespace(quotas.store());
    let services = ctx
        .informers
        .services
        .trigger(move |s: &k8s_openapi::api::core::v1::Service| by_service(s.namespace()));
    let mut triggers = vec![own.boxed(), pods.boxed(), services.boxed()];
    // Kinds without a shared informer: a metadata watch each, so that a
    // deletion releases its count without waiting for the resync.
    let client = ctx.client.clone();
    let watched = [
        metadata_changes::<ConfigMap>(&client, quotas.store()),
        metadata_changes::<Secret>(&client, quotas.store()),
        metadata_changes::<PersistentVolumeClaim>(&client, quotas.store()),
        metadata_changes::<ReplicationController>(&client, quotas.store()),
    ];
    triggers.extend(watched);
    quotas.start();
    let run = runner::run("resourcequota", ctx, quotas.store(), triggers, reconcile);
    async move {
        // The informer lives as long as the loop.
        let _quotas = quotas;
        run.await
    }
    .boxed()
}

/// The quotas of the namespace of every object of kind `K` that changes.
fn metadata_changes<K>(
    client: &kube::Client,
    quotas: Store<ResourceQuota>,
) -> BoxStream<'static, ObjectRef<ResourceQuota>>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let api: Api<kube::core::PartialObjectMeta<K>> = Api::all(client.clone());
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .filter_map(|o| futures::future::ready(o.ok()))
        .flat_map(move |o| {
            let ns = o.metadata.namespace.clone();
            futures::stream::iter(
                quotas
                    .state()
                    .iter()
                    .filter(|q| q.namespace() == ns)
                    .map(|q| ObjectRef::from_obj(&**q))
                    .collect::<Vec<_>>(),
            )
        })
        .boxed()
}

/// The kind that counts quota resource `name`: (group, plural).
pub fn kind_of(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    let hard = [name.to_string()];
    NAMED_KINDS
        .iter()
        .find(|(g, p)| !matching_resources(g, p, hard.iter()).is_empty())
        .map(|(g, p)| (g.to_string(), p.to_string()))
}

/// `status.used` for `hard` from the objects of each counted kind
/// (`(group, plural) → objects`), `now` in seconds since the epoch.
pub fn compute_used(
    quota: &Value,
    hard: &ResourceList,
    objects: &BTreeMap<(String, String), Vec<Value>>,
    now: i64,
) -> ResourceList {
    let mut used = ResourceList::new();
    for ((group, plural), list) in objects {
        let names = matching_resources(group, plural, hard.keys());
        for n in &names {
            used.entry(n.clone()).or_insert(Amount::count(0));
        }
        for obj in list {
            if !matches_scopes(quota, group, plural, obj) {
                continue;
            }
            for (k, a) in usage(group, plural, obj, now) {
                if let Some(u) = used.get_mut(&k) {
                    *u = u.plus(a);
                }
            }
        }
    }
    used
}

async fn api_resource(ctx: &Context, group: &str, plural: &str) -> Result<Option<ApiResource>, Error> {
    if group.is_empty() {
        return Ok(Some(ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: String::new(),
            plural: plural.to_string(),
        }));
    }
    let found = match kube::discovery::group(&ctx.client, group).await {
        Ok(g) => g,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(found
        .recommended_resources()
        .into_iter()
        .map(|(r, _)| r)
        .find(|r| r.plural == plural))
}

async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = quota.namespace().unwrap_or_default();
    let value = serde_json::to_value(&*quota).map_err(|e| Error::Invalid {
        object: format!("{ns}/{}", quota.name_any()),
        reason: e.to_string(),
    })?;
    let hard = parse_list(value.pointer("/spec/hard"));
    let kinds: BTreeSet<(String, String)> = hard.keys().filter_map(|n| kind_of(n)).collect();
    let mut objects = BTreeMap::new();
    for (group, plural) in kinds {
        let Some(ar) = api_resource(&ctx, &group, &plural).await? else {
            continue;
        };
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ar);
        let list = api.list(&ListParams::default()).await?;
        let items: Vec<Value> = list.items.iter().filter_map(|o| serde_json::to_value(o).ok()).collect();
        objects.insert((group, plural), items);
    }
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let used = compute_used(&value, &hard, &objects, now);
    let status = json!({"hard": to_json(&hard), "used": to_json(&used)});
    let current = json!({
        "hard": value.pointer("/status/hard").cloned().unwrap_or(json!({})),
        "used": value.pointer("/status/used").cloned().unwrap_or(json!({})),
    });
    if status == current {
        return Ok(Action::await_change());
    }
    let mut updated = value.clone();
    updated["status"] = status;
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    let body: ResourceQuota = serde_json::from_value(updated).map_err(|e| Error::Invalid {
        object: format!("{ns}/{}", quota.name_any()),
        reason: e.to_string(),
    })?;
    tracing::info!(used = %sluice_kube::resource_quota::pretty(&used), "updating quota status");
    match api
        .replace_status(&quota.name_any(), &PostParams::default(), &body)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::requeue(std::time::Duration::from_millis(200))),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_the_kinds_that_count_them() {
        assert_eq!(kind_of("requests.cpu"), Some(("".into(), "pods".into())));
        assert_eq!(kind_of("services.nodeports"), Some(("".into(), "services".into())));
        assert_eq!(
            kind_of("gold.storageclass.storage.k8s.io/requests.storage"),
            Some(("".into(), "persistentvolumeclaims".into()))
        );
        assert_eq!(
            kind_of("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(kind_of("count/secrets"), Some(("".into(), "secrets".into())));
        assert_eq!(kind_of("example.com/widgets"), None);
    }

    #[test]
    fn used_sums_live_objects_and_zeroes_the_rest() {
        let quota = json!({"spec": {"hard": {"pods": "2", "requests.memory": "1Gi", "services": "1"}}});
        let hard = parse_list(quota.pointer("/spec/hard"));
        let pod = |phase: &str| {
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": "128Mi"}}}]},
                   "status": {"phase": phase}})
        };
        let mut objects = BTreeMap::new();
        objects.insert(
            ("".into(), "pods".into()),
            vec![pod("Running"), pod("Running"), pod("Succeeded")],
        );
        objects.insert(("".into(), "services".into()), vec![]);
        let used = compute_used(&quota, &hard, &objects, 0);
        assert_eq!(
            to_json(&used),
            json!({"pods": "2", "requests.memory": "256Mi", "services": "0"})
        );
    }
}
