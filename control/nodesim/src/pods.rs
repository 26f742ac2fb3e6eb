//! Pod lifecycle on simulated nodes, like a kubelet that starts containers instantly:
//! pods bound to one of our nodes become Running (pod IP, conditions, container
//! statuses); pods marked for deletion are finalized (DELETE with grace period 0).
//! With a completion delay (`--complete-after`), the containers of Running pods that
//! a kubelet would not restart (restartPolicy `Never` or `OnFailure`) exit 0 that long
//! after the pod started, and the pod is reported `Succeeded` (Job workloads); pods
//! with restartPolicy `Always` run until deleted, as their containers would be restarted.
//!
//! Work is de-duplicated per pod and written with a bounded number of concurrent
//! requests, so 10,000 pods on 5,000 nodes start without flooding the API server.

use crate::ipam::PodIpam;
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// What to do with one pod.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Report it Running.
    Start,
    /// Report its containers terminated with exit code 0 and the pod Succeeded,
    /// once the completion delay has passed since it started.
    Complete,
    /// Finalize its deletion.
    Delete,
    /// Nothing (not ours, or already in the wanted state).
    Nothing,
}

/// Decide what a kubelet on `our_nodes` would do with this pod now; `complete` says
/// whether containers run to completion (a completion delay is configured).
pub fn action(pod: &Pod, our_nodes: &HashSet<String>, complete: bool) -> Action {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
        return Action::Nothing;
    };
    if !our_nodes.contains(node) {
        return Action::Nothing;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Action::Delete;
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    let has_ip = status
        .and_then(|s| s.pod_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty());
    match phase {
        Some("Running") if has_ip && complete && runs_to_completion(pod) => Action::Complete,
        Some("Running") if has_ip => Action::Nothing,
        Some("Succeeded") | Some("Failed") => Action::Nothing,
        _ => Action::Start,
    }
}

/// Whether a kubelet leaves this pod's containers exited once they exit 0: restartPolicy
/// `Never` or `OnFailure` (a missing policy defaults to `Always`, which restarts them).
pub fn runs_to_completion(pod: &Pod) -> bool {
    matches!(
        pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()),
        Some("Never") | Some("OnFailure")
    )
}

/// The status a kubelet would report once every container of a Running pod exited 0:
/// phase `Succeeded`, each container `terminated` with reason `Completed` and exit code 0
/// (started when its running state says), Ready and ContainersReady `False` with reason
/// `PodCompleted`. A merge patch: the lists replace the Running ones.
pub fn succeeded_status(pod: &Pod, now: &Time) -> serde_json::Value {
    let status = pod.status.as_ref();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let reported = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    let containers: Vec<_> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let prev = reported.iter().find(|s| s.name == c.name);
            let started = prev
                .and_then(|s| s.state.as_ref())
                .and_then(|s| s.running.as_ref())
                .and_then(|r| r.started_at.clone())
                .or_else(|| status.and_then(|s| s.start_time.clone()))
                .unwrap_or_else(|| now.clone());
            let image = c.image.clone().unwrap_or_default();
            serde_json::json!({
                "name": c.name,
                "image": image,
                "imageID": format!("nodesim://{image}"),
                "containerID": prev
                    .and_then(|s| s.container_id.clone())
                    .unwrap_or_else(|| format!("nodesim://{uid}/{}", c.name)),
                "ready": false,
                "started": false,
                "restartCount": prev.map(|s| s.restart_count).unwrap_or(0),
                "state": { "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": started,
                    "finishedAt": now,
                    "containerID": prev
                        .and_then(|s| s.container_id.clone())
                        .unwrap_or_else(|| format!("nodesim://{uid}/{}", c.name)),
                } },
            })
        })
        .collect();
    let conditions: Vec<_> = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            if matches!(c.type_.as_str(), "Ready" | "ContainersReady") {
                serde_json::json!({
                    "type": c.type_,
                    "status": "False",
                    "reason": "PodCompleted",
                    "lastTransitionTime": now,
                })
            } else {
                serde_json::to_value(c).unwrap_or_default()
            }
        })
        .collect();
    serde_json::json!({
        "status": {
            "phase": "Succeeded",
            "conditions": conditions,
            "containerStatuses": containers,
        }
    })
}

/// How long to wait before completing a pod that started at `started` (now if unknown),
/// for pods another nodesim process started: `status.startTime` has whole seconds only,
/// so pods this process started are timed from when it reported them Running.
pub fn completion_wait(started: Option<&Time>, delay: std::time::Duration, now: Timestamp) -> std::time::Duration {
    let Some(started) = started else {
        return delay;
    };
    let ran = now.duration_since(started.0);
    let ran = std::time::Duration::try_from(ran).unwrap_or_default();
    delay.saturating_sub(ran)
}

