//! The four CNI commands, in terms of the address store, the veth pair and noded.
//!
//! ADD is all-or-nothing: if any step fails, what earlier steps made (the
//! address, the veth pair) is undone before the error is returned. DEL is
//! idempotent and succeeds even when noded is gone (noded reconciles its
//! endpoints against CRI when it starts), so a sandbox can always be removed.

use crate::ipam::{IpamError, IpamStore};
use crate::noded::Noded;
use crate::spec::{self, code, AddResult, CniError, Command, Interface, Invocation, IpConfig, Route, VersionResult};
use crate::veth::{self, VethError, GATEWAY};
use sluice_proto::cni::v1::{DelPodRequest, PodInterface};
use std::net::Ipv4Addr;

/// Default MTU of both veth ends.
pub const DEFAULT_MTU: u32 = 1500;

/// Run one invocation; `Ok(Some(json))` is printed on stdout.
pub async fn run(invocation: &Invocation, stdin: &[u8]) -> Result<Option<serde_json::Value>, CniError> {
    let json = |v: &dyn erased::Json| v.to_json();
    match invocation.command {
        Command::Version => Ok(Some(json(&VersionResult {
            cni_version: spec::CNI_VERSION.to_owned(),
            supported_versions: spec::SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
        }))),
        Command::Add => add(invocation, &spec::parse_netconf(stdin)?)
            .await
            .map(|r| Some(json(&r))),
        Command::Del => del(invocation, &spec::parse_netconf(stdin)?).await.map(|()| None),
        Command::Check => check(invocation, &spec::parse_netconf(stdin)?).await.map(|()| None),
    }
}

mod erased {
    /// Serialize any result type to a JSON value (they are all plain data).
    pub trait Json {
        fn to_json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

fn ipam_error(err: IpamError) -> CniError {
    match err {
        IpamError::Exhausted(_) => CniError::new(code::ADDRESSES_EXHAUSTED, err.to_string()),
        IpamError::Io { .. } => CniError::new(code::IO_FAILURE, err.to_string()),
    }
}

fn veth_error(err: VethError) -> CniError {
    CniError::new(code::NETLINK, "setting up the pod's interface failed").with_details(err)
}

fn pod_interface(
    invocation: &Invocation,
    host_veth: &str,
    host_ifindex: u32,
    pod_ip: Ipv4Addr,
    pod_mac: &str,
) -> PodInterface {
    PodInterface {
        container_id: invocation.container_id.clone(),
        netns_path: invocation
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        ifname: invocation.ifname.clone(),
        pod_namespace: invocation.arg("K8S_POD_NAMESPACE").to_owned(),
        pod_name: invocation.arg("K8S_POD_NAME").to_owned(),
        pod_uid: invocation.arg("K8S_POD_UID").to_owned(),
        host_veth: host_veth.to_owned(),
        host_ifindex,
        pod_ip: pod_ip.to_string(),
        pod_mac: pod_mac.to_owned(),
    }
}

async fn add(invocation: &Invocation, conf: &spec::NetConf) -> Result<AddResult, CniError> {
    let netns = invocation
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(code::INVALID_ENV, "CNI_NETNS is not set"))?;
    let store = IpamStore::new(&conf.state_dir);
    let host_veth = veth::host_veth_name(&invocation.container_id, &invocation.ifname);
    let allocation = store
        .allocate(conf.pod_cidr, &invocation.container_id, &invocation.ifname, &host_veth)
        .map_err(ipam_error)?;
    let undo_address = || {
        let _ = store.release(&invocation.container_id, &invocation.ifname);
    };
    let mtu = conf.mtu.unwrap_or(DEFAULT_MTU);
    let interface = match veth::create(&invocation.container_id, netns, &invocation.ifname, allocation.ip, mtu).await {
        Ok(interface) => interface,
        Err(err) => {
            undo_address();
            return Err(veth_error(err));
        }
    };
    let told_noded = async {
        let mut noded = Noded::connect(&conf.noded_socket).await?;
        noded
            .add_pod(pod_interface(
                invocation,
                &interface.host_veth,
                interface.host_ifindex,
                allocation.ip,
                &interface.pod_mac,
            ))
            .await
    }
    .await;
    if let Err(err) = told_noded {
        let _ = veth::delete(&interface.host_veth).await;
        undo_address();
        return Err(err);
    }
    Ok(AddResult {
        cni_version: spec::CNI_VERSION.to_owned(),
        interfaces: vec![
            Interface {
                name: interface.host_veth.clone(),
                mac: interface.host_mac.clone(),
                sandbox: None,
            },
            Interface {
                name: invocation.ifname.clone(),
                mac: interface.pod_mac.clone(),
                sandbox: Some(netns.display().to_string()),
            },
        ],
        ips: vec![IpConfig {
            address: format!("{}/32", allocation.ip),
            gateway: GATEWAY.to_string(),
            interface: 1,
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".to_owned(),
            gw: GATEWAY.to_string(),
        }],
    })
}

async fn del(invocation: &Invocation, conf: &spec::NetConf) -> Result<(), CniError> {
    let store = IpamStore::new(&conf.state_dir);
    let allocation = store
        .get(&invocation.container_id, &invocation.ifname)
        .map_err(ipam_error)?;
    let host_veth = allocation
        .as_ref()
        .map(|a| a.host_veth.clone())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| veth::host_veth_name(&invocation.container_id, &invocation.ifname));
    // Best effort: noded re-syncs its endpoints from CRI when it (re)starts.
    if let Ok(mut noded) = Noded::connect(&conf.noded_socket).await {
        let _ = noded
            .del_pod(DelPodRequest {
                container_id: invocation.container_id.clone(),
                host_veth: host_veth.clone(),
                pod_ip: allocation.as_ref().map(|a| a.ip.to_string()).unwrap_or_default(),
            })
            .await;
    }
    veth::delete(&host_veth).await.map_err(veth_error)?;
    store
        .release(&invocation.container_id, &invocation.ifname)
        .map_err(ipam_error)?;
    Ok(())
}

async fn check(invocation: &Invocation, conf: &spec::NetConf) -> Result<(), CniError> {
    let netns = invocation
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(code::INVALID_ENV, "CNI_NETNS is not set"))?;
    let store = IpamStore::new(&conf.state_dir);
    let allocation = store
        .get(&invocation.container_id, &invocation.ifname)
        .map_err(ipam_error)?
        .ok_or_else(|| {
            CniError::new(
                code::CHECK_FAILED,
                format!("container {} holds no pod address", invocation.container_id),
            )
        })?;
    veth::check(&allocation.host_veth, netns, &invocation.ifname, allocation.ip)
        .await
        .map_err(|e| CniError::new(code::CHECK_FAILED, "the pod's interface is not as ADD left it").with_details(e))?;
    let mut noded = Noded::connect(&conf.noded_socket).await?;
    noded
        .check_pod(pod_interface(invocation, &allocation.host_veth, 0, allocation.ip, ""))
        .await
}
