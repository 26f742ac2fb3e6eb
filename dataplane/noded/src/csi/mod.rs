//! CSI volumes on the node, as the kubelet's `kubernetes.io/csi` volume
//! plugin does them: a persistentVolumeClaim bound to a PersistentVolume
//! with `spec.csi` is mounted by the volume's driver.
//!
//! Drivers register through [`registration`] (sockets in
//! `<state-dir>/plugins_registry/`, Kubernetes' `/var/lib/kubelet/plugins_registry`).
//! Mounting ([`set_up`]), in the kubelet's order:
//!
//! 1. the CSIDriver object is read: `attachRequired` (true when there is no
//!    CSIDriver, as Kubernetes), `podInfoOnMount`, `fsGroupPolicy`;
//! 2. when attach is required, the VolumeAttachment
//!    `csi-<sha256(handle+driver+node)>` must be `status.attached` (its
//!    `attachmentMetadata` is the publish context; an `attachError` is
//!    reported), until then the pod waits with a FailedMount event;
//! 3. with the driver's `STAGE_UNSTAGE_VOLUME`, `NodeStageVolume` on the
//!    global mount path `<state-dir>/plugins/kubernetes.io/csi/<driver>/<sha256(handle)>/globalmount`
//!    with the `nodeStageSecretRef` secret;
//! 4. `NodePublishVolume` on the pod's volume directory
//!    (`<state-dir>/pods/<uid>/volumes/<name>`) with the volume attributes
//!    (plus `csi.storage.k8s.io/pod.name`, `pod.namespace`, `pod.uid`,
//!    `serviceAccount.name` and `ephemeral` when the CSIDriver asks for
//!    `podInfoOnMount`), the publish context, the `nodePublishSecretRef`
//!    secret, `readOnly` (the claim's or the source's) and the capability
//!    from the PV's first access mode, `fsType` and `mountOptions`;
//! 5. the pod's `fsGroup` is applied per `fsGroupPolicy`: `File` always,
//!    `ReadWriteOnceWithFSType` (the default) when the volume has an fsType
//!    and the `ReadWriteOnce` access mode, `None` never.
//!
//! Each publish is recorded in `<state-dir>/csi/pods/<uid>/<volume>.json`;
//! when the pod goes ([`tear_down`]) every recorded volume gets
//! `NodeUnpublishVolume`, and `NodeUnstageVolume` once no other pod on the
//! node uses it. Errors are the kubelet's FailedMount wording, with gRPC
//! errors as Go prints them (`rpc error: code = ... desc = ...`).
//! Inline (ephemeral) `csi` pod volumes are refused by the API server.

pub mod registration;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, PersistentVolume, PersistentVolumeClaim, Pod, Secret, SecretReference, Volume,
};
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};
use kube::api::Api;
use serde_json::json;
use sluice_csi::v1::node_client::NodeClient;
use sluice_csi::v1::node_service_capability::{self, rpc};
use sluice_csi::v1::volume_capability::{access_mode::Mode, AccessMode, AccessType, MountVolume};
use sluice_csi::v1::{
    NodeGetCapabilitiesRequest, NodePublishVolumeRequest, NodeStageVolumeRequest, NodeUnpublishVolumeRequest,
    NodeUnstageVolumeRequest, VolumeCapability,
};

use tracing::Instrument;

use crate::volumes::VolumeError;

/// Registered drivers: name -> the socket of their node service.
fn drivers() -> &'static Mutex<HashMap<String, PathBuf>> {
    static DRIVERS: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    DRIVERS.get_or_init(Default::default)
}

/// Register (or with `None` forget) driver `name`'s endpoint.
pub fn set_driver(name: &str, endpoint: Option<PathBuf>) {
    let mut map = drivers().lock().unwrap_or_else(|e| e.into_inner());
    match endpoint {
        Some(e) => map.insert(name.to_string(), e),
        None => map.remove(name),
    };
}

/// The endpoint of registered driver `name`.
pub fn driver_endpoint(name: &str) -> Option<PathBuf> {
    drivers().lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
}

/// What [`tear_down`] needs to undo one publish.
#[derive(Debug, Clone, PartialEq)]
struct Published {
    driver: String,
    volume_handle: String,
    /// Empty when the driver does not stage.
    staging_path: String,
    target_path: String,
}

fn records_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("csi").join("pods")
}

/// The global mount (staging) path of a volume, as the kubelet lays it out.
pub fn staging_path(state_dir: &Path, driver: &str, handle: &str) -> PathBuf {
    state_dir
        .join("plugins/kubernetes.io/csi")
        .join(driver)
        .join(sluice_csi::sha256_hex(handle.as_bytes()))
        .join("globalmount")
}

