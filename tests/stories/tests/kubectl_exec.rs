//! A user works inside a running pod with kubectl and with a kube-rs
//! program, through the API server and the node daemon to containerd.
//!
//! `cargo xtask up --nodes 1`, then one busybox pod `shell` serving a page
//! with `httpd` on port 8080. The user:
//! * `kubectl exec shell -- echo hi` sees `hi`; `sh -c 'exit 3'` makes
//!   kubectl exit 3 ("command terminated with exit code 3");
//! * is told `container nope is not valid for pod shell` for a wrong `-c`;
//! * sees stdout and stderr apart (`echo out; echo err >&2`);
//! * pipes bytes into `kubectl exec -i shell -- cat` (and 100 KiB into
//!   `wc -c`): the command ends when stdin does;
//! * gets a terminal with `kubectl exec -it shell -- tty` (`/dev/pts/...`,
//!   kubectl run under `script` to have one);
//! * attaches to a second pod reading its stdin (`kubectl attach -i`);
//! * copies a file into the pod and back with `kubectl cp`: same bytes;
//! * `kubectl port-forward pod/shell <port>:8080` and `curl` on loopback get
//!   the page;
//! * does it again as older clients do, over SPDY/3.1 (kubectl with
//!   `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`, `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`);
//! * does the same from kube-rs (`Api::<Pod>::exec`, WebSocket v5: output,
//!   the exit code in the Status, stdin closed by shutting the writer; and
//!   `Api::<Pod>::portforward`);
//! * resizes a kube-rs exec terminal (v5 channel 4): `stty size` in the
//!   container sees the new rows and columns;
//! * debugs the pod with `kubectl debug -it shell --image=busybox
//!   --target=main -- sh -c ...` (an ephemeral container in the running
//!   sandbox, in `main`'s process namespace): sees its output, then the
//!   pod's `ephemeralContainerStatuses` shows it terminated; an ephemeral
//!   container with `ports` gets the subresource's 422.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::SinkExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, Patch, PatchParams, TerminalSize};
use sluice_tests::cluster::{TestCluster, BUSYBOX_IMAGE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAGE: &str = "hello-from-the-pod";

/// Run kubectl with `stdin` fed to it; killed after 60 s so a hang fails the story.
fn kubectl_with_input(cluster: &TestCluster, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new("timeout")
        .arg("60")
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
        // Dropping `input` closes kubectl's stdin.
    });
    let out = child.wait_with_output().expect("kubectl output");
    writer.join().expect("stdin writer");
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn kubectl_and_kube_rs_exec_cp_and_port_forward_into_a_pod() {
    let cluster = TestCluster::up(1, &[]);
    cluster.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: shell
  labels: {{app: shell}}
spec:
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo {PAGE} > /www/index.html && httpd -p 8080 -h /www && exec sleep 3600"]
    ports:
    - containerPort: 8080
"#
    ));
    cluster.wait_running("app=shell", 1, Duration::from_secs(120));

    // Output and exit codes.
    let out = cluster.kubectl(&["exec", "shell", "--", "echo", "hi"]);
    assert!(out.status.success(), "exec echo: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    let out = cluster.kubectl(&["exec", "shell", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "exit code; stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("command terminated with exit code 3"),
        "{}",
        text(&out.stderr)
    );

    // A container the pod does not have: the API server's 400, as Kubernetes words it.
    let out = cluster.kubectl(&["exec", "shell", "-c", "nope", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("container nope is not valid for pod shell"),
        "{}",
        text(&out.stderr)
    );

    // stdout and stderr stay apart.
    let out = cluster.kubectl(&["exec", "shell", "--", "sh", "-c", "echo out; echo err >&2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err"), "stderr: {}", text(&out.stderr));

    // stdin, closed when the pipe ends.
    let out = kubectl_with_input(&cluster, &["exec", "-i", "shell", "--", "cat"], b"piped line\nsecond\n");
    assert!(
        out.status.success(),
        "exec -i cat: {:?} {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "piped line\nsecond\n");
    let big = vec![b'x'; 100 * 1024];
    let out = kubectl_with_input(&cluster, &["exec", "-i", "shell", "--", "wc", "-c"], &big);
    assert!(
        out.status.success(),
        "exec -i wc: {:?} {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), "102400");

    // A terminal. kubectl must stay in the terminal's foreground process
    // group to put it in raw mode (a background group is stopped by SIGTTOU),
    // so `timeout` runs it with --foreground whatever shell `script` starts.
    let tty_cmd = format!(
        "timeout --foreground 60 kubectl --kubeconfig {} exec -it shell -- tty",
        cluster.kubeconfig().display()
    );
    let out = Command::new("script")
        .env("SHELL", "/bin/sh")
        .args(["-qec", &tty_cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .output()
        .expect("run script");
    assert!(
        text(&out.stdout).contains("/dev/pts/"),
        "exec -it tty: {:?} {} {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );

    // kubectl cp both ways (tar over exec).
    let dir = tempfile::tempdir().expect("temp dir");
    let local = dir.path().join("payload.bin");
    let payload: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&local, &payload).expect("write payload");
    cluster.kubectl_ok(&["cp", &local.display().to_string(), "shell:/tmp/payload.bin"]);
    let back = dir.path().join("back.bin");
    cluster.kubectl_ok(&["cp", "shell:/tmp/payload.bin", &back.display().to_string()]);
    assert!(
        std::fs::read(&back).expect("copied back") == payload,
        "kubectl cp changed the bytes"
    );

    // kubectl port-forward, then curl on loopback.
    let port = sluice_tests::free_port();
    let mut forward = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["port-forward", "pod/shell", &format!("{port}:8080")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl port-forward");
    let mut lines = BufReader::new(forward.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let page = if first.contains("Forwarding from") {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", &format!("http://127.0.0.1:{port}/")])
            .output()
            .expect("run curl")
    } else {
        let _ = forward.kill();
        let out = forward.wait_with_output().expect("port-forward output");
        panic!("kubectl port-forward did not start: {first} {}", text(&out.stderr));
    };
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(
        text(&page.stdout).trim(),
        PAGE,
        "curl through port-forward: {}",
        text(&page.stderr)
    );

    // kubectl attach to a container that reads its stdin: one line in, one out, and it exits.
    cluster.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: echoer
  labels: {{app: echoer}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    stdin: true
    command: ["sh", "-c", "read line; echo \"got $line\""]
"#
    ));
    cluster.wait_running("app=echoer", 1, Duration::from_secs(120));
    // stdin stays open (closing it would end the attach session, racing the answer).
    let mut attach = Command::new("timeout")
        .arg("60")
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["attach", "-i", "echoer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run kubectl attach");
    let mut input = attach.stdin.take().expect("stdin");
    let mut output = attach.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut output, &mut text);
        text
    });
    input.write_all(b"hello\n").expect("write to attach");
    let status = attach.wait().expect("kubectl attach ends when the container exits");
    drop(input);
    let seen = reader.join().expect("attach output");
    assert!(seen.contains("got hello"), "attach: {status:?} {seen}");

    // Older clients speak SPDY/3.1 (kubectl's own fallback when WebSockets are off).
    let spdy = |args: &[&str], input: &[u8]| {
        let mut child = Command::new("timeout")
            .arg("60")
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(args)
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write stdin");
        drop(stdin);
        child.wait_with_output().expect("kubectl output")
    };
    let out = spdy(
        &["exec", "shell", "--", "sh", "-c", "echo spdy; echo oops >&2; exit 3"],
        b"",
    );
    assert_eq!(out.status.code(), Some(3), "SPDY exec: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "spdy\n");
    assert!(text(&out.stderr).contains("oops"), "{}", text(&out.stderr));
    let out = spdy(&["exec", "-i", "shell", "--", "cat"], b"over spdy\n");
    assert!(out.status.success(), "SPDY exec -i: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "over spdy\n");
    let port = sluice_tests::free_port();
    let mut forward = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["port-forward", "pod/shell", &format!("{port}:8080")])
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run kubectl port-forward");
    let mut lines = BufReader::new(forward.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let page = Command::new("curl")
        .args(["-sS", "--max-time", "20", &format!("http://127.0.0.1:{port}/")])
        .output()
        .expect("run curl");
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(first.contains("Forwarding from"), "SPDY port-forward: {first}");
    assert_eq!(
        text(&page.stdout).trim(),
        PAGE,
        "curl through SPDY port-forward: {}",
        text(&page.stderr)
    );

    // The same through kube-rs.
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(cluster.kubeconfig()).expect("kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("kube config");
        let client = kube::Client::try_from(config).expect("kube client");
        let pods: Api<Pod> = Api::default_namespaced(client);

        let mut proc = pods
            .exec(
                "shell",
                ["sh", "-c", "echo from-kube-rs; exit 3"],
                &AttachParams::default().stdout(true).stderr(true),
            )
            .await
            .expect("kube-rs exec");
        let mut stdout = String::new();
        proc.stdout()
            .expect("stdout")
            .read_to_string(&mut stdout)
            .await
            .expect("read stdout");
        let status = proc.take_status().expect("status").await.expect("a Status");
        assert_eq!(stdout, "from-kube-rs\n");
        assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"), "{status:?}");
        let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
        assert_eq!(causes[0].reason.as_deref(), Some("ExitCode"));
        assert_eq!(causes[0].message.as_deref(), Some("3"));

        let mut proc = pods
            .exec(
                "shell",
                ["cat"],
                &AttachParams::default().stdin(true).stdout(true).stderr(false),
            )
            .await
            .expect("kube-rs exec cat");
        let mut stdin = proc.stdin().expect("stdin");
        stdin.write_all(b"through kube-rs\n").await.expect("write stdin");
        // End of stdin: kube-rs sends v5's CLOSE signal for channel 0.
        stdin.shutdown().await.expect("close stdin");
        drop(stdin);
        let mut echoed = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            proc.stdout().expect("stdout").read_to_string(&mut echoed),
        )
        .await
        .expect("cat ends when kube-rs closes stdin")
        .expect("read stdout");
        assert_eq!(echoed, "through kube-rs\n");
        let status = proc.take_status().expect("status").await.expect("a Status");
        assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");

        let mut pf = pods.portforward("shell", &[8080]).await.expect("kube-rs portforward");
        let mut stream = pf.take_stream(8080).expect("port stream");
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: shell\r\n\r\n")
            .await
            .expect("send request");
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut response))
            .await
            .expect("the page arrives")
            .expect("read response");
        assert!(response.starts_with("HTTP/1."), "{response}");
        assert!(response.contains(PAGE), "{response}");
        drop(stream);
        pf.abort();

        // A terminal resized from kube-rs: the size reaches the container (v5 channel 4).
        let mut proc = pods
            .exec(
                "shell",
                ["sh", "-c", "sleep 2; stty size"],
                &AttachParams::interactive_tty(),
            )
            .await
            .expect("kube-rs exec with a tty");
        let mut resize = proc.terminal_size().expect("terminal size sender");
        resize
            .send(TerminalSize { width: 123, height: 45 })
            .await
            .expect("send the new size");
        let mut seen = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            proc.stdout().expect("stdout").read_to_string(&mut seen),
        )
        .await
        .expect("stty ends")
        .expect("read stdout");
        assert_eq!(seen.trim(), "45 123", "stty size after the resize");
    });

    // kubectl debug: an ephemeral container in the running pod, in main's process namespace.
    let debug_cmd = format!(
        "timeout --foreground 90 kubectl --kubeconfig {} debug -it shell --image={BUSYBOX_IMAGE} --target=main -c debugger \
         -- sh -c 'sleep 3; echo debug-says-hi; ps'",
        cluster.kubeconfig().display()
    );
    let out = Command::new("script")
        .env("SHELL", "/bin/sh")
        .args(["-qec", &debug_cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .output()
        .expect("run script");
    let shown = text(&out.stdout);
    assert!(
        shown.contains("debug-says-hi"),
        "kubectl debug: {:?} {shown} {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        shown.contains("sleep 3600"),
        "the debugger sees main's processes: {shown}"
    );
    let mut terminated = String::new();
    for _ in 0..60 {
        let out = cluster.kubectl(&[
            "get",
            "pod",
            "shell",
            "-o",
            "jsonpath={.status.ephemeralContainerStatuses[?(@.name==\"debugger\")].state.terminated.reason}",
        ]);
        terminated = text(&out.stdout);
        if terminated == "Completed" {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(terminated, "Completed", "the debugger's status once it exited");
    // Without shareProcessNamespace each container has its own process
    // namespace, as the kubelet asks: PID 1 in main is main's own command,
    // not the sandbox's pause process (the debugger above joined it by target).
    let out = cluster.kubectl(&["exec", "shell", "-c", "main", "--", "cat", "/proc/1/cmdline"]);
    let pid1 = text(&out.stdout).replace('\0', " ");
    assert!(pid1.starts_with("sleep 3600"), "PID 1 in main: {pid1:?}");

    // The subresource as an API: read, and a refused ephemeral container.
    rt.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(cluster.kubeconfig()).expect("kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("kube config");
        let pods: Api<Pod> = Api::default_namespaced(kube::Client::try_from(config).expect("kube client"));
        let pod = pods
            .get_subresource("ephemeralcontainers", "shell")
            .await
            .expect("GET pods/shell/ephemeralcontainers");
        let names: Vec<String> = pod
            .spec
            .and_then(|s| s.ephemeral_containers)
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["debugger"]);
        let bad = serde_json::json!({"spec": {"ephemeralContainers": [
            {"name": "with-ports", "image": BUSYBOX_IMAGE, "ports": [{"containerPort": 80}]}]}});
        match pods
            .patch_subresource(
                "ephemeralcontainers",
                "shell",
                &PatchParams::default(),
                &Patch::Strategic(&bad),
            )
            .await
        {
            Err(kube::Error::Api(status)) => {
                assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"), "{status:?}");
                assert!(
                    status.message.contains(
                        "spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container"
                    ),
                    "{}",
                    status.message
                );
            }
            other => panic!("an ephemeral container with ports was not refused: {other:?}"),
        }
    });
}
