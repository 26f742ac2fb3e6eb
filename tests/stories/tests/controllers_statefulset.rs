//! User stories for StatefulSets: real etcd, API server, scheduler and
//! controller-manager, simulated nodes (nodesim) that run whatever is bound
//! to them, and kubectl. A watch records what happened to the pods in
//! order, so ordering claims are checked on the events themselves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_tests::controllers::{eventually, pod_available, serial, start_nodes, start_scheduler, ControllerManager};
use sluice_tests::node::SingleNode;
use sluice_tests::ControlPlane;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);
/// Pod routes of the real-node story land in the root network namespace: a
/// cluster CIDR no other test file uses.
const CLUSTER_CIDR: &str = "10.214.48.0/20";

/// What the watch saw happen to one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Created(String),
    Ready(String),
    Deleting(String),
}

/// Records pod events of one app in order until dropped.
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(client: &kube::Client, app: &str) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let api: Api<Pod> = Api::namespaced(client.clone(), NS);
        let cfg = watcher::Config::default().labels(&format!("app={app}"));
        let out = seen.clone();
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut synced = Some(synced_tx);
            let mut state: BTreeMap<String, (String, bool, bool)> = BTreeMap::new();
            let mut events = watcher(api, cfg).boxed();
            while let Some(ev) = events.next().await {
                let pod = match ev {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    _ => continue,
                };
                let name = pod.name_any();
                let uid = pod.uid().unwrap_or_default();
                let ready = pod_available(&pod);
                let deleting = pod.metadata.deletion_timestamp.is_some();
                let mut log = out.lock().expect("log");
                let entry = state.get(&name).cloned();
                if entry.as_ref().map(|e| &e.0) != Some(&uid) {
                    log.push(Seen::Created(name.clone()));
                    state.insert(name.clone(), (uid.clone(), false, false));
                }
                let e = state.get_mut(&name).expect("entry");
                if ready && !e.1 && !deleting {
                    e.1 = true;
                    log.push(Seen::Ready(name.clone()));
                }
                if deleting && !e.2 {
                    e.2 = true;
                    log.push(Seen::Deleting(name.clone()));
                }
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(10), synced_rx).await;
        Recorder { seen, task }
    }

    fn events(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }

    fn clear(&self) {
        self.seen.lock().expect("log").clear();
    }

    /// Positions of the first event `e` in the log.
    fn at(&self, e: &Seen) -> usize {
        let events = self.events();
        events
            .iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e:?} not seen in {events:?}"))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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

    fn apply(&self, manifest: &serde_json::Value) {
        let (ok, out) = self.kubectl(&["apply", "-f", "-"], Some(&manifest.to_string()));
        assert!(ok, "apply: {out}");
    }

    fn rollout_status(&self, sts: &str) -> String {
        let out = self.kubectl_ok(&["rollout", "status", &format!("statefulset/{sts}"), "--timeout=60s"]);
        assert!(
            out.contains("roll out complete") || out.contains("rolling update complete"),
            "{out}"
        );
        out
    }

    /// Live pods of `app`, by name: (uid, image, revision label).
    async fn pods(&self, app: &str) -> BTreeMap<String, (String, String, String)> {
        Api::<Pod>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let image = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default();
                let rev = p.labels().get("controller-revision-hash").cloned().unwrap_or_default();
                (p.name_any(), (p.uid().unwrap_or_default(), image, rev))
            })
            .collect()
    }

    /// Waits until exactly the `names` pods of `app` are live and available.
    async fn wait_exactly(&self, app: &str, names: &[&str]) -> Vec<Pod> {
        eventually(WAIT, &format!("pods {names:?} of {app}, available"), || async {
            let pods: Vec<Pod> = Api::<Pod>::namespaced(self.client.clone(), NS)
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .ok()?
                .items;
            let mut got: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
            got.sort();
            let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            want.sort();
            (got == want
                && pods
                    .iter()
                    .all(|p| pod_available(p) && p.metadata.deletion_timestamp.is_none()))
            .then_some(pods)
        })
        .await
    }

    async fn revisions(&self, owner: &str) -> Vec<i64> {
        let mut revs: Vec<i64> = Api::<ControllerRevision>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default())
            .await
            .expect("list revisions")
            .items
            .into_iter()
            .filter(|r| r.owner_references().iter().any(|o| o.name == owner))
            .map(|r| r.revision.unwrap_or(0))
            .collect();
        revs.sort();
        revs
    }
}

