//! The garbage collector's view of the kinds it does not cache: discovery
//! (refreshed, rate-limited) and one metadata-only watch per resource.
//!
//! Kubernetes' garbage collector follows every resource that supports
//! `list` and `delete` through metadata informers. Sluice reads the kinds
//! the manager's shared informers already cache from those caches (the
//! collector's `cached_kinds`); every other such resource — ConfigMaps,
//! Secrets, RBAC objects, CustomResourceDefinitions and every custom
//! resource — is found through discovery and watched here, metadata only:
//! - one `list` and `watch` (as `PartialObjectMetadata`) per resource at its
//!   preferred version; subresources, resources without `list`/`delete` and
//!   Events (Kubernetes' default ignored resources) are skipped;
//! - each object is kept with [`super::trimmed`] metadata (identity,
//!   ownerReferences, finalizers, deletionTimestamp): no managedFields or
//!   annotations;
//! - a change the graph can see (an object appearing or going, its owners,
//!   finalizers or deletion changing: [`super::graph_fingerprint`]) wakes
//!   the collector, as the cached kinds' changes do;
//! - discovery runs at most once per [`DISCOVERY_MIN_INTERVAL`]: when an
//!   owner's kind does not resolve, when the set of CustomResourceDefinitions
//!   or APIServices (seen through their watches) changed since the last run,
//!   and every [`DISCOVERY_PERIOD`] (as Kubernetes' collector resyncs its
//!   monitors). A resource no longer served has its watch stopped.
//!
//! Before, these kinds were listed every 5 s: about 25 LISTs of every
//! ConfigMap, Secret and RBAC object every 5 s on a quiet cluster.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMetaExt};
use kube::core::PartialObjectMeta;
use kube::discovery::{verbs, ApiCapabilities, Discovery};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::Notify;

use super::Node;

/// A kind by its API group and plural (`("", "pods")`).
pub type Kind = (String, String);

/// Resources never collected (Kubernetes' `DefaultIgnoredResources`).
pub const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// Minimum delay between two discovery runs.
pub const DISCOVERY_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Discovery is run again at least this often.
pub const DISCOVERY_PERIOD: Duration = Duration::from_secs(30);

/// Page size of a watch's lists.
const PAGE: u32 = 500;

/// The resources the collector lists itself: served, top-level, `list` and
/// `delete` supported, neither among `cached` nor ignored. Pure, for tests.
pub fn collectable(
    resources: impl IntoIterator<Item = (ApiResource, ApiCapabilities)>,
    cached: &[Kind],
) -> Vec<ApiResource> {
    let mut seen = HashSet::new();
    resources
        .into_iter()
        .filter(|(ar, caps)| {
            let key = (ar.group.as_str(), ar.plural.as_str());
            caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::DELETE)
                && !ar.plural.contains('/')
                && !cached.iter().any(|(g, p)| (g.as_str(), p.as_str()) == key)
                && !IGNORED.contains(&key)
        })
        .filter(|(ar, _)| seen.insert((ar.group.clone(), ar.plural.clone())))
        .map(|(ar, _)| ar)
        .collect()
}

/// What identifies the served API surface beyond built-in kinds: the uid and
/// resourceVersion of every CustomResourceDefinition and APIService. Pure.
pub fn api_fingerprint(nodes: &[Node]) -> Vec<String> {
    let mut out: Vec<String> = nodes
        .iter()
        .filter(|n| {
            (n.api_version().starts_with("apiextensions.k8s.io/") && n.kind() == "CustomResourceDefinition")
                || (n.api_version().starts_with("apiregistration.k8s.io/") && n.kind() == "APIService")
        })
        .map(|n| {
            format!(
                "{}@{}",
                n.meta().uid.as_deref().unwrap_or_default(),
                n.meta().resource_version.as_deref().unwrap_or_default()
            )
        })
        .collect();
    out.sort();
    out
}

/// Discovery and the watches of the uncached kinds.
pub struct Resources {
    client: Client,
    /// The kinds read from the shared caches instead.
    cached: Vec<Kind>,
    discovery: Option<Discovery>,
    discovered_at: Option<Instant>,
    /// [`api_fingerprint`] of the objects that led to the last discovery run.
    fingerprint: Vec<String>,
    watches: HashMap<Kind, Watch>,
    /// Woken by a change the graph can see.
    changed: Arc<Notify>,
}

/// The uncached kinds' objects, as the watches hold them now.
pub struct Watched {
    /// Their objects.
    pub nodes: Vec<Node>,
    /// Whether every collectable resource is watched and has been listed
    /// (finalizers are removed only then).
    pub complete: bool,
}

