//! Pod lifecycle events by relisting: one snapshot of the runtime per tick.
//!
//! Like the kubelet's PLEG, noded does not trust events from the runtime: it
//! lists every sandbox and container it manages once per tick (every second),
//! and the pod workers compare that snapshot with the Pods. A container that
//! died is therefore noticed within one tick, and after a noded restart the
//! first snapshot is the recovered state (labels carry the pod uid), so
//! running pods are adopted, never restarted.
//!
//! Beside the snapshot, the statuses of what it lists are cached
//! ([`StatusCache`]), as the kubelet's PLEG keeps its pod cache: a pod
//! worker asks the runtime for a container's or sandbox's status only when a
//! relist shows it in another state than the cached status, or when the
//! worker itself just changed it. A pass over every pod each tick then costs
//! no runtime call for the pods whose containers kept running.

use crate::cri::{api, Cri, CriError};
use crate::labels;
use crate::lock;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

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

/// The last status the runtime gave of each container and sandbox, kept
/// until a relist shows the object in another state or no longer lists it.
/// A status only changes with its state (a running container's start time,
/// image and mounts stay; an exited one's exit code and finish time are
/// final; a sandbox keeps its IP), so a status of the state the relist shows
/// is the one the runtime would give. A change after the relist is seen by
/// the next one, within a tick, as without the cache.
#[derive(Default)]
pub struct StatusCache {
    containers: Mutex<HashMap<String, api::ContainerStatus>>,
    sandboxes: Mutex<HashMap<String, api::PodSandboxStatus>>,
}

impl StatusCache {
    /// The status of a container as the relist shows it: cached when the
    /// cached one is of the listed state, else asked of the runtime.
    pub async fn container(&self, cri: &Cri, listed: &api::Container) -> Result<api::ContainerStatus, CriError> {
        match self.cached_container(&listed.id, listed.state) {
            Some(status) => Ok(status),
            None => self.container_now(cri, &listed.id).await,
        }
    }

    /// The status of a container asked of the runtime now (after the caller
    /// created, started or stopped it), cached.
    pub async fn container_now(&self, cri: &Cri, id: &str) -> Result<api::ContainerStatus, CriError> {
        let status = cri.container_status(id).await?;
        lock(&self.containers).insert(id.to_string(), status.clone());
        Ok(status)
    }

    /// The status of a sandbox as the relist shows it (cached, or asked of
    /// the runtime and cached).
    pub async fn sandbox(&self, cri: &Cri, id: &str, listed_state: i32) -> Result<api::PodSandboxStatus, CriError> {
        if let Some(status) = self.cached_sandbox(id, listed_state) {
            return Ok(status);
        }
        let status = cri.pod_sandbox_status(id).await?;
        lock(&self.sandboxes).insert(id.to_string(), status.clone());
        Ok(status)
    }

    fn cached_container(&self, id: &str, listed_state: i32) -> Option<api::ContainerStatus> {
        lock(&self.containers)
            .get(id)
            .filter(|s| s.state == listed_state)
            .cloned()
    }

    fn cached_sandbox(&self, id: &str, listed_state: i32) -> Option<api::PodSandboxStatus> {
        lock(&self.sandboxes)
            .get(id)
            .filter(|s| s.state == listed_state)
            .cloned()
    }

    /// Drops the statuses of what `snapshot` no longer lists.
    pub fn forget_gone(&self, snapshot: &Snapshot) {
        let containers: HashSet<&str> = snapshot.containers.iter().map(|c| c.id.as_str()).collect();
        lock(&self.containers).retain(|id, _| containers.contains(id.as_str()));
        let sandboxes: HashSet<&str> = snapshot.sandboxes.iter().map(|s| s.id.as_str()).collect();
        lock(&self.sandboxes).retain(|id, _| sandboxes.contains(id.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: i32 = api::ContainerState::ContainerRunning as i32;
    const EXITED: i32 = api::ContainerState::ContainerExited as i32;
    const READY: i32 = api::PodSandboxState::SandboxReady as i32;
    const NOT_READY: i32 = api::PodSandboxState::SandboxNotready as i32;

    fn cache_of(containers: &[(&str, i32)], sandboxes: &[(&str, i32)]) -> StatusCache {
        let cache = StatusCache::default();
        for (id, state) in containers {
            let status = api::ContainerStatus {
                id: id.to_string(),
                state: *state,
                ..Default::default()
            };
            lock(&cache.containers).insert(id.to_string(), status);
        }
        for (id, state) in sandboxes {
            let status = api::PodSandboxStatus {
                id: id.to_string(),
                state: *state,
                ..Default::default()
            };
            lock(&cache.sandboxes).insert(id.to_string(), status);
        }
        cache
    }

    #[test]
    fn a_cached_status_serves_only_the_state_the_relist_shows() {
        let cache = cache_of(&[("c1", RUNNING)], &[("s1", READY)]);
        assert_eq!(cache.cached_container("c1", RUNNING).map(|s| s.id), Some("c1".into()));
        assert!(cache.cached_container("c1", EXITED).is_none(), "it exited: ask again");
        assert!(cache.cached_container("c2", RUNNING).is_none(), "never asked");
        assert_eq!(cache.cached_sandbox("s1", READY).map(|s| s.id), Some("s1".into()));
        assert!(cache.cached_sandbox("s1", NOT_READY).is_none(), "it stopped: ask again");
    }

    #[test]
    fn statuses_go_with_what_the_relist_no_longer_lists() {
        let cache = cache_of(&[("c1", RUNNING), ("c2", EXITED)], &[("s1", READY), ("s2", NOT_READY)]);
        let snapshot = Snapshot {
            sandboxes: vec![api::PodSandbox {
                id: "s2".into(),
                state: NOT_READY,
                ..Default::default()
            }],
            containers: vec![api::Container {
                id: "c2".into(),
                state: EXITED,
                ..Default::default()
            }],
        };
        cache.forget_gone(&snapshot);
        assert!(cache.cached_container("c1", RUNNING).is_none());
        assert!(cache.cached_container("c2", EXITED).is_some());
        assert!(cache.cached_sandbox("s1", READY).is_none());
        assert!(cache.cached_sandbox("s2", NOT_READY).is_some());
    }
}
