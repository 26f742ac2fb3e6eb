//! The provisioner (csi-provisioner's behaviour).
//!
//! A claim is ours when the PV controller annotated it
//! `volume.kubernetes.io/storage-provisioner` (or the beta annotation) with
//! the driver's name, it is `Pending` without `spec.volumeName`, its
//! StorageClass names this provisioner and, under `WaitForFirstConsumer`,
//! the scheduler chose `volume.kubernetes.io/selected-node`. The volume is
//! made with `CreateVolume`: name `pvc-<claim uid>`, the claim's storage
//! request (and limit) as capacity range, one capability per access mode
//! (mount with the class's `csi.storage.k8s.io/fstype` and `mountOptions`,
//! or block), the class parameters without the `csi.storage.k8s.io/` keys,
//! the secret of `csi.storage.k8s.io/provisioner-secret-name`/`-namespace`
//! (`${pvc.name}`, `${pvc.namespace}` and `${pv.name}` expanded), and as
//! topology the selected node's values of the topology keys its CSINode lists
//! (else the class's `allowedTopologies`). The PersistentVolume
//! `pvc-<uid>` gets `spec.csi` (driver, volume handle, fsType, the volume
//! context as `volumeAttributes`, the node-stage/node-publish/controller-
//! publish/controller-expand secret references), the returned capacity, the
//! claim's access modes and volume mode, the class's reclaim policy
//! (default `Delete`) and mount options, node affinity from the accessible
//! topology, `claimRef` to the claim, and the annotation
//! `pv.kubernetes.io/provisioned-by`; the PV controller then binds the pair.
//! Events as csi-provisioner words them: `Provisioning`,
//! `ProvisioningSucceeded`, `ProvisioningFailed`.
//!
//! A `Released` volume provisioned by this driver with reclaim policy
//! `Delete` is removed with `DeleteVolume` (its deletion secret from the
//! provisioner-secret parameters), then its PersistentVolume is deleted;
//! a failure is a `VolumeFailedDelete` event on the volume.
//!
//! Refused with `ProvisioningFailed`: a claim `dataSource`/`dataSourceRef`
//! (no cloning or snapshots here) and unknown `csi.storage.k8s.io/` class
//! parameters.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, Secret, SecretReference, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::ResourceExt;
use sluice_csi::v1::volume_capability::{access_mode::Mode, AccessMode, AccessType, BlockVolume, MountVolume};
use sluice_csi::v1::{
    CapacityRange, CreateVolumeRequest, DeleteVolumeRequest, Topology, TopologyRequirement, VolumeCapability,
};
use sluice_kube::events::EventType;

use crate::Driver;

const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const PREFIX: &str = "csi.storage.k8s.io/";

/// The CSI capability for a Kubernetes access mode.
pub fn capability(access_mode: &str, block: bool, fs_type: &str, mount_options: &[String]) -> VolumeCapability {
    let mode = match access_mode {
        "ReadOnlyMany" => Mode::MultiNodeReaderOnly,
        "ReadWriteMany" => Mode::MultiNodeMultiWriter,
        "ReadWriteOncePod" => Mode::SingleNodeSingleWriter,
        _ => Mode::SingleNodeWriter,
    };
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(if block {
            AccessType::Block(BlockVolume {})
        } else {
            AccessType::Mount(MountVolume {
                fs_type: fs_type.to_string(),
                mount_flags: mount_options.to_vec(),
                volume_mount_group: String::new(),
            })
        }),
    }
}

