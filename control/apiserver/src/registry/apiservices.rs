//! APIServices: Kubernetes' autoregister and availability controllers, run
//! inside the API server because what they decide changes what it routes
//! and lists in discovery.
//!
//! - Local APIServices: one per served group/version (`v1.` for the core
//!   group, `v1.apps`, ...; `spec.service` null), created at start with the
//!   label `kube-aggregator.kubernetes.io/automanaged: onstart` (`true` for
//!   custom resources' groups, which are removed when no longer served), as
//!   `kubectl get apiservices` shows them on Kubernetes. They are always
//!   `Available` (reason `Local`).
//! - Remote APIServices: checked on every pass (every few seconds and on
//!   every APIService change) the way Kubernetes' remote availability
//!   controller checks them: the Service exists (`ServiceNotFound`), has the
//!   port (`ServicePortError`), has EndpointSlices (`EndpointsNotFound`) with
//!   a ready endpoint for the port (`MissingEndpoints`), and answers
//!   `GET /apis/<group>/<version>` with a 2xx within 5 s
//!   (`FailedDiscoveryCheck`); else `Available=True`, `Passed`. The answer
//!   is also what discovery lists for that group/version (through the
//!   [`Catalog`](crate::kinds::Catalog)).
//!
//! [`ApiServices`] is the routing table the proxy (`http::aggregator`)
//! reads, and the transport it dials with: the Service's endpoint (see
//! [`crate::registry::resolver`]), TLS verified against `spec.caBundle`
//! for `<service>.<namespace>.svc` (or not at all with
//! `insecureSkipTLSVerify`), authenticated with a `front-proxy-client`
//! certificate from the cluster CA.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tracing::Instrument;

use crate::kinds::apiservice::ApiServices as Strategy;
use crate::kinds::catalog::RemoteGroupVersion;
use crate::kinds::Kind;
use crate::pki::ClusterCa;
use crate::registry::resolver::{self, ResolveError};
use crate::registry::{ListQuery, Registry, UpdateMode, WriteOptions};

/// User name of the API server's certificate towards extension API servers
/// (kubeadm's `front-proxy-client`).
pub const PROXY_CLIENT_USER: &str = "front-proxy-client";

const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";

/// A remote APIService, as the proxy needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    /// APIService name.
    pub name: String,
    /// Service namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// Service port.
    pub port: u16,
    /// PEM roots from `spec.caBundle` (empty: none).
    pub ca_bundle: Vec<u8>,
    /// `spec.insecureSkipTLSVerify`.
    pub insecure: bool,
    /// The `Available` condition is True.
    pub available: bool,
}

impl Remote {
    /// The name the server certificate must carry: `<service>.<namespace>.svc`.
    pub fn server_name(&self) -> String {
        format!("{}.{}.svc", self.service, self.namespace)
    }
}

/// The remote APIServices by group/version, and how to reach them.
pub struct ApiServices {
    registry: Arc<Registry>,
    identity: (Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>),
    table: RwLock<HashMap<(String, String), Remote>>,
}

/// Why a connection to a remote APIService could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The Service does not resolve to an endpoint.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Dialing, TLS or the HTTP handshake failed.
    #[error("{0}")]
    Dial(String),
}

