//! Garbage collector: deletes objects whose owners are gone and carries out
//! foreground and orphan deletion, on every kind that can be listed and
//! deleted, custom resources included (as Kubernetes' collector does).
//!
//! The ownership graph is built, after every burst of changes it can see
//! (an object appearing or going, its owners, finalizers or deletion
//! changing: not a pod's binding or status), from the shared caches of
//! every kind the manager's informers hold ([`cached_kinds`]: the
//! workloads, Pods, Services, EndpointSlices, Nodes, Leases, Namespaces,
//! PodDisruptionBudgets, PersistentVolumes and their claims, CSIDrivers and
//! VolumeAttachments) plus a metadata-only watch of every other collectable
//! resource, found through discovery (see [`resources`] for what is watched
//! and when discovery runs again):
//! - background: a dependent all of whose owners are absent (checked with a
//!   live GET of the owner and a fresh read of the dependent, never from a
//!   cache alone) is deleted; absent owners among live ones are
//!   removed from its ownerReferences. An owner whose kind does not resolve
//!   (even after rediscovery) is not absent, nor is a namespaced owner of a
//!   cluster-scoped dependent (Kubernetes leaves such references alone);
//! - foreground: an owner being deleted with the `foregroundDeletion`
//!   finalizer has its dependents deleted (foreground too), and the
//!   finalizer is removed once no dependent with `blockOwnerDeletion` is left;
//! - orphan: an owner being deleted with the `orphan` finalizer has its
//!   references stripped from its dependents, then the finalizer removed.
//!
//! Finalizers are removed only when every collectable resource is watched
//! and its first list is in, so that no dependent is overlooked.

mod resources;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PartialObjectMetaExt, Patch, PatchParams,
    PropagationPolicy,
};
use kube::discovery::Scope;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::informer::{Informer, Informers};
use crate::{Context, Error};
use resources::Resources;

/// Finalizer asking for dependents to be deleted before the owner.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer asking for dependents to be kept (orphaned).
pub const ORPHAN_FINALIZER: &str = "orphan";

/// Minimum delay between two passes (changes arriving meanwhile are coalesced).
const PASS_DELAY: Duration = Duration::from_millis(200);

/// A pass runs at least this often without a change: discovery put off by
/// its minimum interval, and owner lookups that failed, are tried again.
const WAKE_PERIOD: Duration = Duration::from_secs(5);

/// What a graph node reads an object's metadata through: the object as its
/// cache holds it (a cached kind's object, a watched kind's trimmed
/// metadata), shared with that cache rather than copied.
trait HasMeta: Send + Sync {
    fn meta(&self) -> &ObjectMeta;
}

impl<K: kube::Resource + Send + Sync> HasMeta for K {
    fn meta(&self) -> &ObjectMeta {
        kube::Resource::meta(self)
    }
}

/// One node of the ownership graph: an object's resource (shared by every
/// node of that resource) and the object itself, as the cache it came from
/// holds it.
///
/// The graph is rebuilt every pass from every cached object (about 30,000
/// in a 5,000-node cluster with 19,000 pods). Each node holding a copy of
/// its object's identity, owners and finalizers (what it did before) made
/// every pass allocate about 1 KB per object, which was the
/// controller-manager's largest transient; a node now holds two pointers.
/// What a pass acts on is taken out of the graph before it makes any API
/// call ([`Acts`]), so the rest of the objects are not kept alive past
/// their cache's next change while it does.
#[derive(Clone)]
pub struct Node {
    resource: Arc<ApiResource>,
    object: Arc<dyn HasMeta>,
}

/// The part of an object's metadata the collector reads: identity,
/// resourceVersion, ownerReferences, finalizers and deletionTimestamp. The
/// metadata-only watches of the kinds the manager does not cache keep only
/// this (labels, annotations and managedFields are most of an object's
/// metadata).
pub fn trimmed(m: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        owner_references: m.owner_references.clone(),
        finalizers: m.finalizers.clone(),
        deletion_timestamp: m.deletion_timestamp.clone(),
        ..Default::default()
    }
}

