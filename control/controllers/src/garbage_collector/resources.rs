//! The garbage collector's view of the kinds it does not cache: discovery
//! (refreshed, rate-limited) and metadata-only listings.
//!
//! Kubernetes' garbage collector follows every resource that supports
//! `list` and `delete` (through metadata informers). Sluice reads the kinds
//! the manager's shared informers already cache from those caches (the
//! collector's `cached_kinds`); every other such resource — ConfigMaps, Secrets,
//! CustomResourceDefinitions and every custom resource — is found through
//! discovery and listed here, metadata only, at most once per
//! [`LIST_PERIOD`]. (Nodes and Leases were listed here too, though cached:
//! at 5,000 nodes, 10,000 objects every 5 s.)
//! - a listing costs one paginated `list` (as `PartialObjectMetadataList`)
//!   per resource at its preferred version; subresources, resources without
//!   `list`/`delete` and Events (Kubernetes' default ignored resources) are
//!   skipped;
//! - each object is kept as a [`Node`] with [`super::trimmed`] metadata
//!   (identity, ownerReferences, finalizers, deletionTimestamp): no
//!   managedFields or annotations;
//! - discovery runs at most once per [`DISCOVERY_MIN_INTERVAL`]: when an
//!   owner's kind does not resolve, when the set of CustomResourceDefinitions
//!   or APIServices (seen in the listing) changed since the last run, and
//!   every [`DISCOVERY_PERIOD`] (as Kubernetes' collector resyncs).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::discovery::{verbs, ApiCapabilities, Discovery};
use kube::{Api, Client};

use super::Node;

/// A kind by its API group and plural (`("", "pods")`).
pub type Kind = (String, String);

/// Resources never collected (Kubernetes' `DefaultIgnoredResources`).
pub const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// Minimum age of a listing before it is taken again (the uncached kinds are
/// polled, not watched: this bounds how late their changes are seen).
pub const LIST_PERIOD: Duration = Duration::from_secs(5);

/// Minimum delay between two discovery runs.
pub const DISCOVERY_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Discovery is run again at least this often.
pub const DISCOVERY_PERIOD: Duration = Duration::from_secs(30);

/// Page size of the listings.
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
            (n.api_version.starts_with("apiextensions.k8s.io/") && n.kind == "CustomResourceDefinition")
                || (n.api_version.starts_with("apiregistration.k8s.io/") && n.kind == "APIService")
        })
        .map(|n| {
            format!(
                "{}@{}",
                n.meta.uid.as_deref().unwrap_or_default(),
                n.meta.resource_version.as_deref().unwrap_or_default()
            )
        })
        .collect();
    out.sort();
    out
}

/// Discovery and the last listing of the uncached kinds.
pub struct Resources {
    client: Client,
    /// The kinds read from the shared caches instead.
    cached: Vec<Kind>,
    discovery: Option<Discovery>,
    discovered_at: Option<Instant>,
    /// [`api_fingerprint`] of the listing that led to the last discovery run.
    fingerprint: Vec<String>,
    nodes: Vec<Node>,
    listed_at: Option<Instant>,
    complete: bool,
}

/// A listing of the uncached kinds.
pub struct Listing<'a> {
    /// Their objects.
    pub nodes: &'a [Node],
    /// Whether every collectable resource was listed (finalizers are removed only then).
    pub complete: bool,
    /// Whether it was taken during this call.
    pub fresh: bool,
}

impl Resources {
    /// Nothing discovered or listed yet; the `cached` kinds are never listed.
    pub fn new(client: Client, cached: Vec<Kind>) -> Self {
        Self {
            client,
            cached,
            discovery: None,
            discovered_at: None,
            fingerprint: Vec::new(),
            nodes: Vec::new(),
            listed_at: None,
            complete: false,
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
        }
        self.discovery.as_ref().and_then(|d| d.resolve_gvk(gvk))
    }

    /// Forgets the listing so that the next [`Resources::listing`] takes a new one.
    pub fn invalidate(&mut self) {
        self.listed_at = None;
    }

    /// The uncached kinds' objects, listed again if the listing is older than
    /// [`LIST_PERIOD`].
    pub async fn listing(&mut self) -> Listing<'_> {
        let fresh = self.listed_at.is_none_or(|at| at.elapsed() >= LIST_PERIOD);
        if fresh {
            self.list().await;
        }
        Listing {
            nodes: &self.nodes,
            complete: self.complete,
            fresh,
        }
    }

    async fn list(&mut self) {
        if self.discovery.is_none() || self.discovered_at.is_some_and(|at| at.elapsed() >= DISCOVERY_PERIOD) {
            self.rediscover().await;
        }
        self.listed_at = Some(Instant::now());
        let mut nodes = Vec::new();
        let mut complete = self.discovery.is_some();
        let mut listed = HashSet::new();
        // A second round lists the resources a rediscovery (prompted by a
        // changed set of CRDs/APIServices) has just found.
        for round in 0..2 {
            let resources = self.resources();
            for ar in resources {
                if !listed.insert((ar.group.clone(), ar.plural.clone())) {
                    continue;
                }
                if let Err(err) = list_resource(&self.client, &ar, &mut nodes).await {
                    tracing::debug!(controller = "garbage-collector", resource = %ar.plural, group = %ar.group, error = %err, "list failed");
                    complete = false;
                }
            }
            let fingerprint = api_fingerprint(&nodes);
            if round > 0 || fingerprint == self.fingerprint || !self.rediscover().await {
                break;
            }
            self.fingerprint = fingerprint;
        }
        self.nodes = nodes;
        self.complete = complete;
    }

    fn resources(&self) -> Vec<ApiResource> {
        let Some(d) = &self.discovery else {
            return Vec::new();
        };
        collectable(d.groups().flat_map(|g| g.recommended_resources()), &self.cached)
    }
}

/// Lists one resource (all namespaces, metadata only, paginated) into `out`.
async fn list_resource(client: &Client, ar: &ApiResource, out: &mut Vec<Node>) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list_metadata(&params).await?;
        out.extend(page.items.into_iter().map(|o| Node {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
            plural: ar.plural.clone(),
            meta: super::trimmed(&o.metadata),
        }));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
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
        let node = |api_version: &str, kind: &str, rv: &str| Node {
            api_version: api_version.into(),
            kind: kind.into(),
            plural: String::new(),
            meta: ObjectMeta {
                uid: Some(kind.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
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
