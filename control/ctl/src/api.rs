//! Talking to the API server: connection from a kubeconfig, resource names
//! resolved through discovery, raw JSON requests and readable errors.
//!
//! ctl works on untyped JSON (like kubectl's unstructured objects) so any
//! served kind can be read, applied or deleted without code per kind; what a
//! name like `po`, `deploy` or `deployments.apps` means comes from the
//! server's aggregated discovery, never from a table compiled into ctl.

use anyhow::{anyhow, bail, Context, Result};
use http::{Method, Request};
use kube::client::APIGroupDiscoveryList;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;
use std::path::PathBuf;

/// Accept header asking for server-side printing, JSON as fallback.
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// One resource as discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group ("" for core).
    pub group: String,
    /// Version within the group.
    pub version: String,
    /// Kind of its objects.
    pub kind: String,
    /// Plural used in paths.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`po`, `deploy`).
    pub short_names: Vec<String>,
    /// Names of its subresources (`status`, `scale`).
    pub subresources: Vec<String>,
}

impl ResourceInfo {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// How kubectl names the type in messages: `pod`, `deployment.apps`.
    pub fn type_name(&self) -> String {
        let singular = if self.singular.is_empty() {
            self.kind.to_lowercase()
        } else {
            self.singular.clone()
        };
        if self.group.is_empty() {
            singular
        } else {
            format!("{singular}.{}", self.group)
        }
    }

    /// Path of the collection, in `namespace` when the resource is namespaced
    /// and one is given, across all namespaces otherwise.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }

    /// Path of one object.
    pub fn object_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection_path(Some(namespace)))
    }
}

/// Every resource a server serves, from its aggregated discovery.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Resources in discovery order (core first).
    pub resources: Vec<ResourceInfo>,
}

impl Catalog {
    /// Build the catalog from the `/api` and `/apis` aggregated documents.
    pub fn from_discovery(lists: &[APIGroupDiscoveryList]) -> Catalog {
        let mut resources = Vec::new();
        for list in lists {
            for group in &list.items {
                let group_name = group.metadata.as_ref().and_then(|m| m.name.clone()).unwrap_or_default();
                // The first version listed is the preferred one; keep only it.
                let Some(version) = group.versions.first() else {
                    continue;
                };
                for r in &version.resources {
                    let kind = r
                        .response_kind
                        .as_ref()
                        .and_then(|k| k.kind.clone())
                        .unwrap_or_default();
                    resources.push(ResourceInfo {
                        group: group_name.clone(),
                        version: version.version.clone().unwrap_or_default(),
                        kind,
                        plural: r.resource.clone().unwrap_or_default(),
                        singular: r.singular_resource.clone().unwrap_or_default(),
                        namespaced: r.scope.as_deref() == Some("Namespaced"),
                        short_names: r.short_names.clone(),
                        subresources: r.subresources.iter().filter_map(|s| s.subresource.clone()).collect(),
                    });
                }
            }
        }
        Catalog { resources }
    }

    /// Resolve what a user typed (`po`, `pods`, `pod`, `Pod`, `deployments.apps`).
    pub fn resolve(&self, name: &str) -> Result<&ResourceInfo> {
        let lower = name.to_lowercase();
        let (base, group) = match lower.split_once('.') {
            Some((b, g)) => (b.to_string(), Some(g.to_string())),
            None => (lower.clone(), None),
        };
        let matches = |r: &&ResourceInfo| {
            let group_ok = group
                .as_ref()
                .is_none_or(|g| &r.group == g || r.group.starts_with(&format!("{g}.")));
            group_ok
                && (r.plural == base
                    || r.singular == base
                    || r.kind.to_lowercase() == base
                    || r.short_names.contains(&base))
        };
        self.resources
            .iter()
            .find(matches)
            .ok_or_else(|| anyhow!("the server doesn't have a resource type \"{name}\""))
    }