impl Node {
    /// A node of `resource` reading `object` where its cache holds it.
    fn cached<K: kube::Resource + Send + Sync + 'static>(resource: &Arc<ApiResource>, object: Arc<K>) -> Node {
        Node {
            resource: resource.clone(),
            object,
        }
    }

    /// A node of `resource` for metadata read on its own (a live read).
    fn of_meta(resource: &Arc<ApiResource>, meta: ObjectMeta) -> Node {
        Node::cached(resource, Arc::new(meta.into_response_partial::<DynamicObject>()))
    }

    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        self.object.meta()
    }

    /// apiVersion of the object.
    pub fn api_version(&self) -> &str {
        &self.resource.api_version
    }

    /// Kind of the object.
    pub fn kind(&self) -> &str {
        &self.resource.kind
    }

    fn uid(&self) -> &str {
        self.meta().uid.as_deref().unwrap_or_default()
    }
}

/// Subscribes the garbage collector and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let notify = Arc::new(Notify::new());
    let kinds = cached_kinds(&ctx.informers);
    let streams: Vec<_> = kinds.iter().map(|k| k.graph_changes()).collect();
    let cached = kinds.iter().map(|k| k.kind()).collect();
    let n = notify.clone();
    tokio::spawn(futures::stream::select_all(streams).for_each(move |_| {
        n.notify_one();
        futures::future::ready(())
    }));
    async move {
        let mut resources = Resources::new(ctx.client.clone(), cached, notify.clone());
        loop {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(ctx.config.resync_period.min(WAKE_PERIOD)) => {}
            }
            tokio::time::sleep(PASS_DELAY).await;
            let span = tracing::info_span!("reconcile", controller = "garbage-collector");
            if let Err(err) = pass(&ctx, &mut resources).instrument(span).await {
                tracing::warn!(controller = "garbage-collector", error = %err, "pass failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                notify.notify_one();
            }
        }
    }
    .boxed()
}

/// The changes of one cached kind that can change a pass's plan: an
/// object going, appearing with owners, finalizers or a deletion
/// ([`can_change_a_plan`]), or its owners, finalizers or deletion changing
/// ([`graph_fingerprint`]). A pod's binding or status, which are most of a
/// busy cluster's changes, and bare objects appearing do not start a pass
/// (each pass rebuilds the graph from every cached object).
fn graph_changes<K>(informer: &Informer<K>) -> BoxStream<'static, ()>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let store = informer.store();
    // The fingerprint of each cached object's last state seen here, by uid.
    let mut seen: HashMap<String, u64> = HashMap::new();
    informer
        .subscribe()
        .filter_map(move |obj| {
            let uid = obj.meta().uid.clone().unwrap_or_default();
            // The informer stores an object before handing it out, so an
            // object its store no longer holds (under this uid) is gone.
            let cached = store
                .get(&ObjectRef::from_obj(&*obj))
                .is_some_and(|o| o.meta().uid.as_deref() == Some(uid.as_str()));
            let changed = if cached {
                let print = graph_fingerprint(obj.meta());
                match seen.insert(uid, print) {
                    Some(before) => before != print,
                    None => can_change_a_plan(obj.meta()),
                }
            } else {
                seen.remove(&uid);
                true
            };
            futures::future::ready(changed.then_some(()))
        })
        .boxed()
}

/// Whether an object appearing can change what a pass decides: only one
/// with owners (it may be orphaned), finalizers the collector handles or a
/// deletion under way. An object without any of these (a bare pod) is no
/// one's dependent, and as an owner it cannot save a dependent already
/// seen, which names an earlier uid. A busy cluster's creations of such
/// objects then start no pass (each pass rebuilds the graph from every
/// cached object). Pure.
pub fn can_change_a_plan(m: &ObjectMeta) -> bool {
    m.owner_references.as_ref().is_some_and(|r| !r.is_empty())
        || m.finalizers.as_ref().is_some_and(|f| !f.is_empty())
        || m.deletion_timestamp.is_some()
}

/// A hash of what the graph reads of an object's metadata besides its
/// identity and resourceVersion (the rest of [`trimmed`]): ownerReferences,
/// finalizers and deletionTimestamp. Pure.
pub fn graph_fingerprint(m: &ObjectMeta) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in m.owner_references.iter().flatten() {
        (
            &r.api_version,
            &r.kind,
            &r.name,
            &r.uid,
            r.controller,
            r.block_owner_deletion,
        )
            .hash(&mut h);
    }
    m.owner_references.is_some().hash(&mut h);
    m.finalizers.hash(&mut h);
    m.deletion_timestamp.as_ref().map(|t| t.0.as_nanosecond()).hash(&mut h);
    h.finish()
}

