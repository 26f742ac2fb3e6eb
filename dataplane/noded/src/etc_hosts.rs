//! The pod's `/etc/hosts`, written by noded and mounted into every
//! container, as the kubelet manages it (the runtime's own copy of the
//! node's file is then not used).
//!
//! A pod with its own network gets the loopback entries, its IP with its
//! hostname (`<ip>\t<hostname>.<subdomain>.<ns>.svc.<domain>\t<hostname>`
//! with a `subdomain`), then its `hostAliases`; a host-network pod gets the
//! node's `/etc/hosts` followed by its `hostAliases`. Each starts with a
//! comment saying who manages the file. It is rewritten whenever a
//! container is created and not mounted into a container that mounts a
//! volume at `/etc/hosts` itself.

use k8s_openapi::api::core::v1::{Container, Pod};
use std::path::{Path, PathBuf};

/// The node's hosts file, the base of a host-network pod's.
pub const NODE_HOSTS: &str = "/etc/hosts";

const HEADER: &str = "# Hosts file managed by Sluice's node agent; edits are lost when a container is created.\n";
const HEADER_HOST_NETWORK: &str =
    "# Hosts file managed by Sluice's node agent (host network: the node's entries below).\n";

/// Where the pod's hosts file lives on the node.
pub fn path(pod_dir: &Path) -> PathBuf {
    pod_dir.join("etc-hosts")
}

/// Whether `container` gets the pod's hosts file: not when it mounts something at `/etc/hosts`.
pub fn should_mount(container: &Container) -> bool {
    !container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path.trim_end_matches('/') == "/etc/hosts")
}

fn aliases(pod: &Pod) -> String {
    let list = pod.spec.as_ref().and_then(|s| s.host_aliases.as_deref()).unwrap_or(&[]);
    if list.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Added from the pod's hostAliases.\n");
    for a in list {
        out.push_str(&format!(
            "{}\t{}\n",
            a.ip,
            a.hostnames.as_deref().unwrap_or(&[]).join("\t")
        ));
    }
    out
}

/// The content for a pod with its own network: `pod_ips` with the pod's hostname.
pub fn managed_content(pod: &Pod, pod_ips: &[&str], cluster_domain: &str) -> String {
    let mut out = String::from(HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    let hostname = crate::pod_spec::pod_hostname(pod);
    let subdomain = pod
        .spec
        .as_ref()
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty());
    for ip in pod_ips.iter().filter(|ip| !ip.is_empty()) {
        match subdomain {
            Some(sub) => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                out.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{ns}.svc.{cluster_domain}\t{hostname}\n"
                ));
            }
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    out.push_str(&aliases(pod));
    out
}

/// The content for a host-network pod: the node's file, then the aliases.
pub fn host_network_content(pod: &Pod, node_hosts: &str) -> String {
    let mut out = String::from(HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    if !node_hosts.is_empty() && !node_hosts.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&aliases(pod));
    out
}

/// Write the pod's hosts file (mode 0644) and return its path.
pub fn write(pod: &Pod, pod_dir: &Path, pod_ip: &str, cluster_domain: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let content = if crate::pod_spec::is_host_network(pod) {
        host_network_content(pod, &std::fs::read_to_string(NODE_HOSTS)?)
    } else {
        managed_content(pod, &[pod_ip], cluster_domain)
    };
    std::fs::create_dir_all(pod_dir)?;
    let file = path(pod_dir);
    std::fs::write(&file, content)?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "i"}]);
        serde_json::from_value(json!({"metadata": {"name": "web-0", "namespace": "shop"}, "spec": spec})).unwrap()
    }

    #[test]
    fn a_pod_network_hosts_file_names_the_pod_then_its_aliases() {
        let p = pod(json!({"hostname": "web", "subdomain": "db",
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]}));
        let text = managed_content(&p, &["10.244.0.5"], "cluster.local");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER.trim_end());
        assert_eq!(lines[1], "127.0.0.1\tlocalhost");
        assert_eq!(lines[7], "10.244.0.5\tweb.db.shop.svc.cluster.local\tweb");
        assert_eq!(
            &lines[8..],
            [
                "",
                "# Added from the pod's hostAliases.",
                "10.1.2.3\tfoo.local\tbar.local"
            ]
        );
        let plain = managed_content(&pod(json!({})), &["10.244.0.6"], "cluster.local");
        assert!(
            plain.ends_with("fe00::2\tip6-allrouters\n10.244.0.6\tweb-0\n"),
            "{plain}"
        );
    }

    #[test]
    fn a_host_network_hosts_file_is_the_nodes_plus_aliases() {
        let p = pod(json!({"hostNetwork": true, "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a"]}]}));
        assert_eq!(
            host_network_content(&p, "127.0.0.1 localhost"),
            format!("{HEADER_HOST_NETWORK}127.0.0.1 localhost\n\n# Added from the pod's hostAliases.\n1.2.3.4\ta\n")
        );
    }

    #[test]
    fn a_container_mounting_etc_hosts_keeps_its_own() {
        let c: Container =
            serde_json::from_value(json!({"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/etc/hosts"}]}))
                .unwrap();
        assert!(!should_mount(&c));
        assert!(should_mount(&Container::default()));
    }
}