/// A byte count as Kubernetes prints a binary quantity (`1Gi`, `1536Mi`, `1000`).
pub fn quantity(bytes: i64) -> Quantity {
    for (suffix, unit) in [("Ti", 1i64 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= unit && bytes % unit == 0 {
            return Quantity(format!("{}{suffix}", bytes / unit));
        }
    }
    Quantity(bytes.to_string())
}

/// Class parameters split as csi-provisioner splits them.
#[derive(Debug, Default, PartialEq)]
pub struct Parameters {
    /// What the driver gets in `CreateVolumeRequest.parameters`.
    pub driver: HashMap<String, String>,
    /// `csi.storage.k8s.io/fstype`.
    pub fs_type: String,
    /// `(kind, name, namespace)` of the `*-secret-name`/`-namespace` pairs
    /// (`provisioner`, `node-stage`, `node-publish`, `controller-publish`, `controller-expand`).
    pub secrets: BTreeMap<String, (String, String)>,
}

/// Split the class parameters; `Err` names an unknown `csi.storage.k8s.io/` key.
pub fn parameters(params: &BTreeMap<String, String>) -> Result<Parameters, String> {
    let mut out = Parameters::default();
    for (k, v) in params {
        let Some(key) = k.strip_prefix(PREFIX) else {
            out.driver.insert(k.clone(), v.clone());
            continue;
        };
        if key == "fstype" {
            out.fs_type = v.clone();
            continue;
        }
        let known = [
            "provisioner",
            "node-stage",
            "node-publish",
            "controller-publish",
            "controller-expand",
        ];
        let split = key
            .strip_suffix("-secret-name")
            .map(|kind| (kind, true))
            .or_else(|| key.strip_suffix("-secret-namespace").map(|kind| (kind, false)));
        match split {
            Some((kind, is_name)) if known.contains(&kind) => {
                let entry = out.secrets.entry(kind.to_string()).or_default();
                if is_name {
                    entry.0 = v.clone();
                } else {
                    entry.1 = v.clone();
                }
            }
            _ => {
                return Err(format!(
                    "found unknown parameter key \"{k}\" with reserved namespace {PREFIX}"
                ))
            }
        }
    }
    Ok(out)
}

/// `${pvc.name}`, `${pvc.namespace}` and `${pv.name}` expanded.
fn expand(template: &str, claim: &PersistentVolumeClaim, pv_name: &str) -> String {
    template
        .replace("${pvc.name}", &claim.name_any())
        .replace(
            "${pvc.namespace}",
            claim.metadata.namespace.as_deref().unwrap_or_default(),
        )
        .replace("${pv.name}", pv_name)
}

/// One pass: provision the driver's pending claims, delete its released volumes.
pub async fn pass(driver: &Driver) -> anyhow::Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::all(driver.client.clone());
    let volumes: Api<PersistentVolume> = Api::all(driver.client.clone());
    let existing: Vec<PersistentVolume> = volumes.list(&ListParams::default()).await?.items;
    for claim in claims.list(&ListParams::default()).await? {
        let ann = claim.annotations();
        let ours = ann
            .get(ANN_STORAGE_PROVISIONER)
            .or_else(|| ann.get(ANN_BETA_STORAGE_PROVISIONER))
            == Some(&driver.name);
        let pending = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or_default()
            .is_empty()
            && claim.metadata.deletion_timestamp.is_none();
        let pv_name = format!("pvc-{}", claim.uid().unwrap_or_default());
        if !ours || !pending || existing.iter().any(|v| v.name_any() == pv_name) {
            continue;
        }
        let span = tracing::info_span!("provision", claim = %format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any()));
        let _enter = span.enter();
        if let Err(err) = provision(driver, &claim, &pv_name).await {
            tracing::warn!(%err, "claim not provisioned");
        }
    }
    for pv in existing {
        let spec = pv.spec.clone().unwrap_or_default();
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let ours = pv.annotations().get(ANN_PROVISIONED_BY) == Some(&driver.name);
        if !(released && ours && spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete")) {
            continue;
        }
        let span = tracing::info_span!("delete", volume = %pv.name_any());
        let _enter = span.enter();
        match delete(driver, &pv).await {
            Ok(()) => {
                volumes.delete(&pv.name_any(), &DeleteParams::default()).await?;
                tracing::info!("volume deleted");
            }
            Err(message) => {
                driver
                    .events
                    .record(&pv, EventType::Warning, "VolumeFailedDelete", message);
            }
        }
    }
    Ok(())
}

async fn read_secret(driver: &Driver, namespace: &str, name: &str) -> Result<HashMap<String, String>, String> {
    let secret = Api::<Secret>::namespaced(driver.client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| format!("failed to get secret {namespace}/{name}: {e}"))?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

async fn delete(driver: &Driver, pv: &PersistentVolume) -> Result<(), String> {
    let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.clone()) else {
        return Err("not a CSI volume".into());
    };
    let mut secrets = HashMap::new();
    if let Some(class) = pv.spec.as_ref().and_then(|s| s.storage_class_name.clone()) {
        if let Ok(Some(class)) = Api::<StorageClass>::all(driver.client.clone()).get_opt(&class).await {
            let params = parameters(&class.parameters.unwrap_or_default())?;
            if let Some((name, ns)) = params.secrets.get("provisioner") {
                let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()).unwrap_or_default();
                let (name, ns) = (
                    name.replace("${pv.name}", &pv.name_any()),
                    ns.replace("${pv.name}", &pv.name_any()),
                );
                let (name, ns) = (
                    name.replace("${pvc.name}", claim_ref.name.as_deref().unwrap_or_default())
                        .replace("${pvc.namespace}", claim_ref.namespace.as_deref().unwrap_or_default()),
                    ns.replace("${pvc.namespace}", claim_ref.namespace.as_deref().unwrap_or_default()),
                );
                secrets = read_secret(driver, &ns, &name).await?;
            }
        }
    }
    let mut controller = driver.controller.clone();
    controller
        .delete_volume(driver.request(DeleteVolumeRequest {
            volume_id: csi.volume_handle,
            secrets,
        }))
        .await
        .map_err(|s| sluice_csi::rpc_error(&s))?;
    Ok(())
}

