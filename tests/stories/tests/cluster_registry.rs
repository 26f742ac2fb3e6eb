//! Real apps on a fresh machine: images as users write them, pulled through
//! the cluster registry.
//!
//! `cargo xtask up --nodes 1` starts the cluster registry on the bridge
//! address and pushes busybox, nginx, redis and our pause image into it;
//! every node's containerd mirrors docker.io (and the other usual upstreams)
//! through it. The stories:
//! - a Deployment of `nginx` (no registry, no tag) and one of
//!   `busybox:1.35.0` running `httpd` with a readiness probe on the named
//!   port `http` both roll out (`kubectl rollout status` returns), and a
//!   NodePort reaches nginx's default page from a client machine;
//! - an image that exists nowhere leaves the pod `ErrImagePull`, then
//!   `ImagePullBackOff`, with events saying so;
//! - with `imagePullPolicy: Always`, a new image pushed under the same tag
//!   (`cargo xtask images push`) is what the next pod runs (its `imageID` differs);
//! - a private registry (htpasswd basic auth, declared in
//!   `$SLUICE_HOME/registries.yaml` as a plain-HTTP endpoint) serves pods
//!   that carry an `imagePullSecrets` dockerconfigjson Secret; without it the
//!   pull fails and the event says the registry refused (401 Unauthorized).
//!
//! Needs root and the kubelet's CRI PullImage. Build first: `cargo build --workspace --bins`.

