//! What a container's CRI config needs from the node beyond the pure
//! translation of [`crate::pod_spec`], done just before it is created:
//!
//! * the image's user (CRI image status) for the [`crate::security_context`]
//!   and the `runAsNonRoot` check — a failure is the kubelet's
//!   `CreateContainerConfigError` with its message;
//! * the pod's `/etc/hosts` ([`crate::etc_hosts`]), written and mounted;
//! * a fresh termination-message file ([`crate::termination_message`]) mounted
//!   at `terminationMessagePath`.

use crate::cri::{api, Cri};
use crate::security_context::{self, ImageUser};
use crate::{etc_hosts, termination_message};
use k8s_openapi::api::core::v1::{Container, Pod};
use std::path::Path;

/// Node facts a container config needs.
pub struct NodeFacts<'a> {
    /// The pod's directory on the node (`<state>/pods/<uid>`).
    pub pod_dir: &'a Path,
    /// The pod's IP (the node's for a host-network pod).
    pub pod_ip: &'a str,
    /// The cluster domain (`cluster.local`), for the pod's FQDN in `/etc/hosts`.
    pub cluster_domain: &'a str,
}

/// Complete `config` of `container`, whose image's status the image
/// manager just had (`image`; asked of the runtime again when it has none);
/// `Err` is the waiting message of `CreateContainerConfigError`.
pub async fn complete(
    cri: &Cri,
    pod: &Pod,
    container: &Container,
    image: Option<api::Image>,
    node: &NodeFacts<'_>,
    config: &mut api::ContainerConfig,
) -> Result<(), String> {
    let status = match image {
        Some(found) => Some(found),
        None => {
            let image = container.image.as_deref().unwrap_or_default();
            cri.image_status(image)
                .await
                .map_err(|e| format!("failed to get image status {image:?}: {e}"))?
        }
    };
    let image_user = ImageUser::of(status.as_ref());
    security_context::verify_run_as_non_root(pod, container, &image_user)?;
    let linux = config.linux.get_or_insert_with(Default::default);
    let namespaces = linux.security_context.take().and_then(|s| s.namespace_options);
    linux.security_context = Some(api::LinuxContainerSecurityContext {
        namespace_options: namespaces,
        ..security_context::container_security(pod, container, &image_user)
    });
    let has_ip = !node.pod_ip.is_empty() || crate::pod_spec::is_host_network(pod);
    if has_ip && etc_hosts::should_mount(container) {
        let hosts = etc_hosts::write(pod, node.pod_dir, node.pod_ip, node.cluster_domain)
            .map_err(|e| format!("failed to write the pod's hosts file: {e}"))?;
        config.mounts.push(api::Mount {
            container_path: etc_hosts::NODE_HOSTS.to_string(),
            host_path: hosts.display().to_string(),
            ..Default::default()
        });
    }
    let message_file = termination_message::prepare(node.pod_dir, container)
        .map_err(|e| format!("failed to create the termination message file: {e}"))?;
    config.mounts.extend(message_file);
    config
        .annotations
        .extend(termination_message::annotations(pod, container));
    Ok(())
}