/// The CSI capability for a PV's access mode, fsType and mount options.
fn capability(access_mode: &str, fs_type: &str, mount_options: &[String]) -> VolumeCapability {
    let mode = match access_mode {
        "ReadOnlyMany" => Mode::MultiNodeReaderOnly,
        "ReadWriteMany" => Mode::MultiNodeMultiWriter,
        "ReadWriteOncePod" => Mode::SingleNodeSingleWriter,
        _ => Mode::SingleNodeWriter,
    };
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs_type.to_string(),
            mount_flags: mount_options.to_vec(),
            volume_mount_group: String::new(),
        })),
    }
}

/// Whether the pod's fsGroup applies to a volume under `policy`.
pub fn fs_group_applies(policy: &str, fs_type: &str, access_modes: &[String]) -> bool {
    match policy {
        "File" => true,
        "None" => false,
        _ => !fs_type.is_empty() && access_modes.iter().any(|m| m == "ReadWriteOnce"),
    }
}

/// The `podInfoOnMount` attributes.
fn pod_info(pod: &Pod) -> BTreeMap<String, String> {
    let spec = pod.spec.as_ref();
    BTreeMap::from([
        (
            "csi.storage.k8s.io/pod.name".into(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        (
            "csi.storage.k8s.io/pod.namespace".into(),
            pod.metadata.namespace.clone().unwrap_or_default(),
        ),
        (
            "csi.storage.k8s.io/pod.uid".into(),
            pod.metadata.uid.clone().unwrap_or_default(),
        ),
        (
            "csi.storage.k8s.io/serviceAccount.name".into(),
            spec.and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        ),
        ("csi.storage.k8s.io/ephemeral".into(), "false".into()),
    ])
}

fn setup_err(volume: &Volume, message: impl Into<String>) -> VolumeError {
    VolumeError::Setup {
        volume: volume.name.clone(),
        message: message.into(),
    }
}

fn api_err(volume: &Volume, source: kube::Error) -> VolumeError {
    VolumeError::Api {
        volume: volume.name.clone(),
        source,
    }
}

async fn secrets(client: &kube::Client, r: Option<&SecretReference>) -> Result<HashMap<String, String>, String> {
    let Some(r) = r else { return Ok(HashMap::new()) };
    let (ns, name) = (
        r.namespace.clone().unwrap_or_default(),
        r.name.clone().unwrap_or_default(),
    );
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get(&name)
        .await
        .map_err(|e| {
            format!("kubernetes.io/csi: failed to find the secret {name} in the namespace {ns} with error: {e}")
        })?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

/// Whether `path` is a mount point.
fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    info.lines().any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
}

/// Mount `volume` of `pod` at `dir` when it is a claim bound to a CSI
/// PersistentVolume; `Ok(false)` when it is not a CSI volume (the caller's
/// other volume kinds handle it, including an unbound claim's error).
pub async fn set_up(
    client: &kube::Client,
    state_dir: &Path,
    pod: &Pod,
    volume: &Volume,
    dir: &Path,
) -> Result<bool, VolumeError> {
    let Some(claim_source) = &volume.persistent_volume_claim else {
        return Ok(false);
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let Some(claim) = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .get_opt(&claim_source.claim_name)
        .await
        .map_err(|e| api_err(volume, e))?
    else {
        return Ok(false);
    };
    let pv_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if pv_name.is_empty() {
        return Ok(false);
    }
    let Some(pv) = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&pv_name)
        .await
        .map_err(|e| api_err(volume, e))?
    else {
        return Ok(false);
    };
    let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.clone()) else {
        return Ok(false);
    };
    let span = tracing::info_span!("csi_mount", volume = %volume.name, pv = %pv_name, driver = %csi.driver);
    let read_only = claim_source.read_only.unwrap_or(false) || csi.read_only.unwrap_or(false);
    mount(client, state_dir, pod, volume, dir, &pv, &csi, read_only)
        .instrument(span)
        .await?;
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
async fn mount(
    client: &kube::Client,
    state_dir: &Path,
    pod: &Pod,
    volume: &Volume,
    dir: &Path,
    pv: &PersistentVolume,
    csi: &CSIPersistentVolumeSource,
    read_only: bool,
) -> Result<(), VolumeError> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let record_path = records_dir(state_dir).join(uid).join(format!("{}.json", volume.name));
    if is_mount_point(dir) && record_path.exists() {
        return Ok(());
    }
    let endpoint = driver_endpoint(&csi.driver).ok_or_else(|| {
        setup_err(
            volume,
            format!(
                "kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver name {} not found in the list of registered CSI drivers",
                csi.driver
            ),
        )
    })?;
    let driver_obj = Api::<CSIDriver>::all(client.clone())
        .get_opt(&csi.driver)
        .await
        .map_err(|e| api_err(volume, e))?;
    let driver_spec = driver_obj.map(|d| d.spec).unwrap_or_default();
    let attach_required = driver_spec.attach_required.unwrap_or(true);
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let mut publish_context = HashMap::new();
    if attach_required {
        let name = sluice_csi::volume_attachment_name(&csi.volume_handle, &csi.driver, &node);
        let va = Api::<VolumeAttachment>::all(client.clone())
            .get_opt(&name)
            .await
            .map_err(|e| api_err(volume, e))?;
        let status = va.as_ref().and_then(|v| v.status.clone());
        if !status.as_ref().is_some_and(|s| s.attached) {
            let why = status
                .and_then(|s| s.attach_error)
                .and_then(|e| e.message)
                .map(|m| format!(": attachment error: {m}"))
                .unwrap_or_default();
            return Err(setup_err(
                volume,
                format!(
                    "kubernetes.io/csi: waiting for external-attacher of {} CSI driver to attach volume {} (VolumeAttachment {name}){why}",
                    csi.driver, csi.volume_handle
                ),
            ));
        }
        publish_context = va
            .and_then(|v| v.status)
            .and_then(|s| s.attachment_metadata)
            .unwrap_or_default()
            .into_iter()
            .collect();
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let access_modes = spec.access_modes.clone().unwrap_or_default();
    let fs_type = csi.fs_type.clone().unwrap_or_default();
    let cap = capability(
        access_modes.first().map(String::as_str).unwrap_or("ReadWriteOnce"),
        &fs_type,
        spec.mount_options.as_deref().unwrap_or_default(),
    );
    let rpc_failed = |s: tonic::Status| setup_err(volume, sluice_csi::rpc_error(&s));
    let channel = sluice_csi::connect(&endpoint).await.map_err(|e| {
        setup_err(
            volume,
            format!(
                "kubernetes.io/csi: failed to connect to driver {} at {}: {e}",
                csi.driver,
                endpoint.display()
            ),
        )
    })?;
    let mut node_client = NodeClient::new(channel);
    let caps = node_client
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .map_err(rpc_failed)?
        .into_inner();
    let stages = caps.capabilities.iter().any(|c| {
        matches!(&c.r#type, Some(node_service_capability::Type::Rpc(r)) if r.r#type == rpc::Type::StageUnstageVolume as i32)
    });
    let volume_context: HashMap<String, String> =
        csi.volume_attributes.clone().unwrap_or_default().into_iter().collect();
    let mut staging = String::new();
    if stages {
        let path = staging_path(state_dir, &csi.driver, &csi.volume_handle);
        std::fs::create_dir_all(&path).map_err(|source| VolumeError::Io {
            volume: volume.name.clone(),
            source,
        })?;
        let stage_secrets = secrets(client, csi.node_stage_secret_ref.as_ref())
            .await
            .map_err(|m| setup_err(volume, m))?;
        node_client
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: csi.volume_handle.clone(),
                publish_context: publish_context.clone(),
                staging_target_path: path.display().to_string(),
                volume_capability: Some(cap.clone()),
                secrets: stage_secrets,
                volume_context: volume_context.clone(),
            })
            .await
            .map_err(rpc_failed)?;
        staging = path.display().to_string();
    }
    let mut context = volume_context;
    if driver_spec.pod_info_on_mount == Some(true) {
        context.extend(pod_info(pod));
    }
    let publish_secrets = secrets(client, csi.node_publish_secret_ref.as_ref())
        .await
        .map_err(|m| setup_err(volume, m))?;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|source| VolumeError::Io {
            volume: volume.name.clone(),
            source,
        })?;
    }
    let record = Published {
        driver: csi.driver.clone(),
        volume_handle: csi.volume_handle.clone(),
        staging_path: staging.clone(),
        target_path: dir.display().to_string(),
    };
    // Recorded before the call, so a publish that half-happened is still undone.
    write_record(&record_path, &record).map_err(|source| VolumeError::Io {
        volume: volume.name.clone(),
        source,
    })?;
    node_client
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: csi.volume_handle.clone(),
            publish_context,
            staging_target_path: staging,
            target_path: dir.display().to_string(),
            volume_capability: Some(cap),
            readonly: read_only,
            secrets: publish_secrets,
            volume_context: context,
        })
        .await
        .map_err(rpc_failed)?;
    let policy = driver_spec
        .fs_group_policy
        .as_deref()
        .unwrap_or("ReadWriteOnceWithFSType");
    let fs_group = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group);
    if let Some(gid) = fs_group.filter(|_| !read_only && fs_group_applies(policy, &fs_type, &access_modes)) {
        crate::volumes::set_ownership(dir, gid, false).map_err(|source| VolumeError::Io {
            volume: volume.name.clone(),
            source,
        })?;
    }
    tracing::info!(target = %dir.display(), "CSI volume published");
    Ok(())
}