/// One kind the collector reads from a shared informer's cache.
trait CachedKind {
    /// Its API group and plural.
    fn kind(&self) -> resources::Kind;
    /// Its changes the graph can see ([`graph_changes`]).
    fn graph_changes(&self) -> BoxStream<'static, ()>;
    /// Its cached objects as graph nodes, appended to `out`.
    fn nodes(&self, out: &mut Vec<Node>);
}

impl<K> CachedKind for Informer<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    fn kind(&self) -> resources::Kind {
        (K::group(&()).into_owned(), K::plural(&()).into_owned())
    }

    fn graph_changes(&self) -> BoxStream<'static, ()> {
        graph_changes(self)
    }

    fn nodes(&self, out: &mut Vec<Node>) {
        let resource = Arc::new(ApiResource::erase::<K>(&()));
        out.extend(self.store().state().into_iter().map(|o| Node::cached(&resource, o)));
    }
}

/// The kinds the collector reads from the manager's shared informers
/// (every informer the manager runs): they are never listed for it. The
/// informers cache every object of their kind, in every namespace.
fn cached_kinds(i: &Informers) -> [&dyn CachedKind; 19] {
    [
        &i.deployments,
        &i.replicasets,
        &i.replicationcontrollers,
        &i.pods,
        &i.services,
        &i.endpointslices,
        &i.nodes,
        &i.leases,
        &i.namespaces,
        &i.jobs,
        &i.cronjobs,
        &i.daemonsets,
        &i.statefulsets,
        &i.controllerrevisions,
        &i.pdbs,
        &i.persistentvolumes,
        &i.persistentvolumeclaims,
        &i.csidrivers,
        &i.volumeattachments,
    ]
}

/// Every cached object as a graph node.
fn snapshot(ctx: &Context) -> Vec<Node> {
    let mut out = Vec::new();
    for kind in cached_kinds(&ctx.informers) {
        kind.nodes(&mut out);
    }
    out
}

/// What the collector decided for one pass. Pure, for tests.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Dependents whose owners may all be gone (owner absence is confirmed live before deleting).
    pub maybe_orphaned: Vec<usize>,
    /// Dependents to delete because an owner is being deleted in the foreground.
    pub delete_foreground: Vec<usize>,
    /// (dependent, owner uid) references to strip for orphaning owners.
    pub strip: Vec<(usize, String)>,
    /// Owners whose foreground/orphan finalizer can go.
    pub finalize: Vec<(usize, &'static str)>,
}

/// Decides the pass from the graph.
pub fn plan(nodes: &[Node]) -> Plan {
    let by_uid: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.uid(), i)).collect();
    let mut dependents: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for r in n.meta().owner_references.iter().flatten() {
            dependents.entry(r.uid.as_str()).or_default().push(i);
        }
    }
    let mut plan = Plan::default();
    for (i, n) in nodes.iter().enumerate() {
        let refs = n.meta().owner_references.as_deref().unwrap_or_default();
        if !refs.is_empty() && refs.iter().any(|r| !by_uid.contains_key(r.uid.as_str())) {
            plan.maybe_orphaned.push(i);
        }
        if n.meta().deletion_timestamp.is_none() {
            continue;
        }
        let finalizers = n.meta().finalizers.as_deref().unwrap_or_default();
        let deps = dependents.get(n.uid()).cloned().unwrap_or_default();
        if finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
            if deps.is_empty() {
                plan.finalize.push((i, ORPHAN_FINALIZER));
            } else {
                plan.strip.extend(deps.iter().map(|d| (*d, n.uid().to_string())));
            }
        } else if finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
            let blocking: Vec<usize> = deps
                .iter()
                .copied()
                .filter(|d| {
                    nodes[*d]
                        .meta()
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|r| r.uid == n.uid() && r.block_owner_deletion == Some(true))
                })
                .collect();
            if blocking.is_empty() {
                plan.finalize.push((i, FOREGROUND_FINALIZER));
            }
            plan.delete_foreground.extend(
                deps.into_iter()
                    .filter(|d| nodes[*d].meta().deletion_timestamp.is_none()),
            );
        }
    }
    let mut seen = HashSet::new();
    plan.delete_foreground.retain(|d| seen.insert(*d));
    plan
}

