//! User story: a queueing controller (as Kueue does) holds pods back with
//! scheduling gates. The pods are admitted and shown as `SchedulingGated`,
//! the scheduler leaves them alone, the API server refuses new gates and a
//! binding of a gated pod; when the controller removes the gates and adds a
//! node selector in the same update, the scheduler places the pods on the
//! nodes that selector names.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use sluice_tests::scheduling::{node_of, pod, wait_bound, NodeSim, SchedulerProcess};
use sluice_tests::ControlPlane;

/// The message of a refusal that must be a 422.
fn unprocessable(err: kube::Error) -> String {
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422, "{s:?}");
            s.message
        }
        e => panic!("unexpected error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_pods_wait_until_their_gates_are_removed() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let kc = cp.kubeconfig_path();
    let _a = NodeSim::start(
        kc,
        &[
            "--nodes",
            "1",
            "--name-prefix",
            "a",
            "--label",
            "flavor=a",
            "--cpu",
            "4",
            "--memory",
            "8Gi",
        ],
    )
    .await;
    let _b = NodeSim::start(
        kc,
        &[
            "--nodes",
            "1",
            "--name-prefix",
            "b",
            "--label",
            "flavor=b",
            "--cpu",
            "4",
            "--memory",
            "8Gi",
            "--synthetic-pod-cidr",
            "10.203.0.0/16",
        ],
    )
    .await;
    let _scheduler = SchedulerProcess::start(kc, "sched-gates", &[]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Two gated pods, and one without gates as a witness that the scheduler runs.
    let gated = |name: &str| {
        pod(
            name,
            "100m",
            "64Mi",
            json!({"schedulingGates": [{"name": "example.com/admission"}]}),
        )
    };
    for p in [gated("job-0"), gated("job-1"), pod("free", "100m", "64Mi", json!({}))] {
        pods.create(&PostParams::default(), &p).await.expect("create");
    }
    wait_bound(&client, "default", "free", Duration::from_secs(30)).await;

    // Gated pods are shown as such, and stay unbound while the scheduler runs.
    let held = pods.get("job-0").await.expect("job-0");
    let scheduled = held
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled").cloned())
        .expect("a PodScheduled condition");
    assert_eq!(
        (
            scheduled.status.as_str(),
            scheduled.reason.as_deref(),
            scheduled.message.as_deref()
        ),
        (
            "False",
            Some("SchedulingGated"),
            Some("Scheduling is blocked due to non-empty scheduling gates")
        )
    );
    let out = cp
        .kubectl()
        .args(["get", "pod", "job-0", "--no-headers"])
        .output()
        .expect("kubectl");
    let row = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(row.contains("SchedulingGated"), "kubectl shows the gate: {row}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["job-0", "job-1"] {
        assert_eq!(
            node_of(&client, "default", name).await,
            None,
            "{name} stays unbound while gated"
        );
    }

    // Gates may only be removed.
    let err = pods
        .patch(
            "job-0",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"schedulingGates": [{"name": "example.com/other"}]}})),
        )
        .await
        .expect_err("a new gate");
    let message = unprocessable(err);
    assert!(
        message.contains("only deletion is allowed, but found new scheduling gate 'example.com/other'"),
        "{message}"
    );

    // The controller admits job-0 to flavor b: the gate goes, a node selector comes.
    pods.patch(
        "job-0",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([
                {"op": "remove", "path": "/spec/schedulingGates"},
                {"op": "add", "path": "/spec/nodeSelector", "value": {"flavor": "b"}}
            ]))
            .expect("json patch"),
        ),
    )
    .await
    .expect("ungate with a node selector");
    let node = wait_bound(&client, "default", "job-0", Duration::from_secs(30)).await;
    assert!(
        node.starts_with('b'),
        "job-0 goes where its new selector says, not {node}"
    );
    assert_eq!(node_of(&client, "default", "job-1").await, None, "job-1 is still gated");

    // Once ungated, the selector is fixed.
    let err = pods
        .patch(
            "job-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"nodeSelector": {"flavor": "a"}}})),
        )
        .await
        .expect_err("a changed selector");
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 422), "{err}");

    // job-1 is narrowed through its node affinity while gated (as a
    // controller that places by affinity does): a required term may be set,
    // then only gain requirements, never change them.
    let term = |value: &str| json!({"matchExpressions": [{"key": "flavor", "operator": "In", "values": [value]}]});
    let affinity = |terms: Value| json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}});
    pods.patch(
        "job-1",
        &PatchParams::default(),
        &Patch::Merge(affinity(json!([term("a")]))),
    )
    .await
    .expect("a gated pod's node affinity set");
    let err = pods
        .patch(
            "job-1",
            &PatchParams::default(),
            &Patch::Merge(affinity(json!([term("b")]))),
        )
        .await
        .expect_err("a requirement changed");
    let message = unprocessable(err);
    assert!(
        message.contains(
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]: Invalid value: "
        ) && message.ends_with("only additions are allowed (no mutations or deletions)"),
        "{message}"
    );
    pods.patch(
        "job-1",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "remove", "path": "/spec/schedulingGates"}])).expect("json patch"),
        ),
    )
    .await
    .expect("ungate");
    let node = wait_bound(&client, "default", "job-1", Duration::from_secs(30)).await;
    assert!(node.starts_with('a'), "job-1 goes where its affinity says, not {node}");
}
