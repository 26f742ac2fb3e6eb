//! `sluice-csi-hostpath`: a small, honest CSI driver for tests, backed by
//! directories.
//!
//! One process serves the CSI Identity, Controller and Node services on
//! `--endpoint` (a unix socket), the way csi-driver-host-path does, and, with
//! `--registration-socket`, the kubelet's plugin-registration service as the
//! `node-driver-registrar` sidecar would (so noded's plugin watcher finds it
//! in its `plugins_registry` directory).
//!
//! - **Controller**: `CreateVolume` makes `<backing-dir>/<name>` (the volume
//!   id is the request's name, so retries are idempotent) and reports the
//!   requested capacity (not enforced) and the topology
//!   `topology.hostpath.csi.sluice.dev/node=<node-id>`; `DeleteVolume`
//!   removes the directory; `ControllerPublishVolume` records the attachment
//!   (`<backing-dir>/.attachments/<volume>@<node>`) and returns the publish
//!   context `{"attachedNode": <node>}`; `ControllerUnpublishVolume` removes
//!   the record. Block volumes are refused (`InvalidArgument`).
//! - **Node** (`STAGE_UNSTAGE_VOLUME`): `NodeStageVolume` bind-mounts the
//!   volume's directory on the staging path; `NodePublishVolume` bind-mounts
//!   the staging path on the target (read-only when asked), and refuses to
//!   publish a volume that was never attached to this node (the attach path
//!   must have run); the unstage/unpublish calls unmount and are idempotent.
//!
//! Every call is logged to stderr (and, with `--call-log`, appended as one
//! line `<Method> <volume id>` to that file, so tests can see which calls
//! the orchestrator made).

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser;
use sluice_csi::registration::registration_server::{Registration, RegistrationServer};
use sluice_csi::registration::{InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse};
use sluice_csi::v1::controller_server::{Controller, ControllerServer};
use sluice_csi::v1::identity_server::{Identity, IdentityServer};
use sluice_csi::v1::node_server::{Node, NodeServer};
use sluice_csi::v1::*;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

/// The topology key this driver reports.
const TOPOLOGY_KEY: &str = "topology.hostpath.csi.sluice.dev/node";

#[derive(Parser, Debug, Clone)]
#[command(version, about = "A test CSI driver backed by directories")]
struct Args {
    /// The driver's name (GetPluginInfo).
    #[arg(long, default_value = "hostpath.csi.sluice.dev")]
    drivername: String,
    /// The unix socket the CSI services listen on.
    #[arg(long)]
    endpoint: PathBuf,
    /// Where volumes' directories are made.
    #[arg(long)]
    backing_dir: PathBuf,
    /// This node's id (NodeGetInfo) and topology value.
    #[arg(long)]
    nodeid: String,
    /// Also serve the plugin-registration API on this socket (as node-driver-registrar).
    #[arg(long)]
    registration_socket: Option<PathBuf>,
    /// The CSI socket as the node sees it (`PluginInfo.endpoint`); defaults to `--endpoint`.
    #[arg(long)]
    kubelet_registration_path: Option<PathBuf>,
    /// Append one line per CSI call to this file.
    #[arg(long)]
    call_log: Option<PathBuf>,
}

#[derive(Clone)]
struct Driver {
    args: Args,
}

type Reply<T> = Result<Response<T>, Status>;

impl Driver {
    fn log(&self, method: &str, volume: &str) {
        tracing::info!(method, volume, "CSI call");
        if let Some(path) = &self.args.call_log {
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(f, "{method} {volume}");
            }
        }
    }

    fn volume_dir(&self, id: &str) -> Result<PathBuf, Status> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(Status::invalid_argument(format!("invalid volume id {id:?}")));
        }
        Ok(self.args.backing_dir.join(id))
    }

    fn attachment(&self, volume: &str, node: &str) -> PathBuf {
        self.args
            .backing_dir
            .join(".attachments")
            .join(format!("{volume}@{node}"))
    }

    fn topology(&self) -> Topology {
        Topology {
            segments: HashMap::from([(TOPOLOGY_KEY.to_string(), self.args.nodeid.clone())]),
        }
    }
}

fn check_capability(cap: Option<&VolumeCapability>) -> Result<(), Status> {
    match cap.and_then(|c| c.access_type.as_ref()) {
        Some(volume_capability::AccessType::Mount(_)) => Ok(()),
        Some(volume_capability::AccessType::Block(_)) => Err(Status::invalid_argument(
            "block volumes are not supported by this driver",
        )),
        None => Err(Status::invalid_argument("volume capability missing")),
    }
}

