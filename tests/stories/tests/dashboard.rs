//! The web dashboard, used in a real browser (headless Chromium over
//! WebDriver), as a platform engineer would on their first day.
//!
//! `cargo xtask up --nodes 1` serves the dashboard at
//! `https://<apiserver>/dashboard/`. The user runs the seed scenario (`web`:
//! 2 busybox httpd replicas behind a NodePort Service) and makes themselves a
//! ServiceAccount bound to `cluster-admin`, whose token they paste into the
//! login page (a wrong token is refused with the API's own "Unauthorized").
//! Signed in, they see:
//! - their user name in the header and the live indicator `watching`;
//! - the pods of `default`, both `web` pods `Running`, and a pod's page with
//!   its events;
//! - `web`'s page: its endpoints, and its traffic (new flows per second,
//!   total, backend spread over both pods) rising while a client on the
//!   node's network sends requests to the NodePort — read from the nodes'
//!   eBPF flow events through the API server's `nodes/proxy`;
//! - the Service map: the client, `default/web` and its pods;
//! - the Deployment scaled from 2 to 3 with the Workloads page's button,
//!   the third pod appearing without a reload, and restarted with its
//!   Restart button (the pod template's `restartedAt`, as `kubectl rollout
//!   restart`).
//!
//! The page updates through watches, never by polling: while it is open and
//! idle, the API server's audit log records no new read by its user.
//!
//! Screenshots of each step are written to `target/dashboard-screenshots/`
//! and checked (a PNG of the window that is not a blank page).
//!
//! At 1,000 pods (simulated nodes, `nodesim`) the page stays usable: it shows
//! the count and its first 200 rows within seconds of signing in, a filter
//! narrows the table at once, and deleting 100 pods shows in the count
//! through the watch; the times are printed.
//!
//! Needs root, Chromium and chromedriver (`cargo xtask test` installs them)
//! and the built dashboard (`cargo xtask dashboard`; `cargo xtask test` and
//! `up` build it).

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use sluice_tests::browser::{dashboard_dir, Browser};
use sluice_tests::cluster::{wait_for, TestCluster};
use sluice_tests::controllers::start_nodes;
use sluice_tests::{ControlPlane, ADMIN_TOKEN};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: dashboard-admin, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: dashboard-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: dashboard-admin, namespace: kube-system}]
"#;

const WAIT: Duration = Duration::from_secs(60);

const USER: &str = "system:serviceaccount:kube-system:dashboard-admin";

/// The requests by which the dashboard's user read objects (the API
/// server's audit log, one entry per request whatever its stages): its lists
/// and gets, not its streams (watches, followed logs, the nodes' flows
/// through `nodes/proxy`), which stay open.
fn reads_by_the_dashboard(cluster: &TestCluster) -> BTreeMap<String, String> {
    let log = std::fs::read_to_string(cluster.home().join("logs/audit.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["user"]["username"] == USER)
        .filter(|e| {
            let streams = matches!(e["objectRef"]["subresource"].as_str(), Some("log" | "proxy"));
            matches!(e["verb"].as_str(), Some("list" | "get")) && !streams
        })
        .map(|e| {
            let id = e["auditID"].as_str().unwrap_or_default().to_string();
            (id, format!("{} {}", e["verb"], e["requestURI"]))
        })
        .collect()
}

/// The dashboard's reads once none has been added for 2 s (the page's first
/// lists are done), or after 30 s whatever they are.
fn settled_reads(cluster: &TestCluster) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reads = reads_by_the_dashboard(cluster);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = reads_by_the_dashboard(cluster);
        if now.len() == reads.len() || Instant::now() > deadline {
            return now;
        }
        reads = now;
    }
}

fn number(text: Option<String>) -> f64 {
    text.and_then(|t| t.trim().parse().ok()).unwrap_or(0.0)
}

