//! The Kubernetes version the server reports (`/version`, OpenAPI `info`),
//! apart so discovery and OpenAPI both read it without depending on each
//! other.

/// The Kubernetes version we report; kubectl 1.32 warns about skew otherwise.
pub const KUBE_VERSION_MAJOR: &str = "1";
/// Minor part of [`KUBE_VERSION_MAJOR`].
pub const KUBE_VERSION_MINOR: &str = "32";
/// `gitVersion` reported by `/version`.
pub const GIT_VERSION: &str = "v1.32.0-sluice";