impl ApiServices {
    /// The remote APIService serving `group`/`version`, if any.
    pub fn remote(&self, group: &str, version: &str) -> Option<Remote> {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(group.to_string(), version.to_string()))
            .cloned()
    }

    fn tls(&self, remote: &Remote, verify: bool) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if remote.insecure || !verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(crate::pki::AcceptAnyServerCert::new(provider)))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut remote.ca_bundle.as_slice()) {
                let cert = cert.map_err(|e| format!("unable to load caBundle: {e}"))?;
                roots.add(cert).map_err(|e| format!("unable to load caBundle: {e}"))?;
            }
            builder.with_root_certificates(roots)
        };
        let mut cfg = builder
            .with_client_auth_cert(self.identity.0.clone(), self.identity.1.clone_key())
            .map_err(|e| e.to_string())?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// An HTTP/1.1 connection to an endpoint of `remote`'s Service (TLS
    /// verified unless `verify` is false or the APIService skips it); the
    /// connection lives as long as the returned sender and its responses.
    pub async fn connect<B>(
        &self,
        remote: &Remote,
        verify: bool,
    ) -> Result<(hyper::client::conn::http1::SendRequest<B>, String), ConnectError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let addr = resolver::resolve(&self.registry.store, &remote.namespace, &remote.service, remote.port).await?;
        let url = format!("https://{addr}");
        let tls = self.tls(remote, verify).map_err(ConnectError::Dial)?;
        let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Dial(format!("dial tcp {addr}: i/o timeout")))?
            .map_err(|e| ConnectError::Dial(format!("dial tcp {addr}: connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(remote.server_name()).map_err(|e| ConnectError::Dial(e.to_string()))?;
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp),
        )
        .await
        .map_err(|_| ConnectError::Dial("net/http: TLS handshake timeout".into()))?
        .map_err(|e| ConnectError::Dial(format!("tls: {e}")))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Dial(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "aggregated API connection ended");
            }
        });
        Ok((sender, url))
    }
}

/// Issue the proxy client certificate, create the Local APIServices, and
/// keep every APIService's availability (and the routing table) current.
pub async fn start(registry: Arc<Registry>, cert_dir: &std::path::Path) -> anyhow::Result<Arc<ApiServices>> {
    let ca = ClusterCa::load_or_create(cert_dir)?;
    let (cert_pem, key_pem) = ca.issue_client(PROXY_CLIENT_USER, &[])?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())?.context("issued key missing")?;
    let services = Arc::new(ApiServices {
        registry: registry.clone(),
        identity: (certs, Arc::new(key)),
        table: RwLock::new(HashMap::new()),
    });
    if let Err(e) = reconcile_all(&services).await {
        tracing::warn!(error = %e, "first APIService pass failed");
    }
    let s = services.clone();
    tokio::spawn(run(s).instrument(tracing::info_span!("apiservice-controller")));
    Ok(services)
}

async fn run(services: Arc<ApiServices>) {
    let prefix = "/registry/apiregistration.k8s.io/";
    let mut watch = None;
    loop {
        if watch.is_none() {
            if let Ok(rev) = services.registry.store.current_revision().await {
                watch = services.registry.store.watch(prefix, rev + 1).await.ok();
            }
        }
        // Wake on an APIService change or every 5 s (availability of remote
        // servers is only learnt by asking them).
        let wait = tokio::time::sleep(Duration::from_secs(5));
        match watch.as_mut() {
            Some(w) => {
                tokio::select! {
                    m = w.message() => if !matches!(m, Ok(Some(_))) { watch = None },
                    _ = wait => {}
                }
            }
            None => wait.await,
        }
        if let Err(e) = reconcile_all(&services).await {
            tracing::warn!(error = %e, "APIService pass failed");
        }
    }
}