/// The status a kubelet would report for a started pod.
pub fn running_status(pod: &Pod, pod_ip: Ipv4Addr, host_ip: &str) -> serde_json::Value {
    let now = Time(Timestamp::now());
    let spec = pod.spec.as_ref();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let cond = |t: &str| serde_json::json!({ "type": t, "status": "True", "lastTransitionTime": now });
    let containers: Vec<_> = spec
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": format!("nodesim://{}", c.image.clone().unwrap_or_default()),
                "containerID": format!("nodesim://{uid}/{}", c.name),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": { "running": { "startedAt": now } },
            })
        })
        .collect();
    let init_containers: Vec<_> = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": format!("nodesim://{}", c.image.clone().unwrap_or_default()),
                "containerID": format!("nodesim://{uid}/{}", c.name),
                "ready": true,
                "restartCount": 0,
                "state": { "terminated": { "exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now } },
            })
        })
        .collect();
    let ip = pod_ip.to_string();
    serde_json::json!({
        "status": {
            "phase": "Running",
            "hostIP": host_ip,
            "hostIPs": [{ "ip": host_ip }],
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "startTime": now,
            "conditions": [
                cond("PodReadyToStartContainers"),
                cond("Initialized"),
                cond("Ready"),
                cond("ContainersReady"),
                cond("PodScheduled"),
            ],
            "containerStatuses": containers,
            "initContainerStatuses": init_containers,
        }
    })
}

/// Shared state of the pod runner.
pub struct PodRunner {
    client: Client,
    our_nodes: Arc<HashSet<String>>,
    node_index: HashMap<String, usize>,
    synthetic_range: Ipv4Net,
    ipam: Mutex<PodIpam>,
    /// Pod UIDs with work in progress (de-duplication).
    busy: Mutex<HashSet<String>>,
    /// Pod UID → (node, IP) of pods we started, to free the IP on deletion.
    ips: Mutex<HashMap<String, (String, Ipv4Addr)>>,
    slots: Arc<Semaphore>,
    /// Containers of run-to-completion pods exit 0 this long after the pod started.
    complete_after: Option<std::time::Duration>,
    /// Pod UIDs whose completion is scheduled or done.
    completing: Mutex<HashSet<String>>,
    /// Pod UID → when this process reported it Running (completion timing).
    started: Mutex<HashMap<String, std::time::Instant>>,
}

impl PodRunner {
    /// A runner for `nodes` (names in registration order) writing at most `concurrency` at once;
    /// with `complete_after`, run-to-completion pods succeed that long after they started.
    pub fn new(
        client: Client,
        nodes: &[String],
        synthetic_range: Ipv4Net,
        concurrency: usize,
        complete_after: Option<std::time::Duration>,
    ) -> Arc<PodRunner> {
        let mut ipam = PodIpam::default();
        for (i, n) in nodes.iter().enumerate() {
            ipam.set_node_cidr(n, crate::ipam::synthetic_cidr(synthetic_range, i));
        }
        Arc::new(PodRunner {
            client,
            our_nodes: Arc::new(nodes.iter().cloned().collect()),
            node_index: nodes.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect(),
            synthetic_range,
            ipam: Mutex::new(ipam),
            busy: Mutex::new(HashSet::new()),
            ips: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            complete_after,
            completing: Mutex::new(HashSet::new()),
            started: Mutex::new(HashMap::new()),
        })
    }

    fn on_node(&self, node: &Node) {
        let Some(name) = node.metadata.name.as_deref() else {
            return;
        };
        if !self.our_nodes.contains(name) {
            return;
        }
        let cidr = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(|c| c.parse::<Ipv4Net>().ok());
        let cidr = cidr.unwrap_or_else(|| crate::ipam::synthetic_cidr(self.synthetic_range, self.node_index[name]));
        self.ipam
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_node_cidr(name, cidr);
    }

