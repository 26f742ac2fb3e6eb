//! The `local-path` dynamic provisioner: node-local directories as
//! PersistentVolumes, in the shape of an external provisioner
//! (external-provisioner + Rancher's local-path-provisioner) run inside the
//! controller-manager.
//!
//! At start it makes sure the StorageClass `local-path` exists — provisioner
//! `sluice.dev/local-path`, `volumeBindingMode: WaitForFirstConsumer`,
//! `reclaimPolicy: Delete`, the default class — creating it when missing and
//! never overwriting one a user changed or replaced.
//!
//! A claim is ours when the PV controller annotated it
//! `volume.kubernetes.io/storage-provisioner: sluice.dev/local-path` and it
//! has no `spec.volumeName` yet; under a WaitForFirstConsumer class it also
//! waits for the scheduler's `volume.kubernetes.io/selected-node`. Under an
//! Immediate class without a selected node a Ready node that publishes a
//! storage root is picked by a hash of the claim's uid (deterministic, and
//! claims spread over nodes). The volume is the PersistentVolume
//! `pvc-<claim uid>`: `hostPath` `<root>/pvc-<uid>_<namespace>_<claim>`
//! (`DirectoryOrCreate`: the kubelet makes the directory when the first pod
//! mounts it), required node affinity on the node's hostname, pre-bound to
//! the claim through `claimRef` (the PV controller completes the binding),
//! the claim's storage request as capacity, its access modes and volume mode,
//! the class's reclaim policy. Events on the claim as external-provisioner
//! words them: `Provisioning`, `ProvisioningSucceeded`, `ProvisioningFailed`.
//!
//! Refused with `ProvisioningFailed` (never ignored): a `dataSource` or
//! `dataSourceRef` (no cloning or snapshots of a directory), `volumeMode:
//! Block`, the `ReadWriteMany` and `ReadOnlyMany` access modes (a node-local
//! directory cannot be shared across nodes), class `parameters` and
//! `mountOptions` (a host directory has neither). **Capacity is not
//! enforced:** the PV reports the requested size, but the directory may grow
//! until its node's filesystem is full. Deleting a released volume's
//! directory is noded's (`local_path` in noded), on the node that has it.
//!
//! The class allows expansion: [`resize`] is this provisioner's resizer (a
//! grown claim and its volume record the larger size; nothing changes on
//! the node, since the size is not enforced).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use sluice_kube::local_path::{self as names, ANN_ROOT, ANN_SELECTED_NODE, PROVISIONER};

pub mod resize;

use crate::events::{EventRecorder, EventType};
use crate::informer::Informer;
use crate::{runner, Context, Error};

/// The component name of this provisioner's Events.
pub const COMPONENT: &str = PROVISIONER;

/// How often a claim that could not be provisioned is tried again.
const RETRY: Duration = Duration::from_secs(15);

/// The provisioner's own caches (no other controller reads these kinds).
struct Caches {
    classes: Store<StorageClass>,
    volumes: Store<PersistentVolume>,
    nodes: Store<Node>,
    events: EventRecorder,
    /// The resizer's events, under external-resizer's component name.
    resize_events: EventRecorder,
}

/// Subscribes the provisioner and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let claims = Arc::new(Informer::<PersistentVolumeClaim>::new(
        Api::all(ctx.client.clone()),
        watcher::Config::default(),
    ));
    let classes = Arc::new(Informer::<StorageClass>::new(
        Api::all(ctx.client.clone()),
        watcher::Config::default(),
    ));
    let volumes = Arc::new(Informer::<PersistentVolume>::new(
        Api::all(ctx.client.clone()),
        watcher::Config::default(),
    ));
    let own = claims.trigger(|c: &PersistentVolumeClaim| Some(ObjectRef::from_obj(c)));
    let resize_own = claims.trigger(|c: &PersistentVolumeClaim| Some(ObjectRef::from_obj(c)));
    let resize_from_volume = volumes.trigger(|v: &PersistentVolume| {
        let r = v.spec.as_ref()?.claim_ref.as_ref()?;
        Some(ObjectRef::<PersistentVolumeClaim>::new(r.name.as_deref()?).within(r.namespace.as_deref()?))
    });
    let store = claims.store();
    let caches = Arc::new(Caches {
        classes: classes.store(),
        volumes: volumes.store(),
        nodes: ctx.informers.nodes.store(),
        events: EventRecorder::new(ctx.client.clone(), COMPONENT),
        resize_events: EventRecorder::new(ctx.client.clone(), &format!("external-resizer {PROVISIONER}")),
    });
    async move {
        tokio::spawn(ensure_class(ctx.client.clone()));
        claims.start();
        classes.start();
        volumes.start();
        claims.wait_synced().await;
        classes.wait_synced().await;
        volumes.wait_synced().await;
        let resize_caches = caches.clone();
        let resizer = runner::run(
            resize::NAME,
            ctx.clone(),
            store.clone(),
            vec![resize_own.boxed(), resize_from_volume.boxed()],
            move |claim, ctx| resize::reconcile(claim, ctx, resize_caches.clone()),
        );
        let provisioner = runner::run(
            "local-path-provisioner",
            ctx,
            store,
            vec![own.boxed()],
            move |claim, ctx| reconcile(claim, ctx, caches.clone()),
        );
        futures::future::join(provisioner, resizer).await;
    }
    .boxed()
}

