//! A Pod's status computed from what the runtime reports.
//!
//! Pure: the pod worker gathers the sandbox and container states and this
//! module turns them into `status` (phase, conditions, IPs, container
//! statuses) the way the kubelet does, so the rules are unit-tested.

use crate::cri::api;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What the worker knows about one spec container.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    /// Container name from the spec.
    pub name: String,
    /// Image from the spec.
    pub image: String,
    /// The latest runtime container's status, if one exists.
    pub latest: Option<api::ContainerStatus>,
    /// The previous (exited) instance, shown as `lastState`.
    pub previous: Option<api::ContainerStatus>,
    /// Restarts so far.
    pub restart_count: i32,
    /// Why the container is waiting (`ContainerCreating`, `CrashLoopBackOff`...), with a message.
    pub waiting: Option<(String, String)>,
    /// Readiness probe result (true when there is no probe and it runs).
    pub ready: bool,
    /// Startup probe passed (true when there is no probe and it runs).
    pub started: bool,
    /// The image's repo digest, when the runtime's `image_ref` is a bare id.
    pub image_id: Option<String>,
}

fn time_from_nanos(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
        .map(Time)
}

fn terminated(status: &api::ContainerStatus) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: status.exit_code,
        reason: Some(if status.reason.is_empty() {
            if status.exit_code == 0 { "Completed" } else { "Error" }.to_string()
        } else {
            status.reason.clone()
        }),
        message: (!status.message.is_empty()).then(|| status.message.clone()),
        started_at: time_from_nanos(status.started_at),
        finished_at: time_from_nanos(status.finished_at),
        container_id: Some(format!("containerd://{}", status.id)),
        signal: None,
    }
}

fn is_running(view: &ContainerView) -> bool {
    view.waiting.is_none() && matches!(&view.latest, Some(s) if s.state == api::ContainerState::ContainerRunning as i32)
}

fn exited(view: &ContainerView) -> Option<i32> {
    view.latest
        .as_ref()
        .filter(|s| s.state == api::ContainerState::ContainerExited as i32)
        .map(|s| s.exit_code)
}

/// The `containerStatuses` entry of one container.
pub fn container_status(view: &ContainerView) -> ContainerStatus {
    status_with_default(view, "ContainerCreating")
}

/// A container's status; `default_reason` is the waiting reason of a
/// container that does not exist yet (the kubelet's `ContainerCreating`, or
/// `PodInitializing` in a pod with init containers).
fn status_with_default(view: &ContainerView, default_reason: &str) -> ContainerStatus {
    let state = match (&view.waiting, &view.latest) {
        (Some((reason, message)), _) => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: Some(message.clone()),
            }),
            ..Default::default()
        },
        (None, Some(s)) if s.state == api::ContainerState::ContainerRunning as i32 => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time_from_nanos(s.started_at),
            }),
            ..Default::default()
        },
        (None, Some(s)) if s.state == api::ContainerState::ContainerExited as i32 => ContainerState {
            terminated: Some(terminated(s)),
            ..Default::default()
        },
        _ => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(default_reason.into()),
                message: None,
            }),
            ..Default::default()
        },
    };
    let last_state = view
        .previous
        .as_ref()
        .or(view.latest.as_ref().filter(|_| view.waiting.is_some()))
        .filter(|s| s.state == api::ContainerState::ContainerExited as i32)
        .map(|s| ContainerState {
            terminated: Some(terminated(s)),
            ..Default::default()
        });
    ContainerStatus {
        name: view.name.clone(),
        image: view.image.clone(),
        image_id: match (&view.image_id, &view.latest) {
            (Some(digest), Some(_)) => digest.clone(),
            (_, latest) => latest.as_ref().map(|s| s.image_ref.clone()).unwrap_or_default(),
        },
        container_id: view.latest.as_ref().map(|s| format!("containerd://{}", s.id)),
        ready: view.ready && is_running(view),
        started: Some(view.started && is_running(view)),
        restart_count: view.restart_count,
        state: Some(state),
        last_state,
        ..Default::default()
    }
}