fn io_status(what: &str, err: std::io::Error) -> Status {
    Status::internal(format!("{what}: {err}"))
}

fn c_path(p: &Path) -> Result<CString, Status> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Status::invalid_argument("path contains NUL"))
}

/// Whether `path` is a mount point (listed in /proc/self/mountinfo).
fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    info.lines().any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
}

fn bind_mount(source: &Path, target: &Path, read_only: bool) -> Result<(), Status> {
    if is_mount_point(target) {
        return Ok(());
    }
    let (src, dst) = (c_path(source)?, c_path(target)?);
    // SAFETY: valid NUL-terminated paths; null fstype/data are allowed for a bind mount.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io_status("bind mount", std::io::Error::last_os_error()));
    }
    if read_only {
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
        // SAFETY: as above; remounting the bind mount just made.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                dst.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io_status("read-only remount", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn unmount(target: &Path) -> Result<(), Status> {
    while is_mount_point(target) {
        let dst = c_path(target)?;
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::umount2(dst.as_ptr(), 0) };
        if rc != 0 {
            return Err(io_status("unmount", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Identity for Driver {
    async fn get_plugin_info(&self, _: Request<GetPluginInfoRequest>) -> Reply<GetPluginInfoResponse> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.args.drivername.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").into(),
            manifest: HashMap::new(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Reply<GetPluginCapabilitiesResponse> {
        let service = |t: plugin_capability::service::Type| PluginCapability {
            r#type: Some(plugin_capability::Type::Service(plugin_capability::Service {
                r#type: t as i32,
            })),
        };
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: vec![
                service(plugin_capability::service::Type::ControllerService),
                service(plugin_capability::service::Type::VolumeAccessibilityConstraints),
            ],
        }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Reply<ProbeResponse> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}

#[tonic::async_trait]
impl Controller for Driver {
    async fn create_volume(&self, req: Request<CreateVolumeRequest>) -> Reply<CreateVolumeResponse> {
        let req = req.into_inner();
        self.log("CreateVolume", &req.name);
        if req.volume_capabilities.is_empty() {
            return Err(Status::invalid_argument("volume capabilities missing"));
        }
        for cap in &req.volume_capabilities {
            check_capability(Some(cap))?;
        }
        if req.volume_content_source.is_some() {
            return Err(Status::invalid_argument(
                "volume content sources are not supported by this driver",
            ));
        }
        if let Some(topo) = &req.accessibility_requirements {
            let ours = self.topology();
            let reachable = topo.requisite.is_empty() && topo.preferred.is_empty()
                || topo.requisite.iter().chain(&topo.preferred).any(|t| t == &ours);
            if !reachable {
                return Err(Status::resource_exhausted(format!(
                    "this driver serves only {TOPOLOGY_KEY}={}",
                    self.args.nodeid
                )));
            }
        }
        let dir = self.volume_dir(&req.name)?;
        std::fs::create_dir_all(&dir).map_err(|e| io_status("creating the volume directory", e))?;
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(Volume {
                capacity_bytes: req.capacity_range.map(|c| c.required_bytes).unwrap_or(0),
                volume_id: req.name,
                volume_context: HashMap::from([("backingDir".to_string(), dir.display().to_string())]),
                content_source: None,
                accessible_topology: vec![self.topology()],
            }),
        }))
    }

    async fn delete_volume(&self, req: Request<DeleteVolumeRequest>) -> Reply<DeleteVolumeResponse> {
        let req = req.into_inner();
        self.log("DeleteVolume", &req.volume_id);
        let dir = self.volume_dir(&req.volume_id)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_status("removing the volume directory", e)),
        }
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        req: Request<ControllerPublishVolumeRequest>,
    ) -> Reply<ControllerPublishVolumeResponse> {
        let req = req.into_inner();
        self.log("ControllerPublishVolume", &req.volume_id);
        check_capability(req.volume_capability.as_ref())?;
        if !self.volume_dir(&req.volume_id)?.is_dir() {
            return Err(Status::not_found(format!("volume {} not found", req.volume_id)));
        }
        if req.node_id != self.args.nodeid {
            return Err(Status::not_found(format!("node {} not found", req.node_id)));
        }
        let record = self.attachment(&req.volume_id, &req.node_id);
        if let Some(parent) = record.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_status("recording the attachment", e))?;
        }
        std::fs::write(&record, b"").map_err(|e| io_status("recording the attachment", e))?;
        Ok(Response::new(ControllerPublishVolumeResponse {
            publish_context: HashMap::from([("attachedNode".to_string(), req.node_id)]),
        }))
    }

    async fn controller_unpublish_volume(
        &self,
        req: Request<ControllerUnpublishVolumeRequest>,
    ) -> Reply<ControllerUnpublishVolumeResponse> {
        let req = req.into_inner();
        self.log("ControllerUnpublishVolume", &req.volume_id);
        let _ = std::fs::remove_file(self.attachment(&req.volume_id, &req.node_id));
        Ok(Response::new(ControllerUnpublishVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        req: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Reply<ValidateVolumeCapabilitiesResponse> {
        let req = req.into_inner();
        if !self.volume_dir(&req.volume_id)?.is_dir() {
            return Err(Status::not_found(format!("volume {} not found", req.volume_id)));
        }
        let ok = req
            .volume_capabilities
            .iter()
            .all(|c| check_capability(Some(c)).is_ok());
        Ok(Response::new(ValidateVolumeCapabilitiesResponse {
            confirmed: ok.then_some(validate_volume_capabilities_response::Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: req.mutable_parameters,
            }),
            message: if ok {
                String::new()
            } else {
                "block volumes are not supported".into()
            },
        }))
    }

    async fn list_volumes(&self, _: Request<ListVolumesRequest>) -> Reply<ListVolumesResponse> {
        Err(Status::unimplemented("ListVolumes"))
    }

    async fn get_capacity(&self, _: Request<GetCapacityRequest>) -> Reply<GetCapacityResponse> {
        Err(Status::unimplemented("GetCapacity"))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Reply<ControllerGetCapabilitiesResponse> {
        use controller_service_capability::rpc::Type;
        let rpc = |t: Type| ControllerServiceCapability {
            r#type: Some(controller_service_capability::Type::Rpc(
                controller_service_capability::Rpc { r#type: t as i32 },
            )),
        };
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: vec![rpc(Type::CreateDeleteVolume), rpc(Type::PublishUnpublishVolume)],
        }))
    }

    async fn create_snapshot(&self, _: Request<CreateSnapshotRequest>) -> Reply<CreateSnapshotResponse> {
        Err(Status::unimplemented("CreateSnapshot"))
    }

    async fn delete_snapshot(&self, _: Request<DeleteSnapshotRequest>) -> Reply<DeleteSnapshotResponse> {
        Err(Status::unimplemented("DeleteSnapshot"))
    }

    async fn list_snapshots(&self, _: Request<ListSnapshotsRequest>) -> Reply<ListSnapshotsResponse> {
        Err(Status::unimplemented("ListSnapshots"))
    }

    async fn get_snapshot(&self, _: Request<GetSnapshotRequest>) -> Reply<GetSnapshotResponse> {
        Err(Status::unimplemented("GetSnapshot"))
    }

    async fn controller_expand_volume(
        &self,
        _: Request<ControllerExpandVolumeRequest>,
    ) -> Reply<ControllerExpandVolumeResponse> {
        Err(Status::unimplemented("ControllerExpandVolume"))
    }

    async fn controller_get_volume(
        &self,
        _: Request<ControllerGetVolumeRequest>,
    ) -> Reply<ControllerGetVolumeResponse> {
        Err(Status::unimplemented("ControllerGetVolume"))
    }

    async fn controller_modify_volume(
        &self,
        _: Request<ControllerModifyVolumeRequest>,
    ) -> Reply<ControllerModifyVolumeResponse> {
        Err(Status::unimplemented("ControllerModifyVolume"))
    }
}

