//! A developer's day with kubectl (v1.32) on a real Sluice cluster: one
//! node running pods in containerd (`cargo xtask up --nodes 1`), every
//! command as typed and every answer as kubectl prints it.
//!
//! On the cluster (`kubectl_daily_commands_on_a_real_cluster`), in a
//! namespace of its own made the current context's namespace:
//! * generators: `create namespace|configmap|secret|deployment|service|job|
//!   cronjob` and `create job --from=cronjob/...`, `run`, `expose`,
//!   `set env --from=configmap|resources|image`; jobs complete and their logs
//!   show their output;
//! * `patch` in its three types (strategic, merge, json) and "patched (no
//!   change)" for a patch that changes nothing; `label` (and the refusal to
//!   overwrite without `--overwrite`), `annotate`;
//! * `wait --for=condition=Available|Ready|Complete`, `rollout
//!   status|history|undo|pause|resume|restart` (the `kubernetes.io/change-cause`
//!   annotated on the Deployment shows in `rollout history`), `scale` seen
//!   through `get -w -o jsonpath`;
//! * one quick `exec`, `cp` and `port-forward` (through the Service) each —
//!   `kubectl_exec.rs` covers them in depth — and `logs -f` streaming lines
//!   as they are written and ending with the container;
//! * `run --rm -it --restart=Never` with stdin from a pipe (the pod gets
//!   `stdin`, `stdinOnce` and `tty`): kubectl says it cannot use a TTY,
//!   attaches anyway, shows the answer, waits for the pod to complete and
//!   deletes it, while its stdin is still open;
//! * `edit` with a scripted editor, `diff` (exit 0 when the same, 1 and a
//!   unified diff when not), `describe`, `events --for`;
//! * `cordon`/`uncordon`: `SchedulingDisabled`, a new pod left Pending with
//!   the scheduler's reason, scheduled once the node is back;
//! * `delete --cascade=orphan` (ReplicaSets stay, without ownerReference) and
//!   `--cascade=foreground` (the Deployment waits, deleting, for its
//!   ReplicaSet and pods to be gone).
//!
//! On an API server alone (`kubectl_discovery_explain_and_generators_of_other_kinds`):
//! `api-resources`, `explain`, and generators whose kinds may not be served
//! yet (`create role|rolebinding|quota|priorityclass|token`, `autoscale`):
//! what discovery says decides whether the user must see the object or the
//! server's clear 404.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster, BUSYBOX_IMAGE};
use sluice_tests::{ControlPlane, Reaped};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NS: &str = "daily";
const WAIT: Duration = Duration::from_secs(120);
const PAGE: &str = "daily-page";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// kubectl that must fail; its stderr.
fn fails(cluster: &TestCluster, args: &[&str]) -> String {
    let out = cluster.kubectl(args);
    assert!(
        !out.status.success(),
        "kubectl {args:?} should fail; stdout: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

/// `kubectl get ... -o json`.
fn get_json(cluster: &TestCluster, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend(["-o", "json"]);
    serde_json::from_str(&cluster.kubectl_ok(&all)).expect("kubectl get -o json prints JSON")
}

/// kubectl with extra environment variables (e.g. `KUBE_EDITOR`).
fn kubectl_env(cluster: &TestCluster, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl")
}

/// Poll `kubectl args` until its stdout satisfies `ok`; the last stdout.
fn eventually_out(cluster: &TestCluster, what: &str, args: &[&str], ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    wait_for(WAIT, || {
        let out = cluster.kubectl(args);
        last = text(&out.stdout) + &text(&out.stderr);
        (out.status.success() && ok(&text(&out.stdout))).then(|| text(&out.stdout))
    })
    .unwrap_or_else(|| panic!("timed out waiting for {what}; `kubectl {args:?}` last printed:\n{last}"))
}

/// A long-running kubectl (`get -w`, `logs -f`, `port-forward`) whose stdout
/// lines arrive on a channel; killed by pid when dropped.
struct Streaming {
    child: Reaped,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<String>,
}

impl Streaming {
    fn start(cluster: &TestCluster, args: &[&str]) -> Streaming {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run kubectl");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Streaming {
            child: Reaped(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line (from now on) satisfying `ok`, with when it arrived.
    fn wait_line(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> (Instant, String) {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    self.seen.push(line.clone());
                    if ok(&line) {
                        return (at, line);
                    }
                }
                Err(_) => break,
            }
        }
        panic!("kubectl never printed {what}; it printed:\n{}", self.seen.join("\n"));
    }
}

fn write_file(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write file");
    path.display().to_string()
}

/// Names of the ReplicaSets labelled `app=<app>`.
fn replicasets(cluster: &TestCluster, app: &str) -> Vec<Value> {
    get_json(cluster, &["rs", "-l", &format!("app={app}")])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn kubectl_daily_commands_on_a_real_cluster() {
    let started = Instant::now();
    let cluster = TestCluster::up(1, &[]);
    let node = cluster.node_name(1);
    let dir = tempfile::tempdir().expect("temp dir");

    // A namespace of its own, made the context's namespace as users do.
    assert_eq!(
        cluster.kubectl_ok(&["create", "namespace", NS]).trim(),
        "namespace/daily created"
    );
    cluster.kubectl_ok(&["config", "set-context", "--current", "--namespace", NS]);

    // ---- generators ----
    assert_eq!(
        cluster
            .kubectl_ok(&["create", "configmap", "app-config", "--from-literal=GREETING=hello"])
            .trim(),
        "configmap/app-config created"
    );
    assert_eq!(
        cluster
            .kubectl_ok(&[
                "create",
                "secret",
                "generic",
                "app-secret",
                "--from-literal=TOKEN=s3cret"
            ])
            .trim(),
        "secret/app-secret created"
    );
    assert_eq!(
        cluster.kubectl_ok(&["get", "secret", "app-secret", "-o", "jsonpath={.data.TOKEN}"]),
        "czNjcmV0"
    );
    let httpd = format!("mkdir -p /www && echo {PAGE} > /www/index.html && exec httpd -f -p 8080 -h /www");
    assert_eq!(
        cluster
            .kubectl_ok(&[
                "create",
                "deployment",
                "web",
                &format!("--image={BUSYBOX_IMAGE}"),
                "--replicas=2",
                "--port=8080",
                "--",
                "sh",
                "-c",
                &httpd,
            ])
            .trim(),
        "deployment.apps/web created"
    );
    // A second Deployment, deleted in the foreground at the end.
    assert_eq!(
        cluster
            .kubectl_ok(&[
                "create",
                "deployment",
                "api",
                &format!("--image={BUSYBOX_IMAGE}"),
                "--",
                "sleep",
                "3600"
            ])
            .trim(),
        "deployment.apps/api created"
    );

    // Each Deployment's first revision exists before its template changes.
    for app in ["web", "api"] {
        eventually_out(
            &cluster,
            &format!("the first ReplicaSet of {app}"),
            &["get", "rs", "-l", &format!("app={app}"), "-o", "name"],
            |out| !out.trim().is_empty(),
        );
    }

    // ---- patch: strategic (the default), merge, json ----
    let grace = r#"{"spec":{"template":{"spec":{"terminationGracePeriodSeconds":1}}}}"#;
    assert_eq!(
        cluster.kubectl_ok(&["patch", "deployment", "web", "-p", grace]).trim(),
        "deployment.apps/web patched"
    );
    // kubectl says "(no change)" when the object it read before patching
    // equals the answer: let the rollout the patch started settle first, or
    // a status write in between makes the two differ (as on Kubernetes).
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert_eq!(
        cluster.kubectl_ok(&["patch", "deployment", "web", "-p", grace]).trim(),
        "deployment.apps/web patched (no change)"
    );
    assert_eq!(
        cluster
            .kubectl_ok(&[
                "patch",
                "deployment",
                "web",
                "--type=merge",
                "-p",
                r#"{"spec":{"revisionHistoryLimit":20}}"#
            ])
            .trim(),
        "deployment.apps/web patched"
    );
    assert_eq!(
        cluster
            .kubectl_ok(&[
                "patch",
                "deployment",
                "api",
                "--type=json",
                "-p",
                r#"[{"op":"replace","path":"/spec/template/spec/terminationGracePeriodSeconds","value":1}]"#
            ])
            .trim(),
        "deployment.apps/api patched"
    );
    let web = get_json(&cluster, &["deployment", "web"]);
    assert_eq!(web["spec"]["revisionHistoryLimit"], 20);
    assert_eq!(web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 1);
    assert_eq!(
        get_json(&cluster, &["deployment", "api"])["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        1
    );

    // ---- wait, rollout status ----
    assert_eq!(
        cluster
            .kubectl_ok(&["wait", "--for=condition=Available", "deployment/web", "--timeout=120s"])
            .trim(),
        "deployment.apps/web condition met"
    );
    let status = cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(
        status
            .trim_end()
            .ends_with("deployment \"web\" successfully rolled out"),
        "{status}"
    );
    let pods = cluster.wait_running("app=web", 2, WAIT);
    assert!(
        pods.iter().all(|p| p.node.as_deref() == Some(node.as_str())),
        "{pods:?}"
    );

    // ---- set env from a ConfigMap, then exec sees it ----
    assert_eq!(
        cluster
            .kubectl_ok(&["set", "env", "deployment/web", "--from=configmap/app-config"])
            .trim(),
        "deployment.apps/web env updated"
    );
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    cluster.wait_running("app=web", 2, WAIT);
    assert_eq!(
        cluster.kubectl_ok(&["exec", "deploy/web", "--", "sh", "-c", "echo $GREETING"]),
        "hello\n"
    );

    // ---- set resources, annotate the change cause, rollout history ----
    assert_eq!(
        cluster
            .kubectl_ok(&["set", "resources", "deployment/web", "--limits=memory=64Mi"])
            .trim(),
        "deployment.apps/web resource requirements updated"
    );
    assert_eq!(
        cluster
            .kubectl_ok(&[
                "annotate",
                "deployment",
                "web",
                "kubernetes.io/change-cause=limit memory to 64Mi"
            ])
            .trim(),
        "deployment.apps/web annotated"
    );
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    // Revisions: 1 created, 2 grace period, 3 env, 4 limits (with its cause).
    let history = eventually_out(
        &cluster,
        "revision 4 with its change cause in rollout history",
        &["rollout", "history", "deployment/web"],
        |out| {
            out.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["4", "limit", "memory", "to", "64Mi"])
        },
    );
    let rows: Vec<Vec<&str>> = history.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["deployment.apps/web"], "{history}");
    assert_eq!(rows[1], ["REVISION", "CHANGE-CAUSE"], "{history}");
    for (row, rev) in rows[2..5].iter().zip(["1", "2", "3"]) {
        assert_eq!(row, &[rev, "<none>"], "{history}");
    }
    let rev3 = cluster.kubectl_ok(&["rollout", "history", "deployment/web", "--revision=3"]);
    assert!(
        rev3.contains("deployment.apps/web with revision #3") && rev3.contains("Pod Template:"),
        "{rev3}"
    );
    assert!(
        rev3.contains("GREETING:") && rev3.contains("app-config"),
        "revision 3 takes GREETING from the ConfigMap:\n{rev3}"
    );

    // ---- rollout undo: back to revision 3's template, as revision 5 ----
    assert_eq!(
        cluster.kubectl_ok(&["rollout", "undo", "deployment/web"]).trim(),
        "deployment.apps/web rolled back"
    );
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let web = get_json(&cluster, &["deployment", "web"]);
    assert!(
        web["spec"]["template"]["spec"]["containers"][0]["resources"]
            .get("limits")
            .is_none(),
        "undo removed the limits: {}",
        web["spec"]["template"]["spec"]["containers"][0]
    );
    assert_eq!(web["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "5");
    let history = eventually_out(
        &cluster,
        "revision 5 in rollout history",
        &["rollout", "history", "deployment/web"],
        |out| out.lines().any(|l| l.starts_with('5')),
    );
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2", "4", "5"], "revision 3 became 5:\n{history}");

    // ---- rollout pause / resume ----
    assert_eq!(
        cluster.kubectl_ok(&["rollout", "pause", "deployment/web"]).trim(),
        "deployment.apps/web paused"
    );
    let before = replicasets(&cluster, "web").len();
    assert_eq!(
        cluster
            .kubectl_ok(&["set", "image", "deployment/web", "busybox=busybox:latest"])
            .trim(),
        "deployment.apps/web image updated"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        replicasets(&cluster, "web").len(),
        before,
        "a paused Deployment starts no rollout"
    );
    assert_eq!(
        cluster.kubectl_ok(&["rollout", "resume", "deployment/web"]).trim(),
        "deployment.apps/web resumed"
    );
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert_eq!(replicasets(&cluster, "web").len(), before + 1);

    // ---- rollout restart: every pod replaced ----
    let old: Vec<String> = cluster
        .wait_running("app=web", 2, WAIT)
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        cluster.kubectl_ok(&["rollout", "restart", "deployment/web"]).trim(),
        "deployment.apps/web restarted"
    );
    let web = get_json(&cluster, &["deployment", "web"]);
    assert!(
        web["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(),
        "{}",
        web["spec"]["template"]
    );
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let new = cluster.wait_running("app=web", 2, WAIT);
    assert!(new.iter().all(|p| !old.contains(&p.name)), "old {old:?}, new {new:?}");

    // ---- scale, seen through get -w -o jsonpath ----
    let mut ready = Streaming::start(
        &cluster,
        &[
            "get",
            "deployment",
            "web",
            "-w",
            "-o",
            "jsonpath={.status.readyReplicas}{\"\\n\"}",
        ],
    );
    ready.wait_line("the current readyReplicas (2)", |l| l == "2");
    assert_eq!(
        cluster
            .kubectl_ok(&["scale", "deployment", "web", "--replicas=3"])
            .trim(),
        "deployment.apps/web scaled"
    );
    ready.wait_line("readyReplicas 3", |l| l == "3");
    drop(ready);
    let pods = cluster.wait_running("app=web", 3, WAIT);

    // ---- label ----
    assert_eq!(
        cluster
            .kubectl_ok(&["label", "deployment", "web", "tier=frontend"])
            .trim(),
        "deployment.apps/web labeled"
    );
    assert_eq!(
        cluster
            .kubectl_ok(&["get", "deployments", "-l", "tier=frontend", "-o", "name"])
            .trim(),
        "deployment.apps/web"
    );
    let err = fails(&cluster, &["label", "deployment", "web", "tier=backend"]);
    assert!(
        err.contains("'tier' already has a value (frontend), and --overwrite is false"),
        "{err}"
    );
    assert_eq!(
        cluster.kubectl_ok(&["label", "deployment", "web", "tier-"]).trim(),
        "deployment.apps/web unlabeled"
    );

    // ---- expose, and the Service answers from inside a pod ----
    assert_eq!(
        cluster
            .kubectl_ok(&["expose", "deployment", "web", "--port=80", "--target-port=8080"])
            .trim(),
        "service/web exposed"
    );
    let ips = eventually_out(
        &cluster,
        "three endpoints for Service web",
        &[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}",
        ],
        |out| out.split_whitespace().count() == 3,
    );
    let mut want: Vec<String> = pods.iter().filter_map(|p| p.ip.clone()).collect();
    let mut got: Vec<String> = ips.split_whitespace().map(String::from).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    let cluster_ip = cluster.kubectl_ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {cluster_ip} 80");
    eventually_out(
        &cluster,
        "the page through the Service from a pod",
        &["exec", "deploy/web", "--", "sh", "-c", &request],
        |out| out.contains(PAGE),
    );
    assert_eq!(
        cluster
            .kubectl_ok(&["create", "service", "nodeport", "web-np", "--tcp=80:8080"])
            .trim(),
        "service/web-np created"
    );
    let svc = get_json(&cluster, &["service", "web-np"]);
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().expect("a nodePort");
    let table = cluster.kubectl_ok(&["get", "service", "web-np"]);
    assert!(table.contains(&format!("80:{node_port}/TCP")), "{table}");

    // ---- cp and port-forward, one quick check each ----
    let local = write_file(dir.path(), "note.txt", "copied by kubectl cp\n");
    let pod = &pods[0].name;
    cluster.kubectl_ok(&["cp", &local, &format!("{pod}:/tmp/note.txt")]);
    assert_eq!(
        cluster.kubectl_ok(&["exec", pod, "--", "cat", "/tmp/note.txt"]),
        "copied by kubectl cp\n"
    );
    let port = sluice_tests::free_port();
    let mut forward = Streaming::start(&cluster, &["port-forward", "service/web", &format!("{port}:80")]);
    forward.wait_line("Forwarding from", |l| l.contains("Forwarding from"));
    let page = Command::new("curl")
        .args(["-sS", "--max-time", "20", &format!("http://127.0.0.1:{port}/")])
        .output()
        .expect("run curl");
    drop(forward);
    assert_eq!(text(&page.stdout).trim(), PAGE, "{}", text(&page.stderr));

    // ---- logs -f: lines as they are written, ending with the container ----
    assert_eq!(
        cluster
            .kubectl_ok(&[
                "run",
                "ticker",
                &format!("--image={BUSYBOX_IMAGE}"),
                "--restart=Never",
                "--",
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6; do echo tick $i; sleep 1; done",
            ])
            .trim(),
        "pod/ticker created"
    );
    assert_eq!(
        cluster
            .kubectl_ok(&["wait", "--for=condition=Ready", "pod/ticker", "--timeout=120s"])
            .trim(),
        "pod/ticker condition met"
    );
    let mut logs = Streaming::start(&cluster, &["logs", "-f", "ticker"]);
    let (first, _) = logs.wait_line("a tick", |l| l.starts_with("tick "));
    let (last, _) = logs.wait_line("tick 6", |l| l == "tick 6");
    assert!(
        last.duration_since(first) >= Duration::from_millis(1500),
        "lines arrive as they are written, not at the end: {:?}",
        logs.seen
    );
    let ended = wait_for(Duration::from_secs(30), || logs.child.0.try_wait().ok().flatten());
    let ended = ended.expect("kubectl logs -f ends when the container does");
    assert!(ended.success(), "logs -f: {ended:?}");

    // ---- run --rm -it with stdin from a pipe ----
    // kubectl creates the pod with `stdinOnce: true` and `tty: true`, and
    // attaches without a terminal (its stdin is a pipe): the attach follows
    // the container's terminal, so it ends when the container does.
    let mut run = Command::new("timeout")
        .arg("120")
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args([
            "run",
            "tmp",
            "--rm",
            "-it",
            "--restart=Never",
            &format!("--image={BUSYBOX_IMAGE}"),
            "--",
            "sh",
            "-c",
            "read line; echo \"got $line\"",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl run");
    let mut input = run.stdin.take().expect("stdin");
    input.write_all(b"hello\n").expect("write to kubectl run");
    // stdin stays open until kubectl ends: closing it would end the attach session.
    let (mut out, mut err) = (run.stdout.take().expect("stdout"), run.stderr.take().expect("stderr"));
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = run.wait().expect("kubectl run ends");
    drop(input);
    let (out, err) = (out_reader.join().expect("stdout"), err_reader.join().expect("stderr"));
    assert!(status.success(), "run --rm -it: {status:?}\n{out}\n{err}");
    assert!(
        err.contains("Unable to use a TTY - input is not a terminal or the right kind of file"),
        "{err}"
    );
    assert!(out.contains("got hello"), "run --rm -it: {out}\n{err}");
    assert!(out.contains("pod \"tmp\" deleted"), "{out}");
    // Deleted without waiting, as kubectl does: gone once its grace period is over.
    wait_for(WAIT, || {
        let out = cluster.kubectl(&["get", "pod", "tmp"]);
        text(&out.stderr).contains("pods \"tmp\" not found").then_some(())
    })
    .expect("the --rm pod is deleted");

    // ---- jobs: create job, create cronjob, create job --from=cronjob ----
    assert_eq!(
        cluster
            .kubectl_ok(&[
                "create",
                "job",
                "once",
                &format!("--image={BUSYBOX_IMAGE}"),
                "--",
                "sh",
                "-c",
                "echo job done"
            ])
            .trim(),
        "job.batch/once created"
    );
    assert_eq!(
        cluster
            .kubectl_ok(&[
                "create",
                "cronjob",
                "nightly",
                &format!("--image={BUSYBOX_IMAGE}"),
                "--schedule=0 3 * * *",
                "--",
                "echo",
                "nightly run"
            ])
            .trim(),
        "cronjob.batch/nightly created"
    );
    assert_eq!(
        cluster
            .kubectl_ok(&["create", "job", "manual", "--from=cronjob/nightly"])
            .trim(),
        "job.batch/manual created"
    );
    let cronjobs = cluster.kubectl_ok(&["get", "cronjob", "nightly"]);
    let row: Vec<&str> = cronjobs.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        row[..8],
        ["nightly", "0", "3", "*", "*", "*", "<none>", "False"],
        "{cronjobs}"
    );
    for job in ["once", "manual"] {
        assert_eq!(
            cluster
                .kubectl_ok(&[
                    "wait",
                    "--for=condition=Complete",
                    &format!("job/{job}"),
                    "--timeout=120s"
                ])
                .trim(),
            format!("job.batch/{job} condition met")
        );
    }
    assert_eq!(cluster.kubectl_ok(&["logs", "job/once"]), "job done\n");
    assert_eq!(cluster.kubectl_ok(&["logs", "job/manual"]), "nightly run\n");

    // ---- edit with a scripted editor ----
    let out = kubectl_env(
        &cluster,
        &[("KUBE_EDITOR", "sed -i 's/GREETING: hello/GREETING: bonjour/'")],
        &["edit", "configmap", "app-config"],
    );
    assert!(out.status.success(), "edit: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "configmap/app-config edited");
    assert_eq!(
        cluster.kubectl_ok(&["get", "configmap", "app-config", "-o", "jsonpath={.data.GREETING}"]),
        "bonjour"
    );
    let out = kubectl_env(
        &cluster,
        &[("KUBE_EDITOR", "true")],
        &["edit", "configmap", "app-config"],
    );
    assert!(out.status.success(), "edit: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Edit cancelled, no changes made."),
        "{}",
        text(&out.stderr)
    );

    // ---- diff: 0 when the same, 1 and a diff when not ----
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: blue\n";
    let file = write_file(dir.path(), "settings.yaml", manifest);
    assert_eq!(
        cluster.kubectl_ok(&["apply", "-f", &file]).trim(),
        "configmap/settings created"
    );
    let same = cluster.kubectl(&["diff", "-f", &file]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "diff of an unchanged manifest: {}{}",
        text(&same.stdout),
        text(&same.stderr)
    );
    assert_eq!(text(&same.stdout), "");
    write_file(dir.path(), "settings.yaml", &manifest.replace("blue", "green"));
    let changed = cluster.kubectl(&["diff", "-f", &file]);
    let shown = text(&changed.stdout);
    assert_eq!(changed.status.code(), Some(1), "{shown}{}", text(&changed.stderr));
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines.contains(&"-  mode: blue") && lines.contains(&"+  mode: green"),
        "{shown}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with(['-', '+']) && !l.starts_with("---") && !l.starts_with("+++"))
            .count(),
        2,
        "only the changed line differs:\n{shown}"
    );

    // ---- describe and events ----
    let described = cluster.kubectl_ok(&["describe", "deployment", "web"]);
    for want in [
        "Name:                   web",
        "Namespace:              daily",
        "Replicas:               3 desired | 3 updated | 3 total | 3 available | 0 unavailable",
        "StrategyType:           RollingUpdate",
        "NewReplicaSet:",
        "ScalingReplicaSet",
        "Scaled up replica set web-",
    ] {
        assert!(described.contains(want), "describe lacks {want:?}:\n{described}");
    }
    let events = cluster.kubectl_ok(&["events", "--for", "deployment/web"]);
    let header: Vec<&str> = events.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l.contains("Normal") && l.contains("ScalingReplicaSet") && l.contains("Deployment/web")),
        "{events}"
    );
    assert!(
        events.lines().skip(1).all(|l| l.contains("Deployment/web")),
        "--for shows only the Deployment's events:\n{events}"
    );

    // ---- cordon / uncordon ----
    assert_eq!(
        cluster.kubectl_ok(&["cordon", &node]).trim(),
        format!("node/{node} cordoned")
    );
    assert_eq!(
        cluster.kubectl_ok(&["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"]),
        "true"
    );
    let nodes = cluster.kubectl_ok(&["get", "nodes"]);
    let row: Vec<&str> = nodes
        .lines()
        .find(|l| l.starts_with(&node))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.get(1), Some(&"Ready,SchedulingDisabled"), "{nodes}");
    assert_eq!(
        cluster
            .kubectl_ok(&[
                "run",
                "parked",
                &format!("--image={BUSYBOX_IMAGE}"),
                "--",
                "sleep",
                "3600"
            ])
            .trim(),
        "pod/parked created"
    );
    let warnings = eventually_out(
        &cluster,
        "FailedScheduling for the parked pod",
        &["events", "--for", "pod/parked", "--types=Warning"],
        |out| out.contains("FailedScheduling"),
    );
    assert!(warnings.contains("node(s) were unschedulable"), "{warnings}");
    assert_eq!(
        cluster.kubectl_ok(&[
            "get",
            "pod",
            "parked",
            "-o",
            "jsonpath={.status.phase}/{.spec.nodeName}"
        ]),
        "Pending/"
    );
    assert_eq!(
        cluster.kubectl_ok(&["uncordon", &node]).trim(),
        format!("node/{node} uncordoned")
    );
    assert_eq!(
        cluster
            .kubectl_ok(&["wait", "--for=condition=Ready", "pod/parked", "--timeout=120s"])
            .trim(),
        "pod/parked condition met"
    );
    let nodes = cluster.kubectl_ok(&["get", "nodes"]);
    assert!(!nodes.contains("SchedulingDisabled"), "{nodes}");

    // ---- delete --cascade=orphan: the ReplicaSets stay, without their owner ----
    assert_eq!(
        cluster
            .kubectl_ok(&["delete", "deployment", "web", "--cascade=orphan"])
            .trim(),
        "deployment.apps \"web\" deleted"
    );
    let orphans = wait_for(WAIT, || {
        let rss = replicasets(&cluster, "web");
        (!rss.is_empty()
            && rss
                .iter()
                .all(|rs| rs["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty)))
        .then_some(rss)
    })
    .expect("the orphaned ReplicaSets lose their ownerReference");
    assert!(
        orphans.len() >= 4,
        "every revision's ReplicaSet stays: {}",
        orphans.len()
    );
    assert!(fails(&cluster, &["get", "deployment", "web"]).contains("not found"));
    let kept = cluster.wait_running("app=web", 3, WAIT);
    assert!(
        kept.iter().all(|p| pods.iter().any(|q| q.name == p.name)),
        "the pods run on untouched"
    );

    // ---- delete --cascade=foreground: the Deployment goes last ----
    cluster.wait_running("app=api", 1, WAIT);
    let rs_api: Vec<String> = replicasets(&cluster, "api")
        .iter()
        .filter_map(|rs| rs["metadata"]["name"].as_str().map(String::from))
        .collect();
    assert!(!rs_api.is_empty());
    assert_eq!(
        cluster
            .kubectl_ok(&["delete", "deployment", "api", "--cascade=foreground", "--wait=false"])
            .trim(),
        "deployment.apps \"api\" deleted"
    );
    let mut saw_waiting = false;
    wait_for(WAIT, || {
        let out = cluster.kubectl(&["get", "deployment", "api", "-o", "json"]);
        if out.status.success() {
            let d: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
            assert!(
                d["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f == "foregroundDeletion")),
                "{}",
                d["metadata"]
            );
            saw_waiting = true;
            return None;
        }
        // Gone: its ReplicaSet and pods went first.
        assert!(
            replicasets(&cluster, "api").is_empty(),
            "a ReplicaSet outlived its foreground-deleted Deployment"
        );
        assert!(
            cluster.pods("app=api").is_empty(),
            "pods outlived their foreground-deleted Deployment"
        );
        Some(())
    })
    .expect("the foreground-deleted Deployment goes once its dependents are gone");
    assert!(saw_waiting, "the Deployment waited, deleting, for its dependents");

    // Clean up what is left; the namespace goes with all it holds.
    cluster.kubectl_ok(&["delete", "namespace", NS, "--wait=false"]);
    eprintln!("kubectl daily story took {:?}", started.elapsed());
}

/// Whether discovery lists `resource` (e.g. `serviceaccounts/token`) in `group_version`.
fn is_served(cp: &ControlPlane, group_version: &str, resource: &str) -> bool {
    let path = if group_version.contains('/') {
        format!("/apis/{group_version}")
    } else {
        format!("/api/{group_version}")
    };
    let out = cp
        .kubectl()
        .args(["get", "--raw", &path])
        .output()
        .expect("kubectl runs");
    out.status.success()
        && serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|d| d["resources"].as_array().cloned())
            .is_some_and(|rs| rs.iter().any(|r| r["name"] == resource))
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_discovery_explain_and_generators_of_other_kinds() {
    let cp = ControlPlane::start().await;
    let run = |args: &[&str]| cp.kubectl().args(args).output().expect("kubectl runs");
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    // A kind the cluster does not serve: kubectl fails with the server's 404.
    let refused = |args: &[&str]| {
        let out = run(args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        assert!(
            err.trim_end()
                .ends_with("the server could not find the requested resource"),
            "kubectl {args:?}: {err}"
        );
    };

    // api-resources: the apps group with its verbs; what is cluster-scoped.
    let apps = ok(&["api-resources", "--api-group=apps", "-o", "wide"]);
    let header: Vec<&str> = apps.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "SHORTNAMES",
            "APIVERSION",
            "NAMESPACED",
            "KIND",
            "VERBS",
            "CATEGORIES"
        ],
        "{apps}"
    );
    let deployments: Vec<&str> = apps
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        deployments,
        [
            "deployments",
            "deploy",
            "apps/v1",
            "true",
            "Deployment",
            "create,delete,deletecollection,get,list,patch,update,watch",
            "all"
        ],
        "{apps}"
    );
    assert!(
        apps.lines().skip(1).all(|l| l.contains("apps/v1")),
        "--api-group=apps shows only apps:\n{apps}"
    );
    let cluster_scoped = ok(&["api-resources", "--namespaced=false", "-o", "name"]);
    let names: Vec<&str> = cluster_scoped.lines().collect();
    for want in ["namespaces", "nodes", "customresourcedefinitions.apiextensions.k8s.io"] {
        assert!(names.contains(&want), "{want} is cluster-scoped:\n{cluster_scoped}");
    }
    assert!(!names.contains(&"pods"), "{cluster_scoped}");

    // explain: one field, from the server's OpenAPI v3.
    let explained = ok(&["explain", "deployment.spec.replicas"]);
    for want in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "VERSION:    v1",
        "FIELD: replicas <integer>",
        "DESCRIPTION:",
        "Number of desired pods.",
    ] {
        assert!(explained.contains(want), "explain lacks {want:?}:\n{explained}");
    }
    let explained = ok(&["explain", "cronjob.spec.schedule"]);
    assert!(
        explained.contains("KIND:       CronJob") && explained.contains("FIELD: schedule <string>"),
        "{explained}"
    );
    let unknown = run(&["explain", "deployment.spec.nope"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("field \"nope\" does not exist"),
        "{}",
        text(&unknown.stderr)
    );

    // Generators of kinds that may not be served yet.
    ok(&["create", "namespace", "gen"]);
    ok(&[
        "-n",
        "gen",
        "create",
        "deployment",
        "web",
        &format!("--image={BUSYBOX_IMAGE}"),
    ]);
    assert_eq!(
        ok(&["-n", "gen", "create", "serviceaccount", "robot"]).trim(),
        "serviceaccount/robot created"
    );
    if is_served(&cp, "rbac.authorization.k8s.io/v1", "roles") {
        assert_eq!(
            ok(&[
                "-n",
                "gen",
                "create",
                "role",
                "reader",
                "--verb=get,list",
                "--resource=pods"
            ])
            .trim(),
            "role.rbac.authorization.k8s.io/reader created"
        );
    } else {
        refused(&[
            "-n",
            "gen",
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
        ]);
    }
    if is_served(&cp, "rbac.authorization.k8s.io/v1", "rolebindings") {
        assert_eq!(
            ok(&[
                "-n",
                "gen",
                "create",
                "rolebinding",
                "reader",
                "--role=reader",
                "--user=alice"
            ])
            .trim(),
            "rolebinding.rbac.authorization.k8s.io/reader created"
        );
    } else {
        refused(&[
            "-n",
            "gen",
            "create",
            "rolebinding",
            "reader",
            "--role=reader",
            "--user=alice",
        ]);
    }
    if is_served(&cp, "v1", "resourcequotas") {
        assert_eq!(
            ok(&["-n", "gen", "create", "quota", "small", "--hard=pods=10,cpu=4"]).trim(),
            "resourcequota/small created"
        );
    } else {
        refused(&["-n", "gen", "create", "quota", "small", "--hard=pods=10,cpu=4"]);
    }
    if is_served(&cp, "scheduling.k8s.io/v1", "priorityclasses") {
        assert_eq!(
            ok(&[
                "create",
                "priorityclass",
                "high",
                "--value=1000",
                "--description=important"
            ])
            .trim(),
            "priorityclass.scheduling.k8s.io/high created"
        );
    } else {
        refused(&[
            "create",
            "priorityclass",
            "high",
            "--value=1000",
            "--description=important",
        ]);
    }
    if is_served(&cp, "v1", "serviceaccounts/token") {
        let token = ok(&["-n", "gen", "create", "token", "robot"]);
        assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
    } else {
        refused(&["-n", "gen", "create", "token", "robot"]);
    }
    let autoscale = [
        "-n",
        "gen",
        "autoscale",
        "deployment",
        "web",
        "--min=1",
        "--max=3",
        "--cpu-percent=80",
    ];
    if is_served(&cp, "autoscaling/v2", "horizontalpodautoscalers")
        || is_served(&cp, "autoscaling/v1", "horizontalpodautoscalers")
    {
        assert_eq!(
            ok(&autoscale).trim(),
            "horizontalpodautoscaler.autoscaling/web autoscaled"
        );
    } else {
        refused(&autoscale);
    }
}
