//! `sluice-csi-controller`: what Kubernetes runs as the `csi-provisioner`
//! and `csi-attacher` sidecars next to a CSI driver's controller service,
//! as one small binary (those sidecars are Go programs; this is Sluice's
//! equivalent, with their flags and names).
//!
//! It dials the driver at `--csi-address`, learns the driver's name from
//! `GetPluginInfo` (the provisioner and attacher name) and its controller
//! capabilities, then every `--poll-interval`:
//!
//! - [`provisioner`] (when the driver has `CREATE_DELETE_VOLUME`): claims
//!   the PV controller annotated `volume.kubernetes.io/storage-provisioner:
//!   <driver>` get a volume from `CreateVolume` and a PersistentVolume
//!   `pvc-<claim uid>`; released volumes of the driver with reclaim policy
//!   `Delete` are removed with `DeleteVolume`.
//! - [`attacher`] (`PUBLISH_UNPUBLISH_VOLUME`): VolumeAttachments whose
//!   `spec.attacher` is the driver are attached with
//!   `ControllerPublishVolume` and detached with `ControllerUnpublishVolume`
//!   (a driver without that capability has its attachments marked attached,
//!   as csi-attacher does).
//!
//! Polling instead of watches keeps it small; the work per pass is a list of
//! claims, volumes and attachments.

mod attacher;
mod provisioner;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sluice_csi::v1::controller_client::ControllerClient;
use sluice_csi::v1::controller_service_capability::{self, rpc};
use sluice_csi::v1::identity_client::IdentityClient;
use sluice_csi::v1::{ControllerGetCapabilitiesRequest, GetPluginInfoRequest};
use tonic::transport::Channel;

/// Flags, named as the Kubernetes sidecars name them.
#[derive(Parser, Debug)]
#[command(version, about = "CSI provisioner and attacher for Sluice")]
pub struct Args {
    /// The CSI driver's controller socket.
    #[arg(long, default_value = "/run/csi/socket")]
    csi_address: PathBuf,
    /// Path to a kubeconfig (default: in-cluster or $KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// How often claims, volumes and attachments are examined.
    #[arg(long, default_value = "1s", value_parser = humantime_duration)]
    poll_interval: Duration,
    /// Timeout of each CSI call.
    #[arg(long, default_value = "15s", value_parser = humantime_duration)]
    timeout: Duration,
    /// Run only the provisioner (csi-provisioner).
    #[arg(long)]
    provisioner_only: bool,
    /// Run only the attacher (csi-attacher).
    #[arg(long)]
    attacher_only: bool,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("invalid duration {s:?}")),
    }
}

/// What the passes share.
pub struct Driver {
    /// The driver's name (GetPluginInfo).
    pub name: String,
    /// Its controller service.
    pub controller: ControllerClient<Channel>,
    /// The API client.
    pub client: kube::Client,
    /// Events as the sidecars record them.
    pub events: sluice_kube::events::EventRecorder,
    /// Timeout of each CSI call.
    pub timeout: Duration,
}

impl Driver {
    /// A CSI request with the call timeout.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.timeout);
        req
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sluice_kube::logging::init();
    let args = Args::parse();
    let channel = sluice_csi::connect(&args.csi_address)
        .await
        .with_context(|| format!("connecting to the CSI driver at {}", args.csi_address.display()))?;
    let info = IdentityClient::new(channel.clone())
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .map_err(|s| anyhow::anyhow!(sluice_csi::rpc_error(&s)))
        .context("GetPluginInfo")?
        .into_inner();
    let mut controller = ControllerClient::new(channel);
    let caps = controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .map_err(|s| anyhow::anyhow!(sluice_csi::rpc_error(&s)))
        .context("ControllerGetCapabilities")?
        .into_inner();
    let has = |t: rpc::Type| {
        caps.capabilities
            .iter()
            .any(|c| matches!(&c.r#type, Some(controller_service_capability::Type::Rpc(r)) if r.r#type == t as i32))
    };
    let provision = has(rpc::Type::CreateDeleteVolume) && !args.attacher_only;
    let publish = has(rpc::Type::PublishUnpublishVolume);
    let attach = !args.provisioner_only;
    let client = sluice_kube::client::client(args.kubeconfig.as_deref())
        .await
        .context("building the API client")?;
    let component = format!("{}_{}", info.name, "sluice-csi-controller");
    let driver = Driver {
        name: info.name.clone(),
        controller,
        events: sluice_kube::events::EventRecorder::new(client.clone(), &component),
        client,
        timeout: args.timeout,
    };
    tracing::info!(driver = %driver.name, provision, attach, publish, "CSI controller started");
    let mut tick = tokio::time::interval(args.poll_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        if provision {
            if let Err(err) = provisioner::pass(&driver).await {
                tracing::warn!(%err, "provisioner pass failed");
            }
        }
        if attach {
            if let Err(err) = attacher::pass(&driver, publish).await {
                tracing::warn!(%err, "attacher pass failed");
            }
        }
    }
}
