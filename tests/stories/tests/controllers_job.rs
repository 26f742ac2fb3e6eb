//! User stories: batch Jobs on a real node.
//!
//! Real etcd, API server, controller-manager (Job and TTL-after-finished
//! controllers), scheduler, and a node running containerd + runc, so pods
//! end with real exit codes. A user runs a Job of 5 completions two at a
//! time and waits for it with `kubectl wait --for=condition=complete`; an
//! Indexed Job's pods print their `$JOB_COMPLETION_INDEX` and hostname; a
//! Job whose pods exit 3 stops at its backoffLimit with Failed /
//! BackoffLimitExceeded after Kubernetes' back-off; a finished Job with
//! `ttlSecondsAfterFinished` disappears with its pods. A second story
//! ends Jobs early: a podFailurePolicy FailJob rule on exit code 42,
//! activeDeadlineSeconds, a per-index backoff limit; and suspends and
//! resumes one.
//!
//! Needs root. Build first: `cargo build --workspace --bins`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use sluice_tests::controllers::{eventually, serial, start_scheduler};
use sluice_tests::node::{SingleNode, BUSYBOX_IMAGE};

/// Pod routes land in the root network namespace: a cluster CIDR no other test file uses.
const CLUSTER_CIDR: &str = "10.214.16.0/20";

fn job(name: &str, spec: serde_json::Value, script: &str) -> Job {
    let mut spec = spec;
    spec["template"] = json!({"spec": {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", script]}]
    }});
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("job")
}

