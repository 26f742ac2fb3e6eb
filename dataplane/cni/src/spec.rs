//! The CNI 1.0 wire format: what the runtime hands the plugin and what it gets back.
//!
//! The runtime (containerd) runs the plugin with `CNI_*` environment
//! variables and the network config as JSON on stdin; the plugin answers
//! with a result (ADD), nothing (DEL, CHECK), a version report (VERSION) or
//! an error object, always as JSON on stdout.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

/// The CNI spec version this plugin speaks.
pub const CNI_VERSION: &str = "1.0.0";

/// Versions accepted in a network config's `cniVersion`.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0"];

/// Well-known CNI error codes (spec section "Error").
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure (reading stdin...).
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODE_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later (a transient condition).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// First plugin-specific code: the pod address range is exhausted.
    pub const ADDRESSES_EXHAUSTED: u32 = 100;
    /// The node daemon could not be reached or refused the pod.
    pub const NODED_UNAVAILABLE: u32 = 101;
    /// A netlink operation failed.
    pub const NETLINK: u32 = 102;
    /// CHECK found the pod's network not as ADD left it.
    pub const CHECK_FAILED: u32 = 103;
}

/// The operation asked for in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach the container to the network.
    Add,
    /// Detach (idempotent).
    Del,
    /// Verify an earlier ADD still holds.
    Check,
    /// Report supported versions.
    Version,
}

impl std::str::FromStr for Command {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ADD" => Ok(Self::Add),
            "DEL" => Ok(Self::Del),
            "CHECK" => Ok(Self::Check),
            "VERSION" => Ok(Self::Version),
            other => Err(format!("unknown CNI_COMMAND {other:?}")),
        }
    }
}

/// The `CNI_*` environment of one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (the CRI sandbox id).
    pub container_id: String,
    /// `CNI_NETNS`: path of the pod's network namespace (may be absent on DEL).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`: interface name to create inside the pod.
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, ...).
    pub args: HashMap<String, String>,
}

impl Invocation {
    /// Read the invocation from the process environment.
    pub fn from_env() -> Result<Self, CniError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Read the invocation through `var` (testable without touching the environment).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let required = |name: &str| {
            var(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| CniError::new(code::INVALID_ENV, format!("{name} is not set")))
        };
        let command: Command = required("CNI_COMMAND")?
            .parse()
            .map_err(|msg| CniError::new(code::INVALID_ENV, msg))?;
        if command == Command::Version {
            return Ok(Self {
                command,
                container_id: String::new(),
                netns: None,
                ifname: String::new(),
                args: HashMap::new(),
            });
        }
        let container_id = required("CNI_CONTAINERID")?;
        let ifname = required("CNI_IFNAME")?;
        if ifname.len() > 15 || ifname.contains('/') {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_IFNAME {ifname:?} is not a valid interface name"),
            ));
        }
        let netns = match command {
            Command::Del => var("CNI_NETNS").filter(|v| !v.is_empty()).map(PathBuf::from),
            _ => Some(PathBuf::from(required("CNI_NETNS")?)),
        };
        let args = var("CNI_ARGS")
            .unwrap_or_default()
            .split(';')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Self {
            command,
            container_id,
            netns,
            ifname,
            args,
        })
    }

    /// A `CNI_ARGS` value, or "" when absent.
    pub fn arg(&self, key: &str) -> &str {
        self.args.get(key).map(String::as_str).unwrap_or("")
    }
}

/// The network config `noded` writes for this plugin (one entry of the node's conflist).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// CNI version of this config.
    pub cni_version: String,
    /// Network name.
    pub name: String,
    /// Plugin type (`sluice-cni`).
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The node's pod address range (from `Node.spec.podCIDR`).
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Ipv4Net,
    /// noded's `sluice.cni.v1.NodeNetwork` unix socket.
    pub noded_socket: PathBuf,
    /// Where the IPAM state of this node lives.
    pub state_dir: PathBuf,
    /// MTU of both veth ends (default 1500).
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// `ips[]` entry of a result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IpConfig {
    /// CIDR notation, e.g. `10.244.1.5/32`.
    pub address: String,
    /// The next hop for the pod.
    pub gateway: String,
    /// Index into `interfaces`.
    pub interface: usize,
}