#[test]
fn a_user_signs_in_watches_pods_and_traffic_and_scales_a_deployment() {
    // Each step's start, for a failure's output.
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:6.1}s] {what}", started.elapsed().as_secs_f64());
    let cluster = TestCluster::up(1, &[]);
    let node_ip = cluster.node_ip(1);
    cluster.apply(APP);
    let pods = cluster.wait_running("app=web", 2, Duration::from_secs(120));
    let web: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "service", "web", "-o", "json"])).expect("service json");
    let node_port = web["spec"]["ports"][0]["nodePort"].as_u64().expect("nodePort");
    let url = format!("http://{node_ip}:{node_port}/");
    let client = cluster.client();
    assert!(wait_for(WAIT, || client.get(&url)).is_some(), "web answers on {url}");
    let token = cluster
        .kubectl_ok(&["-n", "kube-system", "create", "token", "dashboard-admin"])
        .trim()
        .to_string();

    step("browser: the login page");
    let browser = Browser::start();
    let dashboard = format!("{}/dashboard/", cluster.apiserver_url());
    browser.goto(&dashboard);
    browser.find("#token", WAIT);
    browser.screenshot("01-login");

    step("a wrong token");
    // A wrong token is refused with the API's answer.
    browser.fill("#token", "not-a-token");
    browser.click("#login");
    let refused = browser.wait_for(WAIT, "the login error", || {
        browser.text("#login-error").filter(|t| !t.is_empty())
    });
    assert!(refused.contains("Unauthorized"), "login error: {refused}");

    step("sign in");
    browser.fill("#token", &token);
    browser.click("#login");
    let user = browser.wait_for(WAIT, "the signed-in user", || {
        browser.text("#user").filter(|t| !t.is_empty())
    });
    assert_eq!(user, USER);
    browser.wait_for(WAIT, "the live indicator to say watching", || {
        let live = browser.all("#live").into_iter().next()?;
        (browser.attr(&live, "data-state").as_deref() == Some("watching")).then_some(())
    });

    step("the pods page");
    // The pods of default: both web pods, Running.
    browser.goto(&format!("{dashboard}#/pods"));
    browser.select("#namespace", "default");
    let expected: BTreeSet<String> = pods.iter().map(|p| format!("default/{}", p.name)).collect();
    let running = |want: &BTreeSet<String>| {
        let rows = browser.all("#pods-table tr[data-pod]");
        let shown: BTreeSet<String> = rows
            .iter()
            .filter(|r| browser.run(r.text()).is_ok_and(|t| t.contains("Running")))
            .filter_map(|r| browser.attr(r, "data-pod"))
            .filter(|p| p.starts_with("default/web-"))
            .collect();
        (&shown == want).then_some(shown)
    };
    browser.wait_for(WAIT, "both web pods Running in the pods table", || running(&expected));
    assert_eq!(
        browser.text("#pods-count").as_deref().map(str::trim),
        Some("2 pods"),
        "default holds the two web pods"
    );
    browser.screenshot("02-pods");

    step("idle");
    // Idle and open, the page watches: it reads nothing more from the API server.
    let reads_before = settled_reads(&cluster);
    assert!(!reads_before.is_empty(), "the audit log records the dashboard's user");
    std::thread::sleep(Duration::from_secs(8));
    let new_reads: Vec<String> = reads_by_the_dashboard(&cluster)
        .into_iter()
        .filter(|(id, _)| !reads_before.contains_key(id))
        .map(|(_, read)| read)
        .collect();
    assert!(
        new_reads.is_empty(),
        "the open dashboard read from the API server again while idle (polling?): {new_reads:?}"
    );

    step("a pod's page");
    // A pod's page: its events, as kubectl describe lists them.
    browser.goto(&format!("{dashboard}#/pods/default/{}", pods[0].name));
    browser.find("#pod-detail", WAIT);
    browser.wait_for(WAIT, "the pod's Scheduled and Started events", || {
        let events: Vec<String> = browser
            .all("#pod-detail li.event")
            .iter()
            .filter_map(|e| browser.run(e.text()).ok())
            .collect();
        let has = |reason: &str| events.iter().any(|e| e.contains(reason));
        (has("Scheduled") && has("Started")).then_some(())
    });
    browser.find("#pod-logs", WAIT);

    step("web's traffic");
    // web's traffic rises while a client sends requests to its NodePort.
    browser.goto(&format!("{dashboard}#/services/default/web"));
    let section = browser.find("#traffic", WAIT);
    assert_eq!(browser.attr(&section, "data-service").as_deref(), Some("default/web"));
    browser.wait_for(WAIT, "web's two endpoints", || {
        (browser.all("li.endpoint").len() == 2).then_some(())
    });
    let total_before = number(browser.text("#traffic-total"));
    let load = client.load(&url, 2, 2);
    let rate = browser.wait_for(WAIT, "web's request rate to rise", || {
        let rate = number(browser.text("#traffic-rate"));
        let total = number(browser.text("#traffic-total"));
        (rate > 1.0 && total >= total_before + 20.0).then_some(rate)
    });
    let spread = browser.wait_for(WAIT, "flows spread over both web pods", || {
        let bars: BTreeSet<String> = browser
            .all(".backend[data-pod]")
            .iter()
            .filter(|b| {
                browser
                    .attr(b, "data-count")
                    .and_then(|c| c.parse::<u64>().ok())
                    .unwrap_or(0)
                    > 0
            })
            .filter_map(|b| browser.attr(b, "data-pod"))
            .collect();
        (bars == expected).then_some(bars)
    });
    browser.screenshot("03-traffic");
    let report = load.finish();
    eprintln!("rate {rate}/s, backends {spread:?}, load {report:?}");
    assert!(report.ok() > 0, "the load was answered: {report:?}");
    assert_eq!(number(browser.text("#traffic-drops")), 0.0, "no drops to web");

    step("the Service map");
    // The Service map draws web between its client and its pods.
    browser.goto(&format!("{dashboard}#/map"));
    browser.find("svg#service-map", WAIT);
    let ids = browser.wait_for(WAIT, "the Service map", || {
        let ids: Vec<String> = browser
            .all("#service-map .map-node")
            .iter()
            .filter_map(|n| browser.attr(n, "data-id"))
            .collect();
        let has = |needle: &str| ids.iter().any(|id| id.contains(needle));
        (has("default/web") && pods.iter().all(|p| has(&p.name)) && !browser.all("#service-map .map-edge").is_empty())
            .then_some(ids.clone())
    });
    eprintln!("map nodes: {ids:?}");
    browser.screenshot("04-map");

    step("scale");
    // Scale web from 2 to 3 from the Workloads page.
    browser.goto(&format!("{dashboard}#/workloads"));
    let row = "#deployments-table tr[data-deployment=\"default/web\"]";
    browser.wait_for(WAIT, "web 2/2 ready", || {
        (browser.text(&format!("{row} td.ready"))?.trim() == "2/2").then_some(())
    });
    browser.fill(&format!("{row} input.replicas"), "3");
    browser.click(&format!("{row} button.scale"));
    let replicas = wait_for(WAIT, || {
        let r = cluster.kubectl_ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"]);
        (r.trim() == "3").then_some(r)
    });
    assert!(replicas.is_some(), "the Scale button set web's replicas to 3");
    browser.wait_for(Duration::from_secs(120), "web 3/3 ready without a reload", || {
        (browser.text(&format!("{row} td.ready"))?.trim() == "3/3").then_some(())
    });
    browser.screenshot("05-scaled");

    step("restart");
    // Restart: the pod template gets restartedAt, as kubectl rollout restart.
    browser.click(&format!("{row} button.restart"));
    let restarted = wait_for(WAIT, || {
        let at = cluster.kubectl_ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
        ]);
        (!at.trim().is_empty()).then_some(at)
    });
    assert!(restarted.is_some(), "the Restart button set restartedAt");
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);

    step("sign out");
    // Signing out forgets the token: the login page again.
    browser.click("#logout");
    browser.find("#token", WAIT);
}

