//! The catalog of served kinds: the built-in ones, plus every served
//! version of every established CustomResourceDefinition, which
//! `crate::registry::crds` adds and removes while the server runs.
//!
//! Routing, discovery and OpenAPI read the catalog on each request, so a
//! CRD change shows up at once; [`Catalog::generation`] changes with every
//! change so derived documents know when to rebuild.
//!
//! Descriptions of custom kinds are interned: [`intern`] turns an owned
//! description into a `&'static Resource` and gives the same reference back
//! for the same description, so memory grows only with the number of
//! distinct descriptions ever served, not with CRD updates.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use crate::kinds::{Kind, Resource, Subresource, BUILTIN};

/// What the API server serves.
pub struct Catalog {
    inner: RwLock<Inner>,
    generation: AtomicU64,
}

#[derive(Default)]
struct Inner {
    builtin: Vec<Kind>,
    /// Served versions of each CustomResourceDefinition, by CRD name, with
    /// the key of what they were built from.
    custom: BTreeMap<String, (String, Vec<Kind>)>,
    /// Group/versions served by other servers (remote APIServices), by
    /// APIService name.
    remote: BTreeMap<String, RemoteGroupVersion>,
}

/// A group/version another server serves (a remote APIService), as
/// discovery shows it; requests for it are proxied (`http::aggregator`).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteGroupVersion {
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
    /// `spec.groupPriorityMinimum`.
    pub group_priority: i64,
    /// `spec.versionPriority`.
    pub version_priority: i64,
    /// The `resources` of the server's `APIResourceList`, as last read.
    pub resources: Vec<serde_json::Value>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    /// A catalog of the built-in kinds.
    pub fn new() -> Self {
        Self {
            inner: RwLock::new(Inner {
                builtin: BUILTIN.iter().map(|s| Kind::Builtin(*s)).collect(),
                custom: BTreeMap::new(),
                remote: BTreeMap::new(),
            }),
            generation: AtomicU64::new(1),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every served kind: built-in ones first, then custom ones by CRD name.
    pub fn kinds(&self) -> Vec<Kind> {
        let inner = self.read();
        inner
            .builtin
            .iter()
            .chain(inner.custom.values().flat_map(|(_, ks)| ks))
            .cloned()
            .collect()
    }

    /// The served kind at `group`/`version`/`plural` (a request path).
    pub fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<Kind> {
        let inner = self.read();
        inner
            .builtin
            .iter()
            .chain(inner.custom.values().flat_map(|(_, ks)| ks))
            .find(|k| {
                let r = k.resource();
                r.group == group && r.version == version && r.plural == plural
            })
            .cloned()
    }

    /// The served kind described by `r`.
    pub fn by_resource(&self, r: &Resource) -> Option<Kind> {
        self.by_path(r.group, r.version, r.plural)
    }

    /// A served kind by group and kind name (the first served version).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Kind> {
        let inner = self.read();
        inner
            .builtin
            .iter()
            .chain(inner.custom.values().flat_map(|(_, ks)| ks))
            .find(|k| k.resource().group == group && k.resource().kind == kind)
            .cloned()
    }

    /// The API groups served under `/apis` (every group but core), built-in
    /// groups first, in a stable order.
    pub fn groups(&self) -> Vec<&'static str> {
        let mut groups: Vec<&'static str> = Vec::new();
        for k in self.kinds() {
            let g = k.resource().group;
            if !g.is_empty() && !groups.contains(&g) {
                groups.push(g);
            }
        }
        groups
    }

    /// Served versions of `group`, preferred first.
    pub fn versions_of(&self, group: &str) -> Vec<&'static str> {
        let mut versions: Vec<&'static str> = Vec::new();
        for k in self.kinds() {
            let r = k.resource();
            if r.group == group && !versions.contains(&r.version) {
                versions.push(r.version);
            }
        }
        sort_versions(&mut versions);
        versions
    }

    /// Serve `kinds` for the CustomResourceDefinition `crd`, built from what
    /// `key` names (replacing what it served before).
    pub fn set_custom(&self, crd: &str, key: &str, kinds: Vec<Kind>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.custom.insert(crd.to_string(), (key.to_string(), kinds));
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The key of what the CRD `crd`'s served kinds were built from.
    pub fn custom_key(&self, crd: &str) -> Option<String> {
        self.read().custom.get(crd).map(|(k, _)| k.clone())
    }

    /// What the CRD `crd` serves.
    pub fn custom_kinds(&self, crd: &str) -> Vec<Kind> {
        self.read()
            .custom
            .get(crd)
            .map(|(_, ks)| ks.clone())
            .unwrap_or_default()
    }

    /// Names of the CRDs served.
    pub fn custom_names(&self) -> Vec<String> {
        self.read().custom.keys().cloned().collect()
    }

    /// Stop serving what `crd` served. Returns whether it served anything.
    pub fn remove_custom(&self, crd: &str) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let removed = inner.custom.remove(crd).is_some();
        if removed {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        removed
    }

    /// Whether a custom kind other than `crd`'s serves `group`/`plural`.
    pub fn plural_taken(&self, crd: &str, group: &str, plural: &str) -> bool {
        let inner = self.read();
        inner
            .builtin
            .iter()
            .any(|k| k.resource().group == group && k.resource().plural == plural)
            || inner
                .custom
                .iter()
                .filter(|(name, _)| name.as_str() != crd)
                .flat_map(|(_, (_, ks))| ks)
                .any(|k| k.resource().group == group && k.resource().plural == plural)
    }

    /// Replace the group/versions served by other servers (by APIService name).
    pub fn set_remote(&self, remote: BTreeMap<String, RemoteGroupVersion>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.remote != remote {
            inner.remote = remote;
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The group/versions served by other servers whose group this server
    /// does not serve, highest group priority first, then by group name;
    /// versions of a group by priority.
    pub fn remote(&self) -> Vec<RemoteGroupVersion> {
        let local = self.groups();
        let mut all: Vec<RemoteGroupVersion> = self
            .read()
            .remote
            .values()
            .filter(|r| !r.group.is_empty() && !local.contains(&r.group.as_str()))
            .cloned()
            .collect();
        let group_priority = |g: &str, all: &[RemoteGroupVersion]| {
            all.iter()
                .filter(|r| r.group == g)
                .map(|r| r.group_priority)
                .max()
                .unwrap_or(0)
        };
        let mut keyed: Vec<(i64, RemoteGroupVersion)> = all
            .iter()
            .map(|r| (group_priority(&r.group, &all), r.clone()))
            .collect();
        keyed.sort_by(|(ga, a), (gb, b)| {
            gb.cmp(ga)
                .then_with(|| a.group.cmp(&b.group))
                .then_with(|| b.version_priority.cmp(&a.version_priority))
                .then_with(|| a.version.cmp(&b.version))
        });
        all = keyed.into_iter().map(|(_, r)| r).collect();
        all
    }

    /// Changes with every change of what is served.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// Kubernetes' version priority: GA > beta > alpha, higher numbers first,
/// then anything else alphabetically.
pub fn sort_versions(versions: &mut [&str]) {
    fn key(v: &str) -> (u8, i64, i64, String) {
        let parse = |rest: &str| -> Option<(u8, i64, i64)> {
            let (major, rest) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()));
            let major: i64 = major.parse().ok()?;
            if rest.is_empty() {
                return Some((0, -major, 0));
            }
            for (tag, rank) in [("beta", 1u8), ("alpha", 2u8)] {
                if let Some(n) = rest.strip_prefix(tag) {
                    let minor: i64 = n.parse().ok()?;
                    return Some((rank, -major, -minor));
                }
            }
            None
        };
        match v.strip_prefix('v').and_then(parse) {
            Some((rank, a, b)) => (rank, a, b, String::new()),
            None => (3, 0, 0, v.to_string()),
        }
    }
    versions.sort_by_key(|v| key(v));
}

/// An owned description of a custom kind, before interning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomDescription {
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural.
    pub plural: String,
    /// Singular.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names.
    pub short_names: Vec<String>,
    /// Categories.
    pub categories: Vec<String>,
    /// Serves `/status`.
    pub status: bool,
    /// Serves `/scale`.
    pub scale: bool,
}

