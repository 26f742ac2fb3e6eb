//! Protobuf/gRPC definitions shared by Sluice components.
//!
//! The `.proto` sources live in `proto/proto/` (one package per directory,
//! versioned like `sluice.cni.v1`); this crate compiles them with
//! tonic-prost-build and adds [`unix`], the one way every Sluice component
//! dials a gRPC server on a unix socket (noded's CNI service, containerd's CRI).

pub mod unix;

/// The CNI plugin -> noded service (`sluice.cni.v1`).
pub mod cni {
    /// Version 1 of the node network service.
    pub mod v1 {
        tonic::include_proto!("sluice.cni.v1");
    }
}
