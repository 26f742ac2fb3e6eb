//! The node's side of `local-path` volumes: the storage root and the clean-up
//! of released volumes.
//!
//! At start noded creates its storage root (`--local-path-root`, default
//! `<state dir>/storage`) and publishes it as the Node annotation
//! `storage.sluice.dev/local-path-root`; the controller-manager's
//! provisioner puts each volume's directory under it and the scheduler only
//! provisions on nodes that publish one. The directory itself is made by
//! the kubelet side when the first pod mounts the volume (`hostPath` type
//! `DirectoryOrCreate`).
//!
//! Deleting is the node's, since only the node can reach the directory: a
//! watch on PersistentVolumes finds those provisioned by
//! `sluice.dev/local-path`, pinned to this node by their node affinity,
//! `Released` with reclaim policy `Delete`; noded removes the directory and
//! then deletes the PersistentVolume (guarded by its uid), as an external
//! provisioner's deleter does. A path that is not directly under the root is
//! never touched (a symlink is removed, never followed), and a directory that
//! cannot be removed leaves the PersistentVolume in place with a
//! `VolumeFailedDelete` Warning; it is tried again every
//! [`RETRY_PERIOD`]. `Retain` volumes stay `Released`, directory and all.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::json;
use sluice_kube::events::{EventRecorder, EventType};
use sluice_kube::local_path::{ANN_PROVISIONED_BY, ANN_ROOT, HOSTNAME_LABEL, PROVISIONER};
use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use tracing::Instrument;

/// How often volumes whose directory could not be removed are tried again.
pub const RETRY_PERIOD: Duration = Duration::from_secs(30);

/// The storage root flag.
#[derive(clap::Args, Debug, Clone)]
pub struct LocalPathArgs {
    /// Directory under which `local-path` volumes of this node live
    /// (default: `<state dir>/storage`).
    #[arg(long)]
    pub local_path_root: Option<PathBuf>,
}

impl LocalPathArgs {
    /// Creates the storage root and returns its canonical path.
    pub fn prepare(&self, state_dir: &Path) -> io::Result<PathBuf> {
        let root = self
            .local_path_root
            .clone()
            .unwrap_or_else(|| state_dir.join("storage"));
        std::fs::create_dir_all(&root)?;
        root.canonicalize()
    }
}

/// The directory a volume's `hostPath` names, if it lies directly under
/// `root` (absolute, no `.` or `..`, parent exactly the root); else `None`.
pub fn directory_under_root(path: &str, root: &Path) -> Option<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute()
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return None;
    }
    let name = p.file_name()?;
    (p.parent()? == root).then(|| root.join(name))
}

/// Whether the volume is a `local-path` volume pinned to `node`.
pub fn pinned_here(pv: &PersistentVolume, node: &str) -> bool {
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_PROVISIONED_BY))
        .is_some_and(|p| p == PROVISIONER);
    let terms = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or_default();
    ours && terms.iter().any(|t| {
        t.match_expressions
            .iter()
            .flatten()
            .any(|e| e.key == HOSTNAME_LABEL && e.operator == "In" && e.values.iter().flatten().any(|v| v == node))
    })
}

/// The directory to remove when the volume is this node's, `Released` and
/// reclaimed by `Delete`, and not already being deleted: `Some(Ok(dir))`,
/// or `Some(Err(path))` when its path is outside the root; `None` otherwise.
pub fn to_reclaim(pv: &PersistentVolume, node: &str, root: &Path) -> Option<Result<PathBuf, String>> {
    let spec = pv.spec.as_ref()?;
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
    if !released || !delete || pv.metadata.deletion_timestamp.is_some() || !pinned_here(pv, node) {
        return None;
    }
    let path = spec.host_path.as_ref().map(|h| h.path.clone()).unwrap_or_default();
    Some(directory_under_root(&path, root).ok_or(path))
}

/// Removes a volume's directory (a symlink or file in its place is removed,
/// never followed); a directory already gone is fine.
pub fn remove_directory(dir: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir),
        Ok(_) => std::fs::remove_file(dir),
    }
}