/// The `local-path` StorageClass as it is created when missing.
pub fn default_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(names::CLASS_NAME.into()),
            annotations: Some(BTreeMap::from([(
                names::ANN_DEFAULT_CLASS.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        // Growing a directory whose size is not enforced is bookkeeping only
        // (the resizer in `resize`).
        allow_volume_expansion: Some(true),
        ..Default::default()
    }
}

/// Creates the `local-path` class unless it exists (never overwritten),
/// retrying until the API server answers.
async fn ensure_class(client: kube::Client) {
    let api: Api<StorageClass> = Api::all(client);
    loop {
        match api.create(&PostParams::default(), &default_class()).await {
            Ok(_) => {
                tracing::info!(class = names::CLASS_NAME, "created the default StorageClass");
                return;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => return,
            Err(e) => tracing::warn!(error = %e, "could not create the local-path StorageClass; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// What to do with a claim.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not ours, already provisioned or bound, or waiting for the scheduler.
    Skip,
    /// Provision on this node.
    Provision(String),
    /// Refuse, with the reason (the `ProvisioningFailed` message's tail).
    Refuse(String),
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// FNV-1a, for a stable spread of Immediate claims over nodes.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether and where to provision `claim` of `class` (already known to be
/// ours), given the nodes.
pub fn decide(claim: &PersistentVolumeClaim, class: &StorageClass, nodes: &[Arc<Node>]) -> Decision {
    let Some(spec) = claim.spec.as_ref() else {
        return Decision::Refuse("claim has no spec".into());
    };
    if spec.data_source.is_some() || spec.data_source_ref.is_some() {
        return Decision::Refuse(format!(
            "{PROVISIONER} does not support dataSource: a node-local directory cannot be cloned or restored from a snapshot"
        ));
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return Decision::Refuse(format!(
            "{PROVISIONER} does not support volumeMode Block: its volumes are directories"
        ));
    }
    if let Some(mode) = spec
        .access_modes
        .iter()
        .flatten()
        .find(|m| m.as_str() != "ReadWriteOnce" && m.as_str() != "ReadWriteOncePod")
    {
        return Decision::Refuse(format!(
            "{PROVISIONER} does not support access mode {mode}: a node-local directory cannot be shared across nodes (ReadWriteOnce and ReadWriteOncePod are supported)"
        ));
    }
    if let Some(key) = class.parameters.as_ref().and_then(|p| p.keys().next()) {
        return Decision::Refuse(format!("invalid parameter {key:?} for provisioner {PROVISIONER}"));
    }
    if class.mount_options.as_ref().is_some_and(|m| !m.is_empty()) {
        return Decision::Refuse(format!(
            "{PROVISIONER} does not support mountOptions: its volumes are host directories"
        ));
    }
    if spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .is_none()
    {
        return Decision::Refuse("claim has no resources.requests.storage".into());
    }
    let selected = annotation(&claim.metadata, ANN_SELECTED_NODE);
    let waits = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
    let node_name = match selected {
        Some(n) => n.to_string(),
        None if waits => return Decision::Skip,
        None => {
            let mut eligible: Vec<&str> = nodes
                .iter()
                .filter(|n| is_ready(n) && annotation(&n.metadata, ANN_ROOT).is_some())
                .filter(|n| allowed_on(class, n))
                .filter_map(|n| n.metadata.name.as_deref())
                .collect();
            if eligible.is_empty() {
                return Decision::Refuse(format!("no Ready node publishes a local storage root ({ANN_ROOT})"));
            }
            eligible.sort_unstable();
            let uid = claim.metadata.uid.as_deref().unwrap_or_default();
            eligible[(fnv(uid) % eligible.len() as u64) as usize].to_string()
        }
    };
    let Some(node) = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node_name.as_str()))
    else {
        return Decision::Refuse(format!("node {node_name:?} not found"));
    };
    if annotation(&node.metadata, ANN_ROOT).is_none() {
        return Decision::Refuse(format!(
            "node {node_name:?} publishes no local storage root (annotation {ANN_ROOT})"
        ));
    }
    Decision::Provision(node_name)
}

/// Whether the class's `allowedTopologies` admit the node.
fn allowed_on(class: &StorageClass, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    match class.allowed_topologies.as_deref() {
        None | Some([]) => true,
        Some(terms) => terms.iter().any(|t| {
            t.match_label_expressions
                .iter()
                .flatten()
                .all(|e| labels.and_then(|l| l.get(&e.key)).is_some_and(|v| e.values.contains(v)))
        }),
    }
}

/// The PersistentVolume for `claim` on a node whose storage root is `root`.
pub fn volume_for(claim: &PersistentVolumeClaim, class: &StorageClass, node: &str, root: &str) -> PersistentVolume {
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let ns = claim.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = claim.metadata.name.clone().unwrap_or_default();
    let spec = claim.spec.clone().unwrap_or_default();
    let path = format!(
        "{}/{}",
        root.trim_end_matches('/'),
        names::directory_name(&uid, &ns, &name)
    );
    let capacity = spec.resources.and_then(|r| r.requests).and_then(|r| {
        r.get("storage")
            .map(|q| BTreeMap::from([("storage".to_string(), q.clone())]))
    });
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(names::volume_name(&uid)),
            annotations: Some(BTreeMap::from([(
                names::ANN_PROVISIONED_BY.to_string(),
                PROVISIONER.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes,
            capacity,
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns),
                name: Some(name),
                uid: Some(uid),
                resource_version: claim.metadata.resource_version.clone(),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path,
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: names::HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into())),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(spec.volume_mode.unwrap_or_else(|| "Filesystem".into())),
            ..Default::default()
        }),
        status: None,
    }
}

/// The claim's class: its `storageClassName`, else the default class.
fn class_of(claim: &PersistentVolumeClaim, classes: &Store<StorageClass>) -> Option<Arc<StorageClass>> {
    let all = classes.state();
    match claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()) {
        Some(name) => all.into_iter().find(|c| c.metadata.name.as_deref() == Some(name)),
        None => all
            .into_iter()
            .filter(|c| annotation(&c.metadata, names::ANN_DEFAULT_CLASS) == Some("true"))
            .max_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp)),
    }
}

