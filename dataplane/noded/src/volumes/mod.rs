//! Pod volumes materialised on the node, as the kubelet's volume plugins:
//! emptyDir ([`empty_dir`], on disk or `medium: Memory`), hostPath
//! ([`host_path`], with its `type` checks), configMap, secret, downwardAPI
//! and projected ([`projection`], written by the [`atomic_writer`] and kept
//! up to date by the [`Refresher`] from watches of the ConfigMaps and Secrets
//! they use, [`objects`]; service account tokens from
//! [`sa_token`], refreshed when 80% of their lifetime has passed), and persistentVolumeClaim ([`pvc`]: the
//! bound PersistentVolume's hostPath or local path).
//!
//! Each volume of a pod has a directory `<state>/pods/<uid>/volumes/<name>`;
//! for a claim it is a symbolic link to the volume's path (so that the path
//! is known again after a noded restart), for hostPath the host path is used
//! directly ([`host_paths`]). [`prepare`] runs before a sandbox is created;
//! an error is a `FailedMount` Warning event with the kubelet's wording
//! ([`VolumeError::failed_mount_message`]) and the pod stays
//! ContainerCreating until a later sync succeeds. [`container_mounts`] turns
//! a container's `volumeMounts` into CRI mounts: `subPath`, or `subPathExpr`
//! expanded from the container's environment (a missing sub-path is created
//! as a directory, one that leads out of the volume is refused), `readOnly`,
//! and configMap/secret/downwardAPI/projected volumes always read-only as the
//! kubelet mounts them. With the pod's `fsGroup` (and unless
//! `fsGroupChangePolicy: OnRootMismatch` finds the root already right),
//! emptyDir, configMap, secret, downwardAPI, projected and `local` PV volumes
//! are given to that group ([`set_ownership`]); hostPath volumes (also a
//! hostPath PV) are not, as in Kubernetes. A disk emptyDir's `sizeLimit` is
//! checked on each refresh ([`Refresher::refresh_if_due`]): usage above it
//! gets the pod evicted by the pod worker with the kubelet's message. The
//! pod's directory is removed (its tmpfs mounts unmounted first) when the pod is.

pub mod atomic_writer;
pub mod empty_dir;
pub mod host_path;
pub mod objects;
pub mod projection;
pub mod pvc;
pub mod sa_token;

use crate::cri::api;
use k8s_openapi::api::core::v1::{Container, Node, Pod, Volume};
use kube::api::Api;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Errors preparing volumes (reported as `FailedMount` events).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A referenced object could not be read.
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
    /// The volume cannot be set up; `message` is the kubelet's reason
    /// (`configmap "app" not found`, `hostPath type check failed: ...`).
    #[error("volume {volume}: {message}")]
    Setup {
        /// The volume name.
        volume: String,
        /// Why.
        message: String,
    },
    /// The volume's claim is not ready to be mounted.
    #[error("volume {volume}: PVC {namespace}/{claim}: {message}")]
    Claim {
        /// The volume name.
        volume: String,
        /// The claim's namespace.
        namespace: String,
        /// The claim's name.
        claim: String,
        /// Why.
        message: String,
    },
}

impl VolumeError {
    fn setup(volume: &Volume, message: impl Into<String>) -> Self {
        Self::Setup {
            volume: volume.name.clone(),
            message: message.into(),
        }
    }

    /// The volume the error is about.
    pub fn volume(&self) -> &str {
        match self {
            Self::Api { volume, .. }
            | Self::Io { volume, .. }
            | Self::Setup { volume, .. }
            | Self::Claim { volume, .. } => volume,
        }
    }

