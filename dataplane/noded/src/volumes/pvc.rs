//! persistentVolumeClaim volumes: the claim's bound PersistentVolume, when it
//! is one this node can mount.
//!
//! The claim must exist and be `Bound` with `spec.volumeName` set (until
//! then the pod waits in ContainerCreating with a FailedMount event worded
//! as the kubelet's volume manager's: `Unable to attach or mount volumes:
//! unmounted volumes=[data], unattached volumes=[data]: error processing PVC
//! default/data: PVC is not bound ...`), the PersistentVolume must exist and be
//! bound to this claim (its `claimRef` uid). A `hostPath` PV is checked (and
//! created) as a hostPath volume of its `type` ([`super::host_path`]); a
//! `local` PV's path must exist. Other PV sources (CSI, NFS, ...) cannot be
//! mounted by this node. The claim's `readOnly` makes every mount of the
//! volume read-only.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::Api;
use std::path::PathBuf;

/// Why a claim cannot be mounted (yet).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Reading the claim or volume failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// The kubelet-style reason.
    #[error("{0}")]
    Setup(String),
}

/// What a bound claim mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The host path the containers mount.
    pub path: PathBuf,
    /// Whether the PV is a `local` volume (given to the pod's fsGroup; hostPath ones are not).
    pub local: bool,
}

/// Resolve claim `claim` of namespace `namespace` to the path its PersistentVolume gives.
pub async fn resolve(client: &kube::Client, namespace: &str, claim: &str) -> Result<Resolved, ClaimError> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = claims.get_opt(claim).await?.ok_or_else(|| {
        ClaimError::Setup(format!(
            "failed to fetch PVC from API server: persistentvolumeclaims {claim:?} not found"
        ))
    })?;
    let phase = pvc.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || volume_name.is_empty() {
        return Err(ClaimError::Setup(format!(
            "PVC is not bound (phase {phase:?}, volumeName {volume_name:?})"
        )));
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = volumes
        .get_opt(&volume_name)
        .await?
        .ok_or_else(|| ClaimError::Setup(format!("persistentvolume {volume_name:?} not found")))?;
    let claim_uid = pvc.metadata.uid.as_deref();
    let bound_to = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref());
    if bound_to.is_some() && bound_to != claim_uid {
        return Err(ClaimError::Setup(format!(
            "persistentvolume {volume_name:?} is bound to another claim than {namespace}/{claim}"
        )));
    }
    path_of(&pv)
}

/// The path a PersistentVolume gives on this node (hostPath checked by its type).
pub fn path_of(pv: &PersistentVolume) -> Result<Resolved, ClaimError> {
    let name = pv.metadata.name.as_deref().unwrap_or_default();
    let spec = pv.spec.as_ref();
    if let Some(host) = spec.and_then(|s| s.host_path.as_ref()) {
        let path = PathBuf::from(&host.path);
        super::host_path::check_type(&path, host.type_.as_deref()).map_err(ClaimError::Setup)?;
        return Ok(Resolved { path, local: false });
    }
    if let Some(local) = spec.and_then(|s| s.local.as_ref()) {
        let path = PathBuf::from(&local.path);
        if !path.exists() {
            return Err(ClaimError::Setup(format!(
                "path {:?} of local persistentvolume {name:?} does not exist on this node",
                local.path
            )));
        }
        return Ok(Resolved { path, local: true });
    }
    Err(ClaimError::Setup(format!(
        "persistentvolume {name:?} has a volume source this node cannot mount (only hostPath and local)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_and_local_volumes_resolve_others_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pvc-1_default_data");
        let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pvc-1"},
            "spec": {"hostPath": {"path": dir, "type": "DirectoryOrCreate"}}
        }))
        .unwrap();
        assert_eq!(
            path_of(&pv).unwrap(),
            Resolved {
                path: dir.clone(),
                local: false
            }
        );
        assert!(dir.is_dir());
        let local: PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "l"}, "spec": {"local": {"path": tmp.path().join("nope")}}
        }))
        .unwrap();
        assert!(path_of(&local).unwrap_err().to_string().contains("does not exist"));
        let nfs: PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"}, "spec": {"nfs": {"server": "x", "path": "/"}}
        }))
        .unwrap();
        assert!(path_of(&nfs).is_err());
    }
}
