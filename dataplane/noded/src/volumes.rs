//! Pod volumes materialised on the node: emptyDir, configMap, secret.
//!
//! Each volume is a directory under `<state>/pods/<uid>/volumes/<name>`,
//! bind-mounted into the containers that mount it. configMap and secret
//! volumes are written from the objects at pod start (keys as files, or the
//! `items` subset with their paths); secret files are mode 0400-ish (0644 by
//! default as in Kubernetes unless `defaultMode` says otherwise). With the
//! pod's `fsGroup`, every volume is then given to that group as the
//! kubelet's `SetVolumeOwnership` does ([`set_ownership`]). The whole pod
//! directory is removed when the pod is.

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, Volume};
use kube::api::Api;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Errors preparing volumes (reported in the pod's container status).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A referenced ConfigMap or Secret could not be read.
    #[error("volume {volume}: {source}")]
    Api {
        /// The volume name.
        volume: String,
        /// The API error.
        source: kube::Error,
    },
    /// Writing the volume's files failed.
    #[error("volume {volume}: {source}")]
    Io {
        /// The volume name.
        volume: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configMap or secret volume's source does not exist (and is not optional).
    #[error("{kind} {name:?} not found")]
    SourceNotFound {
        /// The volume name.
        volume: String,
        /// `configmap` or `secret`, as the kubelet names them.
        kind: &'static str,
        /// The missing object's name.
        name: String,
    },
    /// The volume type is not supported by this node.
    #[error("volume {0}: only emptyDir, configMap and secret volumes are supported")]
    Unsupported(String),
}

/// Host directory of a pod's state.
pub fn pod_dir(state_dir: &Path, uid: &str) -> PathBuf {
    state_dir.join("pods").join(uid)
}

/// Prepare every volume of `pod`; returns volume name -> host directory.
pub async fn prepare(
    client: &kube::Client,
    state_dir: &Path,
    pod: &Pod,
) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let volumes: &[Volume] = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or(&[]);
    let fs_group = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group);
    let mut prepared = BTreeMap::new();
    for volume in volumes {
        let dir = pod_dir(state_dir, &uid).join("volumes").join(&volume.name);
        let io = |source| VolumeError::Io {
            volume: volume.name.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        if volume.empty_dir.is_some() {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
        } else if let Some(source) = &volume.config_map {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
            let optional = source.optional.unwrap_or(false);
            match api.get_opt(&source.name).await.map_err(|e| VolumeError::Api {
                volume: volume.name.clone(),
                source: e,
            })? {
                Some(cm) => {
                    let mut data: BTreeMap<String, Vec<u8>> = cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                    write_keys(
                        &dir,
                        &data,
                        source.items.as_deref(),
                        source.default_mode.unwrap_or(0o644),
                    )
                    .map_err(io)?;
                }
                None if optional => {}
                None => return Err(not_found(&volume.name, "configmap", &source.name)),
            }
        } else if let Some(source) = &volume.secret {
            let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            let name = source.secret_name.clone().unwrap_or_default();
            match api.get_opt(&name).await.map_err(|e| VolumeError::Api {
                volume: volume.name.clone(),
                source: e,
            })? {
                Some(secret) => {
                    let mut data: BTreeMap<String, Vec<u8>> = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    data.extend(
                        secret
                            .string_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes())),
                    );
                    write_keys(
                        &dir,
                        &data,
                        source.items.as_deref(),
                        source.default_mode.unwrap_or(0o644),
                    )
                    .map_err(io)?;
                }
                None if source.optional.unwrap_or(false) => {}
                None => return Err(not_found(&volume.name, "secret", &name)),
            }
        } else {
            return Err(VolumeError::Unsupported(volume.name.clone()));
        }
        if let Some(gid) = fs_group {
            // configMap and secret volumes are read-only volumes for the kubelet.
            set_ownership(&dir, gid, volume.empty_dir.is_none()).map_err(io)?;
        }
        prepared.insert(volume.name.clone(), dir);
    }
    Ok(prepared)
}

fn not_found(volume: &str, kind: &'static str, name: &str) -> VolumeError {
    VolumeError::SourceNotFound {
        volume: volume.to_string(),
        kind,
        name: name.to_string(),
    }
}

impl VolumeError {
    /// The volume the error is about.
    pub fn volume(&self) -> &str {
        match self {
            Self::Api { volume, .. } | Self::Io { volume, .. } | Self::SourceNotFound { volume, .. } => volume,
            Self::Unsupported(volume) => volume,
        }
    }