impl Resources {
    /// Nothing discovered or watched yet; the `cached` kinds are never
    /// watched here. `changed` is woken by the changes the graph can see.
    pub fn new(client: Client, cached: Vec<Kind>, changed: Arc<Notify>) -> Self {
        Self {
            client,
            cached,
            discovery: None,
            discovered_at: None,
            fingerprint: Vec::new(),
            watches: HashMap::new(),
            changed,
        }
    }

    /// Runs discovery unless it ran less than [`DISCOVERY_MIN_INTERVAL`] ago;
    /// whether it ran successfully. A failed run keeps the previous result.
    async fn rediscover(&mut self) -> bool {
        if self
            .discovered_at
            .is_some_and(|at| at.elapsed() < DISCOVERY_MIN_INTERVAL)
        {
            return false;
        }
        self.discovered_at = Some(Instant::now());
        // Aggregated discovery is two requests; classic discovery one per group version.
        let run = match Discovery::new(self.client.clone()).run_aggregated().await {
            Ok(d) => Ok(d),
            Err(_) => Discovery::new(self.client.clone()).run().await,
        };
        match run {
            Ok(d) => {
                self.discovery = Some(d);
                true
            }
            Err(err) => {
                tracing::warn!(controller = "garbage-collector", error = %err, "discovery failed");
                false
            }
        }
    }

    /// Resolves an owner's kind, running discovery again (rate-limited) when
    /// it does not resolve: its CRD may have been created since.
    pub async fn resolve(&mut self, gvk: &GroupVersionKind) -> Option<(ApiResource, ApiCapabilities)> {
        let found = self.discovery.as_ref().and_then(|d| d.resolve_gvk(gvk));
        if found.is_some() {
            return found;
        }
        if self.rediscover().await {
            tracing::debug!(controller = "garbage-collector", kind = %gvk.kind, "rediscovered for an unresolved owner kind");
            self.follow();
        }
        self.discovery.as_ref().and_then(|d| d.resolve_gvk(gvk))
    }

    /// The watched objects, after running discovery again if it is due or
    /// the set of CRDs and APIServices changed, and watching what it serves.
    pub async fn watched(&mut self) -> Watched {
        let mut nodes = self.nodes();
        let fingerprint = api_fingerprint(&nodes);
        let due = self.discovery.is_none()
            || self.discovered_at.is_some_and(|at| at.elapsed() >= DISCOVERY_PERIOD)
            || fingerprint != self.fingerprint;
        if due && self.rediscover().await {
            self.fingerprint = fingerprint;
            self.follow();
            nodes = self.nodes();
        }
        let resources = self.resources().len();
        Watched {
            complete: self.discovery.is_some()
                && self.watches.len() == resources
                && self.watches.values().all(|w| w.lock().synced),
            nodes,
        }
    }

    /// Starts a watch of every collectable resource not watched yet (or
    /// watched at another version) and stops those no longer served.
    fn follow(&mut self) {
        let wanted = self.resources();
        let keys: HashSet<Kind> = wanted.iter().map(|ar| (ar.group.clone(), ar.plural.clone())).collect();
        self.watches.retain(|kind, _| keys.contains(kind));
        for ar in wanted {
            let kind = (ar.group.clone(), ar.plural.clone());
            if self
                .watches
                .get(&kind)
                .is_some_and(|w| w.resource.version == ar.version)
            {
                continue;
            }
            tracing::debug!(controller = "garbage-collector", resource = %ar.plural, group = %ar.group, "watching");
            self.watches
                .insert(kind, Watch::start(&self.client, ar, self.changed.clone()));
        }
    }

    fn nodes(&self) -> Vec<Node> {
        let mut out = Vec::new();
        for w in self.watches.values() {
            out.extend(w.lock().objects.values().map(|o| Node::cached(&w.resource, o.clone())));
        }
        out
    }

    fn resources(&self) -> Vec<ApiResource> {
        let Some(d) = &self.discovery else {
            return Vec::new();
        };
        collectable(d.groups().flat_map(|g| g.recommended_resources()), &self.cached)
    }
}

/// One resource's metadata watch; dropping it stops the watch.
struct Watch {
    resource: Arc<ApiResource>,
    state: Arc<Mutex<Followed>>,
    task: tokio::task::JoinHandle<()>,
}

