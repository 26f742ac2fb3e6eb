//! The Service environment variables the kubelet gives every container:
//! for each Service of the pod's namespace with a cluster IP (when
//! `enableServiceLinks` is true, the default) and always for the `kubernetes`
//! Service of `default`:
//!
//! ```text
//! REDIS_SERVICE_HOST=10.96.0.11          REDIS_PORT=tcp://10.96.0.11:6379
//! REDIS_SERVICE_PORT=6379                REDIS_PORT_6379_TCP=tcp://10.96.0.11:6379
//! REDIS_SERVICE_PORT_<PORT_NAME>=6379    REDIS_PORT_6379_TCP_PROTO=tcp
//!                                        REDIS_PORT_6379_TCP_PORT=6379
//!                                        REDIS_PORT_6379_TCP_ADDR=10.96.0.11
//! ```
//!
//! Names are upper-cased with `-` turned into `_`; the first port is the
//! Service's port. They come first in the environment, so the container's own
//! `env` and `envFrom` override them and `$(VAR)` can refer to them.
//!
//! The Services come from a watch of all of them ([`Services`], the
//! kubelet's service lister), not from a list per container start: in a
//! burst of pod starts that list was one API request per pod.

use k8s_openapi::api::core::v1::Service;
use kube::runtime::{reflector, watcher};
use kube::Api;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a container start waits for the first list of Services (then
/// it fails as the kubelet's does, and the next sync retries).
const FIRST_LIST_WAIT: Duration = Duration::from_secs(5);

/// Every Service of the cluster, kept by a watch.
#[derive(Clone)]
pub struct Services {
    store: reflector::Store<Service>,
}

impl Services {
    /// Starts watching every Service, for as long as the process runs.
    pub fn watch(client: kube::Client) -> Self {
        // Dropping the task's handle detaches it: it runs as long as noded does.
        let (store, _) = crate::watched_store(
            Api::<Service>::all(client),
            watcher::Config::default(),
            "services".into(),
        );
        Self { store }
    }

    /// Every Service, once the first list is in (after at most
    /// [`FIRST_LIST_WAIT`]; the kubelet's error otherwise).
    pub async fn all(&self) -> Result<Vec<Arc<Service>>, NotListedYet> {
        match tokio::time::timeout(FIRST_LIST_WAIT, self.store.wait_until_ready()).await {
            Ok(Ok(())) => Ok(self.store.state()),
            _ => Err(NotListedYet),
        }
    }
}

/// The Services have not been listed yet.
#[derive(Debug, thiserror::Error)]
#[error("services have not yet been read at least once, cannot construct envvars")]
pub struct NotListedYet;

fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The variables for a pod in `namespace` from `services` (every Service the
/// node knows of; those of other namespaces are skipped, except
/// `default/kubernetes`).
pub fn service_env<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    // By name: one namespace's Service wins over default/kubernetes of the same name.
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else { continue };
        if spec
            .cluster_ip
            .as_deref()
            .is_none_or(|ip| ip.is_empty() || ip == "None")
        {
            continue;
        }
        let name = svc.metadata.name.clone().unwrap_or_default();
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, svc);
        }
    }
    let mut env = Vec::new();
    for (name, svc) in chosen {
        let Some(spec) = svc.spec.as_ref() else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let prefix = env_name(&name);
        let ports = spec.ports.as_deref().unwrap_or_default();
        env.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        if let Some(first) = ports.first() {
            env.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                env.push((format!("{prefix}_SERVICE_PORT_{}", env_name(pn)), p.port.to_string()));
            }
        }
        if let Some(first) = ports.first() {
            let proto = first.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            env.push((format!("{prefix}_PORT"), format!("{proto}://{ip}:{}", first.port)));
        }
        for p in ports {
            let proto_uc = p.protocol.as_deref().unwrap_or("TCP").to_ascii_uppercase();
            let proto = proto_uc.to_ascii_lowercase();
            let base = format!("{prefix}_PORT_{}_{proto_uc}", p.port);
            env.push((base.clone(), format!("{proto}://{ip}:{}", p.port)));
            env.push((format!("{base}_PROTO"), proto));
            env.push((format!("{base}_PORT"), p.port.to_string()));
            env.push((format!("{base}_ADDR"), ip.clone()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec})).unwrap()
    }

    #[test]
    fn docker_link_variables_as_the_kubelet_writes_them() {
        let services = vec![
            svc(
                "shop",
                "redis-primary",
                json!({"clusterIP": "10.96.0.11",
                "ports": [{"name": "redis", "port": 6379, "protocol": "TCP"}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}]}),
            ),
            svc(
                "shop",
                "headless",
                json!({"clusterIP": "None", "ports": [{"port": 80}]}),
            ),
            svc(
                "other",
                "web",
                json!({"clusterIP": "10.96.0.12", "ports": [{"port": 80}]}),
            ),
            svc(
                "default",
                "kubernetes",
                json!({"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}),
            ),
        ];
        let env: BTreeMap<String, String> = service_env(&services, "shop", true).into_iter().collect();
        let want: BTreeMap<String, String> = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ("REDIS_PRIMARY_SERVICE_HOST", "10.96.0.11"),
            ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_REDIS", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_DNS_UDP", "53"),
            ("REDIS_PRIMARY_PORT", "tcp://10.96.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.96.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.96.0.11"),
            ("REDIS_PRIMARY_PORT_53_UDP", "udp://10.96.0.11:53"),
            ("REDIS_PRIMARY_PORT_53_UDP_PROTO", "udp"),
            ("REDIS_PRIMARY_PORT_53_UDP_PORT", "53"),
            ("REDIS_PRIMARY_PORT_53_UDP_ADDR", "10.96.0.11"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, want);
    }

    #[test]
    fn without_service_links_only_the_kubernetes_service() {
        let services = vec![
            svc(
                "shop",
                "web",
                json!({"clusterIP": "10.96.0.12", "ports": [{"port": 80}]}),
            ),
            svc(
                "default",
                "kubernetes",
                json!({"clusterIP": "10.96.0.1", "ports": [{"port": 443}]}),
            ),
        ];
        let env = service_env(&services, "shop", false);
        assert!(env.iter().all(|(k, _)| k.starts_with("KUBERNETES_")), "{env:?}");
        assert!(!env.is_empty());
    }
}