async fn reconcile(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Context>, caches: Arc<Caches>) -> Result<Action, Error> {
    let meta = &claim.metadata;
    let ours = [names::ANN_STORAGE_PROVISIONER, names::ANN_BETA_STORAGE_PROVISIONER]
        .iter()
        .any(|k| annotation(meta, k) == Some(PROVISIONER));
    let bound = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty());
    if !ours || bound || meta.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = meta.uid.clone().unwrap_or_default();
    let pv_name = names::volume_name(&uid);
    if caches.volumes.get(&ObjectRef::new(&pv_name)).is_some() {
        return Ok(Action::await_change());
    }
    let key = format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any());
    let class_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default();
    let Some(class) = class_of(&claim, &caches.classes) else {
        let why = format!("storageclass.storage.k8s.io {class_name:?} not found");
        fail(&caches, &claim, &class_name, &why);
        return Ok(Action::requeue(RETRY));
    };
    let class_name = class.name_any();
    if class.provisioner != PROVISIONER {
        return Ok(Action::await_change());
    }
    let nodes = caches.nodes.state();
    let node = match decide(&claim, &class, &nodes) {
        Decision::Skip => return Ok(Action::await_change()),
        Decision::Refuse(why) => {
            fail(&caches, &claim, &class_name, &why);
            return Ok(Action::requeue(RETRY));
        }
        Decision::Provision(node) => node,
    };
    let root = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node.as_str()))
        .and_then(|n| annotation(&n.metadata, ANN_ROOT).map(String::from))
        .unwrap_or_default();
    caches.events.record(
        &*claim,
        EventType::Normal,
        "Provisioning",
        format!("External provisioner is provisioning volume for claim {key:?}"),
    );
    let pv = volume_for(&claim, &class, &node, &root);
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {
            tracing::info!(claim = %key, volume = %pv_name, node = %node, "provisioned a local-path volume");
            caches.events.record(
                &*claim,
                EventType::Normal,
                "ProvisioningSucceeded",
                format!("Successfully provisioned volume {pv_name}"),
            );
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::await_change()),
        Err(e) => {
            fail(&caches, &claim, &class_name, &e.to_string());
            Err(e.into())
        }
    }
}

