//! User story: a platform engineer places pods relative to each other — a Deployment
//! whose replicas must never share a node (required pod anti-affinity on the
//! hostname), a pod that must run next to another (pod affinity), and pods spread
//! evenly over two zones (a topology spread constraint) — and sees kube-scheduler's
//! placements, its FailedScheduling messages and the API server's validation errors.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::Duration;

use serde_json::json;
use sluice_tests::controllers::ControllerManager;
use sluice_tests::scheduling::{
    create_pods, failed_scheduling_events, pod, wait_bound, wait_for, NodeSim, SchedulerProcess,
};
use sluice_tests::ControlPlane;

const ZONE: &str = "topology.kubernetes.io/zone";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kubectl <args>` with `stdin`, returning its output.
fn kubectl_stdin(cp: &ControlPlane, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cp
        .kubectl()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("manifest written");
    child.wait_with_output().expect("kubectl finishes")
}

/// `kubectl get pods -l <selector>` as pod name → node name ("" while pending).
fn placements(cp: &ControlPlane, selector: &str) -> BTreeMap<String, String> {
    let out = cp
        .kubectl()
        .args([
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName}{\"\\n\"}{end}",
        ])
        .output()
        .expect("kubectl get pods");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(p, n)| (p.to_string(), n.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_affinity_and_zone_spread() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let kc = cp.kubeconfig_path();
    let base = ["--cpu", "4", "--memory", "8Gi"];
    let zone_a = format!("{ZONE}=a");
    let zone_b = format!("{ZONE}=b");
    let _a = NodeSim::start(
        kc,
        &[
            &["--nodes", "2", "--name-prefix", "a", "--label", zone_a.as_str()][..],
            &base,
        ]
        .concat(),
    )
    .await;
    let _b = NodeSim::start(
        kc,
        &[
            &[
                "--nodes",
                "1",
                "--name-prefix",
                "b",
                "--label",
                zone_b.as_str(),
                "--synthetic-pod-cidr",
                "10.201.0.0/16",
            ][..],
            &base,
        ]
        .concat(),
    )
    .await;
    let _cm = ControllerManager::start(kc, "cm-1", &[]);
    let scheduler = SchedulerProcess::start(kc, "sched-1", &[]);
    let t = Duration::from_secs(30);

    // 1. Three replicas that refuse to share a node land on the three nodes.
    let web = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                        "labelSelector": {"matchLabels": {"app": "web"}},
                        "topologyKey": "kubernetes.io/hostname"
                    }]}},
                    "containers": [{"name": "app", "image": "busybox:1.35.0"}]
                }
            }
        }
    });
    let out = kubectl_stdin(&cp, &["apply", "-f", "-"], &web.to_string());
    assert!(out.status.success(), "{}", text(&out));
    let nodes = wait_for(t, "3 web replicas bound", || async {
        let p = placements(&cp, "app=web");
        (p.len() == 3 && p.values().all(|n| !n.is_empty())).then_some(p)
    })
    .await;
    let distinct: BTreeSet<&String> = nodes.values().collect();
    assert_eq!(distinct.len(), 3, "one replica per node: {nodes:?}");

    // A fourth replica has nowhere to go, and the event says why.
    let out = cp
        .kubectl()
        .args(["scale", "deployment/web", "--replicas=4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let pending = wait_for(t, "a 4th web pod", || async {
        placements(&cp, "app=web")
            .into_iter()
            .find(|(_, n)| n.is_empty())
            .map(|(p, _)| p)
    })
    .await;
    let ev = wait_for(t, "FailedScheduling for the 4th replica", || async {
        failed_scheduling_events(&client, "default", &pending)
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        ev.message.as_deref(),
        Some(
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
             preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        )
    );
    let out = cp
        .kubectl()
        .args(["get", "pod", &pending, "--no-headers"])
        .output()
        .unwrap();
    assert!(text(&out).contains("Pending"), "{}", text(&out));

    // Symmetry: a plain pod labelled app=web is kept off every node by the replicas' rule.
    let mut stray_web = pod("stray-web", "100m", "64Mi", json!({}));
    stray_web.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    create_pods(&client, "default", &[stray_web]).await;
    let ev = wait_for(t, "FailedScheduling for stray-web", || async {
        failed_scheduling_events(&client, "default", "stray-web")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        ev.message.as_deref(),
        Some(
            "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules. \
             preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        )
    );

    // 2. Pod affinity: a pod that must share a node with the cache follows it.
    let mut cache = pod(
        "cache",
        "100m",
        "64Mi",
        json!({ "nodeSelector": { "kubernetes.io/hostname": "b-0" } }),
    );
    cache.metadata.labels = Some([("app".to_string(), "cache".to_string())].into());
    create_pods(&client, "default", &[cache]).await;
    assert_eq!(wait_bound(&client, "default", "cache", t).await, "b-0");
    let near = |name: &str, app: &str| {
        pod(
            name,
            "100m",
            "64Mi",
            json!({ "affinity": { "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": { "matchLabels": { "app": app } },
                "topologyKey": "kubernetes.io/hostname"
            }] } } }),
        )
    };
    create_pods(&client, "default", &[near("near-cache", "cache")]).await;
    assert_eq!(wait_bound(&client, "default", "near-cache", t).await, "b-0");

    // Affinity to pods that do not exist yet: pending until one appears, then next to it.
    create_pods(&client, "default", &[near("near-queue", "queue")]).await;
    let ev = wait_for(t, "FailedScheduling for near-queue", || async {
        failed_scheduling_events(&client, "default", "near-queue")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        ev.message.as_deref(),
        Some(
            "0/3 nodes are available: 3 node(s) didn't match pod affinity rules. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        )
    );
    let mut queue = pod(
        "queue",
        "100m",
        "64Mi",
        json!({ "nodeSelector": { "kubernetes.io/hostname": "a-1" } }),
    );
    queue.metadata.labels = Some([("app".to_string(), "queue".to_string())].into());
    create_pods(&client, "default", &[queue]).await;
    assert_eq!(wait_bound(&client, "default", "queue", t).await, "a-1");
    assert_eq!(wait_bound(&client, "default", "near-queue", t).await, "a-1");

    // 3. Topology spread over the zones: 4 pods, max skew 1 → 2 in a, 2 in b
    // (b has a single node, so without the constraint the two a-nodes would win).
    let spread_pods: Vec<_> = (0..4)
        .map(|i| {
            let mut p = pod(
                &format!("spread-{i}"),
                "100m",
                "64Mi",
                json!({ "topologySpreadConstraints": [{
                    "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": { "matchLabels": { "app": "spread" } }
                }] }),
            );
            p.metadata.labels = Some([("app".to_string(), "spread".to_string())].into());
            p
        })
        .collect();
    create_pods(&client, "default", &spread_pods).await;
    let spread = wait_for(t, "4 spread pods bound", || async {
        let p = placements(&cp, "app=spread");
        (p.len() == 4 && p.values().all(|n| !n.is_empty())).then_some(p)
    })
    .await;
    let in_b = spread.values().filter(|n| n.starts_with("b-")).count();
    assert_eq!(in_b, 2, "skew ≤ 1 over zones a and b: {spread:?}");

    // Validation as Kubernetes words it.
    let bad = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad-spread"},
        "spec": {
            "topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": ZONE, "whenUnsatisfiable": "Sometimes"}],
            "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": "x"}}}]}},
            "containers": [{"name": "app", "image": "busybox:1.35.0"}]
        }
    });
    let out = kubectl_stdin(&cp, &["apply", "-f", "-"], &bad.to_string());
    assert!(!out.status.success());
    let msg = text(&out);
    for expected in [
        "spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero",
        "spec.topologySpreadConstraints[0].whenUnsatisfiable: Unsupported value: \"Sometimes\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\"",
        "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Required value: can not be empty",
    ] {
        assert!(msg.contains(expected), "missing {expected:?} in:\n{msg}");
    }

    // The scheduler's informers (namespaces, Services, ReplicaSets, StatefulSets) all work.
    let log = scheduler.log();
    assert!(!log.contains("watch failed"), "{log}");
}