fn leak_str(s: &str) -> &'static str {
    static STRINGS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut strings = STRINGS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = strings.iter().find(|x| **x == s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    strings.push(leaked);
    leaked
}

fn leak_strs(v: &[String]) -> &'static [&'static str] {
    Box::leak(v.iter().map(|s| leak_str(s)).collect::<Vec<_>>().into_boxed_slice())
}

/// The interned `&'static Resource` for `c`.
pub fn intern(c: &CustomDescription) -> &'static Resource {
    static RESOURCES: Mutex<Vec<(CustomDescription, &'static Resource)>> = Mutex::new(Vec::new());
    let mut all = RESOURCES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, r)) = all.iter().find(|(k, _)| k == c) {
        return r;
    }
    let group = leak_str(&c.group);
    let version = leak_str(&c.version);
    let kind = leak_str(&c.kind);
    let mut subresources = Vec::new();
    if c.status {
        subresources.push(crate::kinds::status(kind, group, version));
    }
    if c.scale {
        subresources.push(crate::kinds::SCALE);
    }
    let subresources: &'static [Subresource] = Box::leak(subresources.into_boxed_slice());
    let r: &'static Resource = Box::leak(Box::new(Resource {
        group,
        version,
        kind,
        plural: leak_str(&c.plural),
        singular: leak_str(&c.singular),
        namespaced: c.namespaced,
        short_names: leak_strs(&c.short_names),
        categories: leak_strs(&c.categories),
        subresources,
        field_labels: None,
    }));
    all.push((c.clone(), r));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_prefers_them() {
        let mut v = vec!["v1alpha1", "foo", "v1beta1", "v2", "v1", "v1beta2", "v10"];
        sort_versions(&mut v);
        assert_eq!(v, ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn interning_returns_the_same_description() {
        let c = CustomDescription {
            group: "example.com".into(),
            version: "v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
            singular: "widget".into(),
            namespaced: true,
            short_names: vec!["wd".into()],
            categories: vec![],
            status: true,
            scale: false,
        };
        let a = intern(&c);
        let b = intern(&c.clone());
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.subresource("status").map(|s| s.kind), Some("Widget"));
    }

    #[test]
    fn catalog_serves_builtins_and_groups_in_order() {
        let c = Catalog::new();
        assert!(c.by_path("", "v1", "pods").is_some());
        assert_eq!(
            c.groups(),
            [
                "apps",
                "authentication.k8s.io",
                "authorization.k8s.io",
                "autoscaling",
                "batch",
                "policy",
                "rbac.authorization.k8s.io",
                "discovery.k8s.io",
                "coordination.k8s.io",
                "scheduling.k8s.io",
                "events.k8s.io",
                "apiextensions.k8s.io",
                "admissionregistration.k8s.io",
                "apiregistration.k8s.io",
                "storage.k8s.io",
                "certificates.k8s.io"
            ]
        );
    }
}
