//! The labels noded puts on CRI sandboxes and containers.
//!
//! They are how noded finds its pods again after a restart: the runtime is
//! the source of truth for what runs, the labels map it back to Pod objects.

/// The Pod's uid (on sandboxes and containers).
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// The Pod's name.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// The Pod's namespace.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The container's name in the Pod spec (on containers).
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Marks everything this noded created (other CRI clients' objects are left alone).
pub const MANAGED_BY: &str = "sluice.io/managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGER: &str = "sluice-noded";
