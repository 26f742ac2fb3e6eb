//! Where a Service reference leads: `clientConfig.service` of admission
//! webhooks and `spec.service` of APIServices resolve through the Service
//! (its port) and its EndpointSlices (a ready endpoint address and the
//! matching target port), as Kubernetes' endpoint service resolver does
//! (`--enable-aggregator-routing`). The API server does not route cluster
//! IPs itself (no Service proxy runs on control-plane-only hosts), so it
//! always dials an endpoint.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use crate::kinds;
use crate::storage::store::{self, Store};

/// Why a Service reference does not resolve; the texts are Kubernetes'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No such Service.
    #[error("service \"{name}\" not found")]
    ServiceNotFound {
        /// Service name.
        name: String,
    },
    /// The Service does not expose the port.
    #[error("no service port {port} found for service \"{name}\"")]
    NoPort {
        /// Service name.
        name: String,
        /// Requested port.
        port: u16,
    },
    /// ExternalName Services cannot be resolved to endpoints.
    #[error("unsupported service type \"{0}\"")]
    UnsupportedType(String),
    /// No ready endpoint with the port.
    #[error("no endpoints available for service \"{name}\"")]
    NoEndpoints {
        /// Service name.
        name: String,
    },
    /// Storage failed.
    #[error("{0}")]
    Storage(String),
}

/// The Service `namespace/name`, if it exists.
pub async fn service(store: &Store, namespace: &str, name: &str) -> Result<Option<Value>, ResolveError> {
    let key = store::object_key(&kinds::service::RESOURCE, Some(namespace), name);
    store
        .get(&key)
        .await
        .map(|s| s.map(|s| s.object))
        .map_err(|e| ResolveError::Storage(e.message))
}

/// The EndpointSlices of Service `namespace/name` (label `kubernetes.io/service-name`).
pub async fn endpoint_slices(store: &Store, namespace: &str, name: &str) -> Result<Vec<Value>, ResolveError> {
    let prefix = store::collection_prefix(&kinds::endpointslice::RESOURCE, Some(namespace));
    let end = store::prefix_end(&prefix);
    let page = store
        .range(prefix.as_bytes(), &end, 0, 0)
        .await
        .map_err(|e| ResolveError::Storage(e.message))?;
    Ok(page
        .items
        .into_iter()
        .map(|(_, s)| s.object)
        .filter(|s| {
            s.pointer("/metadata/labels/kubernetes.io~1service-name")
                .and_then(Value::as_str)
                == Some(name)
        })
        .collect())
}

/// The name of the Service port numbered `port` (`""` when unnamed).
pub fn service_port_name(service: &Value, port: u16) -> Option<String> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)?
        .iter()
        .find(|p| p.get("port").and_then(Value::as_i64) == Some(i64::from(port)))
        .map(|p| p.get("name").and_then(Value::as_str).unwrap_or_default().to_string())
}

/// Ready endpoint addresses of `slices` with the target port named `port_name`.
pub fn ready_endpoints(slices: &[Value], port_name: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for slice in slices {
        let port = slice
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or_default() == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        for ep in slice.get("endpoints").and_then(Value::as_array).into_iter().flatten() {
            // As Kubernetes: an unknown readiness counts as ready.
            if ep.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            for addr in ep.get("addresses").and_then(Value::as_array).into_iter().flatten() {
                if let Some(ip) = addr.as_str().and_then(|a| a.parse::<IpAddr>().ok()) {
                    out.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    out
}

/// An address to dial for port `port` of Service `namespace/name`: a ready
/// endpoint, picked at random.
pub async fn resolve(store: &Store, namespace: &str, name: &str, port: u16) -> Result<SocketAddr, ResolveError> {
    let svc = service(store, namespace, name)
        .await?
        .ok_or_else(|| ResolveError::ServiceNotFound { name: name.to_string() })?;
    let ty = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer") {
        return Err(ResolveError::UnsupportedType(ty.to_string()));
    }
    let port_name = service_port_name(&svc, port).ok_or_else(|| ResolveError::NoPort {
        name: name.to_string(),
        port,
    })?;
    let slices = endpoint_slices(store, namespace, name).await?;
    let addrs = ready_endpoints(&slices, &port_name);
    if addrs.is_empty() {
        return Err(ResolveError::NoEndpoints { name: name.to_string() });
    }
    use rand::Rng;
    Ok(addrs[rand::thread_rng().gen_range(0..addrs.len())])
}

/// [`resolve`] as the admission crate's [`sluice_admission::ServiceResolver`].
pub struct EndpointResolver(pub Store);

impl sluice_admission::ServiceResolver for EndpointResolver {
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        port: u16,
    ) -> futures::future::BoxFuture<'a, Result<SocketAddr, String>> {
        Box::pin(async move { resolve(&self.0, namespace, name, port).await.map_err(|e| e.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_follow_the_service_port_name() {
        let svc = json!({"spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}});
        assert_eq!(service_port_name(&svc, 443).as_deref(), Some("https"));
        assert_eq!(service_port_name(&svc, 80), None);
        let slices = vec![json!({
            "ports": [{"name": "https", "port": 8443}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"]},
            ],
        })];
        assert_eq!(
            ready_endpoints(&slices, "https"),
            vec!["10.0.0.1:8443".parse().unwrap(), "10.0.0.3:8443".parse().unwrap()]
        );
        assert!(ready_endpoints(&slices, "http").is_empty());
    }
}
