//! `dns-pod-bench`: cluster DNS as a pod sees it, the in-cluster half of
//! `cargo xtask bench dns` (not a test).
//!
//! Starts a real one-node cluster with `xtask up` (the [`TestCluster`]
//! harness: own home, ports, bridge and namespaces) from the binaries next to
//! this one, creates N ClusterIP Services and a busybox pod, and runs dnsperf
//! inside the pod's network namespace (`nsenter --net=/proc/<pid>/ns/net`)
//! against the `kube-dns` Service address, so every query takes the path a
//! pod's resolver takes: the pod's veth, the eBPF Service translation in
//! `pod_ingress` and the node's DNS server, and back. The baseline, in the
//! same run, is the same server asked directly at the node's address from the
//! host (no Service translation). Prints a Markdown section on stdout.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use sluice_bench::dnsperf::{self, Target};
use sluice_tests::cluster::{wait_for, TestCluster, BUSYBOX_IMAGE};

#[derive(Parser)]
struct Args {
    /// ClusterIP Services to create (the test cluster's service CIDR is a /24).
    #[arg(long, default_value_t = 200)]
    services: usize,
    /// Seconds per dnsperf run.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Measurements per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// The fixed query rate of the latency runs.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Which build the binaries are (for the report).
    #[arg(long, default_value = "release")]
    profile: String,
}

fn services(n: usize) -> String {
    let mut yaml = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..n {
        let _ = writeln!(
            yaml,
            "- {{apiVersion: v1, kind: Service, metadata: {{name: svc-{i}}}, spec: {{ports: [{{name: http, port: 80}}]}}}}"
        );
    }
    yaml
}

/// The host pid of the first process of container `id`, from the node's containerd.
fn container_pid(cluster: &TestCluster, node: &str, id: &str) -> Result<u32> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(cluster.containerd_socket(node))
        .args(["-n", "k8s.io", "tasks", "ls"])
        .output()
        .context("running ctr tasks ls")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == id).then(|| f.next()?.parse().ok())?
        })
        .next()
        .with_context(|| format!("no task {id} in:\n{text}"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    eprintln!("==> starting a one-node cluster (xtask up)");
    let cluster = TestCluster::up(1, &[]);
    eprintln!("==> {} ClusterIP Services and a client pod", args.services);
    cluster.apply(&services(args.services));
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: dns-client, labels: {{app: dns-client}}}}\n\
         spec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  \
         - {{name: c, image: \"{BUSYBOX_IMAGE}\", command: [sleep, \"3600\"]}}\n"
    ));
    let pod = cluster
        .wait_running("app=dns-client", 1, Duration::from_secs(180))
        .remove(0);
    let node = pod.node.clone().context("pod bound")?;
    let pid = container_pid(&cluster, &node, pod.container_id.as_deref().context("container id")?)?;
    let dns_ip = cluster.kubectl_ok(&[
        "get",
        "svc",
        "-n",
        "kube-system",
        "kube-dns",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let dns_ip = dns_ip.trim().to_string();
    let last = format!("svc-{}.default.svc.cluster.local", args.services - 1);
    // The last Service created resolves from the pod: the server has it.
    let seen = wait_for(Duration::from_secs(60), || {
        let out = cluster.exec_in_pod(&pod, &["nslookup", &last, &dns_ip]);
        (out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Address")).then_some(())
    });
    if seen.is_none() {
        bail!("{last} never resolved from the pod via {dns_ip}");
    }

    let dir = cluster.home().join("dns-pod-bench");
    std::fs::create_dir_all(&dir)?;
    let queries = dir.join("queries");
    let mut text = String::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        writeln!(text, "svc-{}.default.svc.cluster.local A", x % args.services as u64)?;
    }
    std::fs::write(&queries, text)?;

    let in_pod = Target {
        server: SocketAddr::new(dns_ip.parse()?, 53),
        netns: Some(PathBuf::from(format!("/proc/{pid}/ns/net"))),
    };
    let direct = Target {
        server: SocketAddr::new(cluster.node_ip(1).parse()?, 53),
        netns: None,
    };
    eprintln!("==> dnsperf from the pod to {dns_ip}:53 and from the host to the node's server");
    let (mut pod_runs, mut host_runs) = (Vec::new(), Vec::new());
    for _ in 0..args.runs.max(1) {
        pod_runs.push(dnsperf::measure(&in_pod, &queries, args.seconds, args.rate)?);
        host_runs.push(dnsperf::measure(&direct, &queries, args.seconds, args.rate)?);
    }
    let mut pod_runs = pod_runs.into_iter();
    let from_pod = dnsperf::median_of(args.runs, || pod_runs.next().context("a run"))?;
    let mut host_runs = host_runs.into_iter();
    let from_host = dnsperf::median_of(args.runs, || host_runs.next().context("a run"))?;

    let mut report = format!(
        "\n## From inside a pod\n\n\
         A real one-node cluster (`xtask up`, {profile} binaries) with {n} ClusterIP Services; dnsperf \
         (4 clients, 200 outstanding; latency at a fixed {rate} q/s; median of {runs} runs) run in a \
         busybox pod's network namespace against the `kube-dns` Service ({dns_ip}), so each query \
         crosses the pod's veth, the eBPF Service translation and the node's DNS server. Baseline: the \
         same server asked at the node's address from the host, without the Service translation.\n\n\
         | path | QPS | vs direct | p50 µs | p99 µs | lost |\n| --- | --- | --- | --- | --- | --- |\n",
        profile = args.profile,
        n = args.services,
        rate = args.rate,
        runs = args.runs,
    );
    for (name, m) in [
        ("pod → kube-dns Service (eBPF)", &from_pod),
        ("host → node address (direct)", &from_host),
    ] {
        writeln!(
            report,
            "| {name} | {:.0} | {:.2}x | {:.0} | {:.0} | {} |",
            m.qps,
            m.qps / from_host.qps,
            m.p50_us,
            m.p99_us,
            m.lost
        )?;
    }
    print!("{report}");
    drop(cluster);
    Ok(())
}