/// Publishes the root on the Node (waiting for the node agent to register
/// it), then reclaims this node's released volumes until the process ends.
pub async fn run(client: Client, node: String, root: PathBuf) {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({"metadata": {"annotations": {ANN_ROOT: root.to_string_lossy()}}});
    loop {
        match nodes.patch(&node, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(error = %e, "could not publish the local storage root; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::info!(root = %root.display(), "local storage root published");
    let reclaimer = Reclaimer {
        volumes: Api::all(client.clone()),
        events: EventRecorder::for_node(client, PROVISIONER, &node),
        node,
        root,
    };
    let mut stream = watcher::watcher(reclaimer.volumes.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: HashMap<String, PersistentVolume> = HashMap::new();
    let mut retry = tokio::time::interval(RETRY_PERIOD);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                None => return,
                Some(Ok(Event::Apply(pv) | Event::InitApply(pv))) => {
                    reclaimer.reclaim(&pv).await;
                    known.insert(pv.metadata.name.clone().unwrap_or_default(), pv);
                }
                Some(Ok(Event::Delete(pv))) => {
                    known.remove(pv.metadata.name.as_deref().unwrap_or_default());
                }
                Some(Ok(Event::Init)) => known.clear(),
                Some(Ok(Event::InitDone)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "PersistentVolume watch failed; retrying"),
            },
            _ = retry.tick() => {
                for pv in known.values() {
                    reclaimer.reclaim(pv).await;
                }
            }
        }
    }
}

struct Reclaimer {
    volumes: Api<PersistentVolume>,
    events: EventRecorder,
    node: String,
    root: PathBuf,
}

impl Reclaimer {
    /// Removes the directory and deletes the volume, if it is ours to reclaim.
    async fn reclaim(&self, pv: &PersistentVolume) {
        let Some(dir) = to_reclaim(pv, &self.node, &self.root) else {
            return;
        };
        let name = pv.metadata.name.clone().unwrap_or_default();
        let span = tracing::info_span!("reclaim", volume = %name);
        self.remove_and_delete(pv, &name, dir).instrument(span).await;
    }

    async fn remove_and_delete(&self, pv: &PersistentVolume, name: &str, dir: Result<PathBuf, String>) {
        let failed = match dir {
            Err(path) => Some(format!(
                "path {path:?} is not under this node's storage root {}: left alone",
                self.root.display()
            )),
            Ok(dir) => remove_directory(&dir)
                .err()
                .map(|e| format!("failed to remove directory {}: {e}", dir.display())),
        };
        if let Some(message) = failed {
            tracing::warn!(%message, "cannot delete the volume");
            self.events
                .record(pv, EventType::Warning, "VolumeFailedDelete", message);
            return;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pv.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.volumes.delete(name, &params).await {
            Ok(_) => tracing::info!("released volume's directory removed and the volume deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(error = %e, "could not delete the volume"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeSpec,
        PersistentVolumeStatus, VolumeNodeAffinity,
    };
    use kube::api::ObjectMeta;

    fn pv(path: &str, node: &str, phase: &str, policy: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pvc-1".into()),
                annotations: Some([(ANN_PROVISIONED_BY.to_string(), PROVISIONER.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                host_path: Some(HostPathVolumeSource {
                    path: path.into(),
                    type_: Some("DirectoryOrCreate".into()),
                }),
                persistent_volume_reclaim_policy: Some(policy.into()),
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: HOSTNAME_LABEL.into(),
                                operator: "In".into(),
                                values: Some(vec![node.into()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_paths_directly_under_the_root_are_ours() {
        let root = Path::new("/var/lib/noded/storage");
        assert_eq!(
            directory_under_root("/var/lib/noded/storage/pvc-1_ns_c", root),
            Some(root.join("pvc-1_ns_c"))
        );
        assert_eq!(directory_under_root("/var/lib/noded/storage", root), None);
        assert_eq!(directory_under_root("/var/lib/noded/storage/a/b", root), None);
        assert_eq!(directory_under_root("/var/lib/noded/storage/../etc", root), None);
        assert_eq!(directory_under_root("/etc", root), None);
        assert_eq!(directory_under_root("relative/pvc-1", root), None);
    }

    #[test]
    fn released_delete_volumes_pinned_here_are_reclaimed() {
        let root = Path::new("/r");
        let dir = Some(Ok(PathBuf::from("/r/pvc-1_ns_c")));
        assert_eq!(
            to_reclaim(&pv("/r/pvc-1_ns_c", "n1", "Released", "Delete"), "n1", root),
            dir
        );
        assert_eq!(
            to_reclaim(&pv("/r/pvc-1_ns_c", "n2", "Released", "Delete"), "n1", root),
            None
        );
        assert_eq!(
            to_reclaim(&pv("/r/pvc-1_ns_c", "n1", "Bound", "Delete"), "n1", root),
            None
        );
        assert_eq!(
            to_reclaim(&pv("/r/pvc-1_ns_c", "n1", "Released", "Retain"), "n1", root),
            None
        );
        assert_eq!(
            to_reclaim(&pv("/etc", "n1", "Released", "Delete"), "n1", root),
            Some(Err("/etc".to_string()))
        );
        let mut foreign = pv("/r/pvc-1_ns_c", "n1", "Released", "Delete");
        foreign.metadata.annotations = None;
        assert_eq!(to_reclaim(&foreign, "n1", root), None);
    }

    #[test]
    fn removing_never_follows_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let link = root.join("pvc-1_ns_c");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        remove_directory(&link).unwrap();
        assert!(outside.join("keep").exists());
        assert!(!link.exists());
        let dir = root.join("pvc-2_ns_c");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/data"), "x").unwrap();
        remove_directory(&dir).unwrap();
        assert!(!dir.exists());
        remove_directory(&dir).unwrap();
    }
}