/// The `initContainerStatuses` entry of an init container, as the kubelet's
/// prober writes it: `started` only while running (and past its startup
/// probe); `ready` for a regular init container once it exited 0, for a
/// sidecar (`restartPolicy: Always`) while running and passing its readiness
/// probe.
pub fn init_container_status(view: &ContainerView, sidecar: bool) -> ContainerStatus {
    let mut status = status_with_default(view, "PodInitializing");
    if !sidecar {
        status.ready = view.waiting.is_none() && exited(view) == Some(0);
    }
    status
}

/// The `ephemeralContainerStatuses` entry of an ephemeral container: never
/// ready (it serves nothing), never restarted.
pub fn ephemeral_container_status(view: &ContainerView) -> ContainerStatus {
    ContainerStatus {
        ready: false,
        restart_count: 0,
        ..container_status(view)
    }
}

/// The pod phase from its containers and restart policy (no init containers).
pub fn phase(restart_policy: &str, containers: &[ContainerView]) -> &'static str {
    let statuses: Vec<ContainerStatus> = containers.iter().map(container_status).collect();
    pod_phase(restart_policy, &[], &statuses)
}

/// The pod phase from the statuses it will show, as the kubelet's `getPhase`:
/// `init` pairs each init container's status with whether it is a sidecar.
/// A regular init container still to run (or running) keeps the pod
/// Pending, one that failed under `restartPolicy: Never` fails it, and so
/// does a container not started yet; sidecars count as running containers
/// but their exit never ends the pod.
pub fn pod_phase(
    restart_policy: &str,
    init: &[(bool, ContainerStatus)],
    containers: &[ContainerStatus],
) -> &'static str {
    let state = |s: &ContainerStatus| s.state.clone().unwrap_or_default();
    let last_terminated = |s: &ContainerStatus| s.last_state.as_ref().and_then(|l| l.terminated.as_ref()).cloned();
    let (mut pending_init, mut pending_sidecars, mut failed_init) = (0, 0, 0);
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    let mut regular_started = false;
    for (sidecar, status) in init {
        let st = state(status);
        if *sidecar {
            if st.running.is_some() {
                if status.started != Some(true) {
                    pending_sidecars += 1;
                }
                running += 1;
            } else if st.terminated.is_none() && last_terminated(status).is_none() {
                pending_sidecars += 1;
            }
            continue;
        }
        if st.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = st.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else {
            match last_terminated(status) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        }
    }
    for status in containers {
        let st = state(status);
        if st.running.is_some() {
            running += 1;
            regular_started = true;
        } else if let Some(t) = st.terminated {
            stopped += 1;
            regular_started = true;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if last_terminated(status).is_some() {
            stopped += 1;
            regular_started = true;
        } else {
            waiting += 1;
        }
    }
    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    // A container not started yet (waiting without an earlier run) keeps the pod Pending.
    if pending_init > 0 || (pending_sidecars > 0 && !regular_started) || waiting > 0 {
        return "Pending";
    }
    if containers.is_empty() {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 {
        return match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

/// The `Initialized` condition's (status, reason, message) from the init
/// containers' statuses, as the kubelet: `ContainersNotInitialized` with
/// `containers with incomplete status: [a b]` until every regular init
/// container exited 0 and every sidecar started; True once any regular
/// container ran (a restarting sidecar does not un-initialize the pod);
/// `PodCompleted` for a Succeeded pod.
pub fn initialized(
    init: &[(bool, ContainerStatus)],
    containers: &[ContainerStatus],
    phase: &str,
) -> (bool, Option<String>, Option<String>) {
    if phase == "Succeeded" {
        return (true, Some("PodCompleted".into()), None);
    }
    let regular_started = containers.iter().any(|s| {
        let st = s.state.clone().unwrap_or_default();
        st.running.is_some() || st.terminated.is_some() || s.last_state.as_ref().is_some_and(|l| l.terminated.is_some())
    });
    if regular_started {
        return (true, None, None);
    }
    let incomplete: Vec<&str> = init
        .iter()
        .filter(|(sidecar, s)| {
            if *sidecar {
                s.started != Some(true)
            } else {
                s.state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_none_or(|t| t.exit_code != 0)
            }
        })
        .map(|(_, s)| s.name.as_str())
        .collect();
    if incomplete.is_empty() {
        return (true, None, None);
    }
    (
        false,
        Some("ContainersNotInitialized".into()),
        Some(format!("containers with incomplete status: [{}]", incomplete.join(" "))),
    )
}

/// The `ContainersReady` condition's (status, reason, message): every
/// container and sidecar running and ready, else `ContainersNotReady` with
/// `containers with unready status: [a b]`; a Succeeded or Failed pod is not
/// ready with reason `PodCompleted` or `PodFailed`.
pub fn containers_ready(
    init: &[(bool, ContainerStatus)],
    containers: &[ContainerStatus],
    phase: &str,
) -> (bool, Option<String>, Option<String>) {
    match phase {
        "Succeeded" => return (false, Some("PodCompleted".into()), None),
        "Failed" => return (false, Some("PodFailed".into()), None),
        _ => {}
    }
    let unready: Vec<&str> = init
        .iter()
        .filter(|(sidecar, _)| *sidecar)
        .map(|(_, s)| s)
        .chain(containers)
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    if unready.is_empty() && !containers.is_empty() {
        return (true, None, None);
    }
    (
        false,
        Some("ContainersNotReady".into()),
        Some(format!("containers with unready status: [{}]", unready.join(" "))),
    )
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(container: &k8s_openapi::api::core::v1::Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// What the worker observed of a pod: its init containers (spec order), its
/// containers, and whether its sandbox is up with networking
/// (`PodReadyToStartContainers`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed<'a> {
    /// Init containers, in spec order.
    pub init_containers: &'a [ContainerView],
    /// Regular containers, in spec order.
    pub containers: &'a [ContainerView],
    /// The sandbox is ready (its network configured).
    pub sandbox_ready: bool,
}

/// The full status of `pod`; transition times are kept from the pod's current status.
pub fn pod_status(
    pod: &Pod,
    pod_ip: Option<&str>,
    host_ip: Option<&str>,
    observed: Observed<'_>,
    now: &Time,
) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
    let has_init = !observed.init_containers.is_empty();
    let default_reason = if has_init {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let init: Vec<(bool, ContainerStatus)> = observed
        .init_containers
        .iter()
        .map(|view| {
            let sidecar = spec
                .init_containers
                .iter()
                .flatten()
                .find(|c| c.name == view.name)
                .is_some_and(is_sidecar);
            (sidecar, init_container_status(view, sidecar))
        })
        .collect();
    let containers: Vec<ContainerStatus> = observed
        .containers
        .iter()
        .map(|v| status_with_default(v, default_reason))
        .collect();
    let previous = pod.status.as_ref();
    let mut phase = pod_phase(&restart_policy, &init, &containers);
    // As the kubelet's status manager: a terminal phase is never left.
    if let Some(old @ ("Succeeded" | "Failed")) = previous.and_then(|p| p.phase.as_deref()) {
        phase = if old == "Succeeded" { "Succeeded" } else { "Failed" };
    }
    let condition = |kind: &str, (ok, reason, message): (bool, Option<String>, Option<String>)| {
        let status = if ok { "True" } else { "False" }.to_string();
        let since = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind && c.status == status))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        PodCondition {
            type_: kind.to_string(),
            status,
            reason,
            message,
            last_transition_time: Some(since),
            ..Default::default()
        }
    };
    let ready = containers_ready(&init, &containers, phase);
    let ip = pod_ip.filter(|ip| !ip.is_empty());
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", (observed.sandbox_ready, None, None)),
            condition("Initialized", initialized(&init, &containers, phase)),
            condition("Ready", ready.clone()),
            condition("ContainersReady", ready),
            condition("PodScheduled", (true, None, None)),
        ]),
        pod_ip: ip.map(str::to_string),
        pod_ips: ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
        host_ip: host_ip.map(str::to_string),
        host_ips: None,
        start_time: previous
            .and_then(|p| p.start_time.clone())
            .or_else(|| Some(now.clone())),
        init_container_statuses: has_init.then(|| init.into_iter().map(|(_, s)| s).collect()),
        container_statuses: Some(containers),
        qos_class: previous
            .and_then(|p| p.qos_class.clone())
            .or_else(|| pod.spec.as_ref().map(|s| qos_class(s).to_string())),
        ..Default::default()
    }
}