#[tonic::async_trait]
impl Node for Driver {
    async fn node_stage_volume(&self, req: Request<NodeStageVolumeRequest>) -> Reply<NodeStageVolumeResponse> {
        let req = req.into_inner();
        self.log("NodeStageVolume", &req.volume_id);
        check_capability(req.volume_capability.as_ref())?;
        let dir = self.volume_dir(&req.volume_id)?;
        if !dir.is_dir() {
            return Err(Status::not_found(format!("volume {} not found", req.volume_id)));
        }
        let staging = PathBuf::from(&req.staging_target_path);
        if !staging.is_dir() {
            return Err(Status::failed_precondition(format!(
                "staging path {} does not exist",
                staging.display()
            )));
        }
        bind_mount(&dir, &staging, false)?;
        Ok(Response::new(NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(&self, req: Request<NodeUnstageVolumeRequest>) -> Reply<NodeUnstageVolumeResponse> {
        let req = req.into_inner();
        self.log("NodeUnstageVolume", &req.volume_id);
        unmount(Path::new(&req.staging_target_path))?;
        Ok(Response::new(NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(&self, req: Request<NodePublishVolumeRequest>) -> Reply<NodePublishVolumeResponse> {
        let req = req.into_inner();
        self.log("NodePublishVolume", &req.volume_id);
        check_capability(req.volume_capability.as_ref())?;
        if !self.attachment(&req.volume_id, &self.args.nodeid).exists() {
            return Err(Status::failed_precondition(format!(
                "volume {} is not attached to node {}",
                req.volume_id, self.args.nodeid
            )));
        }
        let staging = PathBuf::from(&req.staging_target_path);
        if !is_mount_point(&staging) {
            return Err(Status::failed_precondition(format!(
                "volume {} is not staged",
                req.volume_id
            )));
        }
        let target = PathBuf::from(&req.target_path);
        std::fs::create_dir_all(&target).map_err(|e| io_status("creating the target path", e))?;
        bind_mount(&staging, &target, req.readonly)?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<NodeUnpublishVolumeRequest>,
    ) -> Reply<NodeUnpublishVolumeResponse> {
        let req = req.into_inner();
        self.log("NodeUnpublishVolume", &req.volume_id);
        let target = Path::new(&req.target_path);
        unmount(target)?;
        match std::fs::remove_dir(target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_status("removing the target path", e)),
        }
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(&self, _: Request<NodeGetVolumeStatsRequest>) -> Reply<NodeGetVolumeStatsResponse> {
        Err(Status::unimplemented("NodeGetVolumeStats"))
    }

    async fn node_expand_volume(&self, _: Request<NodeExpandVolumeRequest>) -> Reply<NodeExpandVolumeResponse> {
        Err(Status::unimplemented("NodeExpandVolume"))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Reply<NodeGetCapabilitiesResponse> {
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: vec![NodeServiceCapability {
                r#type: Some(node_service_capability::Type::Rpc(node_service_capability::Rpc {
                    r#type: node_service_capability::rpc::Type::StageUnstageVolume as i32,
                })),
            }],
        }))
    }

    async fn node_get_info(&self, _: Request<NodeGetInfoRequest>) -> Reply<NodeGetInfoResponse> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.args.nodeid.clone(),
            max_volumes_per_node: 0,
            accessible_topology: Some(self.topology()),
        }))
    }
}