    /// The kubelet's `FailedMount` event text:
    /// `MountVolume.SetUp failed for volume "config" : configmap "app" not found`,
    /// or for a claim the volume manager's `Unable to attach or mount volumes: ...`.
    pub fn failed_mount_message(&self) -> String {
        let cause = match self {
            Self::Api { source, .. } => source.to_string(),
            Self::Io { source, .. } => source.to_string(),
            Self::Setup { message, .. } => message.clone(),
            Self::Claim {
                volume,
                namespace,
                claim,
                message,
            } => {
                return format!(
                    "Unable to attach or mount volumes: unmounted volumes=[{volume}], unattached volumes=[{volume}]: \
                     error processing PVC {namespace}/{claim}: {message}"
                )
            }
        };
        format!("MountVolume.SetUp failed for volume {:?} : {cause}", self.volume())
    }
}

/// Host directory of a pod's state.
pub fn pod_dir(state_dir: &Path, uid: &str) -> PathBuf {
    state_dir.join("pods").join(uid)
}

/// The directory of volume `name` of pod `uid`.
fn volume_dir(state_dir: &Path, uid: &str, name: &str) -> PathBuf {
    pod_dir(state_dir, uid).join("volumes").join(name)
}

/// Volume name -> the host path the containers mount: a hostPath volume's
/// path, a claim's PersistentVolume path (the link [`prepare`] left), or
/// the volume's directory.
pub fn host_paths(state_dir: &Path, pod: &Pod) -> BTreeMap<String, PathBuf> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    volumes_of(pod)
        .iter()
        .map(|v| {
            let path = match &v.host_path {
                Some(h) => PathBuf::from(&h.path),
                None => {
                    let dir = volume_dir(state_dir, uid, &v.name);
                    std::fs::read_link(&dir).unwrap_or(dir)
                }
            };
            (v.name.clone(), path)
        })
        .collect()
}

fn volumes_of(pod: &Pod) -> &[Volume] {
    pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or(&[])
}

/// Prepare every volume of `pod`; returns the names of volumes whose
/// sources are all immutable (the refresh need not read them again).
pub async fn prepare(
    client: &kube::Client,
    sources: &Sources,
    state_dir: &Path,
    pod: &Pod,
) -> Result<BTreeSet<String>, VolumeError> {
    let node = node_facts(client, pod, volumes_of(pod).iter().collect::<Vec<_>>().as_slice()).await;
    let mut immutable = BTreeSet::new();
    for volume in volumes_of(pod) {
        if set_up(client, sources, state_dir, pod, volume, &node).await? {
            immutable.insert(volume.name.clone());
        }
    }
    Ok(immutable)
}

/// What some volumes need of the Node: its allocatable resources.
struct NodeFacts {
    allocatable: Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
}

impl NodeFacts {
    fn memory_bytes(&self) -> Option<i64> {
        let q = self.allocatable.as_ref()?.get("memory")?;
        sluice_kube::quantity::parse_value(&q.0).ok()
    }
}

/// The pod's Node, read only when a Memory emptyDir without `sizeLimit` or a
/// `resourceFieldRef` needs its allocatable resources.
async fn node_facts(client: &kube::Client, pod: &Pod, volumes: &[&Volume]) -> NodeFacts {
    let needs = volumes.iter().any(|v| {
        let memory = v
            .empty_dir
            .as_ref()
            .is_some_and(|e| e.medium.as_deref() == Some("Memory") && e.size_limit.is_none());
        memory || uses_resource_fields(v)
    });
    let name = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let allocatable = if needs && !name.is_empty() {
        match Api::<Node>::all(client.clone()).get(&name).await {
            Ok(node) => node.status.and_then(|s| s.allocatable),
            Err(err) => {
                tracing::warn!(%err, node = %name, "could not read the node's allocatable resources");
                None
            }
        }
    } else {
        None
    };
    NodeFacts { allocatable }
}

/// Whether a downwardAPI or projected volume has a `resourceFieldRef` item.
fn uses_resource_fields(v: &Volume) -> bool {
    let own = v.downward_api.iter().flat_map(|d| d.items.iter().flatten());
    let projected = v
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .flat_map(|s| s.downward_api.iter().flat_map(|d| d.items.iter().flatten()));
    own.chain(projected).any(|i| i.resource_field_ref.is_some())
}