/// `interfaces[]` entry of a result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// Network namespace path, for interfaces inside the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// `routes[]` entry of a result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Route {
    /// Destination CIDR.
    pub dst: String,
    /// Next hop.
    pub gw: String,
}

/// The result of ADD.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AddResult {
    /// Always [`CNI_VERSION`].
    pub cni_version: String,
    /// Host-side veth first, then the pod interface.
    pub interfaces: Vec<Interface>,
    /// The pod's address.
    pub ips: Vec<IpConfig>,
    /// Routes set inside the pod.
    pub routes: Vec<Route>,
}

/// The answer to VERSION.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionResult {
    /// Version of this reply.
    pub cni_version: String,
    /// Versions this plugin accepts.
    pub supported_versions: Vec<String>,
}

/// A CNI error: printed as `{"cniVersion", "code", "msg", "details"}` with a non-zero exit.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct CniError {
    /// Version of this reply.
    pub cni_version: String,
    /// Error code (see [`code`]).
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// Longer explanation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error with a code and message.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            cni_version: CNI_VERSION.to_owned(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with details attached.
    pub fn with_details(mut self, details: impl std::fmt::Display) -> Self {
        self.details = details.to_string();
        self
    }
}

/// Parse the network config from stdin's bytes, checking its version.
pub fn parse_netconf(bytes: &[u8]) -> Result<NetConf, CniError> {
    let conf: NetConf = serde_json::from_slice(bytes)
        .map_err(|e| CniError::new(code::DECODE_FAILURE, "cannot decode the network config").with_details(e))?;
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {} is not supported (supported: {})",
                conf.cni_version,
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    if conf.pod_cidr.prefix_len() > 30 {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("podCIDR {} is too small", conf.pod_cidr),
        ));
    }
    Ok(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn add_needs_netns_but_del_does_not() {
        let add = Invocation::from_vars(vars(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ]));
        assert_eq!(add.unwrap_err().code, code::INVALID_ENV);
        let del = Invocation::from_vars(vars(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap();
        assert_eq!(del.netns, None);
    }

    #[test]
    fn cni_args_are_split_into_pairs() {
        let inv = Invocation::from_vars(vars(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/var/run/netns/x"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
            ),
        ]))
        .unwrap();
        assert_eq!(inv.arg("K8S_POD_NAMESPACE"), "default");
        assert_eq!(inv.arg("K8S_POD_NAME"), "web-0");
        assert_eq!(inv.arg("K8S_POD_UID"), "");
    }

    #[test]
    fn unsupported_version_and_bad_json_are_typed_errors() {
        let old = br#"{"cniVersion":"0.3.1","name":"n","type":"sluice-cni","podCIDR":"10.0.0.0/24","nodedSocket":"/s","stateDir":"/d"}"#;
        assert_eq!(parse_netconf(old).unwrap_err().code, code::INCOMPATIBLE_VERSION);
        assert_eq!(parse_netconf(b"{").unwrap_err().code, code::DECODE_FAILURE);
        let tiny = br#"{"cniVersion":"1.0.0","name":"n","type":"sluice-cni","podCIDR":"10.0.0.0/31","nodedSocket":"/s","stateDir":"/d"}"#;
        assert_eq!(parse_netconf(tiny).unwrap_err().code, code::INVALID_CONFIG);
    }

    #[test]
    fn error_serializes_in_the_spec_shape() {
        let json = serde_json::to_value(CniError::new(7, "bad")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"cniVersion": "1.0.0", "code": 7, "msg": "bad"})
        );
    }
}
