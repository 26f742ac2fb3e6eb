//! A Pod spec translated into CRI sandbox and container configs.
//!
//! Pure functions (no I/O), so the translation is unit-tested: metadata and
//! the labels that map runtime objects back to Pods, the pod's cgroup
//! parent, log paths, command/args/env/mounts, and resources turned into
//! cgroup settings (requests -> cpu shares, limits -> CFS quota and memory
//! limit); the pod's namespaces (`hostNetwork`, `hostPID`, `hostIPC` are the
//! node's, CRI `NamespaceMode::NODE`; a host-network sandbox keeps the
//! node's hostname); ephemeral containers run as containers whose process
//! namespace is their target's. Security contexts come from
//! [`crate::security_context`].

use crate::cri::api;
use crate::labels;
use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// CFS period used for CPU limits (100 ms, as the kubelet).
pub const CPU_PERIOD_US: i64 = 100_000;

fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let meta = &pod.metadata;
    HashMap::from([
        (labels::POD_UID.to_string(), meta.uid.clone().unwrap_or_default()),
        (labels::POD_NAME.to_string(), meta.name.clone().unwrap_or_default()),
        (
            labels::POD_NAMESPACE.to_string(),
            meta.namespace.clone().unwrap_or_else(|| "default".into()),
        ),
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
    ])
}

/// Directory the runtime writes the pod's container logs to.
pub fn log_directory(pod_dir: &Path) -> PathBuf {
    pod_dir.join("logs")
}

/// The sandbox config of `pod` (attempt counts sandbox re-creations).
pub fn sandbox_config(pod: &Pod, attempt: u32, cgroup_parent: &str, pod_dir: &Path) -> api::PodSandboxConfig {
    let meta = &pod.metadata;
    // As the kubelet: a host-network sandbox shares the node's UTS namespace and keeps its hostname.
    let hostname = if is_host_network(pod) {
        String::new()
    } else {
        pod_hostname(pod)
    };
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            attempt,
        }),
        hostname,
        log_directory: log_directory(pod_dir).display().to_string(),
        labels: pod_labels(pod),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.to_string(),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                ..crate::security_context::sandbox_security(pod)
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod's hostname: `spec.hostname` or its name, at most 63 characters.
pub fn pod_hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
        .chars()
        .take(63)
        .collect()
}

/// Whether the pod uses the node's network namespace (`hostNetwork: true`).
pub fn is_host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

/// The pod's IP: the sandbox's from CNI, or for a host-network pod (which
/// has none of its own) the node's address, as the kubelet reports it.
pub fn pod_ip(pod: &Pod, sandbox_ip: &str, host_ip: Option<&str>) -> String {
    if is_host_network(pod) {
        host_ip.unwrap_or_default().to_string()
    } else {
        sandbox_ip.to_string()
    }
}