/// The `ProvisioningFailed` Warning, worded as external-provisioner's.
fn fail(caches: &Caches, claim: &PersistentVolumeClaim, class: &str, why: &str) {
    tracing::warn!(claim = %claim.name_any(), reason = why, "cannot provision");
    caches.events.record(
        claim,
        EventType::Warning,
        "ProvisioningFailed",
        format!("failed to provision volume with StorageClass {class:?}: {why}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeCondition, NodeStatus, PersistentVolumeClaimSpec, TypedLocalObjectReference, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn node(name: &str, ready: bool, root: Option<&str>) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: root.map(|r| BTreeMap::from([(ANN_ROOT.to_string(), r.to_string())])),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn claim(selected: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("shop".into()),
                uid: Some("1234".into()),
                annotations: selected.map(|n| BTreeMap::from([(ANN_SELECTED_NODE.to_string(), n.to_string())])),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_string(), Quantity("1Gi".into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn the_default_class_waits_for_the_first_consumer() {
        let class = default_class();
        assert_eq!(class.provisioner, "sluice.dev/local-path");
        assert_eq!(class.volume_binding_mode.as_deref(), Some("WaitForFirstConsumer"));
        assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(
            annotation(&class.metadata, "storageclass.kubernetes.io/is-default-class"),
            Some("true")
        );
    }

    #[test]
    fn wait_for_first_consumer_provisions_on_the_selected_node_only() {
        let class = default_class();
        let nodes = vec![node("a", true, Some("/r/a")), node("b", true, None)];
        assert_eq!(decide(&claim(None), &class, &nodes), Decision::Skip);
        assert_eq!(
            decide(&claim(Some("a")), &class, &nodes),
            Decision::Provision("a".into())
        );
        assert!(
            matches!(decide(&claim(Some("b")), &class, &nodes), Decision::Refuse(w) if w.contains("no local storage root"))
        );
        assert!(matches!(decide(&claim(Some("c")), &class, &nodes), Decision::Refuse(w) if w.contains("not found")));
    }

    #[test]
    fn immediate_claims_go_to_a_ready_node_with_a_root_deterministically() {
        let mut class = default_class();
        class.volume_binding_mode = Some("Immediate".into());
        let nodes = vec![
            node("c", false, Some("/r/c")),
            node("b", true, Some("/r/b")),
            node("a", true, None),
        ];
        assert_eq!(decide(&claim(None), &class, &nodes), Decision::Provision("b".into()));
        let nodes = vec![node("x", true, Some("/r")), node("y", true, Some("/r"))];
        let first = decide(&claim(None), &class, &nodes);
        assert_eq!(decide(&claim(None), &class, &nodes), first);
        assert!(matches!(decide(&claim(None), &class, &[]), Decision::Refuse(_)));
    }

    #[test]
    fn what_a_directory_cannot_do_is_refused_with_the_reason() {
        let class = default_class();
        let nodes = vec![node("a", true, Some("/r"))];
        let refused = |c: PersistentVolumeClaim| match decide(&c, &class, &nodes) {
            Decision::Refuse(why) => why,
            other => panic!("{other:?}"),
        };
        let mut rwx = claim(Some("a"));
        rwx.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteMany".into()]);
        assert!(refused(rwx).contains("cannot be shared across nodes"));
        let mut block = claim(Some("a"));
        block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        assert!(refused(block).contains("Block"));
        let mut clone = claim(Some("a"));
        clone.spec.as_mut().unwrap().data_source = Some(TypedLocalObjectReference {
            kind: "PersistentVolumeClaim".into(),
            name: "other".into(),
            api_group: None,
        });
        assert!(refused(clone).contains("dataSource"));
        let mut rwop = claim(Some("a"));
        rwop.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteOncePod".into()]);
        assert_eq!(decide(&rwop, &class, &nodes), Decision::Provision("a".into()));
    }

    #[test]
    fn the_volume_is_pinned_pre_bound_and_sized_as_the_claim() {
        let mut class = default_class();
        class.reclaim_policy = Some("Retain".into());
        let pv = volume_for(&claim(Some("a")), &class, "a", "/var/lib/noded/storage/");
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-1234"));
        assert_eq!(
            annotation(&pv.metadata, "pv.kubernetes.io/provisioned-by"),
            Some("sluice.dev/local-path")
        );
        let spec = pv.spec.unwrap();
        let host = spec.host_path.unwrap();
        assert_eq!(host.path, "/var/lib/noded/storage/pvc-1234_shop_data");
        assert_eq!(host.type_.as_deref(), Some("DirectoryOrCreate"));
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
        assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
        assert_eq!(spec.capacity.unwrap()["storage"].0, "1Gi");
        let claim_ref = spec.claim_ref.unwrap();
        assert_eq!(
            (
                claim_ref.namespace.as_deref(),
                claim_ref.name.as_deref(),
                claim_ref.uid.as_deref()
            ),
            (Some("shop"), Some("data"), Some("1234"))
        );
        let term = &spec.node_affinity.unwrap().required.unwrap().node_selector_terms[0];
        let req = &term.match_expressions.as_ref().unwrap()[0];
        assert_eq!(
            (req.key.as_str(), req.operator.as_str(), req.values.as_deref()),
            ("kubernetes.io/hostname", "In", Some(&["a".to_string()][..]))
        );
    }
}
