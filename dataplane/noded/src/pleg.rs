//! Pod lifecycle events by relisting: one snapshot of the runtime per tick.
//!
//! Like the kubelet's PLEG, noded does not trust events from the runtime: it
//! lists every sandbox and container it manages once per tick (every second),
//! and the pod workers compare that snapshot with the Pods. A container that
//! died is therefore noticed within one tick, and after a noded restart the
//! first snapshot is the recovered state (labels carry the pod uid), so
//! running pods are adopted, never restarted.

use crate::cri::{api, Cri, CriError};
use crate::labels;

/// The runtime's view of this node's pods at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Sandboxes created by noded.
    pub sandboxes: Vec<api::PodSandbox>,
    /// Containers created by noded.
    pub containers: Vec<api::Container>,
}

impl Snapshot {
    /// List everything noded manages.
    pub async fn relist(cri: &Cri) -> Result<Self, CriError> {
        let managed = [(labels::MANAGED_BY, labels::MANAGER)];
        let sandboxes = cri.list_pod_sandboxes(&managed).await?;
        let containers = cri
            .list_containers(None)
            .await?
            .into_iter()
            .filter(|c| c.labels.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER))
            .collect();
        Ok(Self { sandboxes, containers })
    }

    /// Sandboxes of a pod, newest first.
    pub fn sandboxes_of(&self, uid: &str) -> Vec<&api::PodSandbox> {
        let mut found: Vec<&api::PodSandbox> = self
            .sandboxes
            .iter()
            .filter(|s| s.labels.get(labels::POD_UID).map(String::as_str) == Some(uid))
            .collect();
        found.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        found
    }

    /// The running containers of a pod, in any of its sandboxes.
    pub fn running_containers_of(&self, uid: &str) -> Vec<&api::Container> {
        let sandboxes = self.sandboxes_of(uid);
        self.containers
            .iter()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .filter(|c| sandboxes.iter().any(|s| s.id == c.pod_sandbox_id))
            .collect()
    }

    /// Containers named `name` in a sandbox, newest attempt first.
    pub fn containers_of(&self, sandbox_id: &str, name: &str) -> Vec<&api::Container> {
        let mut found: Vec<&api::Container> = self
            .containers
            .iter()
            .filter(|c| c.pod_sandbox_id == sandbox_id)
            .filter(|c| c.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(name))
            .collect();
        found.sort_by_key(|c| std::cmp::Reverse((c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0), c.created_at)));
        found
    }

    /// Pod uids that have runtime objects.
    pub fn pod_uids(&self) -> std::collections::BTreeSet<String> {
        self.sandboxes
            .iter()
            .filter_map(|s| s.labels.get(labels::POD_UID).cloned())
            .collect()
    }
}