/// The graph of this pass: the cached kinds, then the watched ones (an object
/// seen twice, e.g. through two groups, counts once).
fn graph(cached: Vec<Node>, listed: &[Node]) -> Vec<Node> {
    let extra: Vec<Node> = {
        let mut seen: HashSet<&str> = cached.iter().map(Node::uid).collect();
        listed.iter().filter(|n| seen.insert(n.uid())).cloned().collect()
    };
    let mut nodes = cached;
    nodes.extend(extra);
    nodes
}

/// What a pass does, with the nodes it acts on taken out of its graph.
struct Acts {
    /// Dependents to strip of an orphaning owner's reference (its uid).
    strip: Vec<(Node, String)>,
    /// Dependents of foreground deletions, with the policy to delete each by.
    delete: Vec<(Node, PropagationPolicy)>,
    /// Owners and the finalizer each can drop.
    finalize: Vec<(Node, &'static str)>,
    /// Dependents whose owners may be gone.
    maybe_orphaned: Vec<Node>,
}

impl Acts {
    /// `plan`'s acts on `nodes`.
    fn of(plan: &Plan, nodes: &[Node]) -> Acts {
        let owners: HashSet<&str> = nodes
            .iter()
            .flat_map(|n| n.meta().owner_references.iter().flatten().map(|r| r.uid.as_str()))
            .collect();
        Acts {
            strip: plan
                .strip
                .iter()
                .map(|(d, uid)| (nodes[*d].clone(), uid.clone()))
                .collect(),
            delete: plan
                .delete_foreground
                .iter()
                .map(|d| {
                    // Dependents with dependents of their own cascade in the foreground too.
                    let policy = if owners.contains(nodes[*d].uid()) {
                        PropagationPolicy::Foreground
                    } else {
                        PropagationPolicy::Background
                    };
                    (nodes[*d].clone(), policy)
                })
                .collect(),
            finalize: plan.finalize.iter().map(|(o, f)| (nodes[*o].clone(), *f)).collect(),
            maybe_orphaned: plan.maybe_orphaned.iter().map(|d| nodes[*d].clone()).collect(),
        }
    }
}

async fn pass(ctx: &Context, resources: &mut Resources) -> Result<(), Error> {
    let watched = resources.watched().await;
    let acts = {
        let nodes = graph(snapshot(ctx), &watched.nodes);
        let mut plan = plan(&nodes);
        if !watched.complete {
            plan.finalize.clear();
        }
        Acts::of(&plan, &nodes)
    };
    drop(watched);
    let client = &ctx.client;
    for (n, owner_uid) in &acts.strip {
        let refs: Vec<OwnerReference> = n
            .meta()
            .owner_references
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| &r.uid != owner_uid)
            .collect();
        patch_meta(
            client,
            n,
            owner_references_patch(&refs, n.meta().resource_version.as_deref()),
        )
        .await?;
    }
    for (n, policy) in &acts.delete {
        delete(client, n, policy.clone()).await?;
    }
    for (n, finalizer) in &acts.finalize {
        let rest: Vec<String> = n
            .meta()
            .finalizers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != finalizer)
            .collect();
        patch_meta(
            client,
            n,
            json!({"metadata": {"finalizers": rest, "resourceVersion": n.meta().resource_version}}),
        )
        .await?;
    }
    for n in &acts.maybe_orphaned {
        collect_if_orphaned(client, resources, n).await?;
    }
    Ok(())
}