async fn provision(driver: &Driver, claim: &PersistentVolumeClaim, pv_name: &str) -> anyhow::Result<()> {
    let spec = claim.spec.clone().unwrap_or_default();
    let class_name = spec.storage_class_name.clone().unwrap_or_default();
    let Some(class) = Api::<StorageClass>::all(driver.client.clone())
        .get_opt(&class_name)
        .await?
    else {
        return Ok(());
    };
    if class.provisioner != driver.name {
        return Ok(());
    }
    let selected = claim.annotations().get(ANN_SELECTED_NODE).cloned();
    if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") && selected.is_none() {
        return Ok(());
    }
    let key = format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any());
    let fail = |message: String| {
        driver.events.record(
            claim,
            EventType::Warning,
            "ProvisioningFailed",
            format!("failed to provision volume with StorageClass {class_name:?}: {message}"),
        );
        anyhow::anyhow!(message)
    };
    driver.events.record(
        claim,
        EventType::Normal,
        "Provisioning",
        format!("External provisioner is provisioning volume for claim {key:?}"),
    );
    if spec.data_source.is_some() || spec.data_source_ref.is_some() {
        return Err(fail(
            "volume content sources (cloning, snapshots) are not supported by this provisioner".into(),
        ));
    }
    let params = parameters(&class.parameters.clone().unwrap_or_default()).map_err(&fail)?;
    let block = spec.volume_mode.as_deref() == Some("Block");
    let mount_options = class.mount_options.clone().unwrap_or_default();
    let access_modes = spec.access_modes.clone().unwrap_or_default();
    let resources = spec.resources.clone().unwrap_or_default();
    let requested =
        sluice_kube::storage::bytes(resources.requests.as_ref().and_then(|r| r.get("storage"))).unwrap_or(0);
    let limit = sluice_kube::storage::bytes(resources.limits.as_ref().and_then(|r| r.get("storage"))).unwrap_or(0);
    let mut secrets = HashMap::new();
    if let Some((name, ns)) = params.secrets.get("provisioner") {
        secrets = read_secret(driver, &expand(ns, claim, pv_name), &expand(name, claim, pv_name))
            .await
            .map_err(&fail)?;
    }
    let topology = match &selected {
        Some(node) => Some(node_topology(driver, node).await.map_err(&fail)?),
        None => allowed_topologies(&class),
    };
    let request = CreateVolumeRequest {
        name: pv_name.to_string(),
        capacity_range: Some(CapacityRange {
            required_bytes: requested,
            limit_bytes: limit,
        }),
        volume_capabilities: access_modes
            .iter()
            .map(|m| capability(m, block, &params.fs_type, &mount_options))
            .collect(),
        parameters: params.driver.clone(),
        secrets,
        volume_content_source: None,
        accessibility_requirements: topology,
        mutable_parameters: HashMap::new(),
    };
    let mut controller = driver.controller.clone();
    let volume = controller
        .create_volume(driver.request(request))
        .await
        .map_err(|s| fail(sluice_csi::rpc_error(&s)))?
        .into_inner()
        .volume
        .ok_or_else(|| fail("CreateVolume returned no volume".into()))?;
    let secret_ref = |kind: &str| {
        params.secrets.get(kind).map(|(name, ns)| SecretReference {
            name: Some(expand(name, claim, pv_name)),
            namespace: Some(expand(ns, claim, pv_name)),
        })
    };
    let capacity = if volume.capacity_bytes > 0 {
        volume.capacity_bytes
    } else {
        requested
    };
    let node_affinity = (!volume.accessible_topology.is_empty()).then(|| VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: volume
                .accessible_topology
                .iter()
                .map(|t| NodeSelectorTerm {
                    match_expressions: Some(
                        t.segments
                            .iter()
                            .collect::<BTreeMap<_, _>>()
                            .into_iter()
                            .map(|(k, v)| NodeSelectorRequirement {
                                key: k.clone(),
                                operator: "In".into(),
                                values: Some(vec![v.clone()]),
                            })
                            .collect(),
                    ),
                    match_fields: None,
                })
                .collect(),
        }),
    });
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(pv_name.to_string()),
            annotations: Some(BTreeMap::from([(ANN_PROVISIONED_BY.to_string(), driver.name.clone())])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(access_modes),
            capacity: Some(BTreeMap::from([("storage".to_string(), quantity(capacity))])),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.namespace(),
                name: Some(claim.name_any()),
                uid: claim.uid(),
                resource_version: claim.resource_version(),
                field_path: None,
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: driver.name.clone(),
                volume_handle: volume.volume_id.clone(),
                fs_type: (!block).then(|| {
                    if params.fs_type.is_empty() {
                        "ext4".into()
                    } else {
                        params.fs_type.clone()
                    }
                }),
                volume_attributes: (!volume.volume_context.is_empty())
                    .then(|| volume.volume_context.clone().into_iter().collect()),
                node_stage_secret_ref: secret_ref("node-stage"),
                node_publish_secret_ref: secret_ref("node-publish"),
                controller_publish_secret_ref: secret_ref("controller-publish"),
                controller_expand_secret_ref: secret_ref("controller-expand"),
                node_expand_secret_ref: None,
                read_only: None,
            }),
            mount_options: (!mount_options.is_empty()).then_some(mount_options),
            node_affinity,
            persistent_volume_reclaim_policy: Some(class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into())),
            storage_class_name: Some(class_name.clone()),
            volume_mode: spec.volume_mode.clone(),
            ..Default::default()
        }),
        status: None,
    };
    Api::<PersistentVolume>::all(driver.client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .map_err(|e| fail(format!("error creating PersistentVolume {pv_name:?}: {e}")))?;
    driver.events.record(
        claim,
        EventType::Normal,
        "ProvisioningSucceeded",
        format!("Successfully provisioned volume {pv_name}"),
    );
    tracing::info!(volume = pv_name, "provisioned");
    Ok(())
}