/// What one watch holds.
#[derive(Default)]
struct Followed {
    /// Objects with [`super::trimmed`] metadata, by namespace and name.
    objects: HashMap<(Option<String>, String), Arc<PartialObjectMeta<DynamicObject>>>,
    /// Whether its first list is in.
    synced: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watch {
    /// Lists and watches `resource` (all namespaces, metadata only), waking
    /// `changed` with each change the graph can see.
    fn start(client: &Client, resource: ApiResource, changed: Arc<Notify>) -> Self {
        // An Api of PartialObjectMeta asks for metadata only.
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &resource);
        let state = Arc::new(Mutex::new(Followed::default()));
        let followed = state.clone();
        let what = format!("{}/{}", resource.group, resource.plural);
        let events = watcher(api, watcher::Config::default().page_size(PAGE)).default_backoff();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            let mut listing = HashMap::new();
            while let Some(event) = events.next().await {
                let seen = match event {
                    Ok(Event::Init) => {
                        listing.clear();
                        false
                    }
                    Ok(Event::InitApply(o)) => {
                        listing.insert(key(&o.metadata), kept(&o.metadata));
                        false
                    }
                    Ok(Event::InitDone) => {
                        let mut f = lock(&followed);
                        f.objects = std::mem::take(&mut listing);
                        f.synced = true;
                        true
                    }
                    Ok(Event::Apply(o)) => {
                        let now = kept(&o.metadata);
                        let before = lock(&followed).objects.insert(key(&o.metadata), now.clone());
                        let (meta, before) = (&now.metadata, before.as_ref().map(|b| &b.metadata));
                        match before {
                            None => super::can_change_a_plan(meta),
                            Some(b) => {
                                b.uid != meta.uid || super::graph_fingerprint(b) != super::graph_fingerprint(meta)
                            }
                        }
                    }
                    Ok(Event::Delete(o)) => {
                        lock(&followed).objects.remove(&key(&o.metadata));
                        true
                    }
                    Err(err) => {
                        tracing::debug!(controller = "garbage-collector", resource = %what, error = %err, "watch failed (retrying)");
                        false
                    }
                };
                if seen {
                    changed.notify_one();
                }
            }
        });
        Self {
            resource: Arc::new(resource),
            state,
            task,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Followed> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<Followed>) -> MutexGuard<'_, Followed> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a watch keeps of an object: its [`super::trimmed`] metadata.
fn kept(meta: &ObjectMeta) -> Arc<PartialObjectMeta<DynamicObject>> {
    Arc::new(super::trimmed(meta).into_response_partial())
}

fn key(meta: &ObjectMeta) -> (Option<String>, String) {
    (meta.namespace.clone(), meta.name.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::discovery::Scope;

    fn res(group: &str, plural: &str, verbs: &[&str]) -> (ApiResource, ApiCapabilities) {
        let gvk = GroupVersionKind::gvk(group, "v1", "Thing");
        (
            ApiResource::from_gvk_with_plural(&gvk, plural),
            ApiCapabilities {
                scope: Scope::Namespaced,
                subresources: Vec::new(),
                operations: verbs.iter().map(|v| v.to_string()).collect(),
            },
        )
    }

    #[test]
    fn collects_listable_deletable_uncached_resources() {
        let all = ["get", "list", "watch", "delete"];
        let cached: Vec<Kind> = [
            ("", "pods"),
            ("apps", "deployments"),
            ("", "nodes"),
            ("coordination.k8s.io", "leases"),
        ]
        .map(|(g, p)| (g.to_string(), p.to_string()))
        .to_vec();
        let got: Vec<String> = collectable(
            [
                res("", "configmaps", &all),
                res("", "pods", &all),
                res("apps", "deployments", &all),
                res("", "nodes", &all),
                res("coordination.k8s.io", "leases", &all),
                res("", "secrets", &all),
                res("", "events", &all),
                res("events.k8s.io", "events", &all),
                res("", "componentstatuses", &["get", "list"]),
                res("stories.sluice.dev", "widgets", &all),
                res("stories.sluice.dev", "widgets", &all),
            ],
            &cached,
        )
        .into_iter()
        .map(|ar| format!("{}/{}", ar.group, ar.plural))
        .collect();
        assert_eq!(got, ["/configmaps", "/secrets", "stories.sluice.dev/widgets"]);
    }

    #[test]
    fn fingerprint_follows_crds_and_apiservices_only() {
        let node = |api_version: &str, kind: &str, rv: &str| {
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let names = Arc::new(ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind)));
            let meta = ObjectMeta {
                uid: Some(kind.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            };
            Node::of_meta(&names, meta)
        };
        let a = api_fingerprint(&[
            node("apiextensions.k8s.io/v1", "CustomResourceDefinition", "1"),
            node("v1", "ConfigMap", "2"),
        ]);
        let b = api_fingerprint(&[
            node("apiextensions.k8s.io/v1", "CustomResourceDefinition", "1"),
            node("v1", "ConfigMap", "3"),
        ]);
        let c = api_fingerprint(&[
            node("apiextensions.k8s.io/v1", "CustomResourceDefinition", "4"),
            node("apiregistration.k8s.io/v1", "APIService", "1"),
        ]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(c.len(), 2);
    }
}
