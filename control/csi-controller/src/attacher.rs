//! The attacher (csi-attacher's behaviour): VolumeAttachments whose
//! `spec.attacher` is this driver.
//!
//! An attachment not yet attached gets the finalizer
//! `external-attacher/<driver, non-alphanumerics as '-'>`, then
//! `ControllerPublishVolume` with the PersistentVolume's volume handle,
//! `volumeAttributes` (volume context), `readOnly`, fsType and access mode,
//! the secret of `controllerPublishSecretRef`, and the node id the node
//! plugin reported (the CSINode's `spec.drivers[].nodeID`). Success sets
//! `status.attached: true` and `attachmentMetadata` to the publish context;
//! failure sets `status.attachError` (`time`, `message` as the gRPC error).
//! A deleted attachment is detached with `ControllerUnpublishVolume`, then
//! loses the finalizer (failure: `status.detachError`). For a driver without
//! `PUBLISH_UNPUBLISH_VOLUME` attachments are marked attached without a
//! call, as csi-attacher does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, Secret, SecretReference};
use k8s_openapi::api::storage::v1::{CSINode, VolumeAttachment};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use sluice_csi::v1::{ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest};

use crate::provisioner::capability;
use crate::Driver;

/// The finalizer csi-attacher puts on the attachments it handles.
pub fn finalizer(driver: &str) -> String {
    let sanitized: String = driver
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    format!("external-attacher/{sanitized}")
}

/// One pass over the driver's attachments.
pub async fn pass(driver: &Driver, publish: bool) -> anyhow::Result<()> {
    let api: Api<VolumeAttachment> = Api::all(driver.client.clone());
    for va in api.list(&ListParams::default()).await? {
        if va.spec.attacher != driver.name {
            continue;
        }
        let span = tracing::info_span!("attach", attachment = %va.name_any(), node = %va.spec.node_name);
        let _enter = span.enter();
        if let Err(err) = sync(driver, &api, &va, publish).await {
            tracing::warn!(%err, "attachment not synced");
        }
    }
    Ok(())
}

async fn sync(
    driver: &Driver,
    api: &Api<VolumeAttachment>,
    va: &VolumeAttachment,
    publish: bool,
) -> anyhow::Result<()> {
    let name = va.name_any();
    let fin = finalizer(&driver.name);
    let has_finalizer = va.finalizers().iter().any(|f| f == &fin);
    let attached = va.status.as_ref().is_some_and(|s| s.attached);
    if va.metadata.deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok(());
        }
        if publish {
            match detach(driver, va).await {
                Ok(()) => {}
                Err(message) => {
                    set_status(api, &name, json!({"detachError": {"time": now(), "message": message}})).await?;
                    return Ok(());
                }
            }
        }
        let rest: Vec<String> = va.finalizers().iter().filter(|f| *f != &fin).cloned().collect();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": rest, "resourceVersion": va.resource_version()}})),
        )
        .await?;
        tracing::info!("detached");
        return Ok(());
    }
    if attached {
        return Ok(());
    }
    if !has_finalizer {
        let mut all = va.finalizers().to_vec();
        all.push(fin);
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": all, "resourceVersion": va.resource_version()}})),
        )
        .await?;
    }
    let result = if publish {
        attach(driver, va).await
    } else {
        Ok(BTreeMap::new())
    };
    match result {
        Ok(metadata) => {
            set_status(
                api,
                &name,
                json!({"attached": true, "attachmentMetadata": metadata, "attachError": null}),
            )
            .await?;
            tracing::info!("attached");
        }
        Err(message) => {
            set_status(
                api,
                &name,
                json!({"attached": false, "attachError": {"time": now(), "message": message}}),
            )
            .await?;
        }
    }
    Ok(())
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn set_status(api: &Api<VolumeAttachment>, name: &str, status: serde_json::Value) -> anyhow::Result<()> {
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
        .await?;
    Ok(())
}

