//! The names Sluice's node-local volumes are built on, in one place: the
//! `local-path` StorageClass and its provisioner (controller-manager), the
//! scheduler's VolumeBinding plugin and noded's storage root and clean-up
//! agree on them through this module.
//!
//! A provisioned volume is a PersistentVolume `pvc-<claim uid>` whose
//! `hostPath` is `<node storage root>/pvc-<claim uid>_<namespace>_<claim>`,
//! pinned to its node by required node affinity on `kubernetes.io/hostname`.

/// The provisioner name of the `local-path` class.
pub const PROVISIONER: &str = "sluice.dev/local-path";
/// The default StorageClass's name.
pub const CLASS_NAME: &str = "local-path";
/// The Node annotation under which noded publishes its storage root.
pub const ANN_ROOT: &str = "storage.sluice.dev/local-path-root";
/// The PersistentVolume annotation naming the provisioner that made it.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The claim annotation naming the node the scheduler picked for the pod.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The claim annotation naming the provisioner that should make its volume.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The deprecated (beta) form of [`ANN_STORAGE_PROVISIONER`], still written.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The StorageClass annotation marking the default class.
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The node label a provisioned volume's node affinity matches.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The name of the volume provisioned for the claim with this uid.
pub fn volume_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// The directory's name (under the node's root) of a claim's volume.
pub fn directory_name(claim_uid: &str, namespace: &str, claim: &str) -> String {
    format!("pvc-{claim_uid}_{namespace}_{claim}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_claim() {
        assert_eq!(volume_name("u1"), "pvc-u1");
        assert_eq!(directory_name("u1", "default", "data"), "pvc-u1_default_data");
    }
}
