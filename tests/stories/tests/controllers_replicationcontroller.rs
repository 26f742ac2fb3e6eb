//! User story for ReplicationControllers (core/v1): real etcd, API server,
//! scheduler and controller-manager, simulated nodes (nodesim) that run
//! whatever is bound to them, and kubectl. The RC is applied, scaled with
//! `kubectl scale rc`, heals a deleted pod and takes its pods with it on
//! `kubectl delete rc`; deleted through the API without a propagation
//! policy, it leaves them (core/v1's default for this kind).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_tests::controllers::{eventually, pod_available, serial, start_nodes, start_scheduler, ControllerManager};
use sluice_tests::ControlPlane;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);

struct Cluster {
    cp: ControlPlane,
    client: kube::Client,
}

impl Cluster {
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        use std::io::Write;
        let mut child = self
            .cp
            .kubectl()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl finishes");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.kubectl(args, None);
        assert!(ok, "kubectl {args:?} failed: {out}");
        out
    }

    /// Live (not deleting) pods of `app`.
    async fn live_pods(&self, app: &str) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// Waits until `n` live pods of `app` are available and the RC's status
    /// says so for its current generation; returns the pods.
    async fn wait_replicas(&self, app: &str, n: usize) -> Vec<Pod> {
        let rcs: Api<ReplicationController> = Api::namespaced(self.client.clone(), NS);
        eventually(WAIT, &format!("{n} available pods of rc {app}"), || async {
            let pods = self.live_pods(app).await;
            let rc = rcs.get(app).await.ok()?;
            let st = rc.status.clone()?;
            let settled = pods.len() == n
                && pods.iter().all(pod_available)
                && st.replicas == n as i32
                && st.ready_replicas == Some(n as i32)
                && st.available_replicas == Some(n as i32)
                && st.fully_labeled_replicas == Some(n as i32)
                && st.observed_generation == rc.metadata.generation;
            settled.then_some(pods)
        })
        .await
    }
}

fn rc(name: &str, replicas: i32) -> serde_json::Value {
    // No selector and no labels: both are defaulted from the template's labels.
    json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_controller_keeps_its_pods_scales_heals_and_takes_them_on_delete() {
    let _serial = serial();
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _scheduler = start_scheduler(cp.kubeconfig_path());
    let _nodes = start_nodes(&client, cp.kubeconfig_path(), "node", 2).await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-1", &[]);
    let c = Cluster { cp, client };
    let rcs: Api<ReplicationController> = Api::namespaced(c.client.clone(), NS);

    let (ok, out) = c.kubectl(&["apply", "-f", "-"], Some(&rc("web", 2).to_string()));
    assert!(ok, "apply: {out}");
    assert!(out.contains("replicationcontroller/web created"), "{out}");
    let web = rcs.get("web").await.expect("rc");
    let spec = web.spec.clone().expect("spec");
    assert_eq!(spec.selector.as_ref().map(|s| s["app"].as_str()), Some("web"));
    assert_eq!(web.labels().get("app").map(String::as_str), Some("web"));

    let pods = c.wait_replicas("web", 2).await;
    for p in &pods {
        let owner = p.owner_references().first().cloned().expect("owner");
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("ReplicationController", "web", Some(true))
        );
        assert!(p.name_any().starts_with("web-"), "{}", p.name_any());
    }
    let table = c.kubectl_ok(&["get", "rc", "web"]);
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "2", "2", "2"], "{table}");
    let all = c.kubectl_ok(&["get", "all"]);
    assert!(all.contains("replicationcontroller/web"), "{all}");
    let wide = c.kubectl_ok(&["get", "replicationcontrollers", "-o", "wide"]);
    assert!(wide.contains("nginx:1.27") && wide.contains("app=web"), "{wide}");

    // kubectl scale goes through /scale.
    let out = c.kubectl_ok(&["scale", "rc", "web", "--replicas=3"]);
    assert!(out.contains("replicationcontroller/web scaled"), "{out}");
    let pods = c.wait_replicas("web", 3).await;
    let scale: serde_json::Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/replicationcontrollers/web/scale",
    ]))
    .expect("scale json");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
    let describe = c.kubectl_ok(&["describe", "rc", "web"]);
    for line in [
        "3 current / 3 desired",
        "3 Running / 0 Waiting / 0 Succeeded / 0 Failed",
        "SuccessfulCreate",
    ] {
        assert!(describe.contains(line), "{line:?} missing from:\n{describe}");
    }

    // A deleted pod is replaced by a new one.
    let victim = pods[0].name_any();
    let events = c.kubectl_ok(&["get", "events"]);
    assert!(
        events
            .lines()
            .any(|l| l.contains("SuccessfulCreate") && l.contains("replicationcontroller/web")),
        "{events}"
    );
    c.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    let healed = eventually(WAIT, "the deleted pod replaced", || async {
        let pods = c.live_pods("web").await;
        (pods.len() == 3 && pods.iter().all(|p| p.name_any() != victim) && pods.iter().all(pod_available))
            .then_some(pods)
    })
    .await;
    assert_eq!(healed.len(), 3);
    c.wait_replicas("web", 3).await;

    // kubectl delete rc (background propagation) takes the pods with it.
    let out = c.kubectl_ok(&["delete", "rc", "web"]);
    assert!(out.contains("replicationcontroller \"web\" deleted"), "{out}");
    eventually(WAIT, "rc web's pods gone", || async {
        let left = Api::<Pod>::namespaced(c.client.clone(), NS)
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?
            .items;
        left.is_empty().then_some(())
    })
    .await;

    // Deleted through the API with no propagation policy, an RC orphans its
    // pods: they stay, without the owner reference.
    let (ok, out) = c.kubectl(&["apply", "-f", "-"], Some(&rc("keep", 1).to_string()));
    assert!(ok, "apply: {out}");
    let kept = c.wait_replicas("keep", 1).await;
    rcs.delete("keep", &DeleteParams::default())
        .await
        .expect("delete rc keep");
    eventually(WAIT, "rc keep gone", || async {
        rcs.get_opt("keep").await.ok()?.is_none().then_some(())
    })
    .await;
    let pods = c.live_pods("keep").await;
    assert_eq!(
        pods.iter().map(|p| p.uid()).collect::<Vec<_>>(),
        kept.iter().map(|p| p.uid()).collect::<Vec<_>>(),
        "the orphaned pod stays"
    );
    assert!(
        pods[0].owner_references().is_empty(),
        "{:?}",
        pods[0].owner_references()
    );
}
