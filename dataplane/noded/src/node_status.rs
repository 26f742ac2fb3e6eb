//! The Node object: registration, capacity, addresses, conditions.
//!
//! noded creates its Node when missing (never overwriting `spec`, which node
//! IPAM owns through `spec.podCIDR`), then keeps `status` current through the
//! status subresource: capacity measured from the machine, allocatable =
//! capacity minus the reservations for the system and noded itself, the
//! node's addresses, `nodeInfo`, and the conditions the scheduler and the
//! node lifecycle controller read. `NetworkUnavailable` stays True until the
//! node's pod network is configured (podCIDR known, CNI config written);
//! MemoryPressure, DiskPressure and PIDPressure come from [`crate::eviction`]
//! with the kubelet's reasons and messages.
//! `images` lists what the runtime holds as the kubelet reports it (largest
//! first, at most 50 images, each by its repo digests then repo tags, at most
//! 5 names), which the scheduler's ImageLocality scores.

use k8s_openapi::api::core::v1::{ContainerImage, Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;

/// What the node keeps for itself and the system, subtracted from capacity.
#[derive(Debug, Clone)]
pub struct Reservations {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

impl Default for Reservations {
    fn default() -> Self {
        Self {
            cpu_millis: 100,
            memory_bytes: 256 << 20,
        }
    }
}

/// The machine as measured now.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: u64,
    /// Physical memory in bytes.
    pub memory_bytes: u64,
    /// Maximum pods on this node.
    pub max_pods: u64,
}

impl Machine {
    /// Measure CPUs and memory (`/proc/meminfo`).
    pub fn measure(max_pods: u64) -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| parse_mem_total(&text))
            .unwrap_or(0);
        Self {
            cpus,
            memory_bytes,
            max_pods,
        }
    }

    /// `status.capacity`.
    pub fn capacity(&self) -> BTreeMap<String, Quantity> {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(self.cpus.to_string())),
            (
                "memory".to_string(),
                Quantity(format!("{}Ki", self.memory_bytes / 1024)),
            ),
            ("pods".to_string(), Quantity(self.max_pods.to_string())),
        ])
    }

    /// `status.allocatable`: capacity minus `reserved` (never below zero).
    pub fn allocatable(&self, reserved: &Reservations) -> BTreeMap<String, Quantity> {
        let cpu_millis = (self.cpus * 1000).saturating_sub(reserved.cpu_millis);
        let memory = self.memory_bytes.saturating_sub(reserved.memory_bytes);
        BTreeMap::from([
            ("cpu".to_string(), Quantity(format!("{cpu_millis}m"))),
            ("memory".to_string(), Quantity(format!("{}Ki", memory / 1024))),
            ("pods".to_string(), Quantity(self.max_pods.to_string())),
        ])
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The node's observed health, turned into conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The container runtime answers and reports RuntimeReady.
    pub runtime_ready: bool,
    /// The pod network is configured (podCIDR known, CNI config loaded).
    pub network_ready: bool,
    /// The pressure conditions measured by [`crate::eviction`].
    pub pressure: crate::eviction::Pressure,
}

