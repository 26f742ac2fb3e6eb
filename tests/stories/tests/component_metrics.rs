//! Story: an operator scrapes the scheduler's and the controller-manager's
//! Prometheus metrics on their secure ports, as Prometheus scrapes
//! kube-scheduler (10259) and kube-controller-manager (10257).
//!
//! After a Deployment of three pods and one pod that fits nowhere, the
//! scheduler's `/metrics` counts the scheduled attempts and the
//! unschedulable one (`scheduler_schedule_attempts_total`), times them
//! (`scheduler_scheduling_attempt_duration_seconds`) and shows the waiting
//! pod in `scheduler_pending_pods` (and a pod held by a scheduling gate as
//! `gated`); the controller-manager's shows the
//! deployment and replicaset work queues (`workqueue_adds_total`, depth,
//! queue and work durations). The ports authenticate and authorize by
//! delegation as Kubernetes' do: a client certificate in `system:monitoring`
//! and a ServiceAccount token bound to the `system:monitoring` ClusterRole
//! may scrape; anonymous requests and a user without the role get 403 with
//! Kubernetes' message, a token the API server does not know gets 401;
//! `/healthz` and `/readyz` answer anyone.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use sluice_tests::controllers::{deployment, ControllerManager};
use sluice_tests::metrics::value;
use sluice_tests::scheduling::{failed_scheduling_events, pod, NodeSim, SchedulerProcess};
use sluice_tests::{eventually, raw_at, ControlPlane};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_scrapes_the_scheduler_and_the_controller_manager() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let kc = cp.kubeconfig_path();
    let _nodes = NodeSim::start(
        kc,
        &["--nodes", "2", "--name-prefix", "m", "--cpu", "2", "--memory", "4Gi"],
    )
    .await;
    let scheduler = SchedulerProcess::start(kc, "sched-metrics", &[]);
    let cm = ControllerManager::start(kc, "cm-metrics", &[]);
    let scheduler_url = format!("https://127.0.0.1:{}", scheduler.secure_port);
    let cm_url = format!("https://127.0.0.1:{}", cm.secure_port);

    // Prometheus: a client certificate in group system:monitoring.
    let prometheus_kc = cp.apiserver.user_kubeconfig("prometheus", &["system:monitoring"]);
    let scrape_scheduler = raw_at(&scheduler_url, Some(&prometheus_kc), None).await;
    let scrape_cm = raw_at(&cm_url, Some(&prometheus_kc), None).await;

    // Traffic: a Deployment of three small pods, and a pod no node can hold.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let web: Deployment = serde_json::from_value(deployment("web", 3, "registry.local/pause:1")).unwrap();
    deployments.create(&PostParams::default(), &web).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("huge", "64", "100Mi", json!({})))
        .await
        .unwrap();
    // And a pod held back by a scheduling gate (as Kueue holds pods).
    let mut held = pod("held", "10m", "10Mi", json!({}));
    held.spec.as_mut().expect("spec").scheduling_gates = Some(vec![k8s_openapi::api::core::v1::PodSchedulingGate {
        name: "example.com/quota".into(),
    }]);
    pods.create(&PostParams::default(), &held).await.unwrap();
    eventually(Duration::from_secs(60), "the Deployment's three pods bound", || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?;
        let bound = list
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        (bound == 3).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "FailedScheduling for the huge pod", || async {
        (!failed_scheduling_events(&client, "default", "huge").await.is_empty()).then_some(())
    })
    .await;

    // The scheduler's series, with values that match what happened.
    let text = eventually(Duration::from_secs(15), "the huge pod waiting in a queue", || async {
        let scrape = scrape_scheduler.get("/metrics").await;
        assert_eq!(scrape.status, 200, "{}", scrape.text());
        let text = scrape.text();
        let waiting = ["active", "backoff", "unschedulable"]
            .iter()
            .map(|q| value(&text, "scheduler_pending_pods", &[("queue", q)]).unwrap_or(0.0))
            .sum::<f64>();
        (waiting == 1.0).then_some(text)
    })
    .await;
    let profile = ("profile", "default-scheduler");
    assert!(
        value(
            &text,
            "scheduler_schedule_attempts_total",
            &[("result", "scheduled"), profile]
        )
        .is_some_and(|v| v >= 3.0),
        "three pods scheduled:\n{text}"
    );
    assert!(
        value(
            &text,
            "scheduler_schedule_attempts_total",
            &[("result", "unschedulable"), profile]
        )
        .is_some_and(|v| v >= 1.0),
        "the huge pod's attempt counted as unschedulable:\n{text}"
    );
    assert_eq!(
        value(
            &text,
            "scheduler_schedule_attempts_total",
            &[("result", "error"), profile]
        ),
        Some(0.0),
        "no errors"
    );
    let scheduled_timings = value(
        &text,
        "scheduler_scheduling_attempt_duration_seconds_count",
        &[("result", "scheduled"), profile],
    );
    assert_eq!(
        scheduled_timings,
        value(
            &text,
            "scheduler_schedule_attempts_total",
            &[("result", "scheduled"), profile]
        ),
        "every scheduled attempt is timed"
    );
    assert_eq!(
        value(
            &text,
            "scheduler_scheduling_attempt_duration_seconds_bucket",
            &[("result", "scheduled"), profile, ("le", "+Inf")]
        ),
        scheduled_timings,
        "the +Inf bucket holds them all"
    );
    assert_eq!(
        value(&text, "scheduler_pending_pods", &[("queue", "gated")]),
        Some(1.0),
        "the held pod counted as gated:\n{text}"
    );
    assert!(
        value(&text, "scheduler_preemption_attempts_total", &[]).is_some_and(|v| v >= 1.0),
        "preemption was tried for the huge pod:\n{text}"
    );

    // The controller-manager's work queues.
    let scrape = scrape_cm.get("/metrics").await;
    assert_eq!(scrape.status, 200, "{}", scrape.text());
    let content_type = scrape.headers[http::header::CONTENT_TYPE].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = scrape.text();
    for queue in ["deployment", "replicaset"] {
        let name = [("name", queue)];
        assert!(
            value(&text, "workqueue_adds_total", &name).is_some_and(|v| v >= 1.0),
            "{queue} work was queued:\n{text}"
        );
        assert!(
            value(&text, "workqueue_work_duration_seconds_count", &name).is_some_and(|v| v >= 1.0),
            "{queue} work was done:\n{text}"
        );
        assert!(
            value(&text, "workqueue_queue_duration_seconds_count", &name).is_some_and(|v| v >= 1.0),
            "{queue} waits were timed:\n{text}"
        );
        let depth = value(&text, "workqueue_depth", &name).expect("depth");
        assert!((0.0..10.0).contains(&depth), "{queue} depth {depth}");
        assert!(value(&text, "workqueue_retries_total", &name).is_some(), "{text}");
    }
    assert!(
        value(&text, "workqueue_adds_total", &[("name", "endpoint_slice")]).is_some(),
        "queues carry Kubernetes' names:\n{text}"
    );

    // Who may scrape: as Kubernetes' delegated authentication and authorization.
    for url in [&scheduler_url, &cm_url] {
        let anonymous = raw_at(url, None, None).await;
        let refused = anonymous.get("/metrics").await;
        assert_eq!(refused.status, 403, "{url}: {}", refused.text());
        assert_eq!(
            refused.json()["message"],
            "forbidden: User \"system:anonymous\" cannot get path \"/metrics\"",
            "{url}"
        );
        let healthz = anonymous.get("/healthz").await;
        assert_eq!((healthz.status, healthz.text().as_str()), (200, "ok"), "{url}");
        assert_eq!(anonymous.get("/readyz").await.status, 200, "{url}");

        let nobody_kc = cp.apiserver.user_kubeconfig("nobody", &[]);
        let nobody = raw_at(url, Some(&nobody_kc), None).await.get("/metrics").await;
        assert_eq!(nobody.status, 403, "{url}");
        assert_eq!(
            nobody.json()["message"],
            "forbidden: User \"nobody\" cannot get path \"/metrics\"",
            "{url}"
        );

        let stranger = raw_at(url, None, Some("not-a-token")).await.get("/metrics").await;
        assert_eq!(stranger.status, 401, "{url}");
        assert_eq!(stranger.json()["reason"], "Unauthorized", "{url}");
    }

    // Prometheus in the cluster: a ServiceAccount bound to system:monitoring, its token reviewed.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "prometheus"}})).unwrap();
    accounts.create(&PostParams::default(), &sa).await.unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "prometheus-monitoring"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:monitoring"},
        "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "default"}],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let admin = cp.raw().await;
    let request = admin
        .post(
            "/api/v1/namespaces/default/serviceaccounts/prometheus/token",
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}),
        )
        .await;
    assert_eq!(request.status, 201, "{}", request.text());
    let token = request.json()["status"]["token"].as_str().unwrap().to_string();
    for url in [&scheduler_url, &cm_url] {
        let scraper = raw_at(url, None, Some(&token)).await;
        // The new binding reaches the API server's RBAC within moments; a
        // denial is cached 10 s by the component, as Kubernetes' is.
        let text = eventually(Duration::from_secs(30), "the ServiceAccount may scrape", || async {
            let scrape = scraper.get("/metrics").await;
            (scrape.status == 200).then(|| scrape.text())
        })
        .await;
        assert!(text.contains("# TYPE "), "{url}");
    }
}