/// The selected node's topology for this driver: its labels for the keys its CSINode lists.
async fn node_topology(driver: &Driver, node: &str) -> Result<TopologyRequirement, String> {
    let csinode = Api::<CSINode>::all(driver.client.clone())
        .get_opt(node)
        .await
        .map_err(|e| e.to_string())?;
    let keys = csinode
        .iter()
        .flat_map(|c| c.spec.drivers.iter())
        .find(|d| d.name == driver.name)
        .map(|d| d.topology_keys.clone().unwrap_or_default())
        .ok_or_else(|| {
            format!(
                "error generating accessibility requirements: no CSINode driver {:?} on node {node:?}",
                driver.name
            )
        })?;
    if keys.is_empty() {
        return Ok(TopologyRequirement::default());
    }
    let labels = Api::<Node>::all(driver.client.clone())
        .get(node)
        .await
        .map_err(|e| e.to_string())?
        .metadata
        .labels
        .unwrap_or_default();
    let mut segments = HashMap::new();
    for k in keys {
        let v = labels
            .get(&k)
            .ok_or_else(|| format!("error generating accessibility requirements: topology labels from selected node map[...] does not match topology keys from CSINode [{k}]"))?;
        segments.insert(k, v.clone());
    }
    let t = Topology { segments };
    Ok(TopologyRequirement {
        requisite: vec![t.clone()],
        preferred: vec![t],
    })
}

/// The class's `allowedTopologies` as requisite topologies (one per value combination of a term).
fn allowed_topologies(class: &StorageClass) -> Option<TopologyRequirement> {
    let terms = class.allowed_topologies.as_ref()?;
    let mut requisite = Vec::new();
    for term in terms {
        let mut combos: Vec<HashMap<String, String>> = vec![HashMap::new()];
        for expr in term.match_label_expressions.iter().flatten() {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    expr.values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert(expr.key.clone(), v.clone());
                        c
                    })
                })
                .collect();
        }
        requisite.extend(
            combos
                .into_iter()
                .filter(|c| !c.is_empty())
                .map(|segments| Topology { segments }),
        );
    }
    (!requisite.is_empty()).then(|| TopologyRequirement {
        preferred: requisite.clone(),
        requisite,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_parameters_split_as_csi_provisioner_splits_them() {
        let p = parameters(&BTreeMap::from([
            ("type".to_string(), "fast".to_string()),
            ("csi.storage.k8s.io/fstype".to_string(), "xfs".to_string()),
            ("csi.storage.k8s.io/node-stage-secret-name".to_string(), "s".to_string()),
            (
                "csi.storage.k8s.io/node-stage-secret-namespace".to_string(),
                "${pvc.namespace}".to_string(),
            ),
        ]))
        .unwrap();
        assert_eq!(p.driver, HashMap::from([("type".to_string(), "fast".to_string())]));
        assert_eq!(p.fs_type, "xfs");
        assert_eq!(
            p.secrets["node-stage"],
            ("s".to_string(), "${pvc.namespace}".to_string())
        );
        let bad = parameters(&BTreeMap::from([(
            "csi.storage.k8s.io/nope".to_string(),
            "x".to_string(),
        )]));
        assert!(bad.unwrap_err().contains("found unknown parameter key"));
    }

    #[test]
    fn capacities_print_as_binary_quantities() {
        assert_eq!(quantity(1 << 30).0, "1Gi");
        assert_eq!(quantity(1536 << 20).0, "1536Mi");
        assert_eq!(quantity(1000).0, "1000");
    }
}