/// The node conditions for `health`, stamped `now` (transition times kept from `previous`).
pub fn conditions(health: Health, previous: &[NodeCondition], now: &Time) -> Vec<NodeCondition> {
    let ready = health.runtime_ready && health.network_ready;
    let (ready_reason, ready_message) = match (health.runtime_ready, health.network_ready) {
        (true, true) => ("KubeletReady", "noded is posting ready status"),
        (false, _) => ("ContainerRuntimeNotReady", "the container runtime is not ready"),
        (true, false) => (
            "NetworkNotReady",
            "the pod network is not configured yet (waiting for spec.podCIDR)",
        ),
    };
    let wanted = [
        ("Ready", ready, ready_reason, ready_message),
        if health.pressure.memory {
            (
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            (
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if health.pressure.disk {
            (
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            (
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        if health.pressure.pid {
            (
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            (
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            )
        },
        (
            "NetworkUnavailable",
            !health.network_ready,
            if health.network_ready {
                "RouteCreated"
            } else {
                "NoRouteCreated"
            },
            if health.network_ready {
                "the pod network is configured"
            } else {
                "the pod network is not configured yet"
            },
        ),
    ];
    wanted
        .into_iter()
        .map(|(kind, status, reason, message)| {
            let status = if status { "True" } else { "False" }.to_string();
            let transition = previous
                .iter()
                .find(|c| c.type_ == kind && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            NodeCondition {
                type_: kind.to_string(),
                status,
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(transition),
            }
        })
        .collect()
}

/// Most images a node reports (the kubelet's default `--node-status-max-images`).
pub const MAX_IMAGES: usize = 50;
/// Most names reported per image (the kubelet's `MaxNamesPerImageInNodeStatus`).
pub const MAX_NAMES_PER_IMAGE: usize = 5;

/// `status.images` from the runtime's image list, as the kubelet builds it:
/// sorted by size, largest first (equal sizes by id, descending), the first
/// [`MAX_IMAGES`], each named by its repo digests then its repo tags (the
/// first [`MAX_NAMES_PER_IMAGE`]) with its size in bytes.
pub fn images(mut list: Vec<crate::cri::api::Image>) -> Vec<ContainerImage> {
    list.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| b.id.cmp(&a.id)));
    list.into_iter()
        .take(MAX_IMAGES)
        .map(|image| {
            let names: Vec<String> = image
                .repo_digests
                .into_iter()
                .chain(image.repo_tags)
                .take(MAX_NAMES_PER_IMAGE)
                .collect();
            ContainerImage {
                names: Some(names),
                size_bytes: Some(i64::try_from(image.size).unwrap_or(i64::MAX)),
            }
        })
        .collect()
}

/// Static facts about this node.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// Node name (also `kubernetes.io/hostname`).
    pub name: String,
    /// InternalIP addresses.
    pub internal_ips: Vec<String>,
    /// `nodeInfo.containerRuntimeVersion`, e.g. `containerd://1.6.20`.
    pub runtime_version: String,
}

/// Create the Node if it does not exist yet; returns the current object.
pub async fn register(nodes: &Api<Node>, identity: &NodeIdentity) -> kube::Result<Node> {
    if let Some(node) = nodes.get_opt(&identity.name).await? {
        return Ok(node);
    }
    let node = Node {
        metadata: ObjectMeta {
            name: Some(identity.name.clone()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), identity.name.clone()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("kubernetes.io/arch".to_string(), go_arch().to_string()),
            ])),
            ..Default::default()
        },
        ..Default::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(node) => Ok(node),
        // Raced with another registration (or a restart): use what is there.
        Err(kube::Error::Api(status)) if status.code == 409 => nodes.get(&identity.name).await,
        Err(err) => Err(err),
    }
}

/// The Go architecture name Kubernetes uses.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The full `status` noded posts.
pub fn status(
    identity: &NodeIdentity,
    machine: &Machine,
    reserved: &Reservations,
    conditions: Vec<NodeCondition>,
    images: Vec<ContainerImage>,
) -> NodeStatus {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut addresses: Vec<NodeAddress> = identity
        .internal_ips
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".into(),
            address: ip.clone(),
        })
        .collect();
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: identity.name.clone(),
    });
    NodeStatus {
        capacity: Some(machine.capacity()),
        allocatable: Some(machine.allocatable(reserved)),
        conditions: Some(conditions),
        addresses: Some(addresses),
        images: (!images.is_empty()).then_some(images),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            operating_system: "linux".into(),
            kernel_version: kernel,
            os_image: "Linux".into(),
            container_runtime_version: identity.runtime_version.clone(),
            kubelet_version: concat!("v1.32.0-sluice.", env!("CARGO_PKG_VERSION")).into(),
            kube_proxy_version: String::new(),
            machine_id: std::fs::read_to_string("/etc/machine-id")
                .unwrap_or_default()
                .trim()
                .into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether posting `new` would change what the API server holds (`current`,
/// None when the Node has no status): the kubelet's `nodeStatusHasChanged`.
/// Conditions are compared by type without their heartbeat times, which
/// every post renews; only the fields noded writes are compared, since a
/// merge patch leaves the others (`volumesAttached`, ...) alone. Pure.
pub fn changed(current: Option<&NodeStatus>, new: &NodeStatus) -> bool {
    let Some(current) = current else {
        return true;
    };
    let seconds = |t: &Option<Time>| t.as_ref().map(|t| t.0.as_second());
    let same_condition = |a: &NodeCondition, b: &NodeCondition| {
        a.status == b.status
            && a.reason == b.reason
            && a.message == b.message
            && seconds(&a.last_transition_time) == seconds(&b.last_transition_time)
    };
    let conditions_same = new.conditions.iter().flatten().all(|c| {
        current
            .conditions
            .iter()
            .flatten()
            .find(|held| held.type_ == c.type_)
            .is_some_and(|held| same_condition(held, c))
    });
    !(conditions_same
        && current.capacity == new.capacity
        && current.allocatable == new.allocatable
        && current.addresses == new.addresses
        && current.images == new.images
        && current.node_info == new.node_info)
}

/// The strategic merge patch noded posts, as the kubelet's: conditions
/// merge by type, so conditions other agents own (a node-problem-detector's
/// `KernelDeadlock`) stay; addresses and images are noded's own and
/// replace what is there (an image list no longer true is cleared);
/// capacity and allocatable merge by key, so extended resources someone
/// advertised stay. Pure.
pub fn status_patch(status: &NodeStatus) -> serde_json::Value {
    let mut patch = serde_json::json!({ "status": status });
    if let Some(addresses) = patch["status"]["addresses"].as_array_mut() {
        addresses.push(serde_json::json!({"$patch": "replace"}));
    }
    if status.images.is_none() {
        patch["status"]["images"] = serde_json::Value::Null;
    }
    patch
}

/// Post `status` through the status subresource ([`status_patch`]).
pub async fn post_status(nodes: &Api<Node>, name: &str, status: NodeStatus) -> kube::Result<Node> {
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(status_patch(&status)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_patch_merges_conditions_by_type_and_replaces_addresses() {
        let status = NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            addresses: Some(vec![k8s_openapi::api::core::v1::NodeAddress {
                type_: "InternalIP".into(),
                address: "10.0.0.1".into(),
            }]),
            ..Default::default()
        };
        let patch = status_patch(&status);
        assert_eq!(
            patch["status"]["conditions"],
            serde_json::json!([{"type": "Ready", "status": "True"}])
        );
        assert_eq!(
            patch["status"]["addresses"],
            serde_json::json!([{"type": "InternalIP", "address": "10.0.0.1"}, {"$patch": "replace"}])
        );
        assert!(patch["status"]["images"].is_null() && patch["status"].get("images").is_some());
    }

    #[test]
    fn allocatable_is_capacity_minus_reservations() {
        let machine = Machine {
            cpus: 2,
            memory_bytes: 4 << 30,
            max_pods: 110,
        };
        let alloc = machine.allocatable(&Reservations {
            cpu_millis: 100,
            memory_bytes: 256 << 20,
        });
        assert_eq!(alloc["cpu"].0, "1900m");
        assert_eq!(alloc["memory"].0, format!("{}Ki", ((4u64 << 30) - (256 << 20)) / 1024));
        assert_eq!(machine.capacity()["cpu"].0, "2");
    }

    #[test]
    fn images_are_the_largest_fifty_named_by_digests_then_tags() {
        let image = |id: &str, size: u64, digests: &[&str], tags: &[&str]| crate::cri::api::Image {
            id: id.into(),
            size,
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let mut list: Vec<_> = (0..60)
            .map(|i| image(&format!("sha256:{i:02}"), 1000 + i, &[], &[]))
            .collect();
        list.push(image(
            "sha256:big",
            1 << 30,
            &["docker.io/library/nginx@sha256:d1"],
            &["docker.io/library/nginx:1.27", "a:1", "b:1", "c:1", "d:1"],
        ));
        list.push(image("sha256:zz", 1000, &[], &["tie-high-id:1"]));
        let out = images(list);
        assert_eq!(out.len(), MAX_IMAGES);
        assert_eq!(
            out[0].names.as_deref().unwrap(),
            [
                "docker.io/library/nginx@sha256:d1",
                "docker.io/library/nginx:1.27",
                "a:1",
                "b:1",
                "c:1"
            ]
        );
        assert_eq!(out[0].size_bytes, Some(1 << 30));
        assert_eq!(out[1].size_bytes, Some(1059));
        assert!(out.windows(2).all(|w| w[0].size_bytes >= w[1].size_bytes));
        assert!(
            !out.iter()
                .any(|i| i.names.as_deref() == Some(&["tie-high-id:1".to_string()][..])),
            "the smallest images are left out"
        );
    }

    #[test]
    fn meminfo_total_is_parsed_in_bytes() {
        assert_eq!(
            parse_mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000 * 1024)
        );
    }

    #[test]
    fn network_unavailable_until_configured_and_transition_times_kept() {
        let t0 = Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap());
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(2_000).unwrap());
        let before = conditions(
            Health {
                runtime_ready: true,
                network_ready: false,
                pressure: Default::default(),
            },
            &[],
            &t0,
        );
        let get = |cs: &[NodeCondition], t: &str| cs.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(get(&before, "Ready").status, "False");
        assert_eq!(get(&before, "NetworkUnavailable").status, "True");
        let after = conditions(
            Health {
                runtime_ready: true,
                network_ready: true,
                pressure: Default::default(),
            },
            &before,
            &t1,
        );
        assert_eq!(get(&after, "Ready").status, "True");
        assert_eq!(get(&after, "Ready").last_transition_time, Some(t1.clone()));
        assert_eq!(
            get(&after, "MemoryPressure").last_transition_time,
            Some(t0),
            "unchanged condition keeps its time"
        );
        assert_eq!(get(&after, "MemoryPressure").last_heartbeat_time, Some(t1));
        assert_eq!(
            get(&after, "MemoryPressure").message.as_deref(),
            Some("kubelet has sufficient memory available")
        );
        let t2 = Time(k8s_openapi::jiff::Timestamp::from_second(3_000).unwrap());
        let pressed = conditions(
            Health {
                runtime_ready: true,
                network_ready: true,
                pressure: crate::eviction::Pressure {
                    memory: true,
                    disk: false,
                    pid: true,
                },
            },
            &after,
            &t2,
        );
        let memory = get(&pressed, "MemoryPressure");
        assert_eq!(
            (
                memory.status.as_str(),
                memory.reason.as_deref(),
                memory.message.as_deref()
            ),
            (
                "True",
                Some("KubeletHasInsufficientMemory"),
                Some("kubelet has insufficient memory available")
            )
        );
        assert_eq!(memory.last_transition_time, Some(t2));
        assert_eq!(
            get(&pressed, "PIDPressure").reason.as_deref(),
            Some("KubeletHasInsufficientPID")
        );
        assert_eq!(
            get(&pressed, "DiskPressure").reason.as_deref(),
            Some("KubeletHasNoDiskPressure")
        );
    }

    #[test]
    fn only_a_change_beyond_heartbeat_times_is_a_change() {
        let at = |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
        let health = Health {
            runtime_ready: true,
            network_ready: true,
            pressure: Default::default(),
        };
        let identity = NodeIdentity {
            name: "n1".into(),
            internal_ips: vec!["10.0.0.1".into()],
            runtime_version: "containerd://1.6.20".into(),
        };
        let machine = Machine {
            cpus: 2,
            memory_bytes: 4 << 30,
            max_pods: 110,
        };
        let reserved = Reservations::default();
        let status_at = |t: i64, previous: &[NodeCondition], images: Vec<ContainerImage>| {
            status(
                &identity,
                &machine,
                &reserved,
                conditions(health, previous, &at(t)),
                images,
            )
        };
        let held = status_at(1_000, &[], Vec::new());
        assert!(changed(None, &held), "a Node without status is posted");

        let held_conditions = held.conditions.clone().unwrap();
        let beat = status_at(1_010, &held_conditions, Vec::new());
        assert!(!changed(Some(&held), &beat), "a renewed heartbeat alone is no change");

        let image = ContainerImage {
            names: Some(vec!["registry/busybox:1.35.0".into()]),
            size_bytes: Some(1 << 20),
        };
        assert!(changed(Some(&held), &status_at(1_010, &held_conditions, vec![image])));

        // Another writer (the node lifecycle controller) made Ready Unknown:
        // noded's view differs from what is held, so it is posted again.
        let mut unknown = held.clone();
        for c in unknown.conditions.iter_mut().flatten().filter(|c| c.type_ == "Ready") {
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
        }
        let back = status_at(1_020, unknown.conditions.as_deref().unwrap(), Vec::new());
        assert!(changed(Some(&unknown), &back));
        let ready = back.conditions.iter().flatten().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Some(at(1_020)), "the transition is now");

        let mut pressure = health;
        pressure.pressure.memory = true;
        let pressed = status(
            &identity,
            &machine,
            &reserved,
            conditions(pressure, &held_conditions, &at(1_010)),
            Vec::new(),
        );
        assert!(changed(Some(&held), &pressed));

        let mut extra = held.clone();
        extra.volumes_attached = Some(Vec::new());
        assert!(
            !changed(Some(&extra), &beat),
            "fields noded does not write are not compared"
        );
    }
}