    /// The resource serving objects of `apiVersion`/`kind` (from a manifest).
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Result<&ResourceInfo> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.resources
            .iter()
            .find(|r| r.group == group && r.kind == kind && r.version == version)
            .or_else(|| self.resources.iter().find(|r| r.group == group && r.kind == kind))
            .ok_or_else(|| anyhow!("no matches for kind \"{kind}\" in version \"{api_version}\""))
    }
}

/// Where the kubeconfig is: `--kubeconfig`, then `$KUBECONFIG` (first entry),
/// then `$SLUICE_HOME/admin.kubeconfig` (SLUICE_HOME defaults to
/// /var/lib/sluice), then `~/.kube/config`.
pub fn kubeconfig_path(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        if let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty()) {
            return Ok(first);
        }
    }
    let home = std::env::var_os("SLUICE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/sluice"));
    let sluice = home.join("admin.kubeconfig");
    if sluice.exists() {
        return Ok(sluice);
    }
    if let Some(user_home) = std::env::var_os("HOME") {
        let p = PathBuf::from(user_home).join(".kube/config");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or start a cluster with `cargo xtask up` (writes {})",
        sluice.display()
    )
}

/// A connection to the API server plus what discovery said it serves.
pub struct Api {
    /// The kube client (TLS and credentials from the kubeconfig).
    pub client: Client,
    /// Namespace used when none is given (`-n`, else the kubeconfig context's).
    pub namespace: String,
    /// The kubeconfig file in use.
    pub kubeconfig: PathBuf,
    catalog: Option<Catalog>,
}

impl Api {
    /// Connect using the kubeconfig at `path`.
    pub async fn connect(path: PathBuf, namespace: Option<String>) -> Result<Api> {
        let kubeconfig =
            Kubeconfig::read_from(&path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading kubeconfig {}", path.display()))?;
        let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).context("building the API client")?;
        Ok(Api {
            client,
            namespace,
            kubeconfig: path,
            catalog: None,
        })
    }

    /// The server's resources, fetched once.
    pub async fn catalog(&mut self) -> Result<&Catalog> {
        if self.catalog.is_none() {
            let core = self
                .client
                .list_core_api_versions_aggregated()
                .await
                .map_err(server_error)?;
            let groups = self.client.list_api_groups_aggregated().await.map_err(server_error)?;
            self.catalog = Some(Catalog::from_discovery(&[core, groups]));
        }
        Ok(self.catalog.as_ref().expect("set above"))
    }

    /// Resolve a resource name typed by the user.
    pub async fn resolve(&mut self, name: &str) -> Result<ResourceInfo> {
        Ok(self.catalog().await?.resolve(name)?.clone())
    }

    /// Resolve the resource of a manifest's apiVersion/kind.
    pub async fn for_kind(&mut self, api_version: &str, kind: &str) -> Result<ResourceInfo> {
        Ok(self.catalog().await?.for_kind(api_version, kind)?.clone())
    }

    /// Send a request and decode the JSON answer; a failure Status becomes a [`kube::Error::Api`].
    pub async fn request(&self, req: RawRequest<'_>) -> Result<Value, kube::Error> {
        self.client.request::<Value>(req.build()?).await
    }
}

/// A request under construction.
pub struct RawRequest<'a> {
    /// HTTP method.
    pub method: Method,
    /// Path without query.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(&'a str, String)>,
    /// Accept header.
    pub accept: &'a str,
    /// Content-Type and body.
    pub body: Option<(&'a str, Vec<u8>)>,
}

