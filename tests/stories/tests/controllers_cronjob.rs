//! User story: CronJobs on a real node, across two minute boundaries.
//!
//! Real etcd, API server, controller-manager (CronJob and Job
//! controllers), scheduler and a containerd node. A user creates three
//! CronJobs on `*/1 * * * *`: one quick, keeping a single successful Job;
//! one with a long-running Job and `concurrencyPolicy: Forbid`; and a
//! suspended one they run by hand with `kubectl create job --from`. Over
//! two runs the quick one creates `<name>-<minutes since epoch>` Jobs with
//! the scheduled-timestamp annotation, records lastScheduleTime and
//! lastSuccessfulTime, and deletes the older Job; the Forbid one keeps its
//! one Job and says why it started no second one; the suspended one runs
//! nothing on its own. A schedule with `TZ=` is refused as in Kubernetes.
//! The story takes one to two minutes (it waits for the clock).
//!
//! Needs root. Build first: `cargo build --workspace --bins`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use sluice_tests::controllers::{eventually, serial, start_scheduler};
use sluice_tests::node::{SingleNode, BUSYBOX_IMAGE};

/// Pod routes land in the root network namespace: a cluster CIDR no other test file uses.
const CLUSTER_CIDR: &str = "10.214.32.0/20";

fn cronjob(name: &str, extra: serde_json::Value, script: &str) -> CronJob {
    let mut spec = json!({
        "schedule": "*/1 * * * *",
        "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", script]}]
        }}}}
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("cronjob")
}

fn owned_by<'a>(jobs: &'a [Job], cronjob: &'a str) -> impl Iterator<Item = &'a Job> + 'a {
    jobs.iter().filter(move |j| {
        j.owner_references()
            .iter()
            .any(|o| o.kind == "CronJob" && o.name == cronjob && o.controller == Some(true))
    })
}

fn complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Complete" && c.status == "True"))
}