fn fs_group_of(pod: &Pod) -> Option<(i64, bool)> {
    let sc = pod.spec.as_ref()?.security_context.as_ref()?;
    let on_root_mismatch = sc.fs_group_change_policy.as_deref() == Some("OnRootMismatch");
    sc.fs_group.map(|g| (g, on_root_mismatch))
}

/// Set up one volume; returns whether it is a projected-kind volume whose sources are all immutable.
async fn set_up(
    client: &kube::Client,
    sources: &Sources,
    state_dir: &Path,
    pod: &Pod,
    volume: &Volume,
    node: &NodeFacts,
) -> Result<bool, VolumeError> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let dir = volume_dir(state_dir, uid, &volume.name);
    let io = |source| VolumeError::Io {
        volume: volume.name.clone(),
        source,
    };
    let mut owned = None;
    let mut immutable = false;
    if let Some(source) = &volume.empty_dir {
        empty_dir::set_up(&dir, source, node.memory_bytes()).map_err(|m| VolumeError::setup(volume, m))?;
        owned = Some((dir.clone(), false));
    } else if let Some(source) = &volume.host_path {
        host_path::check_type(Path::new(&source.path), source.type_.as_deref())
            .map_err(|m| VolumeError::setup(volume, m))?;
    } else if projection::is_projected_kind(volume) {
        let inputs = projection::Inputs {
            client,
            allocatable: node.allocatable.as_ref(),
            tokens: &sources.tokens,
            objects: &sources.objects,
        };
        let projected = projection::payload(&inputs, pod, volume).await.map_err(|e| match e {
            projection::ProjectionError::Api(source) => VolumeError::Api {
                volume: volume.name.clone(),
                source,
            },
            projection::ProjectionError::Setup(m) => VolumeError::setup(volume, m),
        })?;
        atomic_writer::write(&dir, &projected.payload).map_err(io)?;
        immutable = projected.immutable;
        owned = Some((dir.clone(), true));
    } else if crate::csi::set_up(client, state_dir, pod, volume, &dir).await? {
    } else if let Some(source) = &volume.persistent_volume_claim {
        let claim_error = |message: String| VolumeError::Claim {
            volume: volume.name.clone(),
            namespace: namespace.to_string(),
            claim: source.claim_name.clone(),
            message,
        };
        let resolved = pvc::resolve(client, namespace, &source.claim_name)
            .await
            .map_err(|e| match e {
                pvc::ClaimError::Api(source) => VolumeError::Api {
                    volume: volume.name.clone(),
                    source,
                },
                pvc::ClaimError::Setup(m) => claim_error(m),
            })?;
        link(&dir, &resolved.path).map_err(io)?;
        if resolved.local && !source.read_only.unwrap_or(false) {
            owned = Some((resolved.path, false));
        }
    } else {
        return Err(VolumeError::setup(
            volume,
            "this volume type is not supported by this node",
        ));
    }
    if let (Some((gid, on_root_mismatch)), Some((path, read_only))) = (fs_group_of(pod), owned) {
        let root_ok =
            std::fs::metadata(&path).is_ok_and(|m| i64::from(m.gid()) == gid && m.permissions().mode() & 0o2000 != 0);
        if !(on_root_mismatch && root_ok) {
            set_ownership(&path, gid, read_only).map_err(io)?;
        }
    }
    Ok(immutable)
}

