//! CSI driver registration, as the kubelet's plugin watcher and CSI plugin
//! handler do it.
//!
//! A driver (or its `node-driver-registrar` sidecar) puts a unix socket
//! serving the plugin-registration API in `<state-dir>/plugins_registry/`
//! (Kubernetes' `/var/lib/kubelet/plugins_registry`; deploy the registrar
//! with `--kubelet-registration-path` pointing into noded's state directory).
//! noded looks at the directory every [`SCAN_PERIOD`] (the kubelet uses
//! fsnotify; a scan is simpler and as correct). For a new socket it calls
//! `GetInfo`; a `CSIPlugin` supporting a 1.x version is registered: its
//! endpoint (`PluginInfo.endpoint`, or the registration socket itself) is
//! dialled for `NodeGetInfo`, and
//!
//! - the CSINode named after the node (owned by the Node) gets
//!   `spec.drivers[]` `{name, nodeID, topologyKeys, allocatable.count}`
//!   (`max_volumes_per_node`, when the driver reports one),
//! - the Node gets the annotation `csi.volume.kubernetes.io/nodeid`
//!   (JSON `{driver: nodeID}`) and its topology segments as labels,
//!
//! and the plugin hears `NotifyRegistrationStatus` (registered, or the
//! error). A socket that disappears deregisters the driver: it leaves the
//! CSINode and the annotation (labels stay, as the kubelet leaves them).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::{CSINode, CSINodeDriver, CSINodeSpec, VolumeNodeResources};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_csi::registration::registration_client::RegistrationClient;
use sluice_csi::registration::{InfoRequest, RegistrationStatus};
use sluice_csi::v1::node_client::NodeClient;
use sluice_csi::v1::NodeGetInfoRequest;

/// How often the registry directory is scanned.
pub const SCAN_PERIOD: Duration = Duration::from_secs(1);

/// The registry directory below noded's state directory.
pub fn registry_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("plugins_registry")
}

/// A registered driver: its socket and name.
struct Registered {
    name: String,
}

/// Watches `<state_dir>/plugins_registry` forever.
pub async fn run(client: kube::Client, node: String, state_dir: PathBuf) {
    let dir = registry_dir(&state_dir);
    if let Err(err) = std::fs::create_dir_all(&dir) {
        tracing::warn!(%err, dir = %dir.display(), "cannot create the plugin registry directory");
    }
    let mut registered: HashMap<PathBuf, Registered> = HashMap::new();
    let mut failed: HashMap<PathBuf, std::time::Instant> = HashMap::new();
    loop {
        let sockets: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
            .map(|e| e.path())
            .collect();
        for socket in &sockets {
            if registered.contains_key(socket) {
                continue;
            }
            if failed.get(socket).is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                continue;
            }
            match register(&client, &node, socket).await {
                Ok(name) => {
                    failed.remove(socket);
                    registered.insert(socket.clone(), Registered { name });
                }
                Err(err) => {
                    tracing::warn!(socket = %socket.display(), %err, "plugin registration failed");
                    failed.insert(socket.clone(), std::time::Instant::now());
                }
            }
        }
        let gone: Vec<PathBuf> = registered.keys().filter(|s| !sockets.contains(s)).cloned().collect();
        for socket in gone {
            if let Some(r) = registered.remove(&socket) {
                tracing::info!(driver = %r.name, "CSI driver deregistered");
                super::set_driver(&r.name, None);
                if let Err(err) = forget(&client, &node, &r.name).await {
                    tracing::warn!(%err, driver = %r.name, "could not remove the driver from CSINode");
                }
            }
        }
        tokio::time::sleep(SCAN_PERIOD).await;
    }
}

/// Register the plugin behind `socket`; returns the driver name.
async fn register(client: &kube::Client, node: &str, socket: &Path) -> anyhow_like::Result<String> {
    let channel = sluice_csi::connect(socket).await?;
    let mut reg = RegistrationClient::new(channel);
    let info = reg.get_info(InfoRequest {}).await?.into_inner();
    let outcome = validate_and_register(client, node, socket, &info).await;
    let status = RegistrationStatus {
        plugin_registered: outcome.is_ok(),
        error: outcome.as_ref().err().map(|e| e.to_string()).unwrap_or_default(),
    };
    if let Err(s) = reg.notify_registration_status(status).await {
        tracing::warn!(err = %sluice_csi::rpc_error(&s), "NotifyRegistrationStatus failed");
    }
    outcome.map(|()| info.name)
}

