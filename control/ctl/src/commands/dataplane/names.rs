//! Names for the addresses in the maps: which Service a frontend is, which
//! pod a backend is.
//!
//! The maps hold only addresses and ports. With the API server reachable,
//! `ctl dataplane` lists Services and pods once per run and maps each
//! frontend back the way the Service proxy programmed it: `spec.clusterIPs`
//! and port → ClusterIP frontend, `nodePort` → NodePort frontend,
//! `spec.externalIPs` and `status.loadBalancer.ingress[].ip` and port →
//! external frontend; a backend's address is a pod's `status.podIPs`.
//! Without the API every name is simply absent and the addresses are shown.

use crate::api::{Api, RawRequest};
use serde_json::Value;
use sluice_datapath::{Frontend, Protocol, ServiceKind};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// A Service's name and one of its ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The port's name (empty for an unnamed single port).
    pub port: String,
}

impl ServiceName {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `namespace/name` or `namespace/name:port` for a named port.
    pub fn display(&self) -> String {
        if self.port.is_empty() {
            self.key()
        } else {
            format!("{}:{}", self.key(), self.port)
        }
    }
}

/// Frontends and backends by name, as far as the API told.
#[derive(Clone, Debug, Default)]
pub struct Names {
    frontends: HashMap<(ServiceKind, Ipv4Addr, u16, Protocol), ServiceName>,
    pods: HashMap<Ipv4Addr, String>,
    /// Whether the API answered (else every lookup is `None`).
    pub known: bool,
}

fn protocol(port: &Value) -> Option<Protocol> {
    match port.get("protocol").and_then(Value::as_str).unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        _ => None,
    }
}

fn strings(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

impl Names {
    /// Build from a ServiceList and a PodList (JSON as the API serves them).
    pub fn from_lists(services: &Value, pods: &Value) -> Names {
        let mut names = Names {
            known: true,
            ..Names::default()
        };
        for svc in services.get("items").and_then(Value::as_array).into_iter().flatten() {
            let meta = &svc["metadata"];
            let (Some(namespace), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) else {
                continue;
            };
            let spec = &svc["spec"];
            let mut cluster_ips: Vec<&str> = strings(spec.get("clusterIPs")).collect();
            if cluster_ips.is_empty() {
                cluster_ips.extend(spec.get("clusterIP").and_then(Value::as_str));
            }
            let mut external: Vec<&str> = strings(spec.get("externalIPs")).collect();
            for ingress in svc
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                external.extend(ingress.get("ip").and_then(Value::as_str));
            }
            for port in spec.get("ports").and_then(Value::as_array).into_iter().flatten() {
                let Some(proto) = protocol(port) else { continue };
                let service = ServiceName {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    port: port.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                };
                let Some(p) = port
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                else {
                    continue;
                };
                let mut add = |kind, ip: Ipv4Addr, port| {
                    names.frontends.insert((kind, ip, port, proto), service.clone());
                };
                for ip in cluster_ips.iter().filter_map(|ip| ip.parse().ok()) {
                    add(ServiceKind::ClusterIp, ip, p);
                }
                for ip in external.iter().filter_map(|ip| ip.parse().ok()) {
                    add(ServiceKind::External, ip, p);
                }
                if let Some(np) = port
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                {
                    add(ServiceKind::NodePort, Ipv4Addr::UNSPECIFIED, np);
                }
            }
        }
        for pod in pods.get("items").and_then(Value::as_array).into_iter().flatten() {
            let meta = &pod["metadata"];
            let (Some(namespace), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) else {
                continue;
            };
            if pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
                continue; // its address is the node's, shared by every host-network pod
            }
            let mut ips: Vec<&str> = pod
                .pointer("/status/podIPs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| i.get("ip").and_then(Value::as_str))
                .collect();
            ips.extend(pod.pointer("/status/podIP").and_then(Value::as_str));
            for ip in ips.iter().filter_map(|ip| ip.parse().ok()) {
                names.pods.insert(ip, format!("{namespace}/{name}"));
            }
        }
        names
    }

    /// Ask the API server (a few seconds at most); empty names if it does not answer.
    pub async fn fetch(api: Option<&Api>) -> Names {
        let Some(api) = api else {
            return Names::default();
        };
        let get = |path: &str| {
            let req = RawRequest::get(path.to_string());
            async move { tokio::time::timeout(Duration::from_secs(5), api.request(req)).await }
        };
        match (get("/api/v1/services").await, get("/api/v1/pods").await) {
            (Ok(Ok(services)), Ok(Ok(pods))) => Names::from_lists(&services, &pods),
            _ => Names::default(),
        }
    }

    /// The Service (and port) a frontend belongs to.
    pub fn service(&self, f: &Frontend) -> Option<&ServiceName> {
        self.frontends.get(&(f.kind, f.ip, f.port, f.proto))
    }

    /// The pod (`namespace/name`) with a backend's address.
    pub fn pod(&self, addr: &SocketAddrV4) -> Option<&str> {
        self.pods.get(addr.ip()).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frontends_and_backends_map_back_to_services_and_pods() {
        let services = json!({"items": [{
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "externalIPs": ["192.0.2.7"],
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.4"}]}}
        }, {
            "metadata": {"namespace": "shop", "name": "headless"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
        }]});
        let pods = json!({"items": [
            {"metadata": {"namespace": "shop", "name": "web-1"}, "status": {"podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}]}},
            {"metadata": {"namespace": "kube-system", "name": "hostnet"}, "spec": {"hostNetwork": true}, "status": {"podIP": "10.0.0.1"}}
        ]});
        let names = Names::from_lists(&services, &pods);
        let vip = Frontend::tcp("10.96.0.10".parse().unwrap(), 80);
        assert_eq!(
            names.service(&vip).map(ServiceName::display).as_deref(),
            Some("shop/web:http")
        );
        let np = Frontend::node_port(30080, Protocol::Tcp);
        assert_eq!(names.service(&np).map(ServiceName::key).as_deref(), Some("shop/web"));
        let lb = Frontend::external("198.51.100.4".parse().unwrap(), 80, Protocol::Tcp);
        assert!(names.service(&lb).is_some());
        let ext = Frontend::external("192.0.2.7".parse().unwrap(), 80, Protocol::Tcp);
        assert!(names.service(&ext).is_some());
        let dns = Frontend::udp("10.96.0.10".parse().unwrap(), 53);
        assert_eq!(names.service(&dns).map(|s| s.port.as_str()), Some("dns"));
        assert!(names
            .service(&Frontend::tcp("10.96.0.10".parse().unwrap(), 53))
            .is_none());
        assert_eq!(names.pod(&"10.244.0.5:8080".parse().unwrap()), Some("shop/web-1"));
        assert_eq!(
            names.pod(&"10.0.0.1:8080".parse().unwrap()),
            None,
            "host-network pods name no address"
        );
        assert!(Names::default().service(&vip).is_none());
    }
}