/// Point `link_path` at `target` (replacing an older link atomically).
fn link(link_path: &Path, target: &Path) -> std::io::Result<()> {
    if std::fs::read_link(link_path).ok().as_deref() == Some(target) {
        return Ok(());
    }
    if let Some(parent) = link_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if std::fs::symlink_metadata(link_path).is_ok_and(|m| m.is_dir()) {
        // An empty directory left from before (never a volume's data: those are links).
        std::fs::remove_dir(link_path)?;
    }
    let tmp = link_path.with_extension("link-tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link_path)
}

/// The CRI mounts of `container`'s `volumeMounts`; `env` is its resolved
/// environment (for `subPathExpr`). `Err` is the `CreateContainerConfigError` message.
pub fn container_mounts(
    pod: &Pod,
    container: &Container,
    env: &[(String, String)],
    paths: &BTreeMap<String, PathBuf>,
) -> Result<Vec<api::Mount>, String> {
    let volumes = volumes_of(pod);
    let mut mounts = Vec::new();
    for m in container.volume_mounts.as_deref().unwrap_or(&[]) {
        let (Some(root), Some(volume)) = (paths.get(&m.name), volumes.iter().find(|v| v.name == m.name)) else {
            return Err(format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, container.name
            ));
        };
        let sub = match m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            Some(expr) => crate::env::expand(expr, env),
            None => m.sub_path.clone().unwrap_or_default(),
        };
        let host = if sub.is_empty() {
            root.clone()
        } else {
            sub_path(root, &sub).map_err(|e| {
                format!(
                    "failed to prepare subPath for volumeMount {:?} of container {:?}: {e}",
                    m.name, container.name
                )
            })?
        };
        let always_read_only = projection::is_projected_kind(volume)
            || volume
                .persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.read_only.unwrap_or(false));
        mounts.push(api::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false) || always_read_only,
            ..Default::default()
        });
    }
    Ok(mounts)
}

/// The host path of `sub` inside volume `root`: created as a directory
/// (with the root's mode) when missing, refused when it leads outside the
/// volume; symbolic links are resolved (so a subPath of a configMap volume
/// is the file of the current data, not refreshed later).
fn sub_path(root: &Path, sub: &str) -> Result<PathBuf, String> {
    if Path::new(sub).is_absolute() {
        return Err(format!("subPath {sub:?} must be a relative path"));
    }
    if sub.split('/').any(|c| c == "..") {
        return Err(format!("subPath {sub:?} must not contain '..'"));
    }
    let base = std::fs::canonicalize(root).map_err(|e| format!("volume path {}: {e}", root.display()))?;
    let wanted = base.join(sub);
    if std::fs::symlink_metadata(&wanted).is_err() && std::fs::metadata(&wanted).is_err() {
        let mode = std::fs::metadata(&base)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o755);
        std::fs::create_dir_all(&wanted).map_err(|e| format!("creating {}: {e}", wanted.display()))?;
        let _ = std::fs::set_permissions(&wanted, std::fs::Permissions::from_mode(mode));
    }
    let real = std::fs::canonicalize(&wanted).map_err(|e| format!("{}: {e}", wanted.display()))?;
    if !real.starts_with(&base) {
        return Err(format!(
            "subpath {:?} not within volume path {:?}",
            real.display().to_string(),
            base.display().to_string()
        ));
    }
    Ok(real)
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

/// How often the [`Refresher`] rewrites a pod's configMap, secret,
/// downwardAPI and projected volumes (the kubelet: its sync period plus the
/// object cache's TTL, about a minute).
pub const REFRESH_PERIOD: Duration = Duration::from_secs(10);

/// Where the node's pods' configMap, secret and projected volumes get
/// their contents: the watched objects and the service account tokens.
#[derive(Default)]
pub struct Sources {
    /// The watched ConfigMaps and Secrets.
    pub objects: objects::Objects,
    /// The service account tokens.
    pub tokens: sa_token::TokenManager,
}

/// Keeps configMap, secret, downwardAPI and projected volumes of running pods
/// up to date, and watches disk emptyDirs' `sizeLimit`.
#[derive(Default)]
pub struct Refresher {
    pods: Mutex<HashMap<String, RefreshState>>,
    sources: Sources,
}

struct RefreshState {
    last: Instant,
    immutable: BTreeSet<String>,
}

/// What a refresh found.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// A volume that could not be refreshed (a `FailedMount` event).
    pub error: Option<VolumeError>,
    /// An emptyDir over its `sizeLimit`: the eviction message.
    pub evict: Option<String>,
}

