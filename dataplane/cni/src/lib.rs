//! Sluice's CNI plugin (`sluice-cni`), as a library so `noded` can share its
//! address store and the tests can drive its pieces.
//!
//! containerd runs the plugin for every pod sandbox. ADD gives the pod an
//! address from the node's podCIDR ([`ipam`]), connects it with a veth pair
//! and a routed `/32` scheme, no bridge ([`veth`]), and tells `noded` over
//! `sluice.cni.v1.NodeNetwork` ([`noded`]) so the eBPF programs attach to the
//! host end before the pod starts. [`spec`] is the CNI 1.0 wire format,
//! [`plugin`] the four commands.

pub mod ipam;
pub mod noded;
pub mod plugin;
pub mod spec;
pub mod veth;
