//! Simulated Node objects: what a kubelet would register and report.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;

/// Label put on every simulated node, with the name prefix as value.
pub const NODESIM_LABEL: &str = "sluice.dev/nodesim";

/// What every simulated node looks like.
#[derive(Clone, Debug)]
pub struct NodeTemplate {
    /// Capacity and allocatable cpu.
    pub cpu: String,
    /// Capacity and allocatable memory.
    pub memory: String,
    /// Capacity and allocatable pods.
    pub pods: String,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
    /// Name prefix (value of [`NODESIM_LABEL`]).
    pub prefix: String,
    /// Spread the nodes over this many zones (0: no zone label), see [`zone_of`].
    pub zones: usize,
}

/// The zone label Kubernetes' topology spreading and volume topology use.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The zone of the node with registration index `index` among `zones` zones:
/// `zone-<index mod zones>`, so consecutive nodes land in different zones and
/// every zone gets the same number of nodes (±1). `None` without zones.
pub fn zone_of(index: usize, zones: usize) -> Option<String> {
    (zones > 0).then(|| format!("zone-{}", index % zones))
}

/// Parse a `--taint key[=value]:Effect` flag.
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("taint {s:?} must be key[=value]:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "taint effect {effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(format!("taint {s:?} has an empty key"));
    }
    Ok(Taint {
        key: key.into(),
        value,
        effect: effect.into(),
        time_added: None,
    })
}

/// Parse a `--label key=value` flag.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} must be key=value"))?;
    Ok((k.to_string(), v.to_string()))
}

impl NodeTemplate {
    fn resources(&self) -> BTreeMap<String, Quantity> {
        [("cpu", &self.cpu), ("memory", &self.memory), ("pods", &self.pods)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.clone())))
            .collect()
    }

    /// The Node object registered for `name`, the `index`-th node.
    pub fn node(&self, name: &str, index: usize) -> Node {
        let mut labels = self.labels.clone();
        if let Some(zone) = zone_of(index, self.zones) {
            labels.insert(ZONE_LABEL.into(), zone);
        }
        labels.insert("kubernetes.io/hostname".into(), name.into());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), "amd64".into());
        labels.insert(NODESIM_LABEL.into(), self.prefix.clone());
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: (!self.taints.is_empty()).then(|| self.taints.clone()),
                ..Default::default()
            }),
            status: Some(self.status(name, 0)),
        }
    }

    /// The node status a kubelet would report: capacity, Ready=True, addresses, node info.
    pub fn status(&self, name: &str, index: usize) -> NodeStatus {
        let now = Time(Timestamp::now());
        let cond = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now.clone()),
        };
        NodeStatus {
            capacity: Some(self.resources()),
            allocatable: Some(self.resources()),
            conditions: Some(vec![
                cond(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "simulated node has sufficient memory",
                ),
                cond(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "simulated node has no disk pressure",
                ),
                cond(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "simulated node has sufficient PID",
                ),
                cond(
                    "Ready",
                    "True",
                    "KubeletReady",
                    "simulated kubelet is posting ready status",
                ),
            ]),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: node_address(index),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name.into(),
                },
            ]),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                operating_system: "linux".into(),
                kubelet_version: "v1.32.0-sluice-nodesim".into(),
                kube_proxy_version: String::new(),
                container_runtime_version: "nodesim://0.1".into(),
                kernel_version: "simulated".into(),
                os_image: "Sluice simulated node".into(),
                machine_id: name.into(),
                system_uuid: name.into(),
                boot_id: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A documentation-range address standing in for the node's IP (never contacted).
pub fn node_address(index: usize) -> String {
    // 100.64.0.0/10 (shared address space): distinct per node, never routed by tests.
    let n = 100u32 << 24 | 64 << 16 | (index as u32 & 0x3f_ffff);
    std::net::Ipv4Addr::from(n).to_string()
}

/// Create the node if missing, then write its status (Ready=True, capacity).
/// Returns the registered node's name and UID.
pub async fn register(
    api: &Api<Node>,
    template: &NodeTemplate,
    name: &str,
    index: usize,
) -> Result<crate::leases::NodeRef> {
    match api.create(&PostParams::default(), &template.node(name, index)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e).with_context(|| format!("creating node {name}")),
    }
    let patch = serde_json::json!({ "status": template.status(name, index) });
    let node = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("writing status of node {name}"))?;
    Ok(crate::leases::NodeRef::from(&node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_flags() {
        let t = parse_taint("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let t = parse_taint("spot:PreferNoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value, t.effect.as_str()),
            ("spot", None, "PreferNoSchedule")
        );
        assert!(parse_taint("x=y").is_err());
        assert!(parse_taint("x=y:Sometimes").is_err());
        assert!(parse_taint("=y:NoSchedule").is_err());
    }

    #[test]
    fn zones_round_robin() {
        assert_eq!(zone_of(7, 0), None);
        let zones: Vec<_> = (0..5).map(|i| zone_of(i, 3).unwrap()).collect();
        assert_eq!(zones, ["zone-0", "zone-1", "zone-2", "zone-0", "zone-1"]);
        let t = NodeTemplate {
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: "110".into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            prefix: "sim".into(),
            zones: 3,
        };
        let labels = t.node("sim-4", 4).metadata.labels.unwrap();
        assert_eq!(labels[ZONE_LABEL], "zone-1");
        assert_eq!(labels["kubernetes.io/hostname"], "sim-4");
        let t = NodeTemplate { zones: 0, ..t };
        assert!(!t.node("sim-4", 4).metadata.labels.unwrap().contains_key(ZONE_LABEL));
    }
}