async fn validate_and_register(
    client: &kube::Client,
    node: &str,
    socket: &Path,
    info: &sluice_csi::registration::PluginInfo,
) -> anyhow_like::Result<()> {
    if info.r#type != sluice_csi::CSI_PLUGIN {
        return Err(anyhow_like::msg(format!(
            "plugin type {:?} is not supported by this node",
            info.r#type
        )));
    }
    if !info
        .supported_versions
        .iter()
        .any(|v| v.trim_start_matches('v').starts_with("1."))
    {
        return Err(anyhow_like::msg(format!(
            "none of the versions specified {:?} are supported",
            info.supported_versions
        )));
    }
    let endpoint = if info.endpoint.is_empty() {
        socket.to_path_buf()
    } else {
        PathBuf::from(&info.endpoint)
    };
    let channel = sluice_csi::connect(&endpoint).await?;
    let node_info = NodeClient::new(channel)
        .node_get_info(NodeGetInfoRequest {})
        .await?
        .into_inner();
    let segments: BTreeMap<String, String> = node_info
        .accessible_topology
        .map(|t| t.segments.into_iter().collect())
        .unwrap_or_default();
    update_node(client, node, &info.name, &node_info.node_id, &segments).await?;
    let driver = CSINodeDriver {
        name: info.name.clone(),
        node_id: node_info.node_id.clone(),
        topology_keys: Some(segments.keys().cloned().collect()),
        allocatable: (node_info.max_volumes_per_node > 0).then(|| VolumeNodeResources {
            count: i32::try_from(node_info.max_volumes_per_node).ok(),
        }),
    };
    update_csinode(client, node, &info.name, Some(driver)).await?;
    super::set_driver(&info.name, Some(endpoint));
    tracing::info!(driver = %info.name, node_id = %node_info.node_id, "CSI driver registered");
    Ok(())
}

async fn update_node(
    client: &kube::Client,
    node: &str,
    driver: &str,
    node_id: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let current = api.get(node).await?;
    let mut ids: serde_json::Map<String, serde_json::Value> = current
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(sluice_csi::ANN_NODE_ID))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    ids.insert(driver.to_string(), json!(node_id));
    let patch = json!({"metadata": {
        "annotations": {sluice_csi::ANN_NODE_ID: serde_json::Value::Object(ids).to_string()},
        "labels": labels,
    }});
    api.patch(node, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// Set (or with `None` remove) driver `name` in the node's CSINode.
async fn update_csinode(
    client: &kube::Client,
    node: &str,
    name: &str,
    driver: Option<CSINodeDriver>,
) -> Result<(), kube::Error> {
    let api: Api<CSINode> = Api::all(client.clone());
    for _ in 0..5 {
        match api.get_opt(node).await? {
            Some(mut current) => {
                current.spec.drivers.retain(|d| d.name != name);
                current.spec.drivers.extend(driver.clone());
                match api.replace(node, &PostParams::default(), &current).await {
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    other => return other.map(|_| ()),
                }
            }
            None => {
                let Some(driver) = driver.clone() else { return Ok(()) };
                let owner = Api::<Node>::all(client.clone()).get(node).await?;
                let csinode = CSINode {
                    metadata: ObjectMeta {
                        name: Some(node.to_string()),
                        owner_references: Some(vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: node.to_string(),
                            uid: owner.metadata.uid.unwrap_or_default(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    spec: CSINodeSpec { drivers: vec![driver] },
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &csinode).await {
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    other => return other.map(|_| ()),
                }
            }
        }
    }
    Ok(())
}

async fn forget(client: &kube::Client, node: &str, name: &str) -> Result<(), kube::Error> {
    update_csinode(client, node, name, None).await?;
    let api: Api<Node> = Api::all(client.clone());
    let current = api.get(node).await?;
    let mut ids: serde_json::Map<String, serde_json::Value> = current
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(sluice_csi::ANN_NODE_ID))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    ids.remove(name);
    let value = if ids.is_empty() {
        serde_json::Value::Null
    } else {
        json!(serde_json::Value::Object(ids).to_string())
    };
    let patch = json!({"metadata": {"annotations": {sluice_csi::ANN_NODE_ID: value}}});
    api.patch(node, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// Registration errors: any of the transport, gRPC and API failures, as text.
mod anyhow_like {
    /// A registration error.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct Error(String);

    /// Result of a registration step.
    pub type Result<T> = std::result::Result<T, Error>;

    /// An error with this message.
    pub fn msg(m: String) -> Error {
        Error(m)
    }

    impl From<tonic::Status> for Error {
        fn from(s: tonic::Status) -> Self {
            Error(sluice_csi::rpc_error(&s))
        }
    }

    impl From<tonic::transport::Error> for Error {
        fn from(e: tonic::transport::Error) -> Self {
            Error(format!("connecting: {e}"))
        }
    }

    impl From<kube::Error> for Error {
        fn from(e: kube::Error) -> Self {
            Error(e.to_string())
        }
    }
}