impl<'a> RawRequest<'a> {
    /// A GET of `path` answered as JSON.
    pub fn get(path: String) -> RawRequest<'a> {
        RawRequest {
            method: Method::GET,
            path,
            query: Vec::new(),
            accept: "application/json",
            body: None,
        }
    }

    /// A request with a body of the given content type.
    pub fn with_body(method: Method, path: String, content_type: &'a str, body: Vec<u8>) -> RawRequest<'a> {
        RawRequest {
            method,
            path,
            query: Vec::new(),
            accept: "application/json",
            body: Some((content_type, body)),
        }
    }

    /// Add a query parameter.
    pub fn param(mut self, key: &'a str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    /// The full URI path with its query string.
    pub fn uri(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.query {
            q.append_pair(k, v);
        }
        format!("{}?{}", self.path, q.finish())
    }

    /// The http request.
    pub fn build(&self) -> Result<Request<Vec<u8>>, kube::Error> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.uri())
            .header(http::header::ACCEPT, self.accept);
        let body = match &self.body {
            Some((ct, b)) => {
                builder = builder.header(http::header::CONTENT_TYPE, *ct);
                b.clone()
            }
            None => Vec::new(),
        };
        builder.body(body).map_err(kube::Error::HttpError)
    }
}

/// Whether an error is the server saying 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A server error as kubectl prints it: `Error from server (Reason): message`.
pub fn server_error(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => {
            let reason = if s.reason.is_empty() {
                format!("{}", s.code)
            } else {
                s.reason.clone()
            };
            anyhow!("Error from server ({reason}): {}", s.message)
        }
        other => anyhow!("cannot reach the API server: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let doc = serde_json::json!({
            "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": [
                {"metadata": {}, "versions": [{"version": "v1", "resources": [
                    {"resource": "pods", "responseKind": {"group": "", "version": "v1", "kind": "Pod"},
                     "scope": "Namespaced", "singularResource": "pod", "verbs": ["get"], "shortNames": ["po"],
                     "subresources": [{"subresource": "status", "verbs": ["get"]}]},
                    {"resource": "nodes", "responseKind": {"group": "", "version": "v1", "kind": "Node"},
                     "scope": "Cluster", "singularResource": "node", "verbs": ["get"], "shortNames": ["no"]}
                ]}]},
                {"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": [
                    {"resource": "deployments", "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                     "scope": "Namespaced", "singularResource": "deployment", "verbs": ["get"], "shortNames": ["deploy"],
                     "subresources": [{"subresource": "scale", "verbs": ["get"]}]}
                ]}]}
            ]
        });
        let list: APIGroupDiscoveryList = serde_json::from_value(doc).expect("discovery list");
        Catalog::from_discovery(&[list])
    }

    #[test]
    fn resolves_plural_singular_short_kind_and_group_qualified_names() {
        let c = catalog();
        for name in ["po", "pods", "pod", "Pod", "pods."] {
            let r = c.resolve(name.trim_end_matches('.')).expect(name);
            assert_eq!(r.kind, "Pod");
        }
        assert_eq!(c.resolve("deploy").expect("deploy").group, "apps");
        assert_eq!(c.resolve("deployments.apps").expect("qualified").kind, "Deployment");
        assert!(c.resolve("deployments.batch").is_err());
        assert!(c.resolve("widgets").is_err());
        assert_eq!(c.for_kind("apps/v1", "Deployment").expect("gvk").plural, "deployments");
        assert!(c.for_kind("v1", "Deployment").is_err());
    }

    #[test]
    fn paths_and_type_names() {
        let c = catalog();
        let d = c.resolve("deploy").expect("deploy");
        assert_eq!(d.type_name(), "deployment.apps");
        assert_eq!(
            d.object_path("default", "web"),
            "/apis/apps/v1/namespaces/default/deployments/web"
        );
        assert_eq!(d.collection_path(None), "/apis/apps/v1/deployments");
        assert_eq!(d.subresources, ["scale"]);
        let n = c.resolve("no").expect("nodes");
        assert_eq!(n.object_path("ignored", "n1"), "/api/v1/nodes/n1");
        assert_eq!(n.type_name(), "node");
    }

    #[test]
    fn query_strings_are_encoded() {
        let r = RawRequest::get("/api/v1/pods".into()).param("labelSelector", "app in (a,b)");
        assert_eq!(r.uri(), "/api/v1/pods?labelSelector=app+in+%28a%2Cb%29");
    }
}
