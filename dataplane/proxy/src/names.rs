//! Names for what the datapath holds only as addresses: which Service (and
//! port) a frontend is, which pod a backend address is. Built by the proxy
//! from the Services and EndpointSlices it already caches (an endpoint's
//! `targetRef` names its pod) and published after each reconcile, so the node
//! daemon can label its data-plane metrics and flow events without watching
//! anything more.

use crate::translate::{self, SERVICE_NAME_LABEL};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sluice_datapath::{Frontend, Protocol};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

/// A Service port, by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServicePortName {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The port's name (empty for an unnamed single port).
    pub port: String,
}

/// A pod, by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodName {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Frontends and endpoint addresses by name.
#[derive(Clone, Debug, Default)]
pub struct ServiceNames {
    frontends: HashMap<Frontend, ServicePortName>,
    pods: HashMap<Ipv4Addr, PodName>,
}

impl ServiceNames {
    /// The Service port a frontend serves.
    pub fn service(&self, frontend: &Frontend) -> Option<&ServicePortName> {
        self.frontends.get(frontend)
    }

    /// The pod with this address (as an endpoint of some Service).
    pub fn pod(&self, ip: &Ipv4Addr) -> Option<&PodName> {
        self.pods.get(ip)
    }

    /// Name every frontend the proxy programs for `services` (ClusterIP,
    /// NodePort, LoadBalancer and external IPs per port) and every endpoint
    /// address of `slices` with a pod `targetRef`.
    pub fn build(services: &[&Service], slices: &[&EndpointSlice]) -> ServiceNames {
        let mut out = ServiceNames::default();
        for svc in services {
            let Some(spec) = svc.spec.as_ref() else { continue };
            let namespace = svc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let name = svc.metadata.name.clone().unwrap_or_default();
            let cluster_ips: Vec<Ipv4Addr> = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .filter_map(|ip| ip.parse().ok())
                .collect();
            let externals: Vec<Ipv4Addr> = translate::load_balancer_ips(svc)
                .into_iter()
                .chain(spec.external_ips.iter().flatten().filter_map(|ip| ip.parse().ok()))
                .collect();
            for port in spec.ports.iter().flatten() {
                let proto = match port.protocol.as_deref().unwrap_or("TCP") {
                    "TCP" => Protocol::Tcp,
                    "UDP" => Protocol::Udp,
                    _ => continue,
                };
                let Ok(service_port) = u16::try_from(port.port) else {
                    continue;
                };
                let named = ServicePortName {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    port: port.name.clone().unwrap_or_default(),
                };
                for ip in &cluster_ips {
                    let f = Frontend {
                        proto,
                        ..Frontend::tcp(*ip, service_port)
                    };
                    out.frontends.insert(f, named.clone());
                }
                for ip in &externals {
                    out.frontends
                        .insert(Frontend::external(*ip, service_port, proto), named.clone());
                }
                if let Some(np) = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) {
                    out.frontends.insert(Frontend::node_port(np, proto), named.clone());
                }
            }
        }
        for slice in slices {
            if slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .is_none()
            {
                continue;
            }
            for ep in slice.endpoints.iter().flatten() {
                let Some(target) = ep.target_ref.as_ref().filter(|t| t.kind.as_deref() == Some("Pod")) else {
                    continue;
                };
                let (Some(name), namespace) = (target.name.clone(), target.namespace.clone()) else {
                    continue;
                };
                let namespace = namespace
                    .or_else(|| slice.metadata.namespace.clone())
                    .unwrap_or_else(|| "default".into());
                for ip in ep.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()) {
                    out.pods.insert(
                        ip,
                        PodName {
                            namespace: namespace.clone(),
                            name: name.clone(),
                        },
                    );
                }
            }
        }
        out
    }
}

/// Where the proxy publishes its latest [`ServiceNames`]; cheap to clone and read.
#[derive(Clone, Debug, Default)]
pub struct NamesPublisher {
    current: Arc<RwLock<Arc<ServiceNames>>>,
}

impl NamesPublisher {
    /// Replace the published names.
    pub fn publish(&self, names: ServiceNames) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(names);
    }

    /// The latest names (empty before the first reconcile).
    pub fn get(&self) -> Arc<ServiceNames> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frontends_and_endpoints_are_named() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "externalIPs": ["192.0.2.7"],
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"], "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"}},
                          {"addresses": ["10.244.0.6"]}]
        }))
        .unwrap();
        let names = ServiceNames::build(&[&svc], &[&slice]);
        let http = names
            .service(&Frontend::tcp(Ipv4Addr::new(10, 96, 0, 10), 80))
            .expect("ClusterIP named");
        assert_eq!(
            (http.namespace.as_str(), http.name.as_str(), http.port.as_str()),
            ("shop", "web", "http")
        );
        assert_eq!(
            names
                .service(&Frontend::node_port(30080, Protocol::Tcp))
                .map(|s| s.port.as_str()),
            Some("http")
        );
        assert!(names
            .service(&Frontend::external(Ipv4Addr::new(192, 0, 2, 7), 80, Protocol::Tcp))
            .is_some());
        assert_eq!(
            names
                .service(&Frontend::udp(Ipv4Addr::new(10, 96, 0, 10), 53))
                .map(|s| s.port.as_str()),
            Some("dns")
        );
        assert!(names
            .service(&Frontend::tcp(Ipv4Addr::new(10, 96, 0, 10), 53))
            .is_none());
        assert_eq!(
            names.pod(&Ipv4Addr::new(10, 244, 0, 5)).map(|p| p.name.as_str()),
            Some("web-1")
        );
        assert!(
            names.pod(&Ipv4Addr::new(10, 244, 0, 6)).is_none(),
            "no targetRef, no name"
        );
        let publisher = NamesPublisher::default();
        assert!(publisher
            .get()
            .service(&Frontend::node_port(30080, Protocol::Tcp))
            .is_none());
        publisher.publish(names);
        assert!(publisher
            .get()
            .service(&Frontend::node_port(30080, Protocol::Tcp))
            .is_some());
    }
}
