//! The CRI v1 client: noded's only way to touch containers.
//!
//! A thin typed layer over the `k8s-cri` runtime and image services, dialled
//! over containerd's unix socket. Every call is bounded by a deadline so a
//! wedged runtime shows up as an error in the pod's status instead of a
//! stuck worker; errors carry the call's name.

pub use k8s_cri::v1 as api;

use api::image_service_client::ImageServiceClient;
use api::runtime_service_client::RuntimeServiceClient;
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;

/// Deadline of ordinary calls (status, list, create, start).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Deadline of an image pull (large images over slow links take minutes).
pub const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// Errors of CRI calls.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The runtime's socket could not be dialled.
    #[error("cannot connect to the container runtime at {socket}: {source}")]
    Connect {
        /// The socket path.
        socket: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// A call returned an error status.
    #[error("CRI {call} failed: {}", source.message())]
    Call {
        /// The CRI method.
        call: &'static str,
        /// The gRPC status.
        source: tonic::Status,
    },
    /// A call did not finish in time.
    #[error("CRI {call} timed out after {timeout:?}")]
    Timeout {
        /// The CRI method.
        call: &'static str,
        /// The deadline that passed.
        timeout: Duration,
    },
}

impl CriError {
    /// Whether the runtime said the object does not exist (already gone).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Call { source, .. } if source.code() == tonic::Code::NotFound)
    }

    /// The runtime's own words: the gRPC status as Go prints it
    /// (`rpc error: code = NotFound desc = ...`), what the kubelet shows for
    /// failed calls; other errors as they display.
    pub fn runtime_message(&self) -> String {
        match self {
            Self::Call { source, .. } => crate::format::grpc_status(source),
            other => other.to_string(),
        }
    }
}

/// A connected CRI client (cheap to clone: one HTTP/2 connection underneath).
#[derive(Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// Run one call under a deadline, naming it in errors and timing it
/// (`kubelet_runtime_operations_*`).
async fn call<T>(
    name: &'static str,
    timeout: Duration,
    future: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CriError> {
    let started = std::time::Instant::now();
    let result = match tokio::time::timeout(timeout, future).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(source)) => Err(CriError::Call { call: name, source }),
        Err(_) => Err(CriError::Timeout { call: name, timeout }),
    };
    crate::kubelet_metrics::metrics().runtime_operation(name, started.elapsed(), result.is_err());
    result
}