fn kind() -> Kind {
    Kind::Builtin(&Strategy)
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Kubernetes' priorities of its built-in group/versions (`aggregator.go`);
/// other groups (custom resources) get 1000/100.
fn priorities(group: &str, version: &str) -> (i64, i64) {
    match (group, version) {
        ("", "v1") => (18000, 1),
        ("apps", _) => (17800, 15),
        ("events.k8s.io", _) => (17750, 15),
        ("authentication.k8s.io", _) => (17700, 15),
        ("authorization.k8s.io", _) => (17600, 15),
        ("autoscaling", "v2") => (17500, 30),
        ("autoscaling", _) => (17500, 15),
        ("batch", _) => (17400, 15),
        ("certificates.k8s.io", _) => (17300, 15),
        ("networking.k8s.io", _) => (17200, 15),
        ("policy", _) => (17100, 15),
        ("rbac.authorization.k8s.io", _) => (17000, 15),
        ("storage.k8s.io", _) => (16800, 15),
        ("apiextensions.k8s.io", _) | ("admissionregistration.k8s.io", _) => (16700, 15),
        ("scheduling.k8s.io", _) => (16600, 15),
        ("coordination.k8s.io", _) => (16500, 15),
        ("node.k8s.io", _) => (16300, 15),
        ("discovery.k8s.io", _) => (16200, 15),
        ("flowcontrol.apiserver.k8s.io", _) => (16100, 21),
        ("apiregistration.k8s.io", _) => (18000, 15),
        _ => (1000, 100),
    }
}

/// The Local APIService for a served group/version.
pub fn local_apiservice(group: &str, version: &str, builtin: bool) -> Value {
    let (gp, vp) = priorities(group, version);
    json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {
            "name": format!("{version}.{group}"),
            "labels": {AUTOMANAGED: if builtin { "onstart" } else { "true" }},
        },
        "spec": {"group": group, "version": version, "groupPriorityMinimum": gp, "versionPriority": vp},
    })
}

/// The condition Kubernetes would set for a remote APIService, and the
/// discovery document it answered (when it did).
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// Condition reason.
    pub reason: &'static str,
    /// Condition message.
    pub message: String,
    /// The `APIResourceList` answered to the discovery check.
    pub discovery: Option<Value>,
}

impl Check {
    fn failed(status: &'static str, reason: &'static str, message: String) -> Self {
        Check {
            status,
            reason,
            message,
            discovery: None,
        }
    }
}