use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster};
use sluice_tests::controllers::serial;
use sluice_tests::registry::{cached_archive, relabelled, Registry};
use std::time::{Duration, Instant};

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx}
spec:
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: nginx
        ports: [{name: http, containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  type: NodePort
  selector: {app: nginx}
  ports: [{port: 80, targetPort: 80, nodePort: 30080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpd}
spec:
  replicas: 1
  selector: {matchLabels: {app: httpd}}
  template:
    metadata: {labels: {app: httpd}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:1.35.0
        command: [sh, -c, 'mkdir -p /www && echo hello from busybox > /www/index.html && exec httpd -f -p 8080 -h /www']
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
"#;

/// The pod's first container status, as `kubectl get pod -o json` shows it.
fn container_status(cluster: &TestCluster, pod: &str) -> Value {
    let out = cluster.kubectl(&["get", "pod", pod, "-o", "json"]);
    let pod: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    pod["status"]["containerStatuses"][0].clone()
}

/// `(reason, message)` of the events about `pod`.
fn events(cluster: &TestCluster, pod: &str) -> Vec<(String, String)> {
    let selector = format!("involvedObject.name={pod}");
    let out = cluster.kubectl(&["get", "events", "--field-selector", &selector, "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Wait until `pod`'s container is waiting with one of `reasons`; (reason, message).
fn wait_waiting(cluster: &TestCluster, pod: &str, reasons: &[&str], timeout: Duration) -> (String, String) {
    let mut last = Value::Null;
    wait_for(timeout, || {
        last = container_status(cluster, pod);
        let waiting = &last["state"]["waiting"];
        let reason = waiting["reason"].as_str().unwrap_or_default();
        reasons.contains(&reason).then(|| {
            (
                reason.to_string(),
                waiting["message"].as_str().unwrap_or_default().to_string(),
            )
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "pod {pod} never waited with {reasons:?} in {timeout:?}; last status {last:#}; events {:?}",
            events(cluster, pod)
        )
    })
}

/// The single pod of `selector`, once it runs (returns its name).
fn running_pod(cluster: &TestCluster, selector: &str) -> String {
    cluster.wait_running(selector, 1, Duration::from_secs(120))[0]
        .name
        .clone()
}

#[test]
fn nginx_and_busybox_by_their_usual_names_roll_out_and_nginx_answers_on_a_node_port() {
    // One cluster at a time: four at once on two cores would only race their timeouts.
    let _serial = serial();
    let cluster = TestCluster::up(1, &[]);
    let started = Instant::now();
    cluster.apply(WEB);
    for deployment in ["deployment/nginx", "deployment/httpd"] {
        cluster.kubectl_ok(&["rollout", "status", deployment, "--timeout=180s"]);
    }
    eprintln!("both deployments rolled out in {:?}", started.elapsed());
    let pods = cluster.wait_running("app=nginx", 2, Duration::from_secs(30));
    let status = container_status(&cluster, &pods[0].name);
    assert!(
        status["image"].as_str().is_some_and(|i| i.contains("nginx")),
        "{status:#}"
    );
    assert!(
        status["imageID"].as_str().is_some_and(|id| id.contains("sha256:")),
        "{status:#}"
    );

    let client = cluster.client();
    let url = format!("http://{}:30080/", cluster.node_ip(1));
    let page = wait_for(Duration::from_secs(30), || client.get(&url));
    assert!(
        page.as_deref().is_some_and(|p| p.contains("Welcome to nginx!")),
        "nginx's default page through the NodePort: {page:?}"
    );
    let httpd = cluster.wait_running("app=httpd", 1, Duration::from_secs(30));
    let body = cluster.http_from_pod(&httpd[0], httpd[0].ip.as_deref().unwrap(), 8080);
    assert_eq!(body.as_deref(), Some("hello from busybox"));
}

#[test]
fn an_image_that_exists_nowhere_gives_err_image_pull_then_image_pull_back_off() {
    // One cluster at a time: four at once on two cores would only race their timeouts.
    let _serial = serial();
    let cluster = TestCluster::up(1, &[]);
    cluster.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: ghost}\nspec:\n  containers:\n  - {name: app, image: 'sluice-no-such-image:1'}\n",
    );
    // The first failed pull shows as ErrImagePull (it lasts until the next sync
    // turns it into ImagePullBackOff; the event stays).
    let (reason, message) = wait_waiting(
        &cluster,
        "ghost",
        &["ErrImagePull", "ImagePullBackOff"],
        Duration::from_secs(60),
    );
    assert!(message.contains("sluice-no-such-image"), "{reason}: {message}");
    wait_waiting(&cluster, "ghost", &["ImagePullBackOff"], Duration::from_secs(60));
    let seen = wait_for(Duration::from_secs(30), || {
        let events = events(&cluster, "ghost");
        let failed = events
            .iter()
            .any(|(r, m)| r == "Failed" && m.contains("sluice-no-such-image"));
        let err_image_pull = events.iter().any(|(r, m)| r == "Failed" && m.contains("ErrImagePull"));
        let backoff = events.iter().any(|(r, _)| r == "BackOff");
        (failed && err_image_pull && backoff).then_some(events)
    });
    assert!(
        seen.is_some(),
        "events: Failed naming the image, `Error: ErrImagePull`, BackOff; got {:?}",
        events(&cluster, "ghost")
    );
    let phase = cluster.kubectl_ok(&["get", "pod", "ghost", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Pending");
}

#[test]
fn pull_policy_always_runs_the_new_image_pushed_under_the_same_tag() {
    // One cluster at a time: four at once on two cores would only race their timeouts.
    let _serial = serial();
    let cluster = TestCluster::up(1, &[]);
    let work = tempfile::tempdir().expect("temp dir");
    let busybox = cached_archive("busybox");
    let v1 = relabelled(&busybox, work.path(), "release=1");
    let v2 = relabelled(&busybox, work.path(), "release=2");
    cluster.push_image(&v1, "myapp:1");
    cluster.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: myapp}
spec:
  replicas: 1
  selector: {matchLabels: {app: myapp}}
  template:
    metadata: {labels: {app: myapp}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: app, image: 'myapp:1', imagePullPolicy: Always, command: [sleep, '3600']}
"#,
    );
    let first = running_pod(&cluster, "app=myapp");
    let first_id = container_status(&cluster, &first)["imageID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(first_id.contains("sha256:"), "imageID of the first pod: {first_id:?}");

    cluster.push_image(&v2, "myapp:1");
    cluster.kubectl_ok(&["delete", "pod", &first, "--wait=false"]);
    let second = wait_for(Duration::from_secs(120), || {
        let pods = cluster.pods("app=myapp");
        pods.iter()
            .find(|p| p.name != first && p.phase == "Running")
            .map(|p| p.name.clone())
    })
    .expect("a replacement pod running");
    let second_id = container_status(&cluster, &second)["imageID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(second_id.contains("sha256:"), "{second_id:?}");
    assert_ne!(first_id, second_id, "the replacement runs the digest pushed last");
}

#[test]
fn a_private_registry_pulls_with_image_pull_secrets_and_refuses_without() {
    // One cluster at a time: four at once on two cores would only race their timeouts.
    let _serial = serial();
    let cluster = TestCluster::new(1);
    // The team's own registry on the cluster network, plain HTTP with basic auth.
    let addr = format!("{}:{}", cluster.gateway(), sluice_tests::free_port());
    std::fs::write(
        cluster.home().join("registries.yaml"),
        format!("mirrors:\n  \"{addr}\":\n    endpoint: [\"http://{addr}\"]\n"),
    )
    .expect("write registries.yaml");
    cluster.start(&[]);
    let private = Registry::start_at(&addr, Some(("alice", "s3cret")));
    private.push(&cached_archive("busybox"), &format!("{addr}/team/tool:1"));
    let image = format!("{addr}/team/tool:1");

    let secret = cluster.kubectl_ok(&[
        "create",
        "secret",
        "docker-registry",
        "team-registry",
        &format!("--docker-server={addr}"),
        "--docker-username=alice",
        "--docker-password=s3cret",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    cluster.apply(&secret);
    let pod = |name: &str, secret: Option<&str>| {
        let pull_secrets = secret
            .map(|s| format!("  imagePullSecrets: [{{name: {s}}}]\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\nspec:\n{pull_secrets}  \
             terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: app, image: '{image}', command: [sleep, '3600']}}\n"
        )
    };
    cluster.apply(&pod("without", None));
    let (_, message) = wait_waiting(
        &cluster,
        "without",
        &["ErrImagePull", "ImagePullBackOff"],
        Duration::from_secs(60),
    );
    let refused = |m: &str| {
        let m = m.to_lowercase();
        m.contains("401") || m.contains("unauthorized") || m.contains("authoriz")
    };
    assert!(
        refused(&message),
        "the waiting message says the registry refused: {message}"
    );
    let failed = wait_for(Duration::from_secs(30), || {
        events(&cluster, "without")
            .into_iter()
            .find(|(r, m)| r == "Failed" && refused(m))
    });
    assert!(
        failed.is_some(),
        "a Failed event with the authorization error; got {:?}",
        events(&cluster, "without")
    );

    cluster.apply(&pod("with", Some("team-registry")));
    running_pod(&cluster, "app=with");
    let status = container_status(&cluster, "with");
    assert!(
        status["image"].as_str().is_some_and(|i| i.starts_with(&addr)),
        "{status:#}"
    );
}
