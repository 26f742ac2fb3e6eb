//! `cargo xtask down` leaves nothing behind, even with pods still terminating.
//!
//! A user runs pods on a one-node cluster, deletes them (each has a long
//! grace period and a process that ignores SIGTERM, so they are still
//! terminating) and at once runs `cargo xtask down`. Afterwards the machine
//! holds none of the cluster's things: no pod network namespace (`cni-…`)
//! and no node namespace, no link of the cluster, no eBPF pin under
//! `/sys/fs/bpf/sluice/<node>`, no mount under `$SLUICE_HOME`, and no process
//! of the cluster (control plane, registry, containerd, shims, noded,
//! containers); the data (registry storage included) is still there.
//!
//! Needs root. Build first: `cargo build --workspace --bins`.

use sluice_tests::cluster::{wait_for, TestCluster};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PODS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: stubborn}
spec:
  replicas: 2
  selector: {matchLabels: {app: stubborn}}
  template:
    metadata: {labels: {app: stubborn}}
    spec:
      terminationGracePeriodSeconds: 300
      containers:
      - {name: app, image: busybox, command: [sleep, '3600']}
"#;

/// Names of the link of the root network namespace.
fn links() -> BTreeSet<String> {
    let out = Command::new("ip").args(["-o", "link"]).output().expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// The pod sandboxes' network namespaces, from the node's containerd.
fn sandbox_netns(socket: &Path) -> BTreeSet<String> {
    let ctr = |args: &[&str]| {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("ctr");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut found = BTreeSet::new();
    for id in ctr(&["containers", "ls", "-q"]).lines() {
        let info = ctr(&["containers", "info", id]);
        for part in info.split('"') {
            if part.starts_with("/var/run/netns/cni-") {
                found.insert(part.to_string());
            }
        }
    }
    found
}

/// Host pids of the node's running tasks (pause and app containers).
fn task_pids(socket: &Path) -> Vec<u32> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["-n", "k8s.io", "tasks", "ls"])
        .output()
        .expect("ctr tasks ls");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .filter(|pid| *pid > 0)
        .collect()
}

/// Whether `pid` is a live (non-zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// Pids of live (non-zombie) processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

#[test]
fn down_with_pods_still_terminating_leaves_no_namespace_link_pin_mount_or_process() {
    let cluster = TestCluster::up(1, &[]);
    let node = cluster.node_name(1);
    let socket = cluster.containerd_socket(&node);
    cluster.apply(PODS);
    // Sandboxes (with their network namespaces) exist once the pods have addresses.
    wait_for(Duration::from_secs(120), || {
        let pods = cluster.pods("app=stubborn");
        (pods.len() == 2 && pods.iter().all(|p| p.ip.is_some())).then_some(())
    })
    .unwrap_or_else(|| panic!("two pods with addresses: {:#?}", cluster.pods("app=stubborn")));
    let netns = sandbox_netns(&socket);
    assert_eq!(netns.len(), 2, "one network namespace per pod sandbox: {netns:?}");
    let containerd_pid = cluster.pid(&format!("{node}-containerd")).expect("containerd pid");
    let shims: Vec<u32> = processes_mentioning(&socket.parent().unwrap().display().to_string())
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| *pid != containerd_pid)
        .collect();
    assert!(!shims.is_empty(), "the pods' shims run");
    let containers = task_pids(&socket);
    assert!(
        containers.len() >= 2,
        "the pods' sandboxes (at least) run: {containers:?}"
    );

    cluster.kubectl_ok(&["delete", "deployment", "stubborn", "--wait=false"]);
    cluster.kubectl_ok(&["delete", "pods", "-l", "app=stubborn", "--wait=false"]);
    let terminating = cluster.pods("app=stubborn").iter().filter(|p| p.terminating).count();
    eprintln!("{terminating} pod(s) terminating when `xtask down` runs");
    let down = cluster.down();
    eprintln!("{}", String::from_utf8_lossy(&down.stderr));

    let left: Vec<&String> = netns.iter().filter(|p| Path::new(p).exists()).collect();
    assert!(left.is_empty(), "pod network namespaces left: {left:?}");
    let namespaces =
        String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned();
    assert!(
        !namespaces.contains(&cluster.prefix),
        "namespaces of the cluster left: {namespaces}"
    );
    let ours: Vec<String> = links().into_iter().filter(|l| l.starts_with(&cluster.prefix)).collect();
    assert!(ours.is_empty(), "links left: {ours:?}");
    let pins = Path::new("/sys/fs/bpf/sluice").join(&node);
    assert!(!pins.exists(), "{} left", pins.display());
    let home = cluster.home().display().to_string();
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&home))
        .map(str::to_owned)
        .collect();
    assert!(mounts.is_empty(), "mounts under {home} left: {mounts:?}");
    let processes = processes_mentioning(&home);
    assert!(processes.is_empty(), "processes of the cluster left: {processes:?}");
    let survivors: Vec<u32> = shims.into_iter().chain(containers).filter(|pid| alive(*pid)).collect();
    assert!(survivors.is_empty(), "shims or container processes left: {survivors:?}");
    assert!(
        cluster.home().join("registry").join("storage").is_dir(),
        "the registry's storage is kept by `down`"
    );
}
