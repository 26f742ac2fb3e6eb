//! User stories for DaemonSets: real etcd, API server, scheduler and
//! controller-manager, simulated nodes (nodesim) that run whatever is bound
//! to them, and kubectl.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_tests::controllers::{eventually, pods_with, serial, start_nodes, start_scheduler, ControllerManager};
use sluice_tests::ControlPlane;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);

fn agent(name: &str, image: &str, extra_spec: serde_json::Value) -> String {
    let mut ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": image}]},
            },
        },
    });
    if let (Some(spec), Some(extra)) = (ds["spec"].as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    ds.to_string()
}

struct Cluster {
    cp: ControlPlane,
    client: kube::Client,
}

impl Cluster {
    /// Runs kubectl, feeding `stdin` when given; (success, stdout+stderr).
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        use std::io::Write;
        let mut cmd = self.cp.kubectl();
        cmd.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs");
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

    fn rollout_status(&self, ds: &str) {
        let out = self.kubectl_ok(&["rollout", "status", &format!("daemonset/{ds}"), "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
    }

    /// Live pods of `app`: node → (image, revision hash).
    async fn pods_by_node(&self, app: &str) -> BTreeMap<String, (String, String)> {
        pods_with(&self.client, NS, &BTreeMap::from([("app", app)]))
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| {
                let spec = p.spec.as_ref()?;
                let node = spec.node_name.clone()?;
                let image = spec.containers.first()?.image.clone().unwrap_or_default();
                let hash = p.labels().get("controller-revision-hash").cloned().unwrap_or_default();
                Some((node, (image, hash)))
            })
            .collect()
    }

    /// Waits until exactly `nodes` run one live `app` pod each, all with `image`.
    async fn wait_pods_on(&self, app: &str, nodes: &[&str], image: &str) -> BTreeMap<String, (String, String)> {
        let want: BTreeSet<String> = nodes.iter().map(|n| n.to_string()).collect();
        eventually(
            WAIT,
            &format!("{app} pods with {image} on exactly {nodes:?}"),
            || async {
                let all = pods_with(&self.client, NS, &BTreeMap::from([("app", app)])).await;
                let live: Vec<&Pod> = all.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
                let by_node = self.pods_by_node(app).await;
                let on: BTreeSet<String> = by_node.keys().cloned().collect();
                (live.len() == nodes.len() && on == want && by_node.values().all(|(i, _)| i == image))
                    .then_some(by_node)
            },
        )
        .await
    }

    async fn revisions(&self, owner: &str) -> Vec<(i64, String)> {
        let mut revs: Vec<(i64, String)> = Api::<ControllerRevision>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default())
            .await
            .expect("list revisions")
            .items
            .into_iter()
            .filter(|r| {
                r.owner_references()
                    .iter()
                    .any(|o| o.name == owner && o.controller == Some(true))
            })
            .map(|r| (r.revision.unwrap_or(0), r.name_any()))
            .collect();
        revs.sort();
        revs
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_lands_on_every_node_including_a_later_one_and_rolls() {
    let _serial = serial();
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _scheduler = start_scheduler(cp.kubeconfig_path());
    let _nodes = start_nodes(&client, cp.kubeconfig_path(), "node", 3).await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-1", &[]);
    let c = Cluster { cp, client };
    let daemonsets: Api<DaemonSet> = Api::namespaced(c.client.clone(), NS);

    // Applied with kubectl, defaulted as Kubernetes does, one pod per node.
    let out = c.kubectl(&["apply", "-f", "-"], Some(&agent("agent", "agent:v1", json!({}))));
    assert!(out.0, "apply: {}", out.1);
    c.rollout_status("agent");
    let pods = c
        .wait_pods_on("agent", &["node-0", "node-1", "node-2"], "agent:v1")
        .await;
    let ds = daemonsets.get("agent").await.expect("ds");
    let strategy = serde_json::to_value(&ds.spec.update_strategy).expect("json");
    assert_eq!(
        strategy,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    let st = ds.status.clone().expect("status");
    assert_eq!(
        (
            st.desired_number_scheduled,
            st.current_number_scheduled,
            st.number_ready
        ),
        (3, 3, 3)
    );
    assert_eq!((st.number_available, st.updated_number_scheduled), (Some(3), Some(3)));
    // All available: numberUnavailable 0 is not encoded (omitempty), as Kubernetes
    // reports it; no collision, no conditions.
    assert_eq!((st.number_unavailable, st.number_misscheduled), (None, 0));
    assert_eq!(st.observed_generation, ds.metadata.generation);
    assert_eq!(st.collision_count, None);
    assert!(st.conditions.is_none(), "{:?}", st.conditions);
    let v1_hash = pods.values().next().expect("a pod").1.clone();
    assert!(!v1_hash.is_empty() && pods.values().all(|(_, h)| *h == v1_hash));

    // Placed through the scheduler by node affinity on the node name, with
    // the tolerations every daemon pod gets.
    let pod = pods_with(&c.client, NS, &BTreeMap::from([("app", "agent")]))
        .await
        .into_iter()
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-1"))
        .expect("pod on node-1");
    let spec = serde_json::to_value(pod.spec.as_ref().expect("spec")).expect("json");
    assert_eq!(
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchFields"],
        json!([{"key": "metadata.name", "operator": "In", "values": ["node-1"]}])
    );
    let tolerated: BTreeSet<String> = spec["tolerations"]
        .as_array()
        .expect("tolerations")
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect();
    for t in [
        "node.kubernetes.io/not-ready:NoExecute",
        "node.kubernetes.io/unreachable:NoExecute",
        "node.kubernetes.io/unschedulable:NoSchedule",
        "node.kubernetes.io/disk-pressure:NoSchedule",
        "node.kubernetes.io/memory-pressure:NoSchedule",
        "node.kubernetes.io/pid-pressure:NoSchedule",
    ] {
        assert!(tolerated.contains(t), "{t} missing from {tolerated:?}");
    }
    let events = c.kubectl_ok(&["get", "events", "--field-selector", "involvedObject.name=agent"]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains("Created pod: agent-"),
        "{events}"
    );

    // kubectl get shows Kubernetes' columns.
    let table = c.kubectl_ok(&["get", "ds", "agent"]);
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE",
            "SELECTOR",
            "AGE"
        ]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(row[..7], ["agent", "3", "3", "3", "3", "3", "<none>"], "{table}");

    let describe = c.kubectl_ok(&["describe", "ds", "agent"]);
    for line in [
        "Desired Number of Nodes Scheduled: 3",
        "Number of Nodes Scheduled with Up-to-date Pods: 3",
        "Pods Status:  3 Running / 0 Waiting / 0 Succeeded / 0 Failed",
    ] {
        assert!(describe.contains(line), "{line:?} missing from:\n{describe}");
    }
    let all = c.kubectl_ok(&["get", "all"]);
    assert!(all.contains("daemonset.apps/agent"), "{all}");

    // A node added later gets its pod.
    let _late = start_nodes(&c.client, c.cp.kubeconfig_path(), "late", 1).await;
    c.wait_pods_on("agent", &["late-0", "node-0", "node-1", "node-2"], "agent:v1")
        .await;
    c.rollout_status("agent");

    // A NoExecute taint the pod does not tolerate evicts it; NoSchedule does not.
    let nodes: Api<Node> = Api::all(c.client.clone());
    let taint = |effect: &str| json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": effect}]}});
    nodes
        .patch("node-2", &PatchParams::default(), &Patch::Merge(&taint("NoSchedule")))
        .await
        .expect("taint node-2");
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.wait_pods_on("agent", &["late-0", "node-0", "node-1", "node-2"], "agent:v1")
        .await;
    nodes
        .patch("node-2", &PatchParams::default(), &Patch::Merge(&taint("NoExecute")))
        .await
        .expect("taint node-2");
    c.wait_pods_on("agent", &["late-0", "node-0", "node-1"], "agent:v1")
        .await;
    eventually(WAIT, "desired 3 after the taint", || async {
        let st = daemonsets.get("agent").await.ok()?.status?;
        (st.desired_number_scheduled == 3 && st.number_misscheduled == 0).then_some(())
    })
    .await;
    nodes
        .patch(
            "node-2",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"taints": null}})),
        )
        .await
        .expect("untaint node-2");
    c.wait_pods_on("agent", &["late-0", "node-0", "node-1", "node-2"], "agent:v1")
        .await;

    // A cordoned node still runs its daemon pod: a deleted one comes back
    // there (daemon pods tolerate node.kubernetes.io/unschedulable).
    c.kubectl_ok(&["cordon", "late-0"]);
    let on_late = pods_with(&c.client, NS, &BTreeMap::from([("app", "agent")]))
        .await
        .into_iter()
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("late-0"))
        .expect("pod on late-0");
    c.kubectl_ok(&["delete", "pod", &on_late.name_any(), "--wait=false"]);
    eventually(WAIT, "a new agent pod running on cordoned late-0", || async {
        let pods = pods_with(&c.client, NS, &BTreeMap::from([("app", "agent")])).await;
        pods.iter()
            .any(|p| {
                p.name_any() != on_late.name_any()
                    && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("late-0")
                    && sluice_tests::controllers::pod_available(p)
            })
            .then_some(())
    })
    .await;
    c.kubectl_ok(&["uncordon", "late-0"]);

    // A new template rolls out node by node; kubectl follows it.
    c.kubectl_ok(&["set", "image", "daemonset/agent", "agent=agent:v2"]);
    c.rollout_status("agent");
    let pods = c
        .wait_pods_on("agent", &["late-0", "node-0", "node-1", "node-2"], "agent:v2")
        .await;
    let v2_hash = pods.values().next().expect("a pod").1.clone();
    assert_ne!(v2_hash, v1_hash, "pods of the new template carry its hash");
    assert!(pods.values().all(|(_, h)| *h == v2_hash));
    let revs = c.revisions("agent").await;
    assert_eq!(revs.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2], "{revs:?}");
    assert_eq!(revs[1].1, format!("agent-{v2_hash}"));

    let history = c.kubectl_ok(&["rollout", "history", "daemonset/agent"]);
    assert!(
        history.contains("REVISION") && history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let detail = c.kubectl_ok(&["rollout", "history", "daemonset/agent", "--revision=1"]);
    assert!(detail.contains("agent:v1"), "{detail}");

    // Undo brings the first template back as revision 3.
    let out = c.kubectl_ok(&["rollout", "undo", "daemonset/agent"]);
    assert!(out.contains("rolled back"), "{out}");
    c.rollout_status("agent");
    let pods = c
        .wait_pods_on("agent", &["late-0", "node-0", "node-1", "node-2"], "agent:v1")
        .await;
    assert!(pods.values().all(|(_, h)| *h == v1_hash), "the old revision is reused");
    let revs = eventually(WAIT, "revision 1 renumbered to 3", || async {
        let revs = c.revisions("agent").await;
        (revs.iter().map(|r| r.0).collect::<Vec<_>>() == [2, 3]).then_some(revs)
    })
    .await;
    assert_eq!(revs[1].1, format!("agent-{v1_hash}"));

    // Restart replaces every pod, template otherwise unchanged.
    let before: BTreeSet<String> = pods_with(&c.client, NS, &BTreeMap::from([("app", "agent")]))
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    let out = c.kubectl_ok(&["rollout", "restart", "daemonset/agent"]);
    assert!(out.contains("restarted"), "{out}");
    c.rollout_status("agent");
    eventually(WAIT, "every agent pod replaced after restart", || async {
        let now = pods_with(&c.client, NS, &BTreeMap::from([("app", "agent")])).await;
        let live: Vec<&Pod> = now.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        (live.len() == 4
            && live.iter().all(|p| {
                !before.contains(&p.name_any()) && p.annotations().contains_key("kubectl.kubernetes.io/restartedAt")
            }))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selectors_surge_on_delete_and_refusals() {
    let _serial = serial();
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _scheduler = start_scheduler(cp.kubeconfig_path());
    let _nodes = start_nodes(&client, cp.kubeconfig_path(), "node", 3).await;
    let _cm = ControllerManager::start(cp.kubeconfig_path(), "cm-1", &[]);
    let c = Cluster { cp, client };
    let daemonsets: Api<DaemonSet> = Api::namespaced(c.client.clone(), NS);

    // Validation speaks Kubernetes.
    let both = agent(
        "bad",
        "x:1",
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}}),
    );
    let (ok, out) = c.kubectl(&["apply", "-f", "-"], Some(&both));
    assert!(!ok, "{out}");
    assert!(
        out.contains("spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"),
        "{out}"
    );

    // A nodeSelector picks the labelled nodes only; labelling another node adds it.
    c.kubectl_ok(&["label", "node", "node-0", "disk=ssd"]);
    let ssd = agent(
        "ssd",
        "ssd:v1",
        json!({"template": {"metadata": {"labels": {"app": "ssd"}},
                             "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "agent", "image": "ssd:v1"}]}},
               "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}),
    );
    let (ok, out) = c.kubectl(&["apply", "-f", "-"], Some(&ssd));
    assert!(ok, "{out}");
    c.wait_pods_on("ssd", &["node-0"], "ssd:v1").await;
    let table = c.kubectl_ok(&["get", "ds", "ssd"]);
    assert!(table.contains("disk=ssd"), "NODE SELECTOR column: {table}");
    c.kubectl_ok(&["label", "node", "node-2", "disk=ssd"]);
    c.wait_pods_on("ssd", &["node-0", "node-2"], "ssd:v1").await;
    // Unlabelling removes the pod (it no longer matches).
    c.kubectl_ok(&["label", "node", "node-2", "disk-"]);
    c.wait_pods_on("ssd", &["node-0"], "ssd:v1").await;

    // maxSurge 1: the new pod starts beside the old one, which goes once the new one is available.
    c.kubectl_ok(&["set", "image", "daemonset/ssd", "agent=ssd:v2"]);
    c.rollout_status("ssd");
    c.wait_pods_on("ssd", &["node-0"], "ssd:v2").await;
    let events = c.kubectl_ok(&["get", "events", "--field-selector", "involvedObject.name=ssd"]);
    assert!(events.contains("SuccessfulDelete"), "{events}");

    // OnDelete: a new template waits until users delete the pods.
    let ondelete = agent("manual", "manual:v1", json!({"updateStrategy": {"type": "OnDelete"}}));
    let (ok, out) = c.kubectl(&["apply", "-f", "-"], Some(&ondelete));
    assert!(ok, "{out}");
    c.wait_pods_on("manual", &["node-0", "node-1", "node-2"], "manual:v1")
        .await;
    c.kubectl_ok(&["set", "image", "daemonset/manual", "agent=manual:v2"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods = c.pods_by_node("manual").await;
    assert!(
        pods.values().all(|(i, _)| i == "manual:v1"),
        "OnDelete rolled by itself: {pods:?}"
    );
    let ds = eventually(WAIT, "manual observed its new generation", || async {
        let ds = daemonsets.get("manual").await.ok()?;
        let st = ds.status.clone()?;
        (st.observed_generation == ds.metadata.generation).then_some(st)
    })
    .await;
    // Zero is not encoded (the Go field is omitempty), as Kubernetes reports it.
    assert_eq!(ds.updated_number_scheduled, None);
    let (ok, out) = c.kubectl(&["rollout", "status", "daemonset/manual", "--timeout=5s"], None);
    assert!(
        !ok && out.contains("rollout status is only available for RollingUpdate strategy type"),
        "{out}"
    );
    let victim = pods_with(&c.client, NS, &BTreeMap::from([("app", "manual")]))
        .await
        .into_iter()
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-1"))
        .expect("pod on node-1");
    c.kubectl_ok(&["delete", "pod", &victim.name_any()]);
    let pods = eventually(WAIT, "node-1 gets a manual:v2 pod", || async {
        let pods = c.pods_by_node("manual").await;
        (pods.get("node-1").map(|p| p.0.as_str()) == Some("manual:v2") && pods.len() == 3).then_some(pods)
    })
    .await;
    assert_eq!(pods["node-0"].0, "manual:v1");
    assert_eq!(pods["node-2"].0, "manual:v1");
    eventually(WAIT, "updatedNumberScheduled 1", || async {
        let st = daemonsets.get("manual").await.ok()?.status?;
        (st.updated_number_scheduled == Some(1)).then_some(())
    })
    .await;
}