impl Refresher {
    /// [`prepare`] the pod's volumes, remembering the immutable ones.
    pub async fn prepare(&self, client: &kube::Client, state_dir: &Path, pod: &Pod) -> Result<(), VolumeError> {
        self.sources.objects.register(client, pod);
        let immutable = prepare(client, &self.sources, state_dir, pod).await?;
        self.lock().insert(
            pod.metadata.uid.clone().unwrap_or_default(),
            RefreshState {
                last: Instant::now(),
                immutable,
            },
        );
        Ok(())
    }

    /// Rewrite the pod's configMap, secret, downwardAPI and projected
    /// volumes (not those whose objects are immutable) and check emptyDir
    /// size limits, at most once per [`REFRESH_PERIOD`].
    pub async fn refresh_if_due(&self, client: &kube::Client, state_dir: &Path, pod: &Pod) -> Refreshed {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let skip = {
            let mut pods = self.lock();
            if !pods.contains_key(&uid) {
                // Running before this noded started: its objects are not watched yet.
                self.sources.objects.register(client, pod);
            }
            let state = pods.entry(uid.clone()).or_insert_with(|| RefreshState {
                last: Instant::now() - REFRESH_PERIOD,
                immutable: BTreeSet::new(),
            });
            if state.last.elapsed() < REFRESH_PERIOD {
                return Refreshed::default();
            }
            state.last = Instant::now();
            state.immutable.clone()
        };
        let mut out = Refreshed {
            evict: usage_over_limit(state_dir, pod),
            error: None,
        };
        let todo: Vec<&Volume> = volumes_of(pod)
            .iter()
            .filter(|v| projection::is_projected_kind(v) && !skip.contains(&v.name))
            .collect();
        if todo.is_empty() {
            return out;
        }
        let node = node_facts(client, pod, &todo).await;
        let mut immutable = skip;
        for volume in todo {
            match set_up(client, &self.sources, state_dir, pod, volume, &node).await {
                Ok(true) => {
                    immutable.insert(volume.name.clone());
                }
                Ok(false) => {}
                Err(err) => {
                    out.error.get_or_insert(err);
                }
            }
        }
        if let Some(state) = self.lock().get_mut(&uid) {
            state.immutable = immutable;
        }
        out
    }

    /// The watched ConfigMaps and Secrets (containers' environments read them too).
    pub fn objects(&self) -> &objects::Objects {
        &self.sources.objects
    }

    /// Forget pod `uid` (it is gone), the tokens bound to it, and the
    /// watches of objects no other pod uses.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
        self.sources.tokens.forget_pod(uid);
        self.sources.objects.unregister(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RefreshState>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The kubelet's eviction message for the first disk emptyDir of `pod`
/// whose usage exceeds its `sizeLimit`.
pub fn usage_over_limit(state_dir: &Path, pod: &Pod) -> Option<String> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    volumes_of(pod).iter().find_map(|v| {
        let source = v.empty_dir.as_ref()?;
        if !source.medium.as_deref().unwrap_or("").is_empty() {
            return None; // a tmpfs is bounded by its size
        }
        let limit = source.size_limit.as_ref()?;
        let bytes = sluice_kube::quantity::parse_value(&limit.0).ok()?;
        let used = disk_usage(&volume_dir(state_dir, uid, &v.name));
        (used > bytes).then(|| {
            format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                v.name, limit.0
            )
        })
    })
}

/// Bytes of disk used below `path` (allocated blocks, links not followed, one device).
fn disk_usage(path: &Path) -> i64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = (meta.blocks() * 512) as i64;
    if meta.is_dir() {
        let dev = meta.dev();
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            let p = entry.path();
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.dev() == dev) {
                total = total.saturating_add(disk_usage(&p));
            }
        }
    }
    total
}

/// Remove everything the pod had on the node (its tmpfs volumes unmounted
/// first; links to PersistentVolumes are removed, never followed).
pub fn remove(state_dir: &Path, uid: &str) {
    let dir = pod_dir(state_dir, uid);
    crate::csi::tear_down(state_dir, uid);
    if dir.exists() {
        empty_dir::unmount_all_below(&dir);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests;
