//! One pod's worker: bring the runtime in line with the Pod, then report.
//!
//! [`PodWorkers::sync_pod`] is called for a Pod whenever it changes and on
//! every relist tick (it never runs twice at once for one pod). It starts
//! the sandbox, the init containers in order ([`crate::init_containers`]:
//! sidecars kept running, and stopped last), then missing containers
//! (each with its postStart hook, [`crate::lifecycle`]), restarts exited ones per
//! `restartPolicy` with back-off, restarts containers failing liveness,
//! tracks readiness, starts ephemeral containers once each (never
//! restarted; in their target container's process namespace), and posts
//! the computed status through the status subresource when it changed. [`PodWorkers::kill_pod`] stops everything
//! of a pod honouring its grace period (preStop hooks first, sidecars after the app containers); a Pod in graceful deletion is then
//! deleted for good (grace 0), which is the node's job in Kubernetes.

use crate::backoff::Backoff;
use crate::cri::{api, Cri, CriError};
use crate::events::PodEvents;
use crate::images::{self, ImageManager};
use crate::init_containers::{self, Gate, Seen};
use crate::lock;
use crate::pleg::{Snapshot, StatusCache};
use crate::pod_status::{self, ContainerView, Observed};
use crate::probes::{self, Prober};
use crate::{cgroups, env, format, labels, lifecycle, pod_spec, volumes};
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Errors of one sync (logged; the next tick retries).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A CRI call failed.
    #[error(transparent)]
    Cri(#[from] CriError),
    /// An API call failed.
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    /// Volumes could not be prepared.
    #[error(transparent)]
    Volume(#[from] volumes::VolumeError),
}

/// What every worker shares: clients and node facts.
pub struct NodeContext {
    /// API client.
    pub client: kube::Client,
    /// Runtime client.
    pub cri: Cri,
    /// This node's name.
    pub node_name: String,
    /// `status.hostIP` of pods.
    pub host_ip: Option<String>,
    /// noded's state directory (pod volumes and logs live below it).
    pub state_dir: PathBuf,
    /// cgroup parent of all pods of this node (e.g. `/sluice/<node>`).
    pub cgroup_root: String,
    /// What pods' resolver configuration is made from.
    pub dns: crate::cluster_dns::PodDnsSettings,
    /// Zero-loss endpoint removal, when this node's proxy runs.
    pub endpoint_drain: Option<EndpointDrain>,
    /// Every Service, for containers' Service variables.
    pub services: crate::service_env::Services,
}

/// A deleted pod leaves the Service maps before its containers are told to
/// stop (see `sluice_proxy::drain`).
pub struct EndpointDrain {
    /// The pods the proxy has taken out of the maps.
    pub drains: sluice_proxy::drain::Drains,
    /// How long a drained backend keeps running before preStop/SIGTERM, so
    /// that other nodes catch up (capped at the grace period).
    pub delay: Duration,
}

/// How long to wait for this node's proxy to drain a deleted pod.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// The pod workers of the node, with their shared back-off, probe and status caches.
pub struct PodWorkers {
    ctx: NodeContext,
    backoff: Mutex<Backoff>,
    images: ImageManager,
    prober: Prober,
    /// The runtime's statuses, asked again only when a relist shows a change.
    statuses: StatusCache,
    events: PodEvents,
    posted: Mutex<HashMap<String, PodStatus>>,
    evictions: Mutex<HashMap<String, Eviction>>,
    volumes: volumes::Refresher,
    /// Pods that started a container in their last sync ([`PodWorkers::take_started`]).
    started: Mutex<std::collections::HashSet<String>>,
}

/// A pod the eviction manager chose: its message, and whether it is stopped and reported.
struct Eviction {
    message: String,
    done: bool,
}

/// The grace period of a pod evicted under node pressure (the kubelet's `immediateEvictionGracePeriodSeconds`).
const EVICTION_GRACE: Duration = Duration::from_secs(1);

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn is_running(c: &api::Container) -> bool {
    c.state == api::ContainerState::ContainerRunning as i32
}

/// The shortest SIGTERM-to-SIGKILL window left after a preStop hook (the kubelet's `minimumGracePeriodInSeconds`).
const MINIMUM_GRACE: Duration = Duration::from_secs(2);

/// How long noded waits for a postStart hook. The kubelet sets no limit; this
/// one only keeps a hung hook from holding the pod's worker forever (it then
/// counts as failed, `context deadline exceeded`).
const POST_START_LIMIT: Duration = Duration::from_secs(600);

/// How long a pod's containers get between SIGTERM and SIGKILL.
pub fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Duration::from_secs(seconds.max(0) as u64)
}

impl PodWorkers {
    /// Workers with a CrashLoopBackOff starting at `backoff_initial` (Kubernetes: 10 s).
    pub fn new(ctx: NodeContext, backoff_initial: Duration) -> Self {
        Self {
            events: PodEvents::new(ctx.client.clone(), &ctx.node_name),
            images: ImageManager::new(ctx.cri.clone(), ctx.client.clone()),
            ctx,
            backoff: Mutex::new(Backoff::new(backoff_initial, Duration::from_secs(300))),
            prober: Prober::default(),
            statuses: StatusCache::default(),
            posted: Mutex::new(HashMap::new()),
            evictions: Mutex::new(HashMap::new()),
            volumes: volumes::Refresher::default(),
            started: Mutex::default(),
        }
    }

