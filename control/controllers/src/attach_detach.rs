//! The attach-detach controller (Kubernetes' `attachdetach-controller`)
//! for CSI volumes: it decides which CSI PersistentVolumes must be attached
//! to which nodes and expresses it as VolumeAttachments, which the driver's
//! attacher (`csi-attacher`, or Sluice's `sluice-csi-controller`) acts on.
//!
//! Every [`PERIOD`], from the manager's shared caches of pods, claims,
//! PersistentVolumes, CSIDrivers and VolumeAttachments (no request but its
//! writes, as Kubernetes' controller works from informers; it used to list
//! the last four every second): the desired state is every (volume, node) where a pod
//! scheduled to the node and not terminated uses a claim bound to a
//! PersistentVolume with `spec.csi` whose driver requires attach (the
//! CSIDriver's `attachRequired`, true when there is no CSIDriver object, as
//! Kubernetes). A missing VolumeAttachment is created, named
//! `csi-<sha256(volumeHandle + driver + node)>` as Kubernetes names it, with
//! `spec.attacher` (the driver), `spec.nodeName` and
//! `spec.source.persistentVolumeName`. A VolumeAttachment of a PV no
//! longer desired on its node is deleted (the attacher detaches it and
//! removes its finalizer); since noded unpublishes a pod's volumes before
//! the pod object goes, the volume is unmounted by then. Inline volumes and
//! `node.status.volumesAttached`/`volumesInUse` are not handled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::storage::v1::{VolumeAttachment, VolumeAttachmentSource, VolumeAttachmentSpec};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use crate::{runner, Context, Error};

/// How often the desired and actual attachments are compared.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Subscribes the controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    runner::every("attach-detach", PERIOD, move || {
        let ctx = ctx.clone();
        async move { pass(&ctx).await }
    })
    .boxed()
}

/// One attachment that should exist.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Desired {
    /// The PersistentVolume.
    pub volume: String,
    /// The node.
    pub node: String,
    /// The CSI driver (the attacher).
    pub driver: String,
}

impl Desired {
    /// The VolumeAttachment for it.
    pub fn attachment(&self, handle: &str) -> VolumeAttachment {
        VolumeAttachment {
            metadata: ObjectMeta {
                name: Some(sluice_csi::volume_attachment_name(handle, &self.driver, &self.node)),
                ..Default::default()
            },
            spec: VolumeAttachmentSpec {
                attacher: self.driver.clone(),
                node_name: self.node.clone(),
                source: VolumeAttachmentSource {
                    persistent_volume_name: Some(self.volume.clone()),
                    ..Default::default()
                },
            },
            status: None,
        }
    }
}

async fn pass(ctx: &Context) -> Result<(), Error> {
    let informers = &ctx.informers;
    let pods = informers.pods.store().state();
    let claims = informers.persistentvolumeclaims.store();
    let volumes = informers.persistentvolumes.store();
    let drivers = informers.csidrivers.store();
    let mut desired: BTreeMap<String, (Desired, String)> = BTreeMap::new();
    for pod in &pods {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        if node.is_empty() || sluice_kube::pods::is_terminated(pod) {
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        for claim in sluice_kube::storage::claim_names(pod) {
            let Some(pv_name) = claims
                .get(&ObjectRef::new(&claim).within(&namespace))
                .and_then(|c| c.spec.as_ref()?.volume_name.clone())
            else {
                continue;
            };
            let Some(volume) = volumes.get(&ObjectRef::new(&pv_name)) else {
                continue;
            };
            let Some(csi) = volume.spec.as_ref().and_then(|s| s.csi.as_ref()) else {
                continue;
            };
            let attach = drivers
                .get(&ObjectRef::new(&csi.driver))
                .and_then(|d| d.spec.attach_required)
                .unwrap_or(true);
            if !attach {
                continue;
            }
            let d = Desired {
                volume: pv_name.clone(),
                node: node.clone(),
                driver: csi.driver.clone(),
            };
            let name = sluice_csi::volume_attachment_name(&csi.volume_handle, &csi.driver, &node);
            desired.insert(name, (d, csi.volume_handle.clone()));
        }
    }
    let api: Api<VolumeAttachment> = Api::all(ctx.client.clone());
    let attachments = informers.volumeattachments.store();
    for (name, (d, handle)) in &desired {
        if attachments.get(&ObjectRef::new(name)).is_some() {
            continue;
        }
        match api.create(&PostParams::default(), &d.attachment(handle)).await {
            Ok(_) => tracing::info!(attachment = %name, volume = %d.volume, node = %d.node, "attaching volume"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for va in attachments.state() {
        let ours = va.spec.source.persistent_volume_name.is_some() && va.name_any().starts_with("csi-");
        if !ours || desired.contains_key(&va.name_any()) || va.metadata.deletion_timestamp.is_some() {
            continue;
        }
        tracing::info!(attachment = %va.name_any(), node = %va.spec.node_name, "detaching volume");
        match api.delete(&va.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_name_the_driver_node_and_volume() {
        let d = Desired {
            volume: "pvc-1".into(),
            node: "n1".into(),
            driver: "hostpath.csi.k8s.io".into(),
        };
        let va = d.attachment("vol-1");
        assert_eq!(va.spec.attacher, "hostpath.csi.k8s.io");
        assert_eq!(va.spec.node_name, "n1");
        assert_eq!(va.spec.source.persistent_volume_name.as_deref(), Some("pvc-1"));
        assert_eq!(
            va.metadata.name.as_deref(),
            Some(sluice_csi::volume_attachment_name("vol-1", "hostpath.csi.k8s.io", "n1").as_str())
        );
    }
}