async fn check_remote(services: &ApiServices, apiservice: &Value, remote: &Remote) -> Check {
    let store = &services.registry.store;
    let (ns, name) = (&remote.namespace, &remote.service);
    let svc = match resolver::service(store, ns, name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Check::failed(
                "False",
                "ServiceNotFound",
                format!("service/{name} in {ns:?} is not present"),
            )
        }
        Err(e) => {
            return Check::failed(
                "Unknown",
                "ServiceAccessError",
                format!("service/{name} in {ns:?} cannot be checked due to: {e}"),
            )
        }
    };
    let ty = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if ty == "ClusterIP" {
        let Some(port_name) = resolver::service_port_name(&svc, remote.port) else {
            return Check::failed(
                "False",
                "ServicePortError",
                format!("service/{name} in {ns:?} is not listening on port {}", remote.port),
            );
        };
        let slices = match resolver::endpoint_slices(store, ns, name).await {
            Ok(s) => s,
            Err(e) => {
                return Check::failed(
                    "Unknown",
                    "EndpointsAccessError",
                    format!("service/{name} in {ns:?} cannot be checked due to: {e}"),
                )
            }
        };
        if slices.is_empty() {
            return Check::failed(
                "False",
                "EndpointsNotFound",
                format!("cannot find endpointslices for service/{name} in {ns:?}"),
            );
        }
        if resolver::ready_endpoints(&slices, &port_name).is_empty() {
            return Check::failed(
                "False",
                "MissingEndpoints",
                format!("endpointslices for service/{name} in {ns:?} have no addresses with port name {port_name:?}"),
            );
        }
    }
    let group = apiservice
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = apiservice
        .pointer("/spec/version")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let path = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    // Like Kubernetes: the check does not verify the server certificate.
    let attempt = async {
        let (mut sender, base) = services
            .connect::<Empty<Bytes>>(remote, false)
            .await
            .map_err(|e| (String::new(), e.to_string()))?;
        let url = format!("{base}{path}");
        let req = http::Request::get(path.as_str())
            .header(http::header::HOST, format!("{}:{}", remote.server_name(), remote.port))
            .header(http::header::ACCEPT, "application/json")
            .header("X-Remote-User", "system:kube-aggregator")
            .header("X-Remote-Group", "system:masters")
            .body(Empty::<Bytes>::new())
            .map_err(|e| (url.clone(), e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| (url.clone(), e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| (url.clone(), e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err((url.clone(), format!("bad status from {url}: {}", status.as_u16())));
        }
        Ok(serde_json::from_slice::<Value>(&body).ok())
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(discovery)) => Check {
            status: "True",
            reason: "Passed",
            message: "all checks passed".into(),
            discovery,
        },
        Ok(Err((url, e))) if e.starts_with("bad status") || url.is_empty() => {
            let message = if url.is_empty() {
                format!(
                    "failing or missing response from https://{}:{}{path}: {e}",
                    remote.server_name(),
                    remote.port
                )
            } else {
                e
            };
            Check::failed("False", "FailedDiscoveryCheck", message)
        }
        Ok(Err((url, e))) => Check::failed(
            "False",
            "FailedDiscoveryCheck",
            format!("failing or missing response from {url}: {e}"),
        ),
        Err(_) => Check::failed(
            "False",
            "FailedDiscoveryCheck",
            format!(
                "failing or missing response from https://{}:{}{path}: context deadline exceeded",
                remote.server_name(),
                remote.port
            ),
        ),
    }
}

/// `status.conditions` with the `Available` condition set; the transition
/// time only moves when the status does.
pub fn with_available(conditions: &[Value], status: &str, reason: &str, message: &str, now: &str) -> Vec<Value> {
    let mut out: Vec<Value> = conditions.to_vec();
    let old = out.iter().position(|c| c["type"] == "Available");
    let since = old
        .and_then(|i| (out[i]["status"] == status).then(|| out[i]["lastTransitionTime"].clone()))
        .filter(|t| !t.is_null())
        .unwrap_or(json!(now));
    let c = json!({"type": "Available", "status": status, "lastTransitionTime": since, "reason": reason, "message": message});
    match old {
        Some(i) => out[i] = c,
        None => out.push(c),
    }
    out
}

async fn set_available(registry: &Registry, obj: &Value, status: &str, reason: &str, message: &str) {
    let conditions = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let updated = with_available(&conditions, status, reason, message, &now());
    if updated == conditions {
        return;
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if status != "True" {
        tracing::info!(apiservice = name, reason, message, "APIService not available");
    }
    let result = registry
        .update(
            &kind(),
            None,
            name,
            UpdateMode::Status,
            WriteOptions::default(),
            |cur| {
                let mut n = cur.clone();
                n["status"] = json!({"conditions": updated.clone()});
                Ok(n)
            },
        )
        .await;
    if let Err(e) = result {
        tracing::debug!(apiservice = name, error = %e, "updating APIService status");
    }
}

fn remote_of(obj: &Value) -> Option<Remote> {
    let svc = obj.pointer("/spec/service").filter(|v| !v.is_null())?;
    use base64::Engine as _;
    let ca_bundle = obj
        .pointer("/spec/caBundle")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    Some(Remote {
        name: obj.pointer("/metadata/name").and_then(Value::as_str)?.to_string(),
        namespace: svc.get("namespace").and_then(Value::as_str)?.to_string(),
        service: svc.get("name").and_then(Value::as_str)?.to_string(),
        port: svc
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(443),
        ca_bundle,
        insecure: obj
            .pointer("/spec/insecureSkipTLSVerify")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        available: obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Available" && c["status"] == "True")),
    })
}

/// One pass: Local APIServices, availability, routing table, discovery.
async fn reconcile_all(services: &ApiServices) -> anyhow::Result<()> {
    let registry = &services.registry;
    let list = registry.list(&kind(), None, &ListQuery::default()).await?;
    let mut items = list["items"].as_array().cloned().unwrap_or_default();
    // Local APIServices for what this server serves.
    let mut served: Vec<(String, String, bool)> = Vec::new();
    for k in registry.catalog.kinds() {
        let r = k.resource();
        let entry = (
            r.group.to_string(),
            r.version.to_string(),
            matches!(k, Kind::Builtin(_)),
        );
        if !served.iter().any(|(g, v, _)| *g == entry.0 && *v == entry.1) {
            served.push(entry);
        }
    }
    for (group, version, builtin) in &served {
        let name = format!("{version}.{group}");
        if items
            .iter()
            .any(|i| i.pointer("/metadata/name").and_then(Value::as_str) == Some(name.as_str()))
        {
            continue;
        }
        match registry
            .create(
                &kind(),
                None,
                local_apiservice(group, version, *builtin),
                WriteOptions::default(),
            )
            .await
        {
            Ok(w) => items.push(w.object),
            Err(e) if e.code == 409 => {}
            Err(e) => tracing::warn!(apiservice = %name, error = %e, "creating Local APIService"),
        }
    }
    let mut table = HashMap::new();
    let mut remote_discovery = BTreeMap::new();
    let previous = registry.catalog.remote();
    for obj in &items {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let group = obj
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let version = obj
            .pointer("/spec/version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(mut remote) = remote_of(obj) else {
            let local = served.iter().any(|(g, v, _)| *g == group && *v == version);
            let automanaged = obj
                .pointer("/metadata/labels")
                .and_then(|l| l.get(AUTOMANAGED))
                .and_then(Value::as_str);
            if !local && automanaged == Some("true") {
                let _ = registry
                    .delete(&kind(), None, name, &json!({}), WriteOptions::default())
                    .await;
                continue;
            }
            set_available(registry, obj, "True", "Local", "Local APIServices are always available").await;
            continue;
        };
        let check = check_remote(services, obj, &remote).await;
        remote.available = check.status == "True";
        // Route before the condition is written: whoever reads the condition
        // finds requests for the group/version already answered accordingly
        // (503 while unavailable) rather than 404 until the pass ends.
        services
            .table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((group.clone(), version.clone()), remote.clone());
        set_available(registry, obj, check.status, check.reason, &check.message).await;
        let resources = match &check.discovery {
            Some(d) => d["resources"].as_array().cloned().unwrap_or_default(),
            None => previous
                .iter()
                .find(|p| p.group == group && p.version == version)
                .map(|p| p.resources.clone())
                .unwrap_or_default(),
        };
        remote_discovery.insert(
            name.to_string(),
            RemoteGroupVersion {
                group: group.clone(),
                version: version.clone(),
                group_priority: obj
                    .pointer("/spec/groupPriorityMinimum")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                version_priority: obj
                    .pointer("/spec/versionPriority")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                resources,
            },
        );
        table.insert((group, version), remote);
    }
    *services.table.write().unwrap_or_else(|p| p.into_inner()) = table;
    registry.catalog.set_remote(remote_discovery);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_apiservices_are_named_version_dot_group() {
        let core = local_apiservice("", "v1", true);
        assert_eq!(core["metadata"]["name"], "v1.");
        assert_eq!(core["spec"]["groupPriorityMinimum"], 18000);
        assert_eq!(core["metadata"]["labels"][AUTOMANAGED], "onstart");
        let apps = local_apiservice("apps", "v1", true);
        assert_eq!(apps["metadata"]["name"], "v1.apps");
        assert!(apps["spec"].get("service").is_none());
        assert!(crate::kinds::apiservice::RESOURCE.subresource("status").is_some());
        assert_eq!(
            local_apiservice("example.com", "v1", false)["metadata"]["labels"][AUTOMANAGED],
            "true"
        );
    }

    #[test]
    fn transition_time_moves_with_the_status_only() {
        let c = with_available(&[], "False", "ServiceNotFound", "m", "t1");
        assert_eq!(c[0]["lastTransitionTime"], "t1");
        let c2 = with_available(&c, "False", "MissingEndpoints", "m2", "t2");
        assert_eq!(c2[0]["lastTransitionTime"], "t1");
        assert_eq!(c2[0]["reason"], "MissingEndpoints");
        let c3 = with_available(&c2, "True", "Passed", "all checks passed", "t3");
        assert_eq!(c3[0]["lastTransitionTime"], "t3");
        assert_eq!(c3.len(), 1);
    }
}