    /// Evict pod `uid` under node pressure ([`crate::eviction`]): its next
    /// sync stops its containers and reports it Failed / `Evicted` with `message`.
    pub fn request_eviction(&self, uid: &str, message: String) {
        lock(&self.evictions)
            .entry(uid.to_string())
            .or_insert(Eviction { message, done: false });
    }

    /// Whether pod `uid` started a container since the last call: its next
    /// sync (run at once by the pod loop) sees what the container did since
    /// (an init container that finished lets the next one start) without
    /// waiting for the once-a-second pass. The started container's first
    /// probes are already in the status of the sync that started it.
    pub fn take_started(&self, uid: &str) -> bool {
        lock(&self.started).remove(uid)
    }

    /// Whether pod `uid` was chosen for eviction.
    pub fn is_evicted(&self, uid: &str) -> bool {
        lock(&self.evictions).contains_key(uid)
    }

    /// Whether evicted pod `uid` is stopped and reported.
    pub fn eviction_done(&self, uid: &str) -> bool {
        lock(&self.evictions).get(uid).is_some_and(|e| e.done)
    }

    /// The shared context.
    pub fn context(&self) -> &NodeContext {
        &self.ctx
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        volumes::pod_dir(&self.ctx.state_dir, uid)
    }

    /// The cgroup parent of pod `uid` (its containers' cgroups are below it).
    pub fn cgroup_parent(&self, uid: &str) -> String {
        format!("{}/pod{uid}", self.ctx.cgroup_root.trim_end_matches('/'))
    }