/// The node-driver-registrar's side of plugin registration.
struct Registrar {
    name: String,
    endpoint: String,
}

#[tonic::async_trait]
impl Registration for Registrar {
    async fn get_info(&self, _: Request<InfoRequest>) -> Reply<PluginInfo> {
        Ok(Response::new(PluginInfo {
            r#type: sluice_csi::CSI_PLUGIN.into(),
            name: self.name.clone(),
            endpoint: self.endpoint.clone(),
            supported_versions: vec!["1.0.0".into()],
        }))
    }

    async fn notify_registration_status(&self, req: Request<RegistrationStatus>) -> Reply<RegistrationStatusResponse> {
        let status = req.into_inner();
        if status.plugin_registered {
            tracing::info!("registered with the node");
        } else {
            tracing::warn!(error = %status.error, "the node refused the registration");
        }
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

fn listen(path: &Path) -> anyhow::Result<UnixListenerStream> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    Ok(UnixListenerStream::new(listener))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.backing_dir).context("creating the backing directory")?;
    let driver = Driver { args: args.clone() };
    let csi = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(driver.clone()))
        .add_service(ControllerServer::new(driver.clone()))
        .add_service(NodeServer::new(driver.clone()))
        .serve_with_incoming(listen(&args.endpoint)?);
    let registration = async {
        let Some(socket) = &args.registration_socket else {
            return std::future::pending::<Result<(), tonic::transport::Error>>().await;
        };
        let endpoint = args.kubelet_registration_path.as_ref().unwrap_or(&args.endpoint);
        let registrar = Registrar {
            name: args.drivername.clone(),
            endpoint: endpoint.display().to_string(),
        };
        let incoming = listen(socket).map_err(|e| {
            tracing::error!(%e, "registration socket");
            e
        });
        match incoming {
            Ok(incoming) => {
                tonic::transport::Server::builder()
                    .add_service(RegistrationServer::new(registrar))
                    .serve_with_incoming(incoming)
                    .await
            }
            Err(_) => std::future::pending().await,
        }
    };
    tracing::info!(endpoint = %args.endpoint.display(), driver = %args.drivername, "serving CSI");
    tokio::select! {
        r = csi => r.context("CSI server")?,
        r = registration => r.context("registration server")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = std::fs::remove_file(&args.endpoint);
    if let Some(socket) = &args.registration_socket {
        let _ = std::fs::remove_file(socket);
    }
    Ok(())
}