    /// The kubelet's `FailedMount` event text:
    /// `MountVolume.SetUp failed for volume "config" : configmap "app" not found`.
    pub fn failed_mount_message(&self) -> String {
        let cause = match self {
            Self::Api { source, .. } => source.to_string(),
            Self::Io { source, .. } => source.to_string(),
            Self::SourceNotFound { .. } => self.to_string(),
            Self::Unsupported(_) => "only emptyDir, configMap and secret volumes are supported".to_string(),
        };
        format!("MountVolume.SetUp failed for volume {:?} : {cause}", self.volume())
    }
}

/// Write `data` as files (all keys, or `items` with their paths and modes).
fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
) -> std::io::Result<()> {
    let files: Vec<(&str, &str, i32)> = match items {
        Some(items) => items
            .iter()
            .filter(|i| data.contains_key(&i.key))
            .map(|i| (i.key.as_str(), i.path.as_str(), i.mode.unwrap_or(mode)))
            .collect(),
        None => data.keys().map(|k| (k.as_str(), k.as_str(), mode)).collect(),
    };
    for (key, path, mode) in files {
        if path.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid item path {path:?}"),
            ));
        }
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, &data[key])?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode as u32 & 0o777))?;
    }
    Ok(())
}

/// Give `dir` and everything below it to group `gid`, as the kubelet's
/// `SetVolumeOwnership`: group read (and write unless `read_only`) on every
/// file, and on directories also search and setgid, so new files inherit the
/// group. Owners are kept; symbolic links are left alone.
pub fn set_ownership(dir: &Path, gid: i64, read_only: bool) -> std::io::Result<()> {
    let gid = u32::try_from(gid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "fsGroup out of range"))?;
    let mask = if read_only { 0o440 } else { 0o660 };
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::lchown(dir, None, Some(gid))?;
    let mut mode = meta.permissions().mode() | mask;
    if meta.is_dir() {
        mode |= 0o2000 | 0o110;
        for entry in std::fs::read_dir(dir)? {
            set_ownership(&entry?.path(), i64::from(gid), read_only)?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7777))
}

/// Remove everything the pod had on the node.
pub fn remove(state_dir: &Path, uid: &str) {
    let _ = std::fs::remove_dir_all(pod_dir(state_dir, uid));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_select_keys_and_paths_and_reject_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let data = BTreeMap::from([("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())]);
        let items = [KeyToPath {
            key: "b".into(),
            path: "sub/b.txt".into(),
            mode: None,
            ..Default::default()
        }];
        write_keys(dir.path(), &data, Some(&items), 0o644).unwrap();
        assert_eq!(std::fs::read(dir.path().join("sub/b.txt")).unwrap(), b"2");
        assert!(!dir.path().join("a").exists());
        let evil = [KeyToPath {
            key: "a".into(),
            path: "../x".into(),
            mode: None,
            ..Default::default()
        }];
        assert!(write_keys(dir.path(), &data, Some(&evil), 0o644).is_err());
    }

    #[test]
    fn fs_group_owns_volumes_as_the_kubelet_sets_them() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let data = BTreeMap::from([("key".to_string(), b"v".to_vec())]);
        let items = [KeyToPath {
            key: "key".into(),
            path: "sub/key".into(),
            mode: Some(0o400),
            ..Default::default()
        }];
        write_keys(dir.path(), &data, Some(&items), 0o644).unwrap();
        set_ownership(dir.path(), 4321, true).unwrap();
        let file = std::fs::metadata(dir.path().join("sub/key")).unwrap();
        assert_eq!((file.gid(), file.mode() & 0o7777), (4321, 0o440));
        let sub = std::fs::metadata(dir.path().join("sub")).unwrap();
        assert_eq!(sub.gid(), 4321);
        assert_eq!(sub.mode() & 0o2550, 0o2550, "setgid, group read and search");
        let scratch = tempfile::tempdir().unwrap();
        std::fs::write(scratch.path().join("f"), "x").unwrap();
        std::fs::set_permissions(scratch.path().join("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        set_ownership(scratch.path(), 4321, false).unwrap();
        let f = std::fs::metadata(scratch.path().join("f")).unwrap();
        assert_eq!(f.mode() & 0o777, 0o660);
    }

    #[test]
    fn missing_sources_are_worded_like_the_kubelet() {
        assert_eq!(
            not_found("config", "configmap", "app-config").failed_mount_message(),
            "MountVolume.SetUp failed for volume \"config\" : configmap \"app-config\" not found"
        );
        assert_eq!(
            not_found("creds", "secret", "db").failed_mount_message(),
            "MountVolume.SetUp failed for volume \"creds\" : secret \"db\" not found"
        );
    }
}
