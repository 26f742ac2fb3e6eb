//! Service ClusterIP and NodePort allocation.
//!
//! Each allocated IP or port is one etcd key
//! (`/registry/ranges/serviceips/<ip>`, `/registry/ranges/servicenodeports/<port>`)
//! claimed in the SAME transaction as the Service write with a
//! create-if-absent compare, so several API servers never hand out the same
//! value; a lost race retries with another candidate. Keys are released in
//! the transaction that removes or changes the Service.

use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};

use crate::status::FieldError;

/// Prefix of allocated ClusterIP keys.
pub const IP_PREFIX: &str = "/registry/ranges/serviceips/";
/// Prefix of allocated NodePort keys.
pub const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// The configured ranges.
#[derive(Debug, Clone)]
pub struct Allocator {
    base: u32,
    prefix: u8,
    cidr: String,
    port_lo: u16,
    port_hi: u16,
}

/// The side keys a Service write claims and releases.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Keys to create (must be absent) with their owner value.
    pub claims: Vec<(String, String)>,
    /// Keys to delete.
    pub releases: Vec<String>,
    /// Claims the user asked for explicitly, with the error to report if taken.
    pub requested: Vec<(String, FieldError)>,
}

fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

fn port_key(port: i64) -> String {
    format!("{PORT_PREFIX}{port}")
}