/// Deletes `n` if all its owners are gone, or drops the references to the
/// gone ones. Owners are looked up live; `n` itself is read again before
/// acting (a cache may be behind).
async fn collect_if_orphaned(client: &Client, resources: &mut Resources, n: &Node) -> Result<(), Error> {
    let refs = n.meta().owner_references.clone().unwrap_or_default();
    let mut absent = Vec::new();
    let mut foreground_owner = false;
    for r in &refs {
        match owner_state(client, resources, n.meta().namespace.as_deref(), r).await {
            Ok(OwnerState::Absent) => absent.push(r.uid.clone()),
            Ok(OwnerState::Present { deleting_foreground }) => foreground_owner |= deleting_foreground,
            Ok(OwnerState::Unknown) => {}
            Err(err) => {
                tracing::debug!(controller = "garbage-collector", owner = %r.name, kind = %r.kind, error = %err, "owner lookup failed");
            }
        }
    }
    if absent.is_empty() {
        return Ok(());
    }
    let Some(live) = api_for(client, n)
        .get_metadata_opt(n.meta().name.as_deref().unwrap_or_default())
        .await?
    else {
        return Ok(());
    };
    let live_refs = live.metadata.owner_references.clone().unwrap_or_default();
    let uids = |rs: &[OwnerReference]| rs.iter().map(|r| r.uid.clone()).collect::<HashSet<_>>();
    if live.metadata.uid != n.meta().uid || uids(&live_refs) != uids(&refs) {
        // Replaced or re-owned since it was seen: the next pass looks again.
        return Ok(());
    }
    let n = &Node::of_meta(&n.resource, live.metadata);
    if absent.len() == refs.len() {
        let policy = if foreground_owner {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::info!(kind = %n.kind(), namespace = ?n.meta().namespace, name = ?n.meta().name, "deleting dependent whose owners are gone");
        delete(client, n, policy).await
    } else {
        let keep: Vec<OwnerReference> = live_refs.into_iter().filter(|r| !absent.contains(&r.uid)).collect();
        patch_meta(
            client,
            n,
            owner_references_patch(&keep, n.meta().resource_version.as_deref()),
        )
        .await
    }
}

/// The merge patch leaving a dependent with `refs` as its ownerReferences,
/// guarded by its resourceVersion. No reference left removes the field, as
/// Kubernetes' objects never carry an empty `ownerReferences` list.
fn owner_references_patch(refs: &[OwnerReference], resource_version: Option<&str>) -> serde_json::Value {
    let refs = if refs.is_empty() {
        serde_json::Value::Null
    } else {
        json!(refs)
    };
    json!({"metadata": {"ownerReferences": refs, "resourceVersion": resource_version}})
}

enum OwnerState {
    Absent,
    Present { deleting_foreground: bool },
    Unknown,
}

/// Looks the owner up live (a cache may simply not have seen it yet).
async fn owner_state(
    client: &Client,
    resources: &mut Resources,
    namespace: Option<&str>,
    r: &OwnerReference,
) -> Result<OwnerState, Error> {
    let (group, version) = match r.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), r.api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &r.kind);
    let Some((ar, caps)) = resources.resolve(&gvk).await else {
        return Ok(OwnerState::Unknown);
    };
    let api: Api<DynamicObject> = match (caps.scope, namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        // A cluster-scoped dependent cannot have a namespaced owner: Kubernetes
        // leaves such a reference unresolved rather than collecting the dependent.
        (Scope::Namespaced, None) => return Ok(OwnerState::Unknown),
        (Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
    };
    match api.get_metadata_opt(&r.name).await? {
        None => Ok(OwnerState::Absent),
        Some(o) if o.metadata.uid.as_deref() != Some(r.uid.as_str()) => Ok(OwnerState::Absent),
        Some(o) => Ok(OwnerState::Present {
            deleting_foreground: o.metadata.deletion_timestamp.is_some()
                && o.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FOREGROUND_FINALIZER),
        }),
    }
}

fn api_for(client: &Client, n: &Node) -> Api<DynamicObject> {
    match n.meta().namespace.as_deref() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &*n.resource),
        None => Api::all_with(client.clone(), &*n.resource),
    }
}