/// The pod's namespaces as the kubelet asks for them: network and IPC
/// shared by the pod, or the node's with `hostNetwork` / `hostIPC`;
/// processes the node's with `hostPID`, else one namespace per container,
/// or one for the whole pod with `shareProcessNamespace: true`.
pub fn namespace_options(pod: &Pod) -> api::NamespaceOption {
    let spec = pod.spec.as_ref();
    let host = |flag: Option<bool>, otherwise: api::NamespaceMode| {
        if flag == Some(true) {
            api::NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    let shared = spec.and_then(|s| s.share_process_namespace) == Some(true);
    let own_pid = if shared {
        api::NamespaceMode::Pod
    } else {
        api::NamespaceMode::Container
    };
    api::NamespaceOption {
        network: host(spec.and_then(|s| s.host_network), api::NamespaceMode::Pod),
        pid: host(spec.and_then(|s| s.host_pid), own_pid),
        ipc: host(spec.and_then(|s| s.host_ipc), api::NamespaceMode::Pod),
        ..Default::default()
    }
}

/// The container config of `container` in `pod`.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    attempt: u32,
    env: Vec<(String, String)>,
    volumes: &BTreeMap<String, PathBuf>,
) -> api::ContainerConfig {
    let mut labels = pod_labels(pod);
    labels.insert(labels::CONTAINER_NAME.to_string(), container.name.clone());
    let mounts = container
        .volume_mounts
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|m| {
            let host = volumes.get(&m.name)?;
            let host = match m
                .sub_path
                .as_deref()
                .filter(|p| !p.is_empty() && !p.split('/').any(|c| c == ".."))
            {
                Some(sub) => host.join(sub),
                None => host.clone(),
            };
            Some(api::Mount {
                container_path: m.mount_path.clone(),
                host_path: host.display().to_string(),
                readonly: m.read_only.unwrap_or(false),
                ..Default::default()
            })
        })
        .collect();
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: container.name.clone(),
            attempt,
        }),
        image: Some(api::ImageSpec {
            image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| api::KeyValue { key, value })
            .collect(),
        mounts,
        labels,
        log_path: format!("{}/{attempt}.log", container.name),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(resources(container)),
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// An ephemeral container as the container the runtime runs: the same
/// fields (the API server allows no ports, probes, lifecycle or resources on
/// it); `targetContainerName` is applied by [`share_pid_namespace_with`].
pub fn ephemeral_as_container(ec: &EphemeralContainer) -> Container {
    Container {
        name: ec.name.clone(),
        image: ec.image.clone(),
        image_pull_policy: ec.image_pull_policy.clone(),
        command: ec.command.clone(),
        args: ec.args.clone(),
        working_dir: ec.working_dir.clone(),
        env: ec.env.clone(),
        env_from: ec.env_from.clone(),
        volume_mounts: ec.volume_mounts.clone(),
        security_context: ec.security_context.clone(),
        stdin: ec.stdin,
        stdin_once: ec.stdin_once,
        tty: ec.tty,
        termination_message_path: ec.termination_message_path.clone(),
        termination_message_policy: ec.termination_message_policy.clone(),
        ..Default::default()
    }
}

/// Run the container in the process namespace of container `target_id`
/// (CRI `NamespaceMode::TARGET`), network and IPC staying as they are: what
/// the kubelet does for an ephemeral container with `targetContainerName`.
pub fn share_pid_namespace_with(config: &mut api::ContainerConfig, target_id: &str) {
    let linux = config.linux.get_or_insert_with(Default::default);
    let security = linux.security_context.get_or_insert_with(Default::default);
    let ns = security.namespace_options.get_or_insert_with(Default::default);
    ns.pid = api::NamespaceMode::Target as i32;
    ns.target_id = target_id.to_string();
}

/// cgroup settings from requests and limits.
pub fn resources(container: &Container) -> api::LinuxContainerResources {
    let res = container.resources.as_ref();
    let get = |map: Option<&BTreeMap<String, Quantity>>, key: &str| map.and_then(|m| m.get(key)).cloned();
    let limits = res.and_then(|r| r.limits.as_ref());
    let requests = res.and_then(|r| r.requests.as_ref());
    let cpu_limit = get(limits, "cpu").and_then(|q| cpu_millis(&q));
    // Kubernetes defaults the request to the limit when only the limit is set.
    let cpu_request = get(requests, "cpu").and_then(|q| cpu_millis(&q)).or(cpu_limit);
    let memory_limit = get(limits, "memory").and_then(|q| memory_bytes(&q));
    api::LinuxContainerResources {
        cpu_shares: cpu_request.map(|m| (m * 1024 / 1000).max(2)).unwrap_or(2),
        cpu_period: if cpu_limit.is_some() { CPU_PERIOD_US } else { 0 },
        cpu_quota: cpu_limit.map(|m| (m * CPU_PERIOD_US / 1000).max(1000)).unwrap_or(0),
        memory_limit_in_bytes: memory_limit.unwrap_or(0),
        ..Default::default()
    }
}

/// A CPU quantity in millicores (`500m`, `1`, `0.25`), rounded up; parsed by
/// the workspace's one `resource.Quantity` parser.
pub fn cpu_millis(q: &Quantity) -> Option<i64> {
    sluice_kube::quantity::parse_milli(&q.0).ok()
}

/// A memory quantity in bytes (`128Mi`, `1G`, `1e6`, `1000`), rounded up.
pub fn memory_bytes(q: &Quantity) -> Option<i64> {
    sluice_kube::quantity::parse_value(&q.0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"},
            "spec": {"containers": [{
                "name": "httpd", "image": "busybox:1.35.0",
                "command": ["httpd"], "args": ["-f"],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}]
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn sandbox_and_container_carry_the_pod_identity_labels() {
        let pod = pod();
        let sandbox = sandbox_config(&pod, 0, "/sluice/n1/podu-1", Path::new("/s/pods/u-1"));
        assert_eq!(sandbox.labels[labels::POD_UID], "u-1");
        assert_eq!(sandbox.metadata.as_ref().unwrap().namespace, "shop");
        assert_eq!(sandbox.log_directory, "/s/pods/u-1/logs");
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let volumes = BTreeMap::from([("data".to_string(), PathBuf::from("/s/pods/u-1/volumes/data"))]);
        let config = container_config(&pod, container, 3, vec![("A".into(), "1".into())], &volumes);
        assert_eq!(config.labels[labels::CONTAINER_NAME], "httpd");
        assert_eq!(config.metadata.as_ref().unwrap().attempt, 3);
        assert_eq!(config.log_path, "httpd/3.log");
        assert_eq!(config.mounts[0].host_path, "/s/pods/u-1/volumes/data");
        assert!(config.mounts[0].readonly);
        assert_eq!(config.command, vec!["httpd"]);
    }

    #[test]
    fn limits_become_cgroup_settings() {
        let pod = pod();
        let r = resources(&pod.spec.as_ref().unwrap().containers[0]);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, CPU_PERIOD_US);
        assert_eq!(r.cpu_shares, 512, "request defaults to the limit");
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
    }

    #[test]
    fn ephemeral_containers_run_in_their_target_process_namespace() {
        let ec: EphemeralContainer = serde_json::from_value(serde_json::json!({
            "name": "debugger", "image": "busybox", "command": ["sh"], "stdin": true, "tty": true,
            "targetContainerName": "httpd"
        }))
        .unwrap();
        let container = ephemeral_as_container(&ec);
        assert_eq!(
            (container.name.as_str(), container.stdin, container.tty),
            ("debugger", Some(true), Some(true))
        );
        let mut config = container_config(&pod(), &container, 0, vec![], &BTreeMap::new());
        assert_eq!(config.labels[labels::CONTAINER_NAME], "debugger");
        share_pid_namespace_with(&mut config, "c-1");
        let ns = config
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.pid, api::NamespaceMode::Target as i32);
        assert_eq!(ns.network, api::NamespaceMode::Pod as i32);
        assert_eq!(ns.target_id, "c-1");
    }

    #[test]
    fn each_container_has_its_own_process_namespace_unless_the_pod_shares_one() {
        let mut p = pod();
        let c = Container {
            name: "c".into(),
            ..Default::default()
        };
        let modes = |p: &Pod| {
            let sandbox = sandbox_config(p, 0, "/x", Path::new("/d"));
            let s = sandbox
                .linux
                .unwrap()
                .security_context
                .unwrap()
                .namespace_options
                .unwrap();
            let config = container_config(p, &c, 0, vec![], &BTreeMap::new());
            let n = config
                .linux
                .unwrap()
                .security_context
                .unwrap()
                .namespace_options
                .unwrap();
            assert_eq!(
                (s.network, s.ipc),
                (api::NamespaceMode::Pod as i32, api::NamespaceMode::Pod as i32)
            );
            assert_eq!(
                (n.network, n.ipc),
                (api::NamespaceMode::Pod as i32, api::NamespaceMode::Pod as i32)
            );
            assert_eq!(s.pid, n.pid);
            n.pid
        };
        assert_eq!(modes(&p), api::NamespaceMode::Container as i32);
        p.spec.get_or_insert_with(Default::default).share_process_namespace = Some(true);
        assert_eq!(modes(&p), api::NamespaceMode::Pod as i32);
    }

    #[test]
    fn host_namespaces_are_the_nodes_and_a_host_network_pod_has_the_node_ip() {
        let mut p = pod();
        let spec = p.spec.get_or_insert_with(Default::default);
        spec.host_network = Some(true);
        spec.host_pid = Some(true);
        spec.host_ipc = Some(true);
        let ns = namespace_options(&p);
        let node = api::NamespaceMode::Node as i32;
        assert_eq!((ns.network, ns.pid, ns.ipc), (node, node, node));
        let sandbox = sandbox_config(&p, 0, "/x", Path::new("/d"));
        assert_eq!(sandbox.hostname, "", "the node's hostname is kept");
        assert_eq!(pod_ip(&p, "", Some("192.0.2.7")), "192.0.2.7");
        let mut config = container_config(&p, &p.spec.as_ref().unwrap().containers[0], 0, vec![], &BTreeMap::new());
        share_pid_namespace_with(&mut config, "c-1");
        let ns = config
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!((ns.network, ns.pid), (node, api::NamespaceMode::Target as i32));
        assert_eq!(pod_ip(&pod(), "10.244.0.9", Some("192.0.2.7")), "10.244.0.9");
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(cpu_millis(&Quantity("250m".into())), Some(250));
        assert_eq!(cpu_millis(&Quantity("1.5".into())), Some(1500));
        assert_eq!(memory_bytes(&Quantity("1Gi".into())), Some(1 << 30));
        assert_eq!(memory_bytes(&Quantity("1e3".into())), Some(1000));
        assert_eq!(memory_bytes(&Quantity("5M".into())), Some(5_000_000));
        assert_eq!(memory_bytes(&Quantity("x".into())), None);
    }
}
