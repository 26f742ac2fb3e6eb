//! The datapath's error type.

use std::path::PathBuf;

/// Everything that can go wrong programming the datapath.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The embedded eBPF object is empty.
    #[error("the eBPF object embedded in this binary is empty (was SLUICE_EBPF_OBJECT an empty file at build time?)")]
    ObjectNotBuilt,
    /// The object lacks a program or map this library expects (version skew).
    #[error("the eBPF object has no {0:?}")]
    MissingInObject(&'static str),
    /// Bad configuration.
    #[error("invalid datapath config: {0}")]
    InvalidConfig(String),
    /// A service spec that cannot be programmed; nothing was changed.
    #[error("invalid service {frontend}: {reason}")]
    InvalidService {
        /// The frontend.
        frontend: String,
        /// Why.
        reason: String,
    },
    /// bpffs could not be mounted.
    #[error("mounting bpffs at {path}: {source}")]
    MountBpffs {
        /// Mount point.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file under the pin root.
    #[error("{path}: {source}")]
    PinDir {
        /// The path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Loading the object (maps, BTF) failed.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program could not be loaded, attached or run.
    #[error("program {name}: {source}")]
    Program {
        /// Program name.
        name: &'static str,
        /// Cause.
        source: aya::programs::ProgramError,
    },
    /// A map operation failed.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// Cause.
        source: aya::maps::MapError,
    },
    /// An interface name that does not exist here.
    #[error("interface {ifname}: {source}")]
    Interface {
        /// The name.
        ifname: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Pinning a link failed.
    #[error("pinning link {path}: {source}")]
    Pin {
        /// The pin path.
        path: PathBuf,
        /// Cause.
        source: aya::pin::PinError,
    },
    /// A pinned link could not be opened or converted.
    #[error("link {path}: {source}")]
    Link {
        /// The pin path.
        path: PathBuf,
        /// Cause.
        source: aya::programs::links::LinkError,
    },
    /// A route could not be listed, set or deleted.
    #[error("netlink: {what}: {source}")]
    Route {
        /// What was being done.
        what: String,
        /// Cause.
        source: rtnetlink::Error,
    },
    /// No free service or backend id.
    #[error("out of {0} ids")]
    Exhausted(&'static str),
}