fn condition(job: &Job, type_: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn pods_of(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

async fn events_of(client: &kube::Client, job: &str) -> Vec<(String, String, String)> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(job) && e.involved_object.kind.as_deref() == Some("Job"))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_to_completion_count_indexes_stop_at_the_backoff_limit_and_expire() {
    let _serial = serial();
    let node = SingleNode::start("job-story-1", CLUSTER_CIDR).await;
    let _scheduler = start_scheduler(node.control_plane.kubeconfig_path());
    let client = node.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods = node.pods();
    let started = Instant::now();

    // Four Jobs at once: they share the node.
    let pp = PostParams::default();
    jobs.create(
        &pp,
        &job("five", json!({"completions": 5, "parallelism": 2}), "sleep 1"),
    )
    .await
    .unwrap();
    jobs.create(
        &pp,
        &job(
            "indexed",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
            "echo index=$JOB_COMPLETION_INDEX host=$(hostname)",
        ),
    )
    .await
    .unwrap();
    jobs.create(&pp, &job("failing", json!({"backoffLimit": 1}), "echo failing; exit 3"))
        .await
        .unwrap();
    jobs.create(&pp, &job("short-lived", json!({"ttlSecondsAfterFinished": 3}), "true"))
        .await
        .unwrap();

    // The API server defaulted the Job and generated its selector and labels.
    let five = jobs.get("five").await.unwrap();
    let spec = five.spec.clone().unwrap();
    assert_eq!(spec.backoff_limit, Some(6));
    assert_eq!(spec.completion_mode.as_deref(), Some("NonIndexed"));
    let uid = five.uid().unwrap();
    assert_eq!(
        spec.selector.unwrap().match_labels.unwrap()["batch.kubernetes.io/controller-uid"],
        uid
    );
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["job-name"], "five");
    assert_eq!(labels["batch.kubernetes.io/job-name"], "five");
    assert_eq!(labels["controller-uid"], uid);

    // `kubectl wait` returns once the Job of 5 completions is Complete; meanwhile
    // never more than 2 of its pods run at once.
    let kubeconfig = node.control_plane.kubeconfig_path().to_path_buf();
    let wait = std::thread::spawn(move || {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["wait", "--for=condition=complete", "job/five", "--timeout=150s"])
            .output()
            .expect("kubectl wait")
    });
    let mut most_running = 0;
    while !wait.is_finished() {
        let running = pods_of(&pods, "five")
            .await
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
            })
            .count();
        most_running = most_running.max(running);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = wait.join().unwrap();
    assert!(
        out.status.success(),
        "kubectl wait: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "job.batch/five condition met"
    );
    eprintln!("job five complete after {:?}", started.elapsed());
    assert!(
        most_running <= 2,
        "at most parallelism=2 pods ran at once, saw {most_running}"
    );
    let five = jobs.get("five").await.unwrap();
    let status = five.status.clone().unwrap();
    assert_eq!(status.succeeded, Some(5));
    assert_eq!(status.active.unwrap_or(0), 0);
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    assert_eq!(
        condition(&five, "Complete").map(|c| c.0).as_deref(),
        Some("CompletionsReached")
    );
    assert!(condition(&five, "SuccessCriteriaMet").is_some());
    let five_pods = pods_of(&pods, "five").await;
    assert_eq!(five_pods.len(), 5, "one pod per completion");
    assert!(
        five_pods
            .iter()
            .all(|p| !p.finalizers().iter().any(|f| f == "batch.kubernetes.io/job-tracking")),
        "counted pods lose the tracking finalizer"
    );
    let table = node
        .control_plane
        .kubectl()
        .args(["get", "job", "five", "--no-headers"])
        .output()
        .unwrap();
    let row = String::from_utf8_lossy(&table.stdout).to_string();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..3], ["five", "Complete", "5/5"], "kubectl get job: {row}");
    let events = events_of(&client, "five").await;
    let created = events.iter().filter(|e| e.1 == "SuccessfulCreate").count();
    assert_eq!(created, 5, "{events:?}");
    assert!(events
        .iter()
        .any(|e| e.0 == "Normal" && e.1 == "Completed" && e.2 == "Job completed"));

    // The Indexed Job: each pod saw its own index and hostname.
    let indexed = eventually(Duration::from_secs(120), "indexed job Complete", || async {
        let j = jobs.get("indexed").await.ok()?;
        condition(&j, "Complete").map(|_| j)
    })
    .await;
    assert_eq!(
        indexed.status.as_ref().unwrap().completed_indexes.as_deref(),
        Some("0-2")
    );
    let mut seen = BTreeSet::new();
    for pod in pods_of(&pods, "indexed").await {
        let index = pod.annotations()["batch.kubernetes.io/job-completion-index"].clone();
        assert_eq!(pod.labels()["batch.kubernetes.io/job-completion-index"], index);
        assert!(
            pod.name_any().starts_with(&format!("indexed-{index}-")),
            "{}",
            pod.name_any()
        );
        let logs = node
            .control_plane
            .kubectl()
            .args(["logs", &pod.name_any()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&logs.stdout).trim().to_string();
        assert_eq!(
            text,
            format!("index={index} host=indexed-{index}"),
            "logs of {}",
            pod.name_any()
        );
        seen.insert(index);
    }
    assert_eq!(seen, BTreeSet::from(["0".into(), "1".into(), "2".into()]));

    // The failing Job: one retry after the back-off, then Failed.
    let failing = eventually(Duration::from_secs(90), "failing job Failed", || async {
        let j = jobs.get("failing").await.ok()?;
        condition(&j, "Failed").map(|_| j)
    })
    .await;
    let (reason, message) = condition(&failing, "Failed").unwrap();
    assert_eq!(reason, "BackoffLimitExceeded");
    assert_eq!(message, "Job has reached the specified backoff limit");
    assert!(condition(&failing, "FailureTarget").is_some());
    assert_eq!(failing.status.as_ref().unwrap().failed, Some(2));
    let failed_pods = pods_of(&pods, "failing").await;
    assert_eq!(failed_pods.len(), 2, "backoffLimit 1: the first pod and one retry");
    let mut finished: Vec<_> = failed_pods
        .iter()
        .map(|p| {
            let cs = &p.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
            let t = cs.state.as_ref().unwrap().terminated.as_ref().expect("terminated");
            assert_eq!(t.exit_code, 3);
            (
                p.metadata.creation_timestamp.clone().unwrap().0,
                t.finished_at.clone().unwrap().0,
            )
        })
        .collect();
    finished.sort();
    let gap = finished[1].0.duration_since(finished[0].1);
    assert!(
        gap.as_secs_f64() >= 9.0,
        "the retry waited for the 10 s back-off after the first failure ({gap:?})"
    );
    let events = events_of(&client, "failing").await;
    assert!(
        events.iter().any(|e| e.0 == "Warning" && e.1 == "BackoffLimitExceeded"),
        "{events:?}"
    );
    let row = node
        .control_plane
        .kubectl()
        .args(["get", "job", "failing", "--no-headers"])
        .output()
        .unwrap();
    let row = String::from_utf8_lossy(&row.stdout).to_string();
    assert_eq!(row.split_whitespace().nth(1), Some("Failed"), "{row}");

    // The short-lived Job is gone with its pods, a few seconds after it finished.
    eventually(
        Duration::from_secs(60),
        "short-lived job deleted after its TTL",
        || async { matches!(jobs.get_opt("short-lived").await, Ok(None)).then_some(()) },
    )
    .await;
    eventually(Duration::from_secs(60), "short-lived job's pods deleted", || async {
        pods_of(&pods, "short-lived").await.is_empty().then_some(())
    })
    .await;
    eprintln!("whole story took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_end_early_on_a_failure_policy_a_deadline_or_failed_indexes_and_wait_while_suspended() {
    let _serial = serial();
    let node = SingleNode::start("job-story-2", CLUSTER_CIDR).await;
    let _scheduler = start_scheduler(node.control_plane.kubeconfig_path());
    let client = node.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods = node.pods();
    let pp = PostParams::default();

    let mut policy = job("policy", json!({"backoffLimit": 6}), "exit 42");
    policy.spec.as_mut().unwrap().pod_failure_policy = Some(
        serde_json::from_value(json!({"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}
        ]}))
        .unwrap(),
    );
    jobs.create(&pp, &policy).await.unwrap();
    jobs.create(&pp, &job("deadline", json!({"activeDeadlineSeconds": 3}), "sleep 300"))
        .await
        .unwrap();
    jobs.create(
        &pp,
        &job(
            "per-index",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed", "backoffLimitPerIndex": 0}),
            "[ \"$JOB_COMPLETION_INDEX\" != 1 ] || exit 1",
        ),
    )
    .await
    .unwrap();
    jobs.create(&pp, &job("paused", json!({"suspend": true}), "true"))
        .await
        .unwrap();

    // FailJob: the first failure ends the Job despite backoffLimit 6.
    let failed = eventually(Duration::from_secs(60), "policy job Failed", || async {
        let j = jobs.get("policy").await.ok()?;
        condition(&j, "Failed").map(|c| (j, c))
    })
    .await;
    let policy_pods = pods_of(&pods, "policy").await;
    assert_eq!(policy_pods.len(), 1, "no retry after a FailJob match");
    assert_eq!(failed.1 .0, "PodFailurePolicy");
    assert_eq!(
        failed.1 .1,
        format!(
            "Container main for pod default/{} failed with exit code 42 matching FailJob rule at index 0",
            policy_pods[0].name_any()
        )
    );
    assert_eq!(failed.0.status.as_ref().unwrap().failed, Some(1));

    // activeDeadlineSeconds: the running pod is deleted and the Job fails.
    let deadline = eventually(Duration::from_secs(60), "deadline job Failed", || async {
        let j = jobs.get("deadline").await.ok()?;
        condition(&j, "Failed").map(|c| (j, c))
    })
    .await;
    assert_eq!(deadline.1 .0, "DeadlineExceeded");
    assert_eq!(deadline.1 .1, "Job was active longer than specified deadline");
    let status = deadline.0.status.clone().unwrap();
    assert_eq!(status.active.unwrap_or(0), 0);
    let start = status.start_time.unwrap().0;
    let failed_at = deadline
        .0
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "FailureTarget")
        .unwrap()
        .last_transition_time
        .clone()
        .unwrap()
        .0;
    let after = failed_at.duration_since(start).as_secs_f64();
    assert!((3.0..8.0).contains(&after), "deadline hit {after} s after start");
    eventually(Duration::from_secs(30), "the deadline job's pod deleted", || async {
        pods_of(&pods, "deadline").await.is_empty().then_some(())
    })
    .await;

    // backoffLimitPerIndex 0: index 1 fails for good, 0 and 2 complete.
    let per_index = eventually(Duration::from_secs(60), "per-index job Failed", || async {
        let j = jobs.get("per-index").await.ok()?;
        condition(&j, "Failed").map(|c| (j, c))
    })
    .await;
    assert_eq!(per_index.1 .0, "FailedIndexes");
    let st = per_index.0.status.clone().unwrap();
    assert_eq!(st.failed_indexes.as_deref(), Some("1"));
    assert_eq!(st.completed_indexes.as_deref(), Some("0,2"));
    assert_eq!(pods_of(&pods, "per-index").await.len(), 3, "no retry of index 1");

    // Suspended: no pods until resumed, then it runs to completion.
    let paused = jobs.get("paused").await.unwrap();
    assert_eq!(
        condition(&paused, "Suspended").map(|c| c.0).as_deref(),
        Some("JobSuspended")
    );
    assert!(pods_of(&pods, "paused").await.is_empty());
    assert!(paused.status.as_ref().unwrap().start_time.is_none());
    jobs.patch(
        "paused",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let resumed = eventually(Duration::from_secs(60), "resumed job Complete", || async {
        let j = jobs.get("paused").await.ok()?;
        condition(&j, "Complete").map(|_| j)
    })
    .await;
    let suspended = resumed
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Suspended")
        .cloned()
        .unwrap();
    assert_eq!(
        (suspended.status.as_str(), suspended.reason.as_deref()),
        ("False", Some("JobResumed"))
    );
    let events = events_of(&client, "paused").await;
    assert!(
        events.iter().any(|e| e.1 == "Suspended") && events.iter().any(|e| e.1 == "Resumed"),
        "{events:?}"
    );
}
