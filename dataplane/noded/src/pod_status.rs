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
                reason: Some("ContainerCreating".into()),
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

/// The `ephemeralContainerStatuses` entry of an ephemeral container: never
/// ready (it serves nothing), never restarted.
pub fn ephemeral_container_status(view: &ContainerView) -> ContainerStatus {
    ContainerStatus {
        ready: false,
        restart_count: 0,
        ..container_status(view)
    }
}

/// The pod phase from its containers and restart policy.
pub fn phase(restart_policy: &str, containers: &[ContainerView]) -> &'static str {
    if containers.is_empty() || containers.iter().any(|c| c.latest.is_none()) {
        return "Pending";
    }
    if containers.iter().any(|c| is_running(c) || c.waiting.is_some()) {
        return "Running";
    }
    let codes: Vec<i32> = containers.iter().filter_map(exited).collect();
    if codes.len() < containers.len() {
        return "Pending";
    }
    let all_ok = codes.iter().all(|c| *c == 0);
    match restart_policy {
        "Always" => "Running",
        "OnFailure" if all_ok => "Succeeded",
        "OnFailure" => "Running",
        _ if all_ok => "Succeeded",
        _ => "Failed",
    }
}

/// The full status of `pod`; transition times are kept from the pod's current status.
pub fn pod_status(
    pod: &Pod,
    pod_ip: Option<&str>,
    host_ip: Option<&str>,
    containers: &[ContainerView],
    now: &Time,
) -> PodStatus {
    let restart_policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let phase = phase(&restart_policy, containers);
    let previous = pod.status.as_ref();
    let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready && is_running(c));
    let condition = |kind: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" }.to_string();
        let since = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind && c.status == status))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        PodCondition {
            type_: kind.to_string(),
            status,
            reason: reason.filter(|_| !ok).map(str::to_string),
            last_transition_time: Some(since),
            ..Default::default()
        }
    };
    let not_ready: Vec<&str> = containers
        .iter()
        .filter(|c| !(c.ready && is_running(c)))
        .map(|c| c.name.as_str())
        .collect();
    let reason = (!not_ready.is_empty()).then_some("ContainersNotReady");
    let ip = pod_ip.filter(|ip| !ip.is_empty());
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(vec![
            condition("PodScheduled", true, None),
            condition("Initialized", true, None),
            condition("ContainersReady", all_ready, reason),
            condition("Ready", all_ready, reason),
        ]),
        pod_ip: ip.map(str::to_string),
        pod_ips: ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
        host_ip: host_ip.map(str::to_string),
        host_ips: None,
        start_time: previous
            .and_then(|p| p.start_time.clone())
            .or_else(|| Some(now.clone())),
        container_statuses: Some(containers.iter().map(container_status).collect()),
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
    use crate::pod_spec::{cpu_millis, memory_bytes};
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    let mut any = false;
    let mut guaranteed = true;
    for container in containers {
        let resources = container.resources.as_ref();
        let requests = resources.and_then(|r| r.requests.as_ref());
        let limits = resources.and_then(|r| r.limits.as_ref());
        for (resource, amount) in [("cpu", cpu_millis as fn(&_) -> _), ("memory", memory_bytes)] {
            let request = requests.and_then(|m| m.get(resource)).and_then(amount);
            let limit = limits.and_then(|m| m.get(resource)).and_then(amount);
            any |= request.is_some_and(|v| v > 0) || limit.is_some_and(|v| v > 0);
            guaranteed &= limit.is_some_and(|v| v > 0) && request.is_none_or(|r| Some(r) == limit);
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
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
    }

    #[test]
    fn running_and_ready_pod_reports_ip_conditions_and_container_status() {
        let pod: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": []}})).unwrap();
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(5).unwrap());
        let mut v = view(Some(running("abc")), true);
        v.restart_count = 2;
        let status = pod_status(&pod, Some("10.1.0.5"), Some("192.0.2.1"), &[v], &now);
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