impl Cri {
    /// Dial the runtime at `socket` (e.g. containerd's `containerd.sock`).
    pub async fn connect(socket: &Path) -> Result<Self, CriError> {
        let channel = sluice_proto::unix::connect(socket)
            .await
            .map_err(|source| CriError::Connect {
                socket: socket.display().to_string(),
                source,
            })?;
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20),
            images: ImageServiceClient::new(channel).max_decoding_message_size(16 << 20),
        })
    }

    /// Runtime name and version.
    pub async fn version(&self) -> Result<api::VersionResponse, CriError> {
        let mut rt = self.runtime.clone();
        call(
            "Version",
            CALL_TIMEOUT,
            rt.version(api::VersionRequest { version: "v1".into() }),
        )
        .await
    }

    /// Runtime conditions (`RuntimeReady`, `NetworkReady`).
    pub async fn status(&self) -> Result<Vec<api::RuntimeCondition>, CriError> {
        let mut rt = self.runtime.clone();
        let reply = call("Status", CALL_TIMEOUT, rt.status(api::StatusRequest { verbose: false })).await?;
        Ok(reply.status.map(|s| s.conditions).unwrap_or_default())
    }

    /// Whether the runtime reports its pod network ready (a CNI config is loaded).
    pub async fn network_ready(&self) -> Result<bool, CriError> {
        Ok(self
            .status()
            .await?
            .iter()
            .any(|c| c.r#type == "NetworkReady" && c.status))
    }

    /// Start a pod sandbox (pause container, network via CNI); returns its id.
    pub async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<String, CriError> {
        let mut rt = self.runtime.clone();
        let request = api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        Ok(call("RunPodSandbox", CALL_TIMEOUT, rt.run_pod_sandbox(request))
            .await?
            .pod_sandbox_id)
    }

    /// Stop a sandbox: kills its containers and tears its network down (CNI DEL).
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let mut rt = self.runtime.clone();
        call(
            "StopPodSandbox",
            CALL_TIMEOUT,
            rt.stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            }),
        )
        .await
        .map(drop)
    }

    /// Remove a stopped sandbox and its containers.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let mut rt = self.runtime.clone();
        call(
            "RemovePodSandbox",
            CALL_TIMEOUT,
            rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            }),
        )
        .await
        .map(drop)
    }

    /// Status of one sandbox (state, pod IP).
    pub async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus, CriError> {
        let mut rt = self.runtime.clone();
        let request = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        let reply = call("PodSandboxStatus", CALL_TIMEOUT, rt.pod_sandbox_status(request)).await?;
        reply.status.ok_or(CriError::Call {
            call: "PodSandboxStatus",
            source: tonic::Status::not_found("no status"),
        })
    }

    /// Every sandbox the runtime knows, optionally only those carrying `labels`.
    pub async fn list_pod_sandboxes(&self, labels: &[(&str, &str)]) -> Result<Vec<api::PodSandbox>, CriError> {
        let mut rt = self.runtime.clone();
        let filter = api::PodSandboxFilter {
            label_selector: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        let request = api::ListPodSandboxRequest { filter: Some(filter) };
        Ok(call("ListPodSandbox", CALL_TIMEOUT, rt.list_pod_sandbox(request))
            .await?
            .items)
    }

    /// Create a container in a sandbox; returns its id.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String, CriError> {
        let mut rt = self.runtime.clone();
        let request = api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(call("CreateContainer", CALL_TIMEOUT, rt.create_container(request))
            .await?
            .container_id)
    }

    /// Start a created container.
    pub async fn start_container(&self, id: &str) -> Result<(), CriError> {
        let mut rt = self.runtime.clone();
        call(
            "StartContainer",
            CALL_TIMEOUT,
            rt.start_container(api::StartContainerRequest {
                container_id: id.into(),
            }),
        )
        .await
        .map(drop)
    }

    /// Stop a container: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), CriError> {
        let mut rt = self.runtime.clone();
        let request = api::StopContainerRequest {
            container_id: id.into(),
            timeout: grace.as_secs() as i64,
        };
        call("StopContainer", grace + CALL_TIMEOUT, rt.stop_container(request))
            .await
            .map(drop)
    }

    /// Remove a container (stopping it first if needed).
    pub async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let mut rt = self.runtime.clone();
        call(
            "RemoveContainer",
            CALL_TIMEOUT,
            rt.remove_container(api::RemoveContainerRequest {
                container_id: id.into(),
            }),
        )
        .await
        .map(drop)
    }

    /// Containers, optionally of one sandbox only.
    pub async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<api::Container>, CriError> {
        let mut rt = self.runtime.clone();
        let filter = api::ContainerFilter {
            pod_sandbox_id: sandbox_id.unwrap_or_default().into(),
            ..Default::default()
        };
        let request = api::ListContainersRequest { filter: Some(filter) };
        Ok(call("ListContainers", CALL_TIMEOUT, rt.list_containers(request))
            .await?
            .containers)
    }

    /// Status of one container (state, exit code, times, image; the termination message once exited).
    pub async fn container_status(&self, id: &str) -> Result<api::ContainerStatus, CriError> {
        let mut rt = self.runtime.clone();
        let request = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let reply = call("ContainerStatus", CALL_TIMEOUT, rt.container_status(request)).await?;
        let mut status = reply.status.ok_or(CriError::Call {
            call: "ContainerStatus",
            source: tonic::Status::not_found("no status"),
        })?;
        // As the kubelet's runtime manager: an exited container's status carries its termination message.
        crate::termination_message::enrich(&mut status);
        Ok(status)
    }

    /// Run a command in a container and wait for it (exec probes).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<api::ExecSyncResponse, CriError> {
        let mut rt = self.runtime.clone();
        let request = api::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: timeout.as_secs().max(1) as i64,
        };
        call("ExecSync", timeout + Duration::from_secs(5), rt.exec_sync(request)).await
    }

    /// Prepare a streaming exec in a container; the answer is the URL of
    /// the runtime's streaming server that serves it (see `streaming`).
    pub async fn exec(&self, request: api::ExecRequest) -> Result<String, CriError> {
        let mut rt = self.runtime.clone();
        Ok(call("Exec", CALL_TIMEOUT, rt.exec(request)).await?.url)
    }

    /// Prepare a streaming attach to a container's main process (its URL).
    pub async fn attach(&self, request: api::AttachRequest) -> Result<String, CriError> {
        let mut rt = self.runtime.clone();
        Ok(call("Attach", CALL_TIMEOUT, rt.attach(request)).await?.url)
    }

    /// Prepare a port-forward into a sandbox's network namespace (its URL).
    pub async fn port_forward(&self, request: api::PortForwardRequest) -> Result<String, CriError> {
        let mut rt = self.runtime.clone();
        Ok(call("PortForward", CALL_TIMEOUT, rt.port_forward(request)).await?.url)
    }

    /// Pull `image` from its registry (or the node's configured mirrors), with
    /// registry credentials when given; returns the image reference (id).
    pub async fn pull_image(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String, CriError> {
        let mut images = self.images.clone();
        let request = api::PullImageRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth,
            sandbox_config,
        };
        Ok(call("PullImage", PULL_TIMEOUT, images.pull_image(request))
            .await?
            .image_ref)
    }

    /// Every image the runtime holds.
    pub async fn list_images(&self) -> Result<Vec<api::Image>, CriError> {
        let mut images = self.images.clone();
        let request = api::ListImagesRequest { filter: None };
        Ok(call("ListImages", CALL_TIMEOUT, images.list_images(request))
            .await?
            .images)
    }

    /// The mount point of the runtime's image filesystem (CRI `ImageFsInfo`), if it reports one.
    pub async fn image_fs_mountpoint(&self) -> Result<Option<std::path::PathBuf>, CriError> {
        let mut images = self.images.clone();
        let reply = call(
            "ImageFsInfo",
            CALL_TIMEOUT,
            images.image_fs_info(api::ImageFsInfoRequest {}),
        )
        .await?;
        Ok(reply
            .image_filesystems
            .into_iter()
            .filter_map(|fs| fs.fs_id)
            .map(|id| std::path::PathBuf::from(id.mountpoint))
            .find(|p| !p.as_os_str().is_empty()))
    }

    /// The local image named `image`, if present (no registry is ever contacted).
    pub async fn image_status(&self, image: &str) -> Result<Option<api::Image>, CriError> {
        let mut images = self.images.clone();
        let request = api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        Ok(call("ImageStatus", CALL_TIMEOUT, images.image_status(request))
            .await?
            .image)
    }
}