impl Allocator {
    /// Parse `--service-cluster-ip-range` and `--service-node-port-range`.
    pub fn new(cidr: &str, ports: &str) -> anyhow::Result<Self> {
        let (addr, len) = cidr
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("service CIDR {cidr:?} must look like 10.96.0.0/12"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|e| anyhow::anyhow!("service CIDR {cidr:?}: {e} (only IPv4 is supported)"))?;
        let prefix: u8 = len.parse()?;
        anyhow::ensure!(
            (8..=30).contains(&prefix),
            "service CIDR prefix must be between /8 and /30"
        );
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        let (lo, hi) = ports
            .split_once('-')
            .ok_or_else(|| anyhow::anyhow!("node port range {ports:?} must look like 30000-32767"))?;
        let (port_lo, port_hi): (u16, u16) = (lo.trim().parse()?, hi.trim().parse()?);
        anyhow::ensure!(port_lo > 0 && port_lo <= port_hi, "invalid node port range {ports:?}");
        Ok(Self {
            base: u32::from(addr) & mask,
            prefix,
            cidr: cidr.to_string(),
            port_lo,
            port_hi,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// The IP reserved for the `kubernetes` Service (first usable address).
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// Whether `ip` is a usable address of the range (not network/broadcast).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n > self.base && n < self.base + self.size() - 1
    }

    fn random_ip(&self) -> Ipv4Addr {
        // Skip network (+0), the kubernetes Service (+1) and broadcast.
        let off = rand::thread_rng().gen_range(2..self.size() - 1);
        Ipv4Addr::from(self.base + off)
    }

    fn random_port(&self, avoid: &[i64]) -> i64 {
        let mut rng = rand::thread_rng();
        for _ in 0..64 {
            let p = rng.gen_range(self.port_lo..=self.port_hi) as i64;
            if !avoid.contains(&p) {
                return p;
            }
        }
        (self.port_lo as i64..=self.port_hi as i64)
            .find(|p| !avoid.contains(p))
            .unwrap_or(self.port_lo as i64)
    }

    fn port_in_range(&self, p: i64) -> bool {
        p >= self.port_lo as i64 && p <= self.port_hi as i64
    }

    /// Decide allocations for a Service create (`old` = None) or update,
    /// filling `spec.clusterIP(s)` and `nodePort`s into `new`.
    /// `taken_ports` are ports known to be allocated (used after lost races).
    pub fn plan(
        &self,
        old: Option<&Value>,
        new: &mut Value,
        owner: &str,
        taken_ports: &[i64],
    ) -> Result<Plan, Vec<FieldError>> {
        let mut plan = Plan::default();
        let mut errs = Vec::new();
        let old_ip = old
            .and_then(|o| o.pointer("/spec/clusterIP"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && *s != "None")
            .map(String::from);
        let old_ports: Vec<(i64, String, i64)> = old
            .and_then(|o| o.pointer("/spec/ports"))
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        let np = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0)?;
                        Some((
                            p.get("port").and_then(Value::as_i64).unwrap_or(0),
                            p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string(),
                            np,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(plan);
        };
        let ty = spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();

        // ClusterIP.
        let requested_ip = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let requested_ip = if requested_ip.is_empty() {
            spec.get("clusterIPs")
                .and_then(|v| v.get(0))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        } else {
            requested_ip
        };
        let mut new_ip: Option<String> = None;
        if ty == "ExternalName" {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        } else if requested_ip == "None" {
            spec.insert("clusterIP".into(), json!("None"));
            spec.insert("clusterIPs".into(), json!(["None"]));
        } else if requested_ip.is_empty() {
            let ip = match &old_ip {
                Some(ip) => ip.clone(),
                None => {
                    let ip = self.random_ip().to_string();
                    plan.claims.push((format!("{IP_PREFIX}{ip}"), owner.to_string()));
                    ip
                }
            };
            new_ip = Some(ip);
        } else {
            match requested_ip.parse::<Ipv4Addr>() {
                Err(_) => errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    &json!(requested_ip),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )),
                Ok(ip) if !self.contains(ip) => errs.push(FieldError::invalid(
                    "spec.clusterIPs",
                    &json!([requested_ip]),
                    format!("failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is {}", self.cidr),
                )),
                Ok(ip) => {
                    if old_ip.as_deref() != Some(requested_ip.as_str()) {
                        let key = ip_key(ip);
                        plan.claims.push((key.clone(), owner.to_string()));
                        plan.requested.push((
                            key,
                            FieldError::invalid(
                                "spec.clusterIPs",
                                &json!([requested_ip]),
                                format!("failed to allocate IP {ip}: provided IP is already allocated"),
                            ),
                        ));
                    }
                    new_ip = Some(requested_ip.clone());
                }
            }
        }
        if let Some(ip) = &new_ip {
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
            spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
        }
        if let Some(old) = &old_ip {
            if new_ip.as_deref() != Some(old.as_str()) {
                plan.releases.push(format!("{IP_PREFIX}{old}"));
            }
        }

        // NodePorts: every port of a NodePort Service; of a LoadBalancer
        // Service unless `allocateLoadBalancerNodePorts: false` (then only the
        // ones asked for or already held).
        let wants_node_ports = ty == "NodePort" || ty == "LoadBalancer";
        let allocates_node_ports = ty == "NodePort"
            || (ty == "LoadBalancer"
                && spec.get("allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false));
        let mut kept: Vec<i64> = Vec::new();
        let mut chosen: Vec<i64> = taken_ports.to_vec();
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for (i, p) in ports.iter_mut().enumerate() {
                let Some(pm) = p.as_object_mut() else { continue };
                if !wants_node_ports {
                    if pm.get("nodePort").and_then(Value::as_i64) == Some(0) {
                        pm.remove("nodePort");
                    }
                    continue;
                }
                let port = pm.get("port").and_then(Value::as_i64).unwrap_or(0);
                let proto = pm.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
                let asked = pm.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0);
                let np = match asked {
                    Some(np) => {
                        if !self.port_in_range(np) {
                            errs.push(FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                &json!(np),
                                format!(
                                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                                    self.port_lo, self.port_hi
                                ),
                            ));
                            continue;
                        }
                        if !old_ports.iter().any(|(_, _, o)| *o == np) && !kept.contains(&np) {
                            let key = port_key(np);
                            plan.claims.push((key.clone(), owner.to_string()));
                            plan.requested.push((
                                key,
                                FieldError::invalid(
                                    format!("spec.ports[{i}].nodePort"),
                                    &json!(np),
                                    "provided port is already allocated",
                                ),
                            ));
                        }
                        np
                    }
                    None => match old_ports.iter().find(|(op, opr, _)| *op == port && *opr == proto) {
                        Some((_, _, np)) if !kept.contains(np) => *np,
                        _ if !allocates_node_ports => {
                            pm.remove("nodePort");
                            continue;
                        }
                        _ => {
                            let np = self.random_port(&chosen);
                            plan.claims.push((port_key(np), owner.to_string()));
                            np
                        }
                    },
                };
                chosen.push(np);
                kept.push(np);
                pm.insert("nodePort".into(), json!(np));
            }
        }
        for (_, _, np) in &old_ports {
            if !kept.contains(np) {
                plan.releases.push(port_key(*np));
            }
        }

        // healthCheckNodePort: LoadBalancer Services with
        // `externalTrafficPolicy: Local` get one (kept across updates).
        let old_hc = old
            .and_then(|o| o.pointer("/spec/healthCheckNodePort"))
            .and_then(Value::as_i64)
            .filter(|n| *n != 0);
        let needs_hc =
            ty == "LoadBalancer" && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
        let asked_hc = spec
            .get("healthCheckNodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0);
        let mut new_hc = None;
        if needs_hc {
            let hc = match asked_hc {
                Some(hc) if !self.port_in_range(hc) => {
                    errs.push(FieldError::invalid(
                        "spec.healthCheckNodePort",
                        &json!(hc),
                        format!(
                            "provided port is not in the valid range. The range of valid ports is {}-{}",
                            self.port_lo, self.port_hi
                        ),
                    ));
                    None
                }
                Some(hc) if chosen.contains(&hc) && old_hc != Some(hc) => {
                    errs.push(FieldError::invalid(
                        "spec.healthCheckNodePort",
                        &json!(hc),
                        "provided port is already allocated",
                    ));
                    None
                }
                Some(hc) => {
                    if old_hc != Some(hc) {
                        let key = port_key(hc);
                        plan.claims.push((key.clone(), owner.to_string()));
                        plan.requested.push((
                            key,
                            FieldError::invalid(
                                "spec.healthCheckNodePort",
                                &json!(hc),
                                "provided port is already allocated",
                            ),
                        ));
                    }
                    Some(hc)
                }
                None => Some(match old_hc {
                    Some(hc) => hc,
                    None => {
                        let hc = self.random_port(&chosen);
                        plan.claims.push((port_key(hc), owner.to_string()));
                        hc
                    }
                }),
            };
            if let Some(hc) = hc {
                spec.insert("healthCheckNodePort".into(), json!(hc));
                new_hc = Some(hc);
            }
        } else if spec.get("healthCheckNodePort").and_then(Value::as_i64) == Some(0) {
            spec.remove("healthCheckNodePort");
        }
        if let Some(hc) = old_hc.filter(|hc| new_hc != Some(*hc)) {
            plan.releases.push(port_key(hc));
        }
        plan.claims.dedup_by(|a, b| a.0 == b.0);
        if errs.is_empty() {
            Ok(plan)
        } else {
            Err(errs)
        }
    }

    /// Keys to release when a Service is removed.
    pub fn release_all(&self, svc: &Value) -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str) {
            if !ip.is_empty() && ip != "None" {
                keys.push(format!("{IP_PREFIX}{ip}"));
            }
        }
        if let Some(ports) = svc.pointer("/spec/ports").and_then(Value::as_array) {
            for p in ports {
                if let Some(np) = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
                    keys.push(port_key(np));
                }
            }
        }
        if let Some(hc) = svc
            .pointer("/spec/healthCheckNodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        {
            keys.push(port_key(hc));
        }
        keys.dedup();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc() -> Allocator {
        Allocator::new("10.96.0.0/12", "30000-32767").unwrap()
    }

    #[test]
    fn allocates_ip_and_node_ports() {
        let a = alloc();
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        let plan = a.plan(None, &mut svc, "default/s", &[]).unwrap();
        assert_eq!(plan.claims.len(), 2);
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(a.contains(ip) && ip != a.kubernetes_ip());
        let np = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!((30000..=32767).contains(&np));
        // An update keeps both and claims nothing.
        let old = svc.clone();
        let mut upd = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        let plan = a.plan(Some(&old), &mut upd, "default/s", &[]).unwrap();
        assert!(plan.claims.is_empty() && plan.releases.is_empty(), "{plan:?}");
        assert_eq!(upd["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        // Switching to ClusterIP releases the port.
        let mut ci = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
        let plan = a.plan(Some(&old), &mut ci, "default/s", &[]).unwrap();
        assert_eq!(plan.releases, vec![format!("{PORT_PREFIX}{np}")]);
    }

    #[test]
    fn load_balancers_get_a_health_check_port_when_local_and_node_ports_unless_refused() {
        let a = alloc();
        let mut svc = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80, "protocol": "TCP"}]}});
        let plan = a.plan(None, &mut svc, "default/lb", &[]).unwrap();
        assert!(svc["spec"]["ports"][0].get("nodePort").is_none(), "{svc}");
        let hc = svc["spec"]["healthCheckNodePort"].as_i64().expect("health check port");
        assert!((30000..=32767).contains(&hc));
        assert_eq!(plan.claims.len(), 2, "the IP and the health check port: {plan:?}");
        // Kept on update; released when the policy turns to Cluster.
        let old = svc.clone();
        let mut upd = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80, "protocol": "TCP"}]}});
        let plan = a.plan(Some(&old), &mut upd, "default/lb", &[]).unwrap();
        assert!(plan.claims.is_empty() && plan.releases.is_empty(), "{plan:?}");
        assert_eq!(upd["spec"]["healthCheckNodePort"], json!(hc));
        let mut cluster = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
            "allocateLoadBalancerNodePorts": true, "ports": [{"port": 80, "protocol": "TCP"}]}});
        let plan = a.plan(Some(&old), &mut cluster, "default/lb", &[]).unwrap();
        assert!(cluster["spec"].get("healthCheckNodePort").is_none());
        assert_eq!(plan.releases, vec![format!("{PORT_PREFIX}{hc}")]);
        assert!(
            cluster["spec"]["ports"][0]["nodePort"].as_i64().is_some(),
            "allocated again: {cluster}"
        );
        // An asked-for port is claimed as such, and must be in range.
        let mut asked = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 32123, "ports": [{"port": 80, "protocol": "TCP"}]}});
        let plan = a.plan(None, &mut asked, "default/lb2", &[]).unwrap();
        assert!(
            plan.requested.iter().any(|(k, _)| *k == format!("{PORT_PREFIX}32123")),
            "{plan:?}"
        );
        let mut bad = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 80, "ports": [{"port": 80, "protocol": "TCP"}]}});
        let errs = a.plan(None, &mut bad, "default/lb3", &[]).unwrap_err();
        assert_eq!(errs[0].field, "spec.healthCheckNodePort");
    }

    #[test]
    fn rejects_out_of_range_requests() {
        let a = alloc();
        let mut svc =
            json!({"spec": {"clusterIP": "192.168.1.1", "type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}});
        let errs = a.plan(None, &mut svc, "x", &[]).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].message.contains("not in the valid range"));
        let mut headless = json!({"spec": {"clusterIP": "None"}});
        assert!(a.plan(None, &mut headless, "x", &[]).unwrap().claims.is_empty());
    }
}