fn statefulset(name: &str, replicas: i32, image: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    });
    if let (Some(spec), Some(extra)) = (sts["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    sts
}

async fn start() -> (
    Cluster,
    sluice_tests::controllers::Process,
    sluice_tests::controllers::Process,
    ControllerManager,
) {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let scheduler = start_scheduler(cp.kubeconfig_path());
    let nodes = start_nodes(&client, cp.kubeconfig_path(), "node", 2).await;
    let cm = ControllerManager::start(cp.kubeconfig_path(), "cm-1", &[]);
    (Cluster { cp, client }, scheduler, nodes, cm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_of_three_starts_in_order_and_a_deleted_pod_comes_back_as_itself() {
    let _serial = serial();
    let (c, _scheduler, _nodes, _cm) = start().await;
    let sets: Api<StatefulSet> = Api::namespaced(c.client.clone(), NS);
    let rec = Recorder::start(&c.client, "db").await;

    c.apply(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]},
    }));
    c.apply(&statefulset("db", 3, "db:v1", json!({})));
    c.rollout_status("db");
    c.wait_exactly("db", &["db-0", "db-1", "db-2"]).await;

    // In order: each pod is created only once the one before is Running and Ready.
    for i in 1..3 {
        let before = rec.at(&Seen::Ready(format!("db-{}", i - 1)));
        let created = rec.at(&Seen::Created(format!("db-{i}")));
        assert!(
            before < created,
            "db-{i} created before db-{} was ready: {:?}",
            i - 1,
            rec.events()
        );
    }
    let sts = sets.get("db").await.expect("sts");
    assert_eq!(sts.spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    let st = sts.status.clone().expect("status");
    assert_eq!(
        (st.replicas, st.ready_replicas, st.available_replicas),
        (3, Some(3), Some(3))
    );
    assert_eq!(st.current_revision, st.update_revision);
    assert!(st.update_revision.as_deref().is_some_and(|r| r.starts_with("db-")));
    // As Kubernetes writes it: collisionCount always, no conditions.
    assert_eq!(st.collision_count, Some(0));
    assert_eq!((st.current_replicas, st.updated_replicas), (Some(3), Some(3)));
    assert_eq!(st.observed_generation, sts.metadata.generation);
    assert!(st.conditions.as_ref().is_none_or(Vec::is_empty), "{:?}", st.conditions);

    // Each pod's identity: hostname, subdomain (the headless Service), labels.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), NS);
    for i in 0..3 {
        let name = format!("db-{i}");
        let p = pods.get(&name).await.expect("pod");
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("db"));
        assert_eq!(p.labels()["statefulset.kubernetes.io/pod-name"], name);
        assert_eq!(p.labels()["apps.kubernetes.io/pod-index"], i.to_string());
        assert_eq!(p.labels().get("controller-revision-hash"), st.update_revision.as_ref());
    }
    let table = c.kubectl_ok(&["get", "sts", "db"]);
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "AGE"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("db") && l.contains("3/3")),
        "{table}"
    );

    let describe = c.kubectl_ok(&["describe", "sts", "db"]);
    for line in [
        "Replicas:           3 desired | 3 total",
        "Update Strategy:    RollingUpdate",
        "Pods Status:        3 Running / 0 Waiting / 0 Succeeded / 0 Failed",
    ] {
        assert!(describe.contains(line), "{line:?} missing from:\n{describe}");
    }
    let all = c.kubectl_ok(&["get", "all"]);
    assert!(all.contains("statefulset.apps/db"), "{all}");

    // A deleted pod comes back under the same name and identity.
    let old_uid = pods.get("db-1").await.expect("db-1").uid();
    c.kubectl_ok(&["delete", "pod", "db-1", "--wait=false"]);
    let back = eventually(WAIT, "db-1 back as a new pod", || async {
        let p = pods.get("db-1").await.ok()?;
        (p.uid() != old_uid && pod_available(&p) && p.metadata.deletion_timestamp.is_none()).then_some(p)
    })
    .await;
    assert_eq!(back.spec.as_ref().and_then(|s| s.hostname.as_deref()), Some("db-1"));
    assert_eq!(back.spec.as_ref().and_then(|s| s.subdomain.as_deref()), Some("db"));
    c.wait_exactly("db", &["db-0", "db-1", "db-2"]).await;

    // kubectl scale: up in order, down in reverse order.
    rec.clear();
    c.kubectl_ok(&["scale", "statefulset/db", "--replicas=5"]);
    c.wait_exactly("db", &["db-0", "db-1", "db-2", "db-3", "db-4"]).await;
    assert!(rec.at(&Seen::Ready("db-3".into())) < rec.at(&Seen::Created("db-4".into())));
    rec.clear();
    c.kubectl_ok(&["scale", "statefulset/db", "--replicas=2"]);
    c.wait_exactly("db", &["db-0", "db-1"]).await;
    let order: Vec<Seen> = rec
        .events()
        .into_iter()
        .filter(|e| matches!(e, Seen::Deleting(_)))
        .collect();
    assert_eq!(
        order,
        [
            Seen::Deleting("db-4".into()),
            Seen::Deleting("db-3".into()),
            Seen::Deleting("db-2".into())
        ]
    );
    let scale = c.kubectl_ok(&["get", "--raw", "/apis/apps/v1/namespaces/default/statefulsets/db/scale"]);
    let scale: serde_json::Value = serde_json::from_str(&scale).expect("scale json");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=db");

    // Deleted with --cascade=orphan and created again: the new set adopts
    // the pods and the history, so nothing is replaced.
    let before = c.pods("db").await;
    c.kubectl_ok(&["delete", "sts", "db", "--cascade=orphan"]);
    eventually(WAIT, "db pods orphaned", || async {
        let pods = pods.list(&ListParams::default().labels("app=db")).await.ok()?.items;
        (pods.len() == 2 && pods.iter().all(|p| p.owner_references().is_empty())).then_some(())
    })
    .await;
    c.apply(&statefulset("db", 2, "db:v1", json!({})));
    let uid = eventually(WAIT, "the new db set", || async { sets.get("db").await.ok()?.uid() }).await;
    eventually(WAIT, "db pods adopted by the new set", || async {
        let pods = pods.list(&ListParams::default().labels("app=db")).await.ok()?.items;
        (pods.len() == 2
            && pods.iter().all(|p| {
                p.owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == Some(&uid) && o.controller == Some(true))
            }))
        .then_some(())
    })
    .await;
    c.rollout_status("db");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = c.pods("db").await;
    assert_eq!(
        before.iter().map(|(n, p)| (n.clone(), p.0.clone())).collect::<Vec<_>>(),
        after.iter().map(|(n, p)| (n.clone(), p.0.clone())).collect::<Vec<_>>(),
        "adopted pods kept"
    );
    assert_eq!(c.revisions("db").await, [1], "history adopted, not duplicated");

    // Parallel pods, ordinals from 5.
    c.apply(&statefulset(
        "par",
        3,
        "par:v1",
        json!({"podManagementPolicy": "Parallel", "ordinals": {"start": 5}}),
    ));
    let par = c.wait_exactly("par", &["par-5", "par-6", "par-7"]).await;
    assert!(par
        .iter()
        .all(|p| p.labels()["apps.kubernetes.io/pod-index"] == p.name_any().trim_start_matches("par-")));

    // volumeClaimTemplates: each ordinal gets its claim <template>-<set>-<ordinal>.
    let claims = statefulset(
        "data",
        1,
        "db:v1",
        json!({"volumeClaimTemplates": [{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}),
    );
    let (ok, out) = c.kubectl(&["apply", "-f", "-"], Some(&claims.to_string()));
    assert!(ok, "{out}");
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(c.client.clone(), NS);
    eventually(WAIT, "claim data-data-0", || async {
        pvcs.get_opt("data-data-0").await.ok().flatten()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rolls_a_statefulset_from_the_top_with_partitions_history_undo_and_restart() {
    let _serial = serial();
    let (c, _scheduler, _nodes, _cm) = start().await;
    let sets: Api<StatefulSet> = Api::namespaced(c.client.clone(), NS);
    let rec = Recorder::start(&c.client, "web").await;
    c.apply(&statefulset("web", 3, "web:v1", json!({})));
    c.rollout_status("web");
    c.wait_exactly("web", &["web-0", "web-1", "web-2"]).await;

    // A new image rolls from the highest ordinal down, one pod at a time.
    rec.clear();
    c.kubectl_ok(&["set", "image", "statefulset/web", "app=web:v2"]);
    c.rollout_status("web");
    let pods = eventually(WAIT, "every web pod on web:v2", || async {
        let pods = c.pods("web").await;
        (pods.len() == 3 && pods.values().all(|p| p.1 == "web:v2")).then_some(pods)
    })
    .await;
    let deleting: Vec<Seen> = rec
        .events()
        .into_iter()
        .filter(|e| matches!(e, Seen::Deleting(_)))
        .collect();
    assert_eq!(
        deleting,
        [
            Seen::Deleting("web-2".into()),
            Seen::Deleting("web-1".into()),
            Seen::Deleting("web-0".into())
        ]
    );
    assert!(rec.at(&Seen::Ready("web-2".into())) < rec.at(&Seen::Deleting("web-1".into())));
    let st = eventually(WAIT, "current revision caught up", || async {
        let st = sets.get("web").await.ok()?.status?;
        (st.current_revision == st.update_revision && st.updated_replicas == Some(3)).then_some(st)
    })
    .await;
    assert!(pods.values().all(|p| Some(&p.2) == st.update_revision.as_ref()));
    assert_eq!(c.revisions("web").await, [1, 2]);

    // History and undo, from ControllerRevisions.
    let history = c.kubectl_ok(&["rollout", "history", "statefulset/web"]);
    assert!(
        history.contains("REVISION") && history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let detail = c.kubectl_ok(&["rollout", "history", "statefulset/web", "--revision=1"]);
    assert!(detail.contains("web:v1"), "{detail}");
    let out = c.kubectl_ok(&["rollout", "undo", "statefulset/web"]);
    assert!(out.contains("rolled back"), "{out}");
    c.rollout_status("web");
    eventually(WAIT, "every web pod back on web:v1", || async {
        let pods = c.pods("web").await;
        (pods.len() == 3 && pods.values().all(|p| p.1 == "web:v1")).then_some(())
    })
    .await;
    eventually(WAIT, "revision 1 renumbered to 3", || async {
        (c.revisions("web").await == [2, 3]).then_some(())
    })
    .await;

    // A partition keeps the lower ordinals on the current revision.
    c.kubectl_ok(&[
        "patch",
        "statefulset/web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}"#,
    ]);
    c.kubectl_ok(&["set", "image", "statefulset/web", "app=web:v3"]);
    let out = c.rollout_status("web");
    assert!(out.contains("partitioned roll out complete"), "{out}");
    let pods = eventually(WAIT, "web-2 on v3, the others on v1", || async {
        let pods = c.pods("web").await;
        let images: Vec<&str> = pods.values().map(|p| p.1.as_str()).collect();
        (images == ["web:v1", "web:v1", "web:v3"]).then_some(pods)
    })
    .await;
    let st = sets.get("web").await.expect("web").status.expect("status");
    assert_eq!(st.updated_replicas, Some(1));
    assert_ne!(st.current_revision, st.update_revision);
    // Below the partition, a deleted pod comes back at the current revision.
    c.kubectl_ok(&["delete", "pod", "web-0", "--wait=false"]);
    eventually(WAIT, "web-0 back on web:v1", || async {
        let now = c.pods("web").await;
        let p = now.get("web-0")?;
        (p.0 != pods["web-0"].0 && p.1 == "web:v1").then_some(())
    })
    .await;
    c.kubectl_ok(&[
        "patch",
        "statefulset/web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    c.rollout_status("web");
    eventually(WAIT, "every web pod on web:v3", || async {
        let pods = c.pods("web").await;
        (pods.len() == 3 && pods.values().all(|p| p.1 == "web:v3")).then_some(())
    })
    .await;

    // Restart replaces every pod under the same names.
    let before = c.pods("web").await;
    let out = c.kubectl_ok(&["rollout", "restart", "statefulset/web"]);
    assert!(out.contains("restarted"), "{out}");
    c.rollout_status("web");
    eventually(WAIT, "every web pod replaced", || async {
        let now = c.pods("web").await;
        (now.len() == 3 && now.iter().all(|(n, p)| before.get(n).is_some_and(|b| b.0 != p.0))).then_some(())
    })
    .await;

    // OnDelete: nothing moves until a pod is deleted.
    c.kubectl_ok(&[
        "patch",
        "statefulset/web",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}"#,
    ]);
    c.kubectl_ok(&["set", "image", "statefulset/web", "app=web:v4"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(c.pods("web").await.values().all(|p| p.1 == "web:v3"));
    c.kubectl_ok(&["delete", "pod", "web-1", "--wait=false"]);
    eventually(WAIT, "web-1 recreated on web:v4", || async {
        let pods = c.pods("web").await;
        (pods.get("web-1")?.1 == "web:v4" && pods.len() == 3).then_some(())
    })
    .await;
}

/// The container of `pod` and its restart count.
fn container_of(pod: &Pod) -> (String, i32) {
    let cs = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .expect("a container status");
    (cs.container_id.clone().unwrap_or_default(), cs.restart_count)
}

/// On a real node (containerd + runc + noded): inside the container the
/// hostname is the pod's name; a killed container restarts in the same pod,
/// and a deleted pod comes back under the same name and hostname.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_real_node_a_killed_or_deleted_pod_keeps_its_name_and_hostname() {
    let _serial = serial();
    let node = SingleNode::start("sts-story-1", CLUSTER_CIDR).await;
    let _scheduler = start_scheduler(node.control_plane.kubeconfig_path());
    let mut sts = statefulset("ident", 1, "busybox:1.35.0", json!({}));
    sts["spec"]["template"]["spec"] = json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "app", "image": "busybox:1.35.0", "command": ["sh", "-c", "exec sleep 3600"]}],
    });
    let sets: Api<StatefulSet> = Api::namespaced(node.client.clone(), NS);
    sets.create(&Default::default(), &serde_json::from_value(sts).expect("sts"))
        .await
        .expect("create sts");
    let pod = node.wait_running_ready("ident-0", Duration::from_secs(120)).await;
    let (container, restarts) = container_of(&pod);
    assert_eq!(node.exec(&container, &["hostname"]).trim(), "ident-0");

    // Killed: the container restarts inside the same pod.
    let pid = node.task_pid(&container);
    // SAFETY: kill(2) on a pid containerd reports for this test's own container.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let pods: Api<Pod> = node.pods();
    let restarted = eventually(Duration::from_secs(60), "ident-0's container restarted", || async {
        let p = pods.get("ident-0").await.ok()?;
        let (c, n) = container_of(&p);
        (n > restarts && c != container && pod_available(&p)).then_some(p)
    })
    .await;
    assert_eq!(restarted.uid(), pod.uid(), "same pod");
    let (container, _) = container_of(&restarted);
    assert_eq!(node.exec(&container, &["hostname"]).trim(), "ident-0");

    // Deleted: a new pod under the same name and hostname.
    pods.delete("ident-0", &Default::default())
        .await
        .expect("delete ident-0");
    let back = eventually(Duration::from_secs(90), "ident-0 back as a new pod", || async {
        let p = pods.get("ident-0").await.ok()?;
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        (p.uid() != pod.uid() && running && pod_available(&p) && p.metadata.deletion_timestamp.is_none()).then_some(p)
    })
    .await;
    let (container, _) = container_of(&back);
    assert_eq!(node.exec(&container, &["hostname"]).trim(), "ident-0");
    sets.delete("ident", &Default::default()).await.expect("delete sts");
}