fn write_record(path: &Path, record: &Published) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let body = serde_json::to_vec(&json!({
        "driver": record.driver,
        "volumeHandle": record.volume_handle,
        "stagingPath": record.staging_path,
        "targetPath": record.target_path,
    }))
    .map_err(std::io::Error::other)?;
    std::fs::write(path, body)
}

fn read_records(dir: &Path) -> Vec<(PathBuf, Published)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Some(v) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            continue;
        };
        let field = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let record = Published {
            driver: field("driver"),
            volume_handle: field("volumeHandle"),
            staging_path: field("stagingPath"),
            target_path: field("targetPath"),
        };
        out.push((path, record));
    }
    out
}

/// Unpublish (and, when no other pod uses them, unstage) the CSI volumes
/// pod `uid` had; runs before the pod's directory is removed. Blocks the
/// calling (multi-threaded runtime) thread while the driver answers.
pub fn tear_down(state_dir: &Path, uid: &str) {
    let dir = records_dir(state_dir).join(uid);
    if !dir.exists() {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return;
    }
    let state_dir = state_dir.to_path_buf();
    tokio::task::block_in_place(|| handle.block_on(tear_down_async(&state_dir, &dir)));
}

async fn tear_down_async(state_dir: &Path, dir: &Path) {
    for (path, record) in read_records(dir) {
        let _span =
            tracing::info_span!("csi_unmount", driver = %record.driver, volume = %record.volume_handle).entered();
        let Some(endpoint) = driver_endpoint(&record.driver) else {
            tracing::warn!("driver not registered: the volume stays published");
            continue;
        };
        let Ok(channel) = sluice_csi::connect(&endpoint).await else {
            tracing::warn!(endpoint = %endpoint.display(), "driver unreachable: the volume stays published");
            continue;
        };
        let mut node = NodeClient::new(channel);
        if let Err(s) = node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: record.volume_handle.clone(),
                target_path: record.target_path.clone(),
            })
            .await
        {
            tracing::warn!(err = %sluice_csi::rpc_error(&s), "UnmountVolume.TearDown failed");
            continue;
        }
        let _ = std::fs::remove_file(&path);
        let still_used = std::fs::read_dir(records_dir(state_dir))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|d| read_records(&d.path()))
            .any(|(_, r)| r.driver == record.driver && r.volume_handle == record.volume_handle);
        if !record.staging_path.is_empty() && !still_used {
            match node
                .node_unstage_volume(NodeUnstageVolumeRequest {
                    volume_id: record.volume_handle.clone(),
                    staging_target_path: record.staging_path.clone(),
                })
                .await
            {
                Ok(_) => {
                    let _ = std::fs::remove_dir(&record.staging_path);
                    if let Some(parent) = Path::new(&record.staging_path).parent() {
                        let _ = std::fs::remove_dir(parent);
                    }
                }
                Err(s) => tracing::warn!(err = %sluice_csi::rpc_error(&s), "UnmountDevice failed"),
            }
        }
        tracing::info!("CSI volume unpublished");
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_group_follows_the_csidriver_policy() {
        let rwo = vec!["ReadWriteOnce".to_string()];
        assert!(fs_group_applies("File", "", &[]));
        assert!(!fs_group_applies("None", "ext4", &rwo));
        assert!(fs_group_applies("ReadWriteOnceWithFSType", "ext4", &rwo));
        assert!(!fs_group_applies("ReadWriteOnceWithFSType", "", &rwo));
        assert!(!fs_group_applies(
            "ReadWriteOnceWithFSType",
            "ext4",
            &["ReadWriteMany".to_string()]
        ));
    }

    #[test]
    fn staging_paths_are_per_driver_and_volume_hash() {
        let p = staging_path(Path::new("/s"), "d.example", "vol");
        assert_eq!(
            p,
            PathBuf::from(format!(
                "/s/plugins/kubernetes.io/csi/d.example/{}/globalmount",
                sluice_csi::sha256_hex(b"vol")
            ))
        );
    }
}
