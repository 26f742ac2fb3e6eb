//! `healthCheckNodePort` servers, as kube-proxy runs them: for every
//! LoadBalancer Service with `externalTrafficPolicy: Local` and a
//! `healthCheckNodePort`, HTTP on `<node>:<healthCheckNodePort>` answers
//! `200` while this node has a ready endpoint of the Service and `503`
//! otherwise, with kube-proxy's JSON body and headers, so an external load
//! balancer sends traffic only to nodes that can serve it without a hop.
//!
//! [`desired`] is the pure part (which ports, which counts); [`HealthServers`]
//! keeps one listener per port, updates counts in place and closes the
//! listeners of Services that went away.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tracing::{info, warn};

use crate::translate::SERVICE_NAME_LABEL;

/// One health check to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The `healthCheckNodePort`.
    pub port: u16,
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// Ready endpoints of the Service on this node (distinct addresses).
    pub local_endpoints: usize,
}

/// The health checks this node serves, by port.
pub fn desired(services: &[&Service], slices: &[&EndpointSlice], node_name: &str) -> Vec<HealthCheck> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else { continue };
        if spec.type_.as_deref() != Some("LoadBalancer") || spec.external_traffic_policy.as_deref() != Some("Local") {
            continue;
        }
        let Some(port) = spec
            .health_check_node_port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
        else {
            continue;
        };
        let namespace = svc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = svc.metadata.name.clone().unwrap_or_default();
        let local: BTreeSet<&str> = slices
            .iter()
            .filter(|s| {
                s.metadata.namespace.as_deref().unwrap_or("default") == namespace
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                        .is_some_and(|n| *n == name)
            })
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.node_name.as_deref() == Some(node_name))
            .filter(|e| {
                let c = e.conditions.as_ref();
                c.and_then(|c| c.ready).unwrap_or(true) && !c.and_then(|c| c.terminating).unwrap_or(false)
            })
            .flat_map(|e| e.addresses.iter().map(String::as_str))
            .collect();
        out.push(HealthCheck {
            port,
            namespace,
            name,
            local_endpoints: local.len(),
        });
    }
    out.sort_by_key(|h| h.port);
    out.dedup_by_key(|h| h.port);
    out
}

/// The response kube-proxy gives: status, headers and its JSON body.
pub fn response(namespace: &str, name: &str, local_endpoints: usize) -> Response {
    let status = if local_endpoints > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {local_endpoints},\n\t\"serviceProxyHealthy\": true\n}}",
        q(namespace),
        q(name)
    );
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

struct Server {
    service: (String, String),
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// The running health check listeners of this node.
#[derive(Default)]
pub struct HealthServers {
    servers: HashMap<u16, Server>,
}

impl HealthServers {
    /// Serve exactly `checks`: start listeners for new ports, update the
    /// counts of existing ones, close the rest. A port that cannot be bound
    /// is logged and retried on the next call.
    pub async fn sync(&mut self, checks: &[HealthCheck]) {
        let wanted: HashMap<u16, &HealthCheck> = checks.iter().map(|c| (c.port, c)).collect();
        self.servers.retain(|port, s| {
            let keep = wanted.get(port).is_some_and(|c| {
                (c.namespace.as_str(), c.name.as_str()) == (s.service.0.as_str(), s.service.1.as_str())
            });
            if !keep {
                s.task.abort();
                info!(port, service = %format!("{}/{}", s.service.0, s.service.1), "health check closed");
            }
            keep
        });
        for c in checks {
            if let Some(s) = self.servers.get(&c.port) {
                s.count.store(c.local_endpoints, Ordering::Relaxed);
                continue;
            }
            let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, c.port));
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    warn!(port = c.port, error = %e, "cannot listen for a healthCheckNodePort; retrying later");
                    continue;
                }
            };
            let count = Arc::new(AtomicUsize::new(c.local_endpoints));
            let (ns, name, n) = (c.namespace.clone(), c.name.clone(), count.clone());
            let app = axum::Router::new().fallback(move || {
                let (ns, name, n) = (ns.clone(), name.clone(), n.clone());
                async move { response(&ns, &name, n.load(Ordering::Relaxed)) }
            });
            let task = tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    warn!(error = %e, "health check server stopped");
                }
            });
            info!(port = c.port, service = %format!("{}/{}", c.namespace, c.name), "health check serving");
            self.servers.insert(
                c.port,
                Server {
                    service: (c.namespace.clone(), c.name.clone()),
                    count,
                    task,
                },
            );
        }
    }
}

impl Drop for HealthServers {
    fn drop(&mut self) {
        for s in self.servers.values() {
            s.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_local_ready_endpoints_of_policy_local_load_balancers_count() {
        let svc = |name: &str, policy: &str, hc: Option<i32>| -> Service {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy, "healthCheckNodePort": hc,
                         "clusterIP": "10.96.0.30", "ports": [{"port": 80}]}
            }))
            .unwrap()
        };
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.1.2"], "nodeName": "a", "conditions": {"ready": true}},
                {"addresses": ["10.244.1.3"], "nodeName": "a", "conditions": {"ready": false}},
                {"addresses": ["10.244.1.4"], "nodeName": "a", "conditions": {"ready": true, "terminating": true}},
                {"addresses": ["10.244.2.2"], "nodeName": "b", "conditions": {"ready": true}}
            ]
        }))
        .unwrap();
        let (web, cluster, none) = (
            svc("web", "Local", Some(32100)),
            svc("c", "Cluster", Some(32101)),
            svc("n", "Local", None),
        );
        let got = desired(&[&web, &cluster, &none], &[&slice], "a");
        assert_eq!(
            got,
            vec![HealthCheck {
                port: 32100,
                namespace: "shop".into(),
                name: "web".into(),
                local_endpoints: 1
            }]
        );
        assert_eq!(desired(&[&web], &[&slice], "c")[0].local_endpoints, 0);
    }

    #[tokio::test]
    async fn answers_like_kube_proxy() {
        let ok = response("shop", "web", 2);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(ok.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = axum::body::to_bytes(ok.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"service": {"namespace": "shop", "name": "web"}, "localEndpoints": 2, "serviceProxyHealthy": true})
        );
        assert_eq!(response("shop", "web", 0).status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