/// Sign in with `token` on the dashboard at `url` and wait for the page.
fn sign_in(browser: &Browser, url: &str, token: &str) {
    browser.goto(url);
    browser.fill("#token", token);
    browser.click("#login");
    browser.wait_for(WAIT, "the signed-in page", || {
        browser.text("#user").filter(|t| !t.is_empty())
    });
}

#[test]
fn the_pods_page_stays_usable_at_a_thousand_pods() {
    const PODS: usize = 1000;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dist = dashboard_dir();
    let cp = runtime.block_on(ControlPlane::start_with(&[
        "--dashboard-dir",
        &dist.display().to_string(),
    ]));
    let client = runtime.block_on(cp.client());
    let _nodes = runtime.block_on(start_nodes(&client, cp.kubeconfig_path(), "sim", 10));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = Instant::now();
    runtime.block_on(async {
        futures::stream::iter(0..PODS)
            .map(|i| {
                let pods = pods.clone();
                async move {
                    let pod: Pod = serde_json::from_value(json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": format!("pod-{i:04}"), "labels": {"app": "many"}},
                        "spec": {"nodeName": format!("sim-{}", i % 10),
                                 "containers": [{"name": "app", "image": "busybox"}]},
                    }))
                    .expect("pod");
                    pods.create(&PostParams::default(), &pod).await.map(drop)
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .expect("create the pods");
    });
    eprintln!("created {PODS} pods in {:?}", created.elapsed());

    let browser = Browser::start();
    let signed_in = Instant::now();
    sign_in(&browser, &format!("{}/dashboard/#/pods", cp.url()), ADMIN_TOKEN);
    browser.goto(&format!("{}/dashboard/#/pods", cp.url()));
    let count = |n: usize| {
        let want = format!("{n} pods");
        move |b: &Browser| (b.text("#pods-count")?.trim() == want).then_some(())
    };
    let all = count(PODS);
    browser.wait_for(Duration::from_secs(30), "1000 pods counted", || all(&browser));
    let rows = browser.all("#pods-table tr[data-pod]").len();
    let shown = signed_in.elapsed();
    assert_eq!(rows, 200, "at most 200 rows are drawn");
    browser.wait_for(WAIT, "every pod Running", || {
        let running = browser
            .all("#pods-table td.status")
            .iter()
            .filter(|c| browser.run(c.text()).is_ok_and(|t| t.trim() == "Running"))
            .count();
        (running == 200).then_some(())
    });
    browser.screenshot("10-thousand-pods");

    let typed = Instant::now();
    browser.fill("#pod-filter", "pod-0999");
    browser.wait_for(Duration::from_secs(10), "the filter to leave one pod", || {
        let rows = browser.all("#pods-table tr[data-pod]");
        let only = rows.first().and_then(|r| browser.attr(r, "data-pod"));
        (rows.len() == 1 && only.as_deref() == Some("default/pod-0999")).then_some(())
    });
    let filtered = typed.elapsed();
    browser.fill("#pod-filter", "");

    let deleting = Instant::now();
    runtime.block_on(async {
        futures::stream::iter(0..100)
            .map(|i| {
                let pods = pods.clone();
                async move {
                    let grace = DeleteParams::default().grace_period(0);
                    pods.delete(&format!("pod-{i:04}"), &grace).await.map(drop)
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .expect("delete 100 pods");
    });
    let fewer = count(PODS - 100);
    browser.wait_for(Duration::from_secs(30), "900 pods counted after the deletes", || {
        fewer(&browser)
    });
    let updated = deleting.elapsed();
    eprintln!(
        "1,000 pods: counted and 200 rows drawn {shown:?} after signing in; \
         filter applied in {filtered:?}; 100 deletes shown in {updated:?}"
    );
    assert!(shown < Duration::from_secs(15), "the pods page took {shown:?}");
    assert!(filtered < Duration::from_secs(3), "the filter took {filtered:?}");
}