/// The pod's QoS class from its containers' requests and limits (the API
/// server leaves it unset, `kubectl describe` shows it): `Guaranteed` when
/// every container limits CPU and memory with equal requests, `BestEffort`
/// when none sets any, `Burstable` otherwise.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    sluice_kube::qos::qos_class(containers.map(|container| {
        let resources = container.resources.as_ref();
        let get = |list: Option<&std::collections::BTreeMap<String, Quantity>>, r: &str| {
            list.and_then(|m| m.get(r))
                .and_then(|q| sluice_kube::quantity::parse_milli(&q.0).ok())
        };
        let (requests, limits) = (
            resources.and_then(|r| r.requests.as_ref()),
            resources.and_then(|r| r.limits.as_ref()),
        );
        sluice_kube::qos::ContainerResources {
            cpu_request: get(requests, "cpu"),
            cpu_limit: get(limits, "cpu"),
            memory_request: get(requests, "memory"),
            memory_limit: get(limits, "memory"),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(id: &str) -> api::ContainerStatus {
        api::ContainerStatus {
            id: id.into(),
            state: api::ContainerState::ContainerRunning as i32,
            image_ref: "sha256:abc".into(),
            started_at: 1_000_000_000,
            ..Default::default()
        }
    }

    fn exited(id: &str, code: i32) -> api::ContainerStatus {
        api::ContainerStatus {
            id: id.into(),
            state: api::ContainerState::ContainerExited as i32,
            exit_code: code,
            ..Default::default()
        }
    }

    fn view(latest: Option<api::ContainerStatus>, ready: bool) -> ContainerView {
        ContainerView {
            name: "c".into(),
            image: "img".into(),
            latest,
            ready,
            ..Default::default()
        }
    }

    #[test]
    fn phases_follow_the_kubelet_rules() {
        assert_eq!(phase("Always", &[view(None, false)]), "Pending");
        assert_eq!(phase("Always", &[view(Some(running("a")), true)]), "Running");
        assert_eq!(phase("Never", &[view(Some(exited("a", 0)), false)]), "Succeeded");
        assert_eq!(phase("Never", &[view(Some(exited("a", 1)), false)]), "Failed");
        assert_eq!(phase("OnFailure", &[view(Some(exited("a", 1)), false)]), "Running");
        assert_eq!(phase("OnFailure", &[view(Some(exited("a", 0)), false)]), "Succeeded");
        assert_eq!(phase("Always", &[view(Some(exited("a", 0)), false)]), "Running");
        // One container still being created keeps the pod Pending, as the kubelet's `waiting > 0`.
        assert_eq!(
            phase("Always", &[view(Some(running("a")), true), view(None, false)]),
            "Pending"
        );
    }

    #[test]
    fn running_and_ready_pod_reports_ip_conditions_and_container_status() {
        let pod: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": []}})).unwrap();
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(5).unwrap());
        let mut v = view(Some(running("abc")), true);
        v.restart_count = 2;
        let views = [v];
        let observed = Observed {
            containers: &views,
            sandbox_ready: true,
            ..Default::default()
        };
        let status = pod_status(&pod, Some("10.1.0.5"), Some("192.0.2.1"), observed, &now);
        assert!(status.init_container_statuses.is_none());
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.1.0.5"));
        assert_eq!(status.pod_ips.unwrap()[0].ip, "10.1.0.5");
        let conditions = status.conditions.unwrap();
        assert!(conditions.iter().all(|c| c.status == "True"), "{conditions:?}");
        let cs = &status.container_statuses.unwrap()[0];
        assert!(cs.ready);
        assert_eq!(cs.restart_count, 2);
        assert_eq!(cs.image_id, "sha256:abc");
        let mut pulled = view(Some(running("abc")), true);
        pulled.image_id = Some("docker.io/library/nginx@sha256:def".into());
        assert_eq!(container_status(&pulled).image_id, "docker.io/library/nginx@sha256:def");
        assert_eq!(cs.container_id.as_deref(), Some("containerd://abc"));
        assert!(cs.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let spec = |resources: serde_json::Value| -> PodSpec {
            serde_json::from_value(serde_json::json!({"containers": [{"name": "c", "resources": resources}]})).unwrap()
        };
        assert_eq!(qos_class(&spec(serde_json::json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&spec(serde_json::json!({"limits": {"cpu": "250m", "memory": "64Mi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&spec(
                serde_json::json!({"requests": {"cpu": "0.25", "memory": "64Mi"}, "limits": {"cpu": "250m", "memory": "64Mi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&spec(serde_json::json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&spec(serde_json::json!({"limits": {"memory": "64Mi"}}))),
            "Burstable"
        );
    }

    #[test]
    fn ephemeral_containers_are_never_ready_and_show_their_exit() {
        let cs = ephemeral_container_status(&view(Some(running("e1")), true));
        assert!(!cs.ready);
        assert!(cs.state.unwrap().running.is_some());
        let cs = ephemeral_container_status(&view(Some(exited("e1", 0)), false));
        let done = cs.state.unwrap().terminated.unwrap();
        assert_eq!((done.exit_code, done.reason.as_deref()), (0, Some("Completed")));
        assert_eq!(cs.restart_count, 0);
    }

    fn named(name: &str, latest: Option<api::ContainerStatus>) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: "img".into(),
            started: latest.is_some(),
            ready: latest.is_some(),
            latest,
            ..Default::default()
        }
    }

    fn pod_with(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn condition<'a>(status: &'a PodStatus, kind: &str) -> &'a PodCondition {
        status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap()
    }

    #[test]
    fn init_containers_keep_the_pod_pending_and_not_initialized() {
        let pod = pod_with(serde_json::json!({
            "initContainers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}],
            "containers": [{"name": "app", "image": "i"}]
        }));
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(5).unwrap());
        let init = [named("a", Some(running("a1"))), named("b", None)];
        let app = [named("app", None)];
        let observed = Observed {
            init_containers: &init,
            containers: &app,
            sandbox_ready: true,
        };
        let status = pod_status(&pod, Some("10.1.0.5"), None, observed, &now);
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let initialized = condition(&status, "Initialized");
        assert_eq!(
            (
                initialized.status.as_str(),
                initialized.reason.as_deref(),
                initialized.message.as_deref()
            ),
            (
                "False",
                Some("ContainersNotInitialized"),
                Some("containers with incomplete status: [a b]")
            )
        );
        assert_eq!(condition(&status, "PodReadyToStartContainers").status, "True");
        let ready = condition(&status, "ContainersReady");
        assert_eq!(ready.message.as_deref(), Some("containers with unready status: [app]"));
        let inits = status.init_container_statuses.as_ref().unwrap();
        // A running regular init container is started but not ready; one still to run waits in PodInitializing.
        assert_eq!((inits[0].started, inits[0].ready), (Some(true), false));
        let waiting = |s: &ContainerStatus| s.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.clone();
        assert_eq!(waiting(&inits[1]).as_deref(), Some("PodInitializing"));
        assert_eq!(
            waiting(&status.container_statuses.as_ref().unwrap()[0]).as_deref(),
            Some("PodInitializing")
        );
        let types: Vec<&str> = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );

        // Both done: Initialized, the completed ones ready and no longer started.
        let init = [named("a", Some(exited("a1", 0))), named("b", Some(exited("b1", 0)))];
        let app = [named("app", Some(running("c1")))];
        let observed = Observed {
            init_containers: &init,
            containers: &app,
            sandbox_ready: true,
        };
        let status = pod_status(&pod, Some("10.1.0.5"), None, observed, &now);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&status, "Initialized").status, "True");
        assert_eq!(condition(&status, "Ready").status, "True");
        let inits = status.init_container_statuses.unwrap();
        assert!(inits.iter().all(|s| s.ready && s.started == Some(false)));
    }

    #[test]
    fn failed_init_containers_fail_a_never_pod_and_back_off_otherwise() {
        let failed = [(false, init_container_status(&named("a", Some(exited("a1", 2))), false))];
        let app = [container_status(&named("app", None))];
        assert_eq!(pod_phase("Never", &failed, &app), "Failed");
        let mut backing_off = named("a", Some(exited("a1", 2)));
        backing_off.waiting = Some(("CrashLoopBackOff".into(), "back-off 10s".into()));
        let init = [(false, init_container_status(&backing_off, false))];
        assert_eq!(pod_phase("OnFailure", &init, &app), "Pending");
        assert_eq!(pod_phase("Always", &init, &app), "Pending");
        let (ok, reason, message) = initialized(&init, &app, "Pending");
        assert!(!ok);
        assert_eq!(reason.as_deref(), Some("ContainersNotInitialized"));
        assert_eq!(message.as_deref(), Some("containers with incomplete status: [a]"));
    }

    #[test]
    fn sidecars_count_for_readiness_but_not_for_completion() {
        let mut sidecar = named("proxy", Some(running("s1")));
        sidecar.ready = false;
        let init = [(true, init_container_status(&sidecar, true))];
        // Started sidecar: the pod is initialized and runs; an unready sidecar keeps it unready.
        let app = [container_status(&named("app", Some(running("c1"))))];
        assert_eq!(pod_phase("Never", &init, &app), "Running");
        assert!(initialized(&init, &app, "Running").0);
        let (ok, _, message) = containers_ready(&init, &app, "Running");
        assert!(!ok);
        assert_eq!(message.as_deref(), Some("containers with unready status: [proxy]"));
        // A sidecar not started yet holds initialization back.
        let mut starting = named("proxy", Some(running("s1")));
        starting.started = false;
        let init_starting = [(true, init_container_status(&starting, true))];
        let waiting_app = [container_status(&named("app", None))];
        assert_eq!(pod_phase("Never", &init_starting, &waiting_app), "Pending");
        assert_eq!(
            initialized(&init_starting, &waiting_app, "Pending").2.as_deref(),
            Some("containers with incomplete status: [proxy]")
        );
        // The main container finished: still Running while the sidecar runs, Succeeded once it is stopped.
        let done = [container_status(&named("app", Some(exited("c1", 0))))];
        assert_eq!(pod_phase("Never", &init, &done), "Running");
        let stopped = [(
            true,
            init_container_status(&named("proxy", Some(exited("s1", 143))), true),
        )];
        assert_eq!(pod_phase("Never", &stopped, &done), "Succeeded");
        assert_eq!(
            initialized(&stopped, &done, "Succeeded").1.as_deref(),
            Some("PodCompleted")
        );
        assert_eq!(
            containers_ready(&stopped, &done, "Succeeded").1.as_deref(),
            Some("PodCompleted")
        );
    }

    #[test]
    fn a_terminal_phase_is_never_left() {
        let mut pod =
            pod_with(serde_json::json!({"restartPolicy": "Never", "containers": [{"name": "app", "image": "i"}]}));
        pod.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(5).unwrap());
        let app = [named("app", None)];
        let observed = Observed {
            containers: &app,
            ..Default::default()
        };
        let status = pod_status(&pod, None, None, observed, &now);
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        assert_eq!(condition(&status, "PodReadyToStartContainers").status, "False");
    }

    #[test]
    fn crash_loop_shows_waiting_with_the_last_termination() {
        let mut v = view(Some(exited("abc", 3)), false);
        v.waiting = Some(("CrashLoopBackOff".into(), "back-off 10s".into()));
        let cs = container_status(&v);
        assert_eq!(
            cs.state.unwrap().waiting.unwrap().reason.as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(cs.last_state.unwrap().terminated.unwrap().exit_code, 3);
        assert!(!cs.ready);
    }
}