    /// Watch our nodes for `spec.podCIDR` (set by the controller-manager's IPAM).
    pub async fn watch_nodes(self: Arc<Self>) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Apply(n)) | Ok(Event::InitApply(n)) => self.on_node(&n),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "node watch failed; retrying"),
            }
        }
    }

    /// Watch pods and act on those bound to our nodes, until the process ends.
    pub async fn run(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => self.clone().on_pod(p).await,
                Ok(Event::Delete(p)) => self.on_pod_deleted(&p),
                Ok(Event::InitDone) => info!("pod watch synced"),
                Ok(Event::Init) => {}
                Err(e) => warn!(error = %e, "pod watch failed; retrying"),
            }
        }
    }

    fn on_pod_deleted(&self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.completing.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
        self.started.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
        self.release_ip(&uid);
    }

    /// Free the pod IP of a pod that is gone or whose sandbox would be torn down.
    fn release_ip(&self, uid: &str) {
        if let Some((node, ip)) = self.ips.lock().unwrap_or_else(|e| e.into_inner()).remove(uid) {
            self.ipam.lock().unwrap_or_else(|e| e.into_inner()).release(&node, ip);
        }
    }

    async fn on_pod(self: Arc<Self>, pod: Pod) {
        let act = action(&pod, &self.our_nodes, self.complete_after.is_some());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        );
        if act == Action::Complete {
            self.schedule_completion(pod, uid);
            return;
        }
        if act == Action::Nothing {
            // Remember IPs of pods already running (e.g. after a nodesim restart).
            if terminal {
                return;
            }
            if let (Some(node), Some(ip)) = (
                pod.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .filter(|n| self.our_nodes.contains(n)),
                pod.status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .and_then(|ip| ip.parse::<Ipv4Addr>().ok()),
            ) {
                let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
                ips.entry(uid).or_insert_with(|| {
                    self.ipam.lock().unwrap_or_else(|e| e.into_inner()).mark_used(&node, ip);
                    (node, ip)
                });
            }
            return;
        }
        if !self.busy.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone()) {
            return; // already being handled
        }
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        tokio::spawn(async move {
            let result = match act {
                Action::Start => self.start(&pod).await,
                Action::Delete => self.finalize(&pod).await,
                Action::Complete | Action::Nothing => Ok(()),
            };
            if let Err(e) = result {
                warn!(pod = ?pod.metadata.name, error = %e, "pod update failed");
            }
            self.busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
            drop(permit);
        });
    }

    /// Once per pod: wait until the completion delay has passed since it started, then
    /// report it Succeeded (retried on the pod's next event if the write fails).
    fn schedule_completion(self: Arc<Self>, pod: Pod, uid: String) {
        let Some(delay) = self.complete_after else {
            return;
        };
        if !self
            .completing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.clone())
        {
            return;
        }
        let ran = self.started.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
        let wait = match ran {
            Some(at) => delay.saturating_sub(at.elapsed()),
            None => {
                let started = pod.status.as_ref().and_then(|s| s.start_time.clone());
                completion_wait(started.as_ref(), delay, Timestamp::now())
            }
        };
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let permit = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let status = succeeded_status(&pod, &Time(Timestamp::now()));
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                Ok(_) => {
                    debug!(pod = name, "pod succeeded");
                    self.release_ip(&uid);
                }
                Err(kube::Error::Api(s)) if s.code == 404 => self.on_pod_deleted(&pod),
                Err(e) => {
                    warn!(pod = name, error = %e, "pod completion failed; retried on its next event");
                    self.completing.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
                }
            }
            drop(permit);
        });
    }

    async fn start(&self, pod: &Pod) -> Result<(), kube::Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let existing = self
            .ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            .map(|(_, ip)| *ip);
        let ip = match existing {
            Some(ip) => ip,
            None => {
                let Some(ip) = self.ipam.lock().unwrap_or_else(|e| e.into_inner()).allocate(&node) else {
                    warn!(pod = name, node, "no free pod IP on node");
                    return Ok(());
                };
                self.ips
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(uid.clone(), (node.clone(), ip));
                ip
            }
        };
        let host_ip = crate::nodes::node_address(self.node_index.get(&node).copied().unwrap_or(0));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let status = running_status(pod, ip, &host_ip);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            Ok(_) => {
                if self.complete_after.is_some() && runs_to_completion(pod) {
                    self.started
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(uid, std::time::Instant::now());
                }
                debug!(pod = name, node, %ip, "pod running");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.on_pod_deleted(pod);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn finalize(&self, pod: &Pod) -> Result<(), kube::Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};

    fn pod(node: Option<&str>, phase: Option<&str>, ip: Option<&str>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.map(Into::into),
                pod_ip: ip.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn acts_only_on_pods_bound_to_our_nodes() {
        let ours: HashSet<String> = ["n-0".to_string()].into();
        assert_eq!(action(&pod(None, None, None), &ours, false), Action::Nothing);
        assert_eq!(
            action(&pod(Some("other"), Some("Pending"), None), &ours, false),
            Action::Nothing
        );
        assert_eq!(
            action(&pod(Some("n-0"), Some("Pending"), None), &ours, false),
            Action::Start
        );
        assert_eq!(
            action(&pod(Some("n-0"), Some("Running"), Some("10.0.0.2")), &ours, false),
            Action::Nothing
        );
        assert_eq!(
            action(&pod(Some("n-0"), Some("Succeeded"), None), &ours, false),
            Action::Nothing
        );
        let mut deleting = pod(Some("n-0"), Some("Running"), Some("10.0.0.2"));
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert_eq!(action(&deleting, &ours, false), Action::Delete);
    }

    #[test]
    fn only_run_to_completion_pods_complete() {
        let ours: HashSet<String> = ["n-0".to_string()].into();
        let mut p = pod(Some("n-0"), Some("Running"), Some("10.0.0.2"));
        for (policy, want) in [
            (None, Action::Nothing),
            (Some("Always"), Action::Nothing),
            (Some("OnFailure"), Action::Complete),
            (Some("Never"), Action::Complete),
        ] {
            p.spec.as_mut().unwrap().restart_policy = policy.map(Into::into);
            assert_eq!(action(&p, &ours, true), want, "{policy:?}");
            assert_eq!(action(&p, &ours, false), Action::Nothing, "{policy:?}");
        }
        // Not before it runs, not twice, and deletion still wins.
        let mut pending = pod(Some("n-0"), Some("Pending"), None);
        pending.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        assert_eq!(action(&pending, &ours, true), Action::Start);
        p.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert_eq!(action(&p, &ours, true), Action::Nothing);
        p.status.as_mut().unwrap().phase = Some("Running".into());
        p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert_eq!(action(&p, &ours, true), Action::Delete);
    }

    #[test]
    fn succeeded_status_is_what_a_kubelet_reports() {
        let mut p = pod(Some("n-0"), None, None);
        p.metadata.uid = Some("u1".into());
        p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        p.spec.as_mut().unwrap().containers = vec![k8s_openapi::api::core::v1::Container {
            name: "work".into(),
            image: Some("busybox".into()),
            ..Default::default()
        }];
        // From the Running status nodesim wrote.
        let running = running_status(&p, "10.0.0.5".parse().unwrap(), "100.64.0.1");
        p.status = Some(serde_json::from_value(running["status"].clone()).unwrap());
        let started = p.status.as_ref().unwrap().start_time.clone().unwrap();
        let now = Time(Timestamp::now());
        let s = succeeded_status(&p, &now);
        assert_eq!(s["status"]["phase"], "Succeeded");
        let c = &s["status"]["containerStatuses"][0];
        assert_eq!(c["name"], "work");
        assert_eq!(c["ready"], false);
        assert_eq!(c["containerID"], "nodesim://u1/work");
        let term = &c["state"]["terminated"];
        assert_eq!(term["exitCode"], 0);
        assert_eq!(term["reason"], "Completed");
        assert_eq!(term["startedAt"], serde_json::to_value(&started).unwrap());
        assert_eq!(term["finishedAt"], serde_json::to_value(&now).unwrap());
        assert!(c["state"].get("running").is_none());
        let conds = s["status"]["conditions"].as_array().unwrap();
        let cond = |t: &str| conds.iter().find(|c| c["type"] == t).unwrap().clone();
        assert_eq!(cond("Ready")["status"], "False");
        assert_eq!(cond("Ready")["reason"], "PodCompleted");
        assert_eq!(cond("ContainersReady")["status"], "False");
        assert_eq!(cond("Initialized")["status"], "True");
        assert_eq!(cond("PodScheduled")["status"], "True");
        // The patch parses back as a pod status.
        let _: PodStatus = serde_json::from_value(s["status"].clone()).unwrap();
    }

    #[test]
    fn completion_waits_out_the_rest_of_the_delay() {
        use std::time::Duration;
        let now = Timestamp::now();
        let delay = Duration::from_secs(10);
        assert_eq!(completion_wait(None, delay, now), delay);
        let started = Time(now - Duration::from_secs(4));
        assert_eq!(completion_wait(Some(&started), delay, now), Duration::from_secs(6));
        let long_ago = Time(now - Duration::from_secs(60));
        assert_eq!(completion_wait(Some(&long_ago), delay, now), Duration::ZERO);
        // A start time in the future (clock skew) waits the whole delay at most.
        let ahead = Time(now + Duration::from_secs(5));
        assert_eq!(completion_wait(Some(&ahead), delay, now), delay);
    }

    #[test]
    fn running_status_reports_ready_containers() {
        let mut p = pod(Some("n-0"), None, None);
        p.spec.as_mut().unwrap().containers = vec![k8s_openapi::api::core::v1::Container {
            name: "app".into(),
            ..Default::default()
        }];
        let s = running_status(&p, "10.0.0.5".parse().unwrap(), "100.64.0.1");
        assert_eq!(s["status"]["phase"], "Running");
        assert_eq!(s["status"]["podIP"], "10.0.0.5");
        assert_eq!(s["status"]["containerStatuses"][0]["ready"], true);
        let ready = s["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(ready);
    }
}