/// The volume an attachment is about, and the node id of its node.
async fn target(driver: &Driver, va: &VolumeAttachment) -> Result<(PersistentVolume, String), String> {
    let pv_name = va
        .spec
        .source
        .persistent_volume_name
        .clone()
        .ok_or_else(|| "inline volume attachments are not supported".to_string())?;
    let pv = Api::<PersistentVolume>::all(driver.client.clone())
        .get(&pv_name)
        .await
        .map_err(|e| format!("failed to get PersistentVolume {pv_name:?}: {e}"))?;
    let node = &va.spec.node_name;
    let csinode = Api::<CSINode>::all(driver.client.clone())
        .get_opt(node)
        .await
        .map_err(|e| e.to_string())?;
    let node_id = csinode
        .iter()
        .flat_map(|c| c.spec.drivers.iter())
        .find(|d| d.name == driver.name)
        .map(|d| d.node_id.clone())
        .ok_or_else(|| format!("node {node:?} has no NodeID annotation for driver {:?}", driver.name))?;
    Ok((pv, node_id))
}

async fn secrets(
    driver: &Driver,
    r: Option<&SecretReference>,
) -> Result<std::collections::HashMap<String, String>, String> {
    let Some(r) = r else { return Ok(Default::default()) };
    let (ns, name) = (
        r.namespace.clone().unwrap_or_default(),
        r.name.clone().unwrap_or_default(),
    );
    let secret = Api::<Secret>::namespaced(driver.client.clone(), &ns)
        .get(&name)
        .await
        .map_err(|e| format!("failed to get secret {ns}/{name}: {e}"))?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

async fn attach(driver: &Driver, va: &VolumeAttachment) -> Result<BTreeMap<String, String>, String> {
    let (pv, node_id) = target(driver, va).await?;
    let spec = pv.spec.clone().unwrap_or_default();
    let csi = spec
        .csi
        .clone()
        .ok_or_else(|| format!("PersistentVolume {:?} is not a CSI volume", pv.name_any()))?;
    let request = ControllerPublishVolumeRequest {
        volume_id: csi.volume_handle.clone(),
        node_id,
        volume_capability: Some(capability(
            spec.access_modes
                .as_deref()
                .unwrap_or_default()
                .first()
                .map(String::as_str)
                .unwrap_or("ReadWriteOnce"),
            spec.volume_mode.as_deref() == Some("Block"),
            csi.fs_type.as_deref().unwrap_or_default(),
            spec.mount_options.as_deref().unwrap_or_default(),
        )),
        readonly: csi.read_only.unwrap_or(false),
        secrets: secrets(driver, csi.controller_publish_secret_ref.as_ref()).await?,
        volume_context: csi.volume_attributes.clone().unwrap_or_default().into_iter().collect(),
    };
    let mut controller = driver.controller.clone();
    let response = controller
        .controller_publish_volume(driver.request(request))
        .await
        .map_err(|s| sluice_csi::rpc_error(&s))?;
    Ok(response.into_inner().publish_context.into_iter().collect())
}

async fn detach(driver: &Driver, va: &VolumeAttachment) -> Result<(), String> {
    let (pv, node_id) = target(driver, va).await?;
    let csi = pv
        .spec
        .as_ref()
        .and_then(|s| s.csi.clone())
        .ok_or_else(|| format!("PersistentVolume {:?} is not a CSI volume", pv.name_any()))?;
    let request = ControllerUnpublishVolumeRequest {
        volume_id: csi.volume_handle.clone(),
        node_id,
        secrets: secrets(driver, csi.controller_publish_secret_ref.as_ref()).await?,
    };
    let mut controller = driver.controller.clone();
    controller
        .controller_unpublish_volume(driver.request(request))
        .await
        .map_err(|s| sluice_csi::rpc_error(&s))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finalizers_are_named_as_csi_attacher_names_them() {
        assert_eq!(
            super::finalizer("hostpath.csi.k8s.io"),
            "external-attacher/hostpath-csi-k8s-io"
        );
    }
}