async fn delete(client: &Client, n: &Node, policy: PropagationPolicy) -> Result<(), Error> {
    let params = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(kube::api::Preconditions {
            uid: n.meta().uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api_for(client, n)
        .delete(n.meta().name.as_deref().unwrap_or_default(), &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

async fn patch_meta(client: &Client, n: &Node, patch: serde_json::Value) -> Result<(), Error> {
    match api_for(client, n)
        .patch(
            n.meta().name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn a_watched_object_keeps_identity_owners_finalizers_and_deletion_but_not_labels_annotations_or_managed_fields() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let full = ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some("shop".into()),
            uid: Some("u1".into()),
            resource_version: Some("7".into()),
            owner_references: Some(vec![OwnerReference {
                uid: "rs".into(),
                ..OwnerReference::default()
            }]),
            finalizers: Some(vec!["orphan".into()]),
            deletion_timestamp: Some(Time(Timestamp::UNIX_EPOCH)),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            annotations: Some([("note".to_string(), "x".repeat(1000))].into()),
            managed_fields: Some(vec![ManagedFieldsEntry::default()]),
            ..ObjectMeta::default()
        };
        let kept = trimmed(&full);
        assert_eq!(
            kept,
            ObjectMeta {
                labels: None,
                annotations: None,
                managed_fields: None,
                ..full
            }
        );
    }

    fn resource(api_version: &str, kind: &str, plural: &str) -> Arc<ApiResource> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        Arc::new(ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, kind),
            plural,
        ))
    }

    fn meta(uid: &str, owner: Option<(&str, bool)>, deleting: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            owner_references: owner.map(|(o, block)| {
                vec![OwnerReference {
                    uid: o.into(),
                    block_owner_deletion: Some(block),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            deletion_timestamp: deleting.map(|_| Time(Timestamp::now())),
            finalizers: deleting.map(|f| vec![f.to_string()]),
            ..Default::default()
        }
    }

    fn node(uid: &str, owner: Option<(&str, bool)>, deleting: Option<&str>) -> Node {
        Node::of_meta(&resource("v1", "Pod", "pods"), meta(uid, owner, deleting))
    }

    /// A cached object joins the graph as the cache holds it: the node reads
    /// the cached object's own metadata (no copy), and every node of a kind
    /// shares one `ApiResource`.
    #[test]
    fn a_graph_node_reads_the_cached_object_without_a_copy() {
        use k8s_openapi::api::core::v1::Pod;
        let pods: Vec<Arc<Pod>> = ["a", "b"]
            .iter()
            .map(|uid| {
                Arc::new(Pod {
                    metadata: meta(uid, Some(("rs", true)), None),
                    ..Pod::default()
                })
            })
            .collect();
        let kind = resource("v1", "Pod", "pods");
        let nodes: Vec<Node> = pods.iter().map(|p| Node::cached(&kind, p.clone())).collect();
        for (n, p) in nodes.iter().zip(&pods) {
            assert!(std::ptr::eq(n.meta(), &p.metadata));
            assert!(Arc::ptr_eq(&n.resource, &kind));
        }
        assert_eq!(Arc::strong_count(&pods[0]), 2);
        assert_eq!(
            (nodes[1].api_version(), nodes[1].kind(), nodes[1].uid()),
            ("v1", "Pod", "b")
        );
    }

    /// A pass keeps, past planning, only the nodes it acts on.
    #[test]
    fn the_acts_of_a_pass_hold_only_the_nodes_they_name() {
        let pods: Vec<Arc<k8s_openapi::api::core::v1::Pod>> = [
            meta("d", None, Some(FOREGROUND_FINALIZER)),
            meta("rs", Some(("d", true)), None),
            meta("p", Some(("rs", true)), None),
            meta("lonely", Some(("gone", false)), None),
        ]
        .into_iter()
        .map(|metadata| {
            Arc::new(k8s_openapi::api::core::v1::Pod {
                metadata,
                ..Default::default()
            })
        })
        .collect();
        let kind = resource("v1", "Pod", "pods");
        let nodes: Vec<Node> = pods.iter().map(|p| Node::cached(&kind, p.clone())).collect();
        let acts = Acts::of(&plan(&nodes), &nodes);
        drop(nodes);
        let held: Vec<usize> = pods.iter().map(|p| Arc::strong_count(p) - 1).collect();
        // "rs" is deleted (in the foreground: "p" depends on it), "lonely"
        // may be orphaned; "d" waits for "rs", "p" is left alone.
        assert_eq!(held, [0, 1, 0, 1]);
        assert_eq!(acts.delete.len(), 1);
        assert_eq!(acts.delete[0].0.uid(), "rs");
        assert!(matches!(acts.delete[0].1, PropagationPolicy::Foreground));
        assert_eq!(acts.maybe_orphaned[0].uid(), "lonely");
        assert!(acts.finalize.is_empty() && acts.strip.is_empty());
    }

    /// What wakes the collector: owners, finalizers and deletion change
    /// the fingerprint; labels, status writes (a new resourceVersion) and
    /// annotations do not.
    #[test]
    fn the_graph_fingerprint_follows_owners_finalizers_and_deletion_only() {
        let base = meta("p1", Some(("rs1", true)), None);
        let print = graph_fingerprint(&base);

        let mut status_write = base.clone();
        status_write.resource_version = Some("11".into());
        status_write.labels = Some([("ready".to_string(), "yes".to_string())].into());
        status_write.annotations = Some([("note".to_string(), "x".to_string())].into());
        assert_eq!(graph_fingerprint(&status_write), print);

        let mut released = base.clone();
        released.owner_references.as_mut().unwrap()[0].controller = Some(false);
        assert_ne!(graph_fingerprint(&released), print);
        let mut orphaned = base.clone();
        orphaned.owner_references = None;
        assert_ne!(graph_fingerprint(&orphaned), print);
        let mut reowned = base.clone();
        reowned.owner_references.as_mut().unwrap()[0].uid = "rs2".into();
        assert_ne!(graph_fingerprint(&reowned), print);
        let mut finalized = base.clone();
        finalized.finalizers = Some(vec![FOREGROUND_FINALIZER.into()]);
        assert_ne!(graph_fingerprint(&finalized), print);
        let mut deleting = base.clone();
        deleting.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert_ne!(graph_fingerprint(&deleting), print);
    }

    /// An object appearing wakes the collector only if it has owners,
    /// finalizers or a deletion under way: a bare pod cannot change a plan.
    #[test]
    fn only_an_object_with_owners_finalizers_or_a_deletion_can_change_a_plan() {
        let bare = meta("p1", None, None);
        assert!(!can_change_a_plan(&bare));
        let mut no_owners = bare.clone();
        no_owners.owner_references = Some(vec![]);
        no_owners.finalizers = Some(vec![]);
        assert!(!can_change_a_plan(&no_owners));
        assert!(can_change_a_plan(&meta("p2", Some(("rs1", true)), None)));
        let mut finalized = bare.clone();
        finalized.finalizers = Some(vec![ORPHAN_FINALIZER.into()]);
        assert!(can_change_a_plan(&finalized));
        let mut deleting = bare;
        deleting.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(can_change_a_plan(&deleting));
    }

    #[test]
    fn dangling_owner_marks_dependent() {
        let p = plan(&[
            node("rs", None, None),
            node("a", Some(("rs", true)), None),
            node("b", Some(("gone", true)), None),
        ]);
        assert_eq!(p.maybe_orphaned, [2]);
    }

    #[test]
    fn foreground_deletes_dependents_then_finalizes() {
        let p = plan(&[
            node("d", None, Some(FOREGROUND_FINALIZER)),
            node("rs", Some(("d", true)), None),
        ]);
        assert_eq!(p.delete_foreground, [1]);
        assert!(p.finalize.is_empty());
        let p = plan(&[node("d", None, Some(FOREGROUND_FINALIZER))]);
        assert_eq!(p.finalize, [(0, FOREGROUND_FINALIZER)]);
    }

    #[test]
    fn listed_custom_resources_join_the_graph_once() {
        let widget = Node::of_meta(
            &resource("stories.sluice.dev/v1", "Widget", "widgets"),
            meta("w", Some(("owner", true)), None),
        );
        let nodes = graph(
            vec![node("owner", None, Some(FOREGROUND_FINALIZER))],
            &[widget.clone(), widget, node("owner", None, None)],
        );
        assert_eq!(nodes.len(), 2);
        let p = plan(&nodes);
        assert_eq!(p.delete_foreground, [1]);
        assert!(p.finalize.is_empty(), "a blocking custom resource holds its owner");
    }

    #[test]
    fn orphan_strips_references_first() {
        let p = plan(&[
            node("rs", None, Some(ORPHAN_FINALIZER)),
            node("a", Some(("rs", true)), None),
        ]);
        assert_eq!(p.strip, [(1, "rs".to_string())]);
        assert!(p.finalize.is_empty());
    }

    #[test]
    fn stripping_the_last_owner_removes_the_field() {
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            uid: "u1".into(),
            ..Default::default()
        };
        assert_eq!(
            owner_references_patch(&[], Some("7")),
            json!({"metadata": {"ownerReferences": null, "resourceVersion": "7"}})
        );
        let kept = owner_references_patch(std::slice::from_ref(&owner), Some("7"));
        assert_eq!(kept["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(kept["metadata"]["resourceVersion"], "7");
    }
}