async fn reasons_of(client: &kube::Client, name: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name) && e.involved_object.kind.as_deref() == Some("CronJob")
        })
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjobs_run_every_minute_keep_their_history_and_honour_forbid() {
    let _serial = serial();
    let node = SingleNode::start("cronjob-story-1", CLUSTER_CIDR).await;
    let _scheduler = start_scheduler(node.control_plane.kubeconfig_path());
    let client = node.client.clone();
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let kubectl = |args: &[&str]| {
        let out = node.control_plane.kubectl().args(args).output().expect("kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let started = Instant::now();

    // TZ= inside the schedule is refused with Kubernetes' words.
    let mut bad = cronjob("bad", json!({}), "true");
    bad.spec.schedule = "TZ=UTC */1 * * * *".into();
    let err = cronjobs.create(&PostParams::default(), &bad).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("{err}") };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("spec.schedule: Invalid value: \"TZ=UTC */1 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
        "{}",
        status.message
    );

    let pp = PostParams::default();
    cronjobs
        .create(
            &pp,
            &cronjob("quick", json!({"successfulJobsHistoryLimit": 1}), "echo tick"),
        )
        .await
        .unwrap();
    cronjobs
        .create(
            &pp,
            &cronjob("forbid", json!({"concurrencyPolicy": "Forbid"}), "sleep 150"),
        )
        .await
        .unwrap();
    cronjobs
        .create(&pp, &cronjob("by-hand", json!({"suspend": true}), "echo by hand"))
        .await
        .unwrap();
    let quick = cronjobs.get("quick").await.unwrap();
    let spec = &quick.spec;
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Allow"));
    assert_eq!(spec.suspend, Some(false));
    assert_eq!(spec.failed_jobs_history_limit, Some(1));
    let (ok, row) = kubectl(&["get", "cj", "quick", "--no-headers"]);
    assert!(ok, "{row}");
    let cells: Vec<&str> = row.split_whitespace().collect();
    // NAME SCHEDULE(5 words) TIMEZONE SUSPEND ACTIVE LAST-SCHEDULE AGE
    assert_eq!(
        &cells[..10],
        ["quick", "*/1", "*", "*", "*", "*", "<none>", "False", "0", "<none>"],
        "{row}"
    );

    // `kubectl create job --from=cronjob/...` runs the template by hand.
    let (ok, out) = kubectl(&["create", "job", "manual", "--from=cronjob/by-hand"]);
    assert!(ok, "{out}");
    let manual = eventually(Duration::from_secs(60), "the manual job to complete", || async {
        jobs.get("manual").await.ok().filter(complete)
    })
    .await;
    assert_eq!(manual.owner_references()[0].name, "by-hand");

    // Two runs of "quick": Jobs named by the scheduled minute; the older one is deleted.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(150);
    let latest = loop {
        let all = jobs.list(&ListParams::default()).await.unwrap().items;
        let mine: Vec<&Job> = owned_by(&all, "quick").collect();
        seen.extend(mine.iter().map(|j| j.name_any()));
        if seen.len() >= 2 && mine.len() == 1 && complete(mine[0]) {
            break mine[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "two runs of quick, the older Job deleted; seen {seen:?}, now {:?}",
            mine.iter().map(|j| j.name_any()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!("two runs of quick after {:?}: {seen:?}", started.elapsed());
    let names: Vec<&String> = seen.iter().collect();
    let minutes: Vec<i64> = names
        .iter()
        .map(|n| n.strip_prefix("quick-").unwrap().parse().expect("minutes since epoch"))
        .collect();
    assert_eq!(minutes[1] - minutes[0], 1, "runs a minute apart: {names:?}");
    assert_eq!(latest.name_any(), *names[1], "the newest Job is kept");
    let stamp = latest.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"].clone();
    let scheduled = k8s_openapi::jiff::Timestamp::from_second(minutes[1] * 60).unwrap();
    assert_eq!(stamp, scheduled.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    let quick = eventually(
        Duration::from_secs(30),
        "quick's status to show the last run",
        || async {
            let cj = cronjobs.get("quick").await.ok()?;
            let st = cj.status.clone()?;
            (st.last_schedule_time.as_ref()?.0 == scheduled && st.last_successful_time.is_some()).then_some(cj)
        },
    )
    .await;
    assert!(quick.status.unwrap().active.unwrap_or_default().is_empty());
    let reasons = reasons_of(&client, "quick").await;
    for (reason, message) in [
        ("SuccessfulCreate", format!("Created job {}", names[0])),
        ("SuccessfulCreate", format!("Created job {}", names[1])),
        (
            "SawCompletedJob",
            format!("Saw completed job: {}, condition: Complete", names[0]),
        ),
        ("SuccessfulDelete", format!("Deleted job {}", names[0])),
    ] {
        assert!(
            reasons.contains(&(reason.to_string(), message.clone())),
            "{reason}: {message} in {reasons:?}"
        );
    }

    // "forbid" still has its one long-running Job and said why no second one started.
    let all = jobs.list(&ListParams::default()).await.unwrap().items;
    let forbid_jobs: Vec<&Job> = owned_by(&all, "forbid").collect();
    assert_eq!(forbid_jobs.len(), 1, "Forbid: one Job while it runs");
    let forbid = cronjobs.get("forbid").await.unwrap();
    let active = forbid.status.unwrap().active.unwrap_or_default();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].name.as_deref(), Some(forbid_jobs[0].name_any().as_str()));
    let reasons = reasons_of(&client, "forbid").await;
    assert!(
        reasons.contains(&(
            "JobAlreadyActive".into(),
            "Not starting job because prior execution is running and concurrency policy is Forbid".into()
        )),
        "{reasons:?}"
    );
    let (ok, row) = kubectl(&["get", "cronjob", "forbid", "--no-headers"]);
    assert!(ok, "{row}");
    assert_eq!(row.split_whitespace().nth(8), Some("1"), "ACTIVE column: {row}");

    // The suspended CronJob ran nothing by itself.
    let all = jobs.list(&ListParams::default()).await.unwrap().items;
    let by_hand: Vec<String> = owned_by(&all, "by-hand").map(|j| j.name_any()).collect();
    assert_eq!(by_hand, ["manual"]);
    eprintln!("whole story took {:?}", started.elapsed());
}
