//! The node's CNI network config, written once the Node has a podCIDR.
//!
//! containerd watches its CNI config directory and reports `NetworkReady`
//! only once a config is there; noded writes it as soon as node IPAM has
//! given the Node its `spec.podCIDR`, so no pod can start before the node
//! knows its address range.

use ipnet::Ipv4Net;
use std::path::{Path, PathBuf};

/// File name of the conflist (containerd loads the first one by name).
pub const CONFLIST_NAME: &str = "10-sluice.conflist";
/// The CNI network name.
pub const NETWORK_NAME: &str = "sluice";

/// The conflist JSON for this node.
pub fn render(pod_cidr: Ipv4Net, noded_socket: &Path, state_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": sluice_cni::spec::CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [{
            "type": "sluice-cni",
            "podCIDR": pod_cidr.to_string(),
            "nodedSocket": noded_socket,
            "stateDir": state_dir,
        }],
    })
}

/// Write the conflist into `conf_dir` atomically (rename), returning its path.
pub fn write(conf_dir: &Path, pod_cidr: Ipv4Net, noded_socket: &Path, state_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(conf_dir)?;
    let path = conf_dir.join(CONFLIST_NAME);
    let partial = conf_dir.join(format!(".{CONFLIST_NAME}.partial"));
    let text =
        serde_json::to_string_pretty(&render(pod_cidr, noded_socket, state_dir)).map_err(std::io::Error::other)?;
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_carries_what_the_plugin_parses() {
        let json = render(
            "10.244.3.0/24".parse().unwrap(),
            Path::new("/run/n.sock"),
            Path::new("/var/lib/s"),
        );
        // libcni injects cniVersion and name into each plugin's config.
        let mut plugin = json["plugins"][0].clone();
        plugin["cniVersion"] = json["cniVersion"].clone();
        plugin["name"] = json["name"].clone();
        let conf = sluice_cni::spec::parse_netconf(plugin.to_string().as_bytes()).unwrap();
        assert_eq!(conf.pod_cidr.to_string(), "10.244.3.0/24");
        assert_eq!(conf.noded_socket, Path::new("/run/n.sock"));
    }
}