    /// Bring one pod's runtime state in line with its spec and report its status.
    #[tracing::instrument(skip_all, fields(pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))))]
    pub async fn sync_pod(&self, pod: &Pod, snapshot: &Snapshot) -> Result<(), SyncError> {
        let uid = uid_of(pod);
        if pod.metadata.deletion_timestamp.is_some() {
            for running in snapshot.running_containers_of(&uid) {
                let name = running
                    .labels
                    .get(labels::CONTAINER_NAME)
                    .map(String::as_str)
                    .unwrap_or_default();
                self.events
                    .normal(pod, name, "Killing", format!("Stopping container {name}"));
            }
            let drained_for = self.drain_endpoints(pod, snapshot).await;
            let grace = grace_period(pod).saturating_sub(drained_for);
            self.kill_pod(&uid, Some(pod), snapshot, grace).await?;
            let pods: Api<Pod> = Api::namespaced(
                self.ctx.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            match pods
                .delete(pod.metadata.name.as_deref().unwrap_or_default(), &params)
                .await
            {
                Ok(_) => tracing::info!("pod stopped and deleted"),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(err.into()),
            }
            return Ok(());
        }
        let eviction = lock(&self.evictions).get(&uid).map(|e| (e.message.clone(), e.done));
        if let Some((message, done)) = eviction {
            if !done {
                self.evict(pod, snapshot, &message).await?;
                if let Some(e) = lock(&self.evictions).get_mut(&uid) {
                    e.done = true;
                }
            }
            return Ok(());
        }
        let Some(spec) = pod.spec.as_ref() else { return Ok(()) };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        let sandboxes = snapshot.sandboxes_of(&uid);
        let ready = sandboxes
            .iter()
            .find(|s| s.state == api::PodSandboxState::SandboxReady as i32);
        let (sandbox_id, fresh) = match ready {
            Some(sandbox) => (sandbox.id.clone(), false),
            None if terminal => return Ok(()),
            None => {
                for old in &sandboxes {
                    self.remove_sandbox(&old.id).await?;
                }
                if let Err(err) = self.volumes.prepare(&self.ctx.client, &self.ctx.state_dir, pod).await {
                    // As the kubelet: the pod stays ContainerCreating and the next sync retries.
                    tracing::info!(%err, "volume not ready");
                    self.events.warning(pod, "", "FailedMount", err.failed_mount_message());
                    let (init, app) = (
                        creating_views(spec.init_containers.as_deref().unwrap_or(&[])),
                        creating_views(&spec.containers),
                    );
                    let observed = Observed {
                        init_containers: &init,
                        containers: &app,
                        sandbox_ready: false,
                    };
                    return self.post_status(pod, "", observed, None).await;
                }
                let mut config = pod_spec::sandbox_config(
                    pod,
                    sandboxes.len() as u32,
                    &self.cgroup_parent(&uid),
                    &self.pod_dir(&uid),
                );
                config.dns_config = Some(crate::pod_dns::dns_config(pod, &self.ctx.dns));
                let started = Instant::now();
                let id = self.ctx.cri.run_pod_sandbox(config).await?;
                tracing::info!(sandbox = %id, elapsed = ?started.elapsed(), "sandbox started");
                (id, true)
            }
        };
        if !fresh {
            // configMap/secret/downwardAPI/projected volumes follow their objects; emptyDir sizeLimit.
            let refreshed = self
                .volumes
                .refresh_if_due(&self.ctx.client, &self.ctx.state_dir, pod)
                .await;
            if let Some(err) = refreshed.error {
                tracing::info!(%err, "volume not refreshed");
                self.events.warning(pod, "", "FailedMount", err.failed_mount_message());
            }
            if let Some(message) = refreshed.evict {
                tracing::info!(%message, "emptyDir over its sizeLimit; evicting");
                self.request_eviction(&uid, message);
                return Ok(());
            }
        }
        let sandbox_status = self
            .statuses
            .sandbox(&self.ctx.cri, &sandbox_id, api::PodSandboxState::SandboxReady as i32)
            .await?;
        let sandbox_ip = sandbox_status
            .network
            .as_ref()
            .map(|n| n.ip.as_str())
            .unwrap_or_default();
        let pod_ip = pod_spec::pod_ip(pod, sandbox_ip, self.ctx.host_ip.as_deref());
        let mut sandbox_config = pod_spec::sandbox_config(
            pod,
            sandbox_status.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            &self.cgroup_parent(&uid),
            &self.pod_dir(&uid),
        );
        sandbox_config.dns_config = Some(crate::pod_dns::dns_config(pod, &self.ctx.dns));
        let volume_paths = volumes::host_paths(&self.ctx.state_dir, pod);
        let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let init_specs = spec.init_containers.as_deref().unwrap_or(&[]);
        if fresh {
            // Show the pod IP and ContainerCreating (PodInitializing) while images are pulled.
            let (init, app) = (creating_views(init_specs), creating_views(&spec.containers));
            let observed = Observed {
                init_containers: &init,
                containers: &app,
                sandbox_ready: true,
            };
            if let Err(err) = self.post_status(pod, &pod_ip, observed, None).await {
                tracing::debug!(%err, "could not post the ContainerCreating status");
            }
        }
        let instances_of = |name: &str| -> Vec<&api::Container> {
            if fresh {
                Vec::new()
            } else {
                snapshot.containers_of(&sandbox_id, name)
            }
        };
        // Once an app container ran in this sandbox the pod is initialized for good.
        let app_started = spec.containers.iter().any(|c| !instances_of(&c.name).is_empty());
        let mut app_views = Vec::new();
        let mut finished = false;
        if app_started
            && restart_policy != "Always"
            && spec
                .containers
                .iter()
                .all(|c| instances_of(&c.name).first().is_some_and(|i| !is_running(i)))
        {
            for c in &spec.containers {
                app_views.push(self.observe_container(c, &instances_of(&c.name)).await);
            }
            let seen: Vec<Seen> = app_views.iter().map(Seen::of).collect();
            finished = init_containers::app_containers_finished(restart_policy, &seen);
        }
        let stopping = finished || self.known_terminal(pod);
        let mut init_views = Vec::new();
        let mut open = true;
        let mut init_failed = false;
        for container in init_specs {
            let instances = instances_of(&container.name);
            let sidecar = pod_status::is_sidecar(container);
            let observed = self.observe_container(container, &instances).await;
            let policy = if sidecar {
                "Always"
            } else {
                init_containers::restart_policy_of_init(restart_policy)
            };
            let acts = open && init_containers::acts(sidecar, Seen::of(&observed), policy, app_started, stopping);
            let view = if acts {
                self.sync_container(
                    pod,
                    container,
                    &sandbox_id,
                    &sandbox_config,
                    &instances,
                    policy,
                    &pod_ip,
                    &volume_paths,
                )
                .await
            } else {
                observed
            };
            match init_containers::gate(sidecar, Seen::of(&view), restart_policy) {
                Gate::Open => {}
                Gate::Wait => open = false,
                Gate::Failed => {
                    open = false;
                    init_failed = true;
                }
            }
            init_views.push(self.with_image_id(view));
        }
        if finished || init_failed {
            // As the kubelet's KillPod: what still runs (the sidecars) is stopped, last one first.
            self.stop_sidecars(pod, init_specs, &mut init_views, &pod_ip).await;
        }
        if !finished {
            // Exited app containers that are to be restarted (OnFailure) are synced below.
            app_views.clear();
        }
        if app_views.is_empty() {
            for container in &spec.containers {
                let instances = instances_of(&container.name);
                let view = if (open || app_started) && !stopping {
                    self.sync_container(
                        pod,
                        container,
                        &sandbox_id,
                        &sandbox_config,
                        &instances,
                        restart_policy,
                        &pod_ip,
                        &volume_paths,
                    )
                    .await
                } else {
                    self.observe_container(container, &instances).await
                };
                app_views.push(view);
            }
        }
        let app_views: Vec<ContainerView> = app_views.into_iter().map(|v| self.with_image_id(v)).collect();
        let ephemeral = self
            .sync_ephemeral_containers(
                pod,
                &sandbox_id,
                &sandbox_config,
                fresh,
                snapshot,
                &pod_ip,
                &volume_paths,
            )
            .await;
        let observed = Observed {
            init_containers: &init_views,
            containers: &app_views,
            sandbox_ready: true,
        };
        self.post_status(pod, &pod_ip, observed, Some(ephemeral)).await
    }

    /// Evict the pod as the kubelet does under node pressure: a Warning
    /// `Evicted` event, its running containers stopped with a 1 s grace
    /// period (preStop hooks first), its sandbox stopped (kept, with the
    /// containers, until the Pod is deleted), and the status Failed /
    /// `Evicted` with `message`. The Pod object stays; its controller replaces it.
    async fn evict(&self, pod: &Pod, snapshot: &Snapshot, message: &str) -> Result<(), SyncError> {
        let uid = uid_of(pod);
        self.events.warning(pod, "", "Evicted", message.to_string());
        let sandboxes: Vec<String> = snapshot.sandboxes_of(&uid).iter().map(|s| s.id.clone()).collect();
        let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let init_specs = spec.init_containers.clone().unwrap_or_default();
        let spec_of = |name: &str| spec.containers.iter().chain(&init_specs).find(|c| c.name == name);
        let stops = snapshot
            .running_containers_of(&uid)
            .into_iter()
            .map(|c| {
                let name = c.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_default();
                self.events
                    .normal(pod, &name, "Killing", format!("Stopping container {name}"));
                let (container, pod_ip) = (spec_of(&name), pod_ip.as_str());
                async move {
                    self.stop_container(Some(pod), container, &c.id, EVICTION_GRACE, pod_ip)
                        .await
                }
            })
            .collect::<Vec<_>>();
        for result in futures::future::join_all(stops).await {
            match result {
                Err(err) if !err.is_not_found() => return Err(err.into()),
                _ => {}
            }
        }
        for id in &sandboxes {
            match self.ctx.cri.stop_pod_sandbox(id).await {
                Err(err) if !err.is_not_found() => return Err(err.into()),
                _ => {}
            }
        }
        tracing::info!(%message, "pod evicted");
        let newest = sandboxes.first().cloned().unwrap_or_default();
        let mut init_views = Vec::new();
        for c in &init_specs {
            init_views.push(
                self.observe_container(c, &snapshot.containers_of(&newest, &c.name))
                    .await,
            );
        }
        let mut app_views = Vec::new();
        for c in &spec.containers {
            app_views.push(
                self.observe_container(c, &snapshot.containers_of(&newest, &c.name))
                    .await,
            );
        }
        let observed = Observed {
            init_containers: &init_views,
            containers: &app_views,
            sandbox_ready: false,
        };
        self.post_status(pod, &pod_ip, observed, None).await
    }

    /// The image's repo digest as `imageID` when the runtime reports a bare id.
    fn with_image_id(&self, mut view: ContainerView) -> ContainerView {
        let image_ref = view.latest.as_ref().map(|s| s.image_ref.as_str()).unwrap_or("");
        if !image_ref.contains('@') {
            view.image_id = self.images.image_id(&view.image);
        }
        view
    }

    /// Whether the pod's phase (as last posted, or as the API has it) is Succeeded or Failed.
    fn known_terminal(&self, pod: &Pod) -> bool {
        let posted = self
            .posted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid_of(pod))
            .and_then(|s| s.phase.clone());
        let phase = posted.or_else(|| pod.status.as_ref().and_then(|s| s.phase.clone()));
        matches!(phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// A container as the runtime shows it, without acting on it.
    async fn observe_container(&self, container: &Container, instances: &[&api::Container]) -> ContainerView {
        let cri = &self.ctx.cri;
        let mut view = ContainerView {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        };
        if let Some(latest) = instances.first() {
            view.restart_count = latest.metadata.as_ref().map(|m| m.attempt).unwrap_or(0) as i32;
            view.latest = self.statuses.container(cri, latest).await.ok();
            if let Some(prev) = instances.get(1) {
                view.previous = self.statuses.container(cri, prev).await.ok();
            }
        }
        view
    }

    /// Stop the pod's running sidecars in reverse spec order (each with its
    /// preStop hook and the rest of the grace period), refreshing their views.
    async fn stop_sidecars(&self, pod: &Pod, init_specs: &[Container], views: &mut [ContainerView], pod_ip: &str) {
        let grace = grace_period(pod);
        let began = Instant::now();
        for (container, view) in init_specs.iter().zip(views.iter_mut()).rev() {
            let Some(id) = view
                .latest
                .as_ref()
                .filter(|s| s.state == api::ContainerState::ContainerRunning as i32)
                .map(|s| s.id.clone())
            else {
                continue;
            };
            if !pod_status::is_sidecar(container) {
                continue;
            }
            self.events.normal(
                pod,
                &container.name,
                "Killing",
                format!("Stopping container {}", container.name),
            );
            let left = grace.saturating_sub(began.elapsed());
            if let Err(err) = self.stop_container(Some(pod), Some(container), &id, left, pod_ip).await {
                tracing::warn!(container = %container.name, %err, "stopping a sidecar failed");
            }
            if let Ok(status) = self.statuses.container_now(&self.ctx.cri, &id).await {
                view.latest = Some(status);
            }
            view.ready = false;
            view.started = false;
        }
    }

    /// Stop one running container as the kubelet's `killContainer`: its
    /// `preStop` hook first, within the grace period (`FailedPreStopHook` on
    /// failure), then SIGTERM with what is left of it (at least 2 s after a
    /// hook), then SIGKILL. Without a Pod (an orphan) no hook runs.
    async fn stop_container(
        &self,
        pod: Option<&Pod>,
        container: Option<&Container>,
        id: &str,
        grace: Duration,
        pod_ip: &str,
    ) -> Result<(), CriError> {
        let mut grace = grace;
        let hook = container
            .and_then(|c| c.lifecycle.as_ref())
            .and_then(|l| l.pre_stop.as_ref());
        if let (Some(pod), Some(container), Some(hook)) = (pod, container, hook) {
            if !grace.is_zero() {
                let began = Instant::now();
                if let Err(message) = lifecycle::run(&self.ctx.cri, hook, pod, container, pod_ip, id, grace).await {
                    tracing::info!(container = %container.name, %message, "preStop hook failed");
                    self.events.warning(pod, &container.name, "FailedPreStopHook", message);
                }
                grace = grace.saturating_sub(began.elapsed()).max(MINIMUM_GRACE);
            }
        }
        self.ctx.cri.stop_container(id, grace).await
    }

    /// The pod's ephemeral containers: each is started once, in the running
    /// sandbox, and never restarted; returns their statuses.
    #[allow(clippy::too_many_arguments)]
    async fn sync_ephemeral_containers(
        &self,
        pod: &Pod,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
        fresh: bool,
        snapshot: &Snapshot,
        pod_ip: &str,
        volume_paths: &BTreeMap<String, PathBuf>,
    ) -> Vec<ContainerStatus> {
        let Some(list) = pod.spec.as_ref().and_then(|s| s.ephemeral_containers.as_ref()) else {
            return Vec::new();
        };
        let reported = pod
            .status
            .as_ref()
            .and_then(|s| s.ephemeral_container_statuses.as_ref());
        let mut statuses = Vec::new();
        for ec in list {
            let container = pod_spec::ephemeral_as_container(ec);
            let mut view = ContainerView {
                name: ec.name.clone(),
                image: ec.image.clone().unwrap_or_default(),
                ..Default::default()
            };
            let instance = if fresh {
                None
            } else {
                snapshot.containers_of(sandbox_id, &ec.name).first().copied()
            };
            let ran_before = reported
                .and_then(|r| r.iter().find(|s| s.name == ec.name))
                .filter(|s| s.state.as_ref().is_some_and(|st| st.waiting.is_none()));
            match (instance, ran_before) {
                (Some(c), _) => view.latest = self.statuses.container(&self.ctx.cri, c).await.ok(),
                // It ran in an earlier sandbox: ephemeral containers are never started again.
                (None, Some(before)) => {
                    statuses.push(before.clone());
                    continue;
                }
                (None, None) => {
                    let target = match ec.target_container_name.as_deref().filter(|t| !t.is_empty()) {
                        None => Ok(None),
                        Some(t) => self.running_container(sandbox_id, t).await.map(Some).ok_or_else(|| {
                            (
                                "CreateContainerConfigError".to_string(),
                                format!("target container {t:?} is not running"),
                            )
                        }),
                    };
                    let started = match target {
                        Ok(target) => {
                            self.create_and_start(
                                pod,
                                &container,
                                sandbox_id,
                                sandbox_config,
                                0,
                                pod_ip,
                                volume_paths,
                                target.as_deref(),
                            )
                            .await
                        }
                        Err(waiting) => Err(waiting),
                    };
                    match started {
                        Ok(id) => {
                            tracing::info!(container = %ec.name, target = ?ec.target_container_name, "ephemeral container started");
                            view.latest = self.statuses.container_now(&self.ctx.cri, &id).await.ok();
                        }
                        Err(waiting) => view.waiting = Some(waiting),
                    }
                }
            }
            let image_ref = view.latest.as_ref().map(|s| s.image_ref.as_str()).unwrap_or("");
            if !image_ref.contains('@') {
                view.image_id = self.images.image_id(&view.image);
            }
            statuses.push(pod_status::ephemeral_container_status(&view));
        }
        statuses
    }

    /// The id of the running container `name` in sandbox `sandbox_id`, asked of the runtime now.
    async fn running_container(&self, sandbox_id: &str, name: &str) -> Option<String> {
        let all = self.ctx.cri.list_containers(Some(sandbox_id)).await.ok()?;
        all.into_iter()
            .filter(|c| c.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(name) && is_running(c))
            .max_by_key(|c| c.created_at)
            .map(|c| c.id)
    }

    /// One container: start, restart or keep; returns its view for the status.
    #[allow(clippy::too_many_arguments)]
    async fn sync_container(
        &self,
        pod: &Pod,
        container: &Container,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
        instances: &[&api::Container],
        restart_policy: &str,
        pod_ip: &str,
        volume_paths: &BTreeMap<String, PathBuf>,
    ) -> ContainerView {
        let uid = uid_of(pod);
        let cri = &self.ctx.cri;
        let mut view = ContainerView {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        };
        let latest = instances.first();
        let attempt = latest.and_then(|c| c.metadata.as_ref()).map(|m| m.attempt).unwrap_or(0);
        view.restart_count = attempt as i32;
        let start_new = |attempt: u32| {
            self.create_and_start(
                pod,
                container,
                sandbox_id,
                sandbox_config,
                attempt,
                pod_ip,
                volume_paths,
                None,
            )
        };
        match latest {
            None => match start_new(0).await {
                Ok(id) => {
                    view.latest = self.statuses.container_now(cri, &id).await.ok();
                    self.probe_if_running(pod, container, pod_ip, &mut view).await;
                }
                Err(waiting) => view.waiting = Some(waiting),
            },
            Some(c) if is_running(c) => {
                view.latest = self.statuses.container(cri, c).await.ok();
                view.previous = match instances.get(1) {
                    Some(prev) => self.statuses.container(cri, prev).await.ok(),
                    None => None,
                };
                if let Some(status) = &view.latest {
                    adopt_probe_results(&self.prober, pod, container, status);
                }
                self.probe(pod, container, &c.id, pod_ip, &mut view).await;
            }
            Some(c) if c.state == api::ContainerState::ContainerCreated as i32 => {
                if let Err(err) = cri.start_container(&c.id).await {
                    view.waiting = Some(("RunContainerError".into(), err.to_string()));
                }
                view.latest = self.statuses.container_now(cri, &c.id).await.ok();
            }
            Some(c) => {
                let status = self.statuses.container(cri, c).await.ok();
                let exit_code = status.as_ref().map(|s| s.exit_code).unwrap_or(-1);
                let restart = restart_policy == "Always" || (restart_policy == "OnFailure" && exit_code != 0);
                view.latest = status.clone();
                if restart {
                    let check = self.backoff.lock().unwrap_or_else(|e| e.into_inner()).check(
                        &uid,
                        &container.name,
                        Instant::now(),
                    );
                    match check {
                        Err(remaining) => {
                            let wait = self
                                .backoff
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .current(&uid, &container.name)
                                .unwrap_or(remaining);
                            self.events.warning(
                                pod,
                                &container.name,
                                "BackOff",
                                crash_loop_event(&container.name, pod),
                            );
                            view.waiting = Some((
                                "CrashLoopBackOff".into(),
                                crash_loop_waiting(wait, &container.name, pod),
                            ));
                        }
                        Ok(()) => {
                            // Keep only the latest exited instance (for lastState) before the new one.
                            for old in instances.iter().skip(1) {
                                let _ = cri.remove_container(&old.id).await;
                            }
                            let ran = status
                                .as_ref()
                                .map(|s| Duration::from_nanos((s.finished_at - s.started_at).max(0) as u64))
                                .unwrap_or_default();
                            self.backoff.lock().unwrap_or_else(|e| e.into_inner()).restarted(
                                &uid,
                                &container.name,
                                ran,
                                Instant::now(),
                            );
                            match start_new(attempt + 1).await {
                                Ok(id) => {
                                    tracing::info!(container = %container.name, restarts = attempt + 1, "container restarted");
                                    view.previous = status;
                                    view.latest = self.statuses.container_now(cri, &id).await.ok();
                                    view.restart_count = attempt as i32 + 1;
                                    self.probe_if_running(pod, container, pod_ip, &mut view).await;
                                }
                                Err(waiting) => view.waiting = Some(waiting),
                            }
                        }
                    }
                }
            }
        }
        view
    }

    /// A running container's startup, liveness and readiness as they stand,
    /// each probe run first when it is due (without a probe: started and
    /// ready once running, as the kubelet's prober). A container failing its
    /// liveness probe is stopped; the next sync restarts it.
    async fn probe(&self, pod: &Pod, container: &Container, id: &str, pod_ip: &str, view: &mut ContainerView) {
        let (cri, prober) = (&self.ctx.cri, &self.prober);
        let observe = |kind| async move {
            let seen = prober.observe(cri, kind, container, pod_ip, id).await;
            if let Some(message) = seen.unhealthy {
                self.events.warning(pod, &container.name, "Unhealthy", message);
            }
            seen.ok
        };
        view.started = observe(probes::Kind::Startup).await;
        if !view.started {
            return;
        }
        let alive = observe(probes::Kind::Liveness).await;
        if !alive {
            tracing::info!(container = %container.name, "liveness probe failed; restarting");
            self.events.normal(
                pod,
                &container.name,
                "Killing",
                format!("Container {} failed liveness probe, will be restarted", container.name),
            );
            let grace = Duration::from_secs(
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .max(0) as u64,
            );
            let _ = self.stop_container(Some(pod), Some(container), id, grace, pod_ip).await;
        }
        view.ready = observe(probes::Kind::Readiness).await;
    }

    /// [`PodWorkers::probe`] for a container this sync just started, when
    /// the runtime shows it running: its first status then says started and
    /// ready (or what its first due probes found) in the same write as
    /// Running, as the kubelet's, rather than in a second one.
    async fn probe_if_running(&self, pod: &Pod, container: &Container, pod_ip: &str, view: &mut ContainerView) {
        let running = view
            .latest
            .as_ref()
            .filter(|s| s.state == api::ContainerState::ContainerRunning as i32)
            .map(|s| s.id.clone());
        if let Some(id) = running {
            self.probe(pod, container, &id, pod_ip, view).await;
        }
    }

    /// Create and start a container (in the process namespace of container
    /// `pid_target` when given); `Err((reason, message))` for the waiting state.
    #[allow(clippy::too_many_arguments)]
    async fn create_and_start(
        &self,
        pod: &Pod,
        container: &Container,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
        attempt: u32,
        pod_ip: &str,
        volume_paths: &BTreeMap<String, PathBuf>,
        pid_target: Option<&str>,
    ) -> Result<String, (String, String)> {
        let image = match self.images.ensure(pod, container, &self.events, sandbox_config).await {
            Ok(image) => image,
            Err((reason, message)) => {
                self.events
                    .warning(pod, &container.name, "Failed", images::messages::error(&reason));
                return Err((reason, message));
            }
        };
        let environment = env::resolve(
            &self.ctx.client,
            &self.ctx.services,
            self.volumes.objects(),
            pod,
            container,
            pod_ip,
        )
        .await
        .map_err(|e| ("CreateContainerConfigError".to_string(), e.to_string()))?;
        let mounts = volumes::container_mounts(pod, container, &environment, volume_paths).map_err(|message| {
            self.events
                .warning(pod, &container.name, "Failed", format!("Error: {message}"));
            ("CreateContainerConfigError".to_string(), message)
        })?;
        let mut config = pod_spec::container_config(pod, container, attempt, environment, volume_paths);
        config.mounts = mounts;
        let node = crate::container_setup::NodeFacts {
            pod_dir: &self.pod_dir(&uid_of(pod)),
            pod_ip,
            cluster_domain: &self.ctx.dns.domain,
        };
        if let Err(message) =
            crate::container_setup::complete(&self.ctx.cri, pod, container, image, &node, &mut config).await
        {
            // As the kubelet: a container config it cannot build is also a Warning `Failed` event.
            self.events
                .warning(pod, &container.name, "Failed", format!("Error: {message}"));
            return Err(("CreateContainerConfigError".to_string(), message));
        }
        if let Some(target) = pid_target {
            pod_spec::share_pid_namespace_with(&mut config, target);
        }
        let id = self
            .ctx
            .cri
            .create_container(sandbox_id, config, sandbox_config.clone())
            .await
            .map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?;
        self.events.normal(
            pod,
            &container.name,
            "Created",
            format!("Created container {}", container.name),
        );
        self.ctx
            .cri
            .start_container(&id)
            .await
            .map_err(|e| ("RunContainerError".to_string(), e.to_string()))?;
        lock(&self.started).insert(uid_of(pod));
        self.events.normal(
            pod,
            &container.name,
            "Started",
            format!("Started container {}", container.name),
        );
        if let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            // As the kubelet: the hook runs right after the start; if it fails the container is killed.
            if let Err(message) =
                lifecycle::run(&self.ctx.cri, hook, pod, container, pod_ip, &id, POST_START_LIMIT).await
            {
                tracing::info!(container = %container.name, %message, "postStart hook failed");
                self.events
                    .warning(pod, &container.name, "FailedPostStartHook", message.clone());
                self.events
                    .normal(pod, &container.name, "Killing", "FailedPostStartHook".to_string());
                if let Err(err) = self
                    .stop_container(Some(pod), Some(container), &id, grace_period(pod), pod_ip)
                    .await
                {
                    tracing::warn!(container = %container.name, %err, "killing after a failed postStart hook failed");
                }
                return Err(("PostStartHookError".to_string(), message));
            }
        }
        Ok(id)
    }

    /// Post the status computed from `views`; `ephemeral` statuses replace
    /// the pod's (None keeps what it shows).
    async fn post_status(
        &self,
        pod: &Pod,
        pod_ip: &str,
        observed: Observed<'_>,
        ephemeral: Option<Vec<ContainerStatus>>,
    ) -> Result<(), SyncError> {
        let uid = uid_of(pod);
        let mut basis = pod.clone();
        if let Some(posted) = self.posted.lock().unwrap_or_else(|e| e.into_inner()).get(&uid) {
            basis.status = Some(posted.clone());
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut status = pod_status::pod_status(&basis, Some(pod_ip), self.ctx.host_ip.as_deref(), observed, &now);
        status.ephemeral_container_statuses = match ephemeral {
            Some(list) if list.is_empty() => None,
            Some(list) => Some(list),
            None => basis
                .status
                .as_ref()
                .and_then(|s| s.ephemeral_container_statuses.clone()),
        };
        // As the kubelet's status merge: conditions the node does not own
        // (DisruptionTarget, readiness gates, ...) stay as the API has them.
        let own: Vec<String> = status.conditions.iter().flatten().map(|c| c.type_.clone()).collect();
        let foreign = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| !own.contains(&c.type_))
            .cloned();
        status.conditions.get_or_insert_with(Vec::new).extend(foreign);
        let evicted = lock(&self.evictions).get(&uid).map(|e| e.message.clone());
        if let Some(message) = evicted {
            crate::eviction::mark_evicted(&mut status, &message, basis.status.as_ref(), &now);
        }
        if basis.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let pods: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let patch = serde_json::json!({ "status": status });
        pods.patch_status(
            pod.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        tracing::debug!(phase = ?status.phase, "pod status posted");
        if status.phase.as_deref() == Some("Running") {
            crate::kubelet_metrics::metrics().posted_running(&uid);
        }
        self.posted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid, status);
        Ok(())
    }

    /// Before a deleted pod's containers are signalled: wait until this
    /// node's proxy has taken its address out of the maps for new flows,
    /// then, if it backs a Service, the drain delay for the other nodes.
    /// All of it within the first half of the grace period, which still
    /// bounds the pod's whole termination; returns the time spent. Nothing
    /// to wait for when no container runs.
    async fn drain_endpoints(&self, pod: &Pod, snapshot: &Snapshot) -> Duration {
        let Some(drain) = &self.ctx.endpoint_drain else {
            return Duration::ZERO;
        };
        let uid = uid_of(pod);
        let budget = grace_period(pod) / 2;
        if snapshot.running_containers_of(&uid).is_empty() || budget.is_zero() {
            return Duration::ZERO;
        }
        let began = Instant::now();
        match drain.drains.wait_for(&uid, DRAIN_WAIT.min(budget)).await {
            Some(true) => {
                tokio::time::sleep(drain.delay.min(budget).saturating_sub(began.elapsed())).await;
                tracing::info!(
                    waited_ms = began.elapsed().as_millis() as u64,
                    "endpoints drained before stopping"
                );
            }
            Some(false) => {}
            None => tracing::warn!("the service proxy did not drain the pod's endpoints in time; stopping anyway"),
        }
        began.elapsed()
    }

    /// Stop and remove everything of pod `uid`: containers get `grace` between SIGTERM and SIGKILL.
    ///
    /// As the kubelet: with the Pod (`pod`), each container's preStop hook
    /// runs first; the app containers (and any other) stop together, then
    /// the sidecars one by one in reverse spec order with what is left of
    /// the grace period. An orphan (`None`: its Pod is gone) runs no hooks.
    pub async fn kill_pod(
        &self,
        uid: &str,
        pod: Option<&Pod>,
        snapshot: &Snapshot,
        grace: Duration,
    ) -> Result<(), SyncError> {
        let sandboxes: Vec<String> = snapshot.sandboxes_of(uid).iter().map(|s| s.id.clone()).collect();
        let running = snapshot.running_containers_of(uid);
        let spec = pod.and_then(|p| p.spec.as_ref());
        let init_specs = spec.and_then(|s| s.init_containers.as_deref()).unwrap_or(&[]);
        let name_of = |c: &api::Container| c.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_default();
        let sidecar_rank = |c: &api::Container| {
            let name = name_of(c);
            init_specs
                .iter()
                .position(|s| s.name == name && pod_status::is_sidecar(s))
        };
        let spec_of = |c: &api::Container| {
            let name = name_of(c);
            spec.and_then(|s| s.containers.iter().chain(init_specs).find(|s| s.name == name))
        };
        let pod_ip = pod
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let began = Instant::now();
        let (mut sidecars, others): (Vec<&api::Container>, Vec<&api::Container>) =
            running.into_iter().partition(|c| sidecar_rank(c).is_some());
        let stops = others
            .iter()
            .map(|c| self.stop_container(pod, spec_of(c), &c.id, grace, &pod_ip));
        let mut results = futures::future::join_all(stops).await;
        sidecars.sort_by_key(|c| std::cmp::Reverse(sidecar_rank(c)));
        for c in sidecars {
            let left = grace.saturating_sub(began.elapsed());
            results.push(self.stop_container(pod, spec_of(c), &c.id, left, &pod_ip).await);
        }
        for result in results {
            match result {
                Err(err) if !err.is_not_found() => return Err(err.into()),
                _ => {}
            }
        }
        for id in &sandboxes {
            self.remove_sandbox(id).await?;
        }
        volumes::remove(&self.ctx.state_dir, uid);
        self.volumes.forget(uid);
        let busy = cgroups::remove(&self.cgroup_parent(uid));
        if !busy.is_empty() {
            tracing::warn!(uid, ?busy, "pod cgroups still in use; left in place");
        }
        self.backoff.lock().unwrap_or_else(|e| e.into_inner()).forget_pod(uid);
        self.images.forget_pod(uid);
        self.posted.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
        lock(&self.evictions).remove(uid);
        if !sandboxes.is_empty() {
            tracing::info!(uid, "pod's sandboxes removed");
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> Result<(), CriError> {
        match self.ctx.cri.stop_pod_sandbox(id).await {
            Err(err) if !err.is_not_found() => return Err(err),
            _ => {}
        }
        match self.ctx.cri.remove_pod_sandbox(id).await {
            Err(err) if !err.is_not_found() => Err(err),
            _ => Ok(()),
        }
    }

    /// Forget probe state of containers that no longer exist.
    pub async fn forget_gone_containers(&self, snapshot: &Snapshot) {
        let live: std::collections::HashSet<&str> = snapshot.containers.iter().map(|c| c.id.as_str()).collect();
        self.prober.retain(|id| live.contains(id));
        self.statuses.forget_gone(snapshot);
    }
}

/// Seed the probe state of a running container this process has not probed
/// yet (it was started by an earlier noded) from the Pod's last posted status,
/// so a noded restart does not flap Ready or re-run startup probes.
fn adopt_probe_results(prober: &Prober, pod: &Pod, container: &Container, status: &api::ContainerStatus) {
    let id = &status.id;
    if prober.knows(id, probes::Kind::Readiness) && prober.knows(id, probes::Kind::Startup) {
        return;
    }
    // Sidecars' results are in initContainerStatuses.
    let posted = pod
        .status
        .as_ref()
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().chain(&s.init_container_statuses).flatten())
        .find(|c| c.name == container.name)
        .filter(|c| {
            c.container_id
                .as_deref()
                .and_then(|cid| cid.split_once("://"))
                .is_some_and(|(_, cid)| cid == id.as_str())
        });
    let Some(posted) = posted else { return };
    let ran_for = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|now| now.checked_sub(Duration::from_nanos(status.started_at.max(0) as u64)))
        .unwrap_or_default();
    let started = Instant::now().checked_sub(ran_for).unwrap_or_else(Instant::now);
    if container.readiness_probe.is_some() && !prober.knows(id, probes::Kind::Readiness) {
        prober.adopt(id, probes::Kind::Readiness, posted.ready, started);
    }
    if container.startup_probe.is_some() && posted.started == Some(true) {
        prober.adopt(id, probes::Kind::Startup, true, started);
    }
}

/// Containers waiting to be created (ContainerCreating, or PodInitializing
/// in a pod with init containers), before any runs.
fn creating_views(containers: &[Container]) -> Vec<ContainerView> {
    containers
        .iter()
        .map(|c| ContainerView {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        })
        .collect()
}

/// The Warning `BackOff` event of a container in CrashLoopBackOff.
pub fn crash_loop_event(container: &str, pod: &Pod) -> String {
    format!(
        "Back-off restarting failed container {container} in pod {}",
        format::pod(pod)
    )
}

/// The waiting message of CrashLoopBackOff (`wait` is the whole current back-off).
pub fn crash_loop_waiting(wait: Duration, container: &str, pod: &Pod) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={}",
        format::go_duration(wait),
        format::pod(pod)
    )
}

/// The state directory of pods (for `noded` and tests).
pub fn pods_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pods")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_texts_are_worded_like_the_kubelet() {
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "web", "namespace": "default", "uid": "u-1"}}),
        )
        .unwrap();
        assert_eq!(
            crash_loop_event("app", &pod),
            "Back-off restarting failed container app in pod web_default(u-1)"
        );
        assert_eq!(
            crash_loop_waiting(Duration::from_secs(80), "app", &pod),
            "back-off 1m20s restarting failed container=app pod=web_default(u-1)"
        );
        assert_eq!(creating_views(&[]).len(), 0);
    }
}
