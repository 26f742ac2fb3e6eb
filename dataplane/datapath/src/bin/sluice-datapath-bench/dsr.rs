//! NodePort to a backend on another node: source NAT against direct server
//! return (`--dsr-only`, `cargo xtask bench dataplane-dsr`).
//!
//! A client host and two nodes on a bridge, each node with its own datapath
//! on XDP with forwarding on (the wire's ends run a no-op XDP program so
//! XDP_TX'd frames reach it); one backend pod behind node 2. The client
//! opens TCP connections to node 1's NodePort and reads the backend's
//! greeting: one client thread (latency), then four at once (rate). SNAT and
//! DSR are switched on node 1's datapath and alternate, round by round, so
//! drift hits both alike. Node 1's own work per connection is counted from
//! its event counters (packets it translated).

use super::{answer_name, enter, greeting_us, in_ns, median, rate_and_percentiles, sh, wire_pod, Result};
use sluice_datapath::{Backend, Datapath, DatapathConfig, Event, PodEndpoint, Protocol, ServiceSpec};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENT: &str = "198.18.0.100";
const NODE1: &str = "198.18.0.1";
const NODE2: &str = "198.18.0.2";
const BACKEND: &str = "198.18.2.10";
const PORT: u16 = 8080;
const NODEPORT: u16 = 30080;

/// The namespaces and datapaths of the comparison; all removed on drop.
struct Bed {
    prefix: String,
    stop: Arc<AtomicBool>,
    // Uninstalled before the namespaces go.
    datapaths: Vec<Datapath>,
}

impl Bed {
    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn new() -> Result<Self> {
        let mut bed = Bed {
            prefix: format!("sld{}", std::process::id() % 10000),
            stop: Arc::new(AtomicBool::new(false)),
            datapaths: Vec::new(),
        };
        for n in ["wire", "client", "n1", "n2", "fb"] {
            sh(&["ip", "netns", "add", &bed.ns(n)])?;
            sh(&["ip", "-n", &bed.ns(n), "link", "set", "lo", "up"])?;
        }
        let wire = bed.ns("wire");
        sh(&["ip", "-n", &wire, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", &wire, "link", "set", "br0", "up"])?;
        for (host, addr) in [("client", CLIENT), ("n1", NODE1), ("n2", NODE2)] {
            let (ns, port) = (bed.ns(host), format!("p-{host}"));
            sh(&[
                "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &wire,
            ])?;
            in_ns(&ns, || sluice_datapath::checksum_in_software("eth0"))?;
            sh(&["ip", "-n", &wire, "link", "set", &port, "master", "br0", "up"])?;
            sh(&["ip", "-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        }
        for node in ["n1", "n2"] {
            sh(&[
                "ip",
                "netns",
                "exec",
                &bed.ns(node),
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.all.send_redirects=0",
            ])?;
        }
        sh(&["ip", "-n", &bed.ns("n1"), "route", "add", "198.18.2.0/24", "via", NODE2])?;
        // Tens of thousands of connections a run: without reusing ports in
        // TIME_WAIT the client runs out of them and connect() itself, not
        // the path, becomes what is measured.
        sh(&[
            "ip",
            "netns",
            "exec",
            &bed.ns("client"),
            "sysctl",
            "-qw",
            "net.ipv4.tcp_tw_reuse=1",
            "net.ipv4.ip_local_port_range=1024 65535",
        ])?;
        // The backend pod behind node 2, as sluice-cni wires one.
        let (fb, n2) = (bed.ns("fb"), bed.ns("n2"));
        wire_pod(&fb, &n2, "v-fb", BACKEND.parse()?)?;
        let stop = bed.stop.clone();
        let (tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            enter(&fb);
            let l = TcpListener::bind(("0.0.0.0", PORT)).expect("bind");
            l.set_nonblocking(true).expect("non-blocking listener");
            let _ = tx.send(());
            answer_name(&l, "fb", &stop, 100);
        });
        ready.recv()?;

        let pid = std::process::id();
        for (node, addr) in [("n1", NODE1), ("n2", NODE2)] {
            let ns = bed.ns(node);
            let root = format!("/sys/fs/bpf/sluice-bench-dsr-{pid}-{node}");
            let pod_mac = in_ns(&bed.ns("fb"), || sluice_datapath::interface_mac("eth0"))?;
            let mut dp = in_ns(&ns, || -> Result<Datapath> {
                let mut dp = Datapath::open_or_adopt(DatapathConfig::with_pin_root(root))?;
                dp.attach_external_interface("eth0", addr.parse()?)?;
                if node == "n2" {
                    dp.attach_pod_interface("v-fb")?;
                    dp.upsert_endpoint(&PodEndpoint::on_interface(BACKEND.parse()?, "v-fb", pod_mac)?)?;
                }
                Ok(dp)
            })
            .map_err(|e| e.to_string())?;
            in_ns(&wire, || dp.attach_pass(&format!("p-{node}"))).map_err(|e| e.to_string())?;
            let backend = Backend::new(BACKEND.parse()?, PORT);
            let backend = if node == "n2" { backend.local() } else { backend };
            dp.upsert_service(&ServiceSpec::node_port(NODEPORT, Protocol::Tcp, vec![backend]))?;
            bed.datapaths.push(dp);
        }
        Ok(bed)
    }

    /// Packets node 1 translated so far.
    fn node1_packets(&self) -> Result<u64> {
        let c = self.datapaths[0].counters()?;
        Ok([Event::NewFlow, Event::TrackedFlow, Event::ReverseNat]
            .iter()
            .map(|e| c.event(*e))
            .sum())
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for dp in self.datapaths.drain(..) {
            let _ = dp.uninstall();
        }
        std::thread::sleep(Duration::from_millis(150));
        for n in ["fb", "n2", "n1", "client", "wire"] {
            let _ = Command::new("ip").args(["netns", "delete", &self.ns(n)]).status();
        }
    }
}

/// Connections from `threads` client threads for `secs`, each connect →
/// greeting → close: (connections/s, p50 µs, p99 µs, connections).
fn connections(bed: &Bed, threads: usize, secs: f64) -> (f64, f64, f64, usize) {
    let to = SocketAddrV4::new(NODE1.parse::<Ipv4Addr>().expect("address"), NODEPORT);
    let client = bed.ns("client");
    let start = Instant::now();
    let lat: Vec<f64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let client = client.clone();
                s.spawn(move || {
                    enter(&client);
                    let mut lat = Vec::new();
                    while start.elapsed().as_secs_f64() < secs {
                        lat.extend(greeting_us(to));
                    }
                    lat
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    let n = lat.len();
    let (rate, p50, p99) = rate_and_percentiles(lat, start.elapsed().as_secs_f64());
    (rate, p50, p99, n)
}

/// One measured figure set of one mode.
struct Sample {
    dsr: bool,
    single: (f64, f64, f64),
    parallel: f64,
    node1_per_conn: f64,
}

/// The comparison, `rounds` rounds of `secs` per figure.
pub fn report(secs: f64, rounds: usize) -> Result<String> {
    let mut bed = Bed::new()?;
    let mut samples = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        for dsr in order {
            eprintln!(
                "==> NodePort to node 2's pod, {} (round {})",
                if dsr { "direct server return" } else { "source NAT" },
                round + 1
            );
            bed.datapaths[0].set_dsr(dsr)?;
            let before = bed.node1_packets()?;
            let single = connections(&bed, 1, secs);
            let parallel = connections(&bed, 4, secs);
            let conns = (single.3 + parallel.3).max(1) as f64;
            samples.push(Sample {
                dsr,
                single: (single.0, single.1, single.2),
                parallel: parallel.0,
                node1_per_conn: (bed.node1_packets()? - before) as f64 / conns,
            });
        }
    }
    let events = {
        let c = bed.datapaths[0].counters()?;
        let c2 = bed.datapaths[1].counters()?;
        (c.event(Event::DsrForward), c2.event(Event::DsrRecorded))
    };
    drop(bed);
    let mut out = format!(
        "## NodePort to a backend on another node: source NAT vs direct server return

A client host and two nodes on one bridge (veth), each node with its own datapath on XDP with forwarding on; one backend pod behind node 2; the client connects to node 1's NodePort and reads the backend's one-line greeting, then closes. Source NAT: node 1 translates both directions (the backend sees node 1). Direct server return: node 1 translates the client's packets only, the SYN carries the frontend to node 2 in an IPv4 option, node 2 answers the client itself (the backend sees the client). Switched on node 1's datapath, alternating, {rounds} rounds of {secs} s per figure; one client thread, then four. Over the run node 1 sent {} packets with the option and node 2 recorded {} flows.

| mode | conn/s (1 thread) | p50 µs | p99 µs | conn/s (4 threads) | packets node 1 translated per connection |
|---|---:|---:|---:|---:|---:|
",
        events.0, events.1
    );
    for s in &samples {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |\n",
            if s.dsr { "direct server return" } else { "source NAT" },
            s.single.0,
            s.single.1,
            s.single.2,
            s.parallel,
            s.node1_per_conn
        ));
    }
    let med = |dsr: bool, f: &dyn Fn(&Sample) -> f64| median(samples.iter().filter(|s| s.dsr == dsr).map(f));
    out.push_str(&format!(
        "\nMedians, direct server return ÷ source NAT: conn/s {:.3} (1 thread), {:.3} (4 threads); p50 {:.3}; packets node 1 translated per connection {:.2}. All of it shares the same 2 CPUs and one kernel: a reply that skips node 1 still costs node 2 and the bridge, so what DSR saves here is node 1's share, not the whole path.\n",
        med(true, &|s| s.single.0) / med(false, &|s| s.single.0),
        med(true, &|s| s.parallel) / med(false, &|s| s.parallel),
        med(true, &|s| s.single.1) / med(false, &|s| s.single.1),
        med(true, &|s| s.node1_per_conn) / med(false, &|s| s.node1_per_conn),
    ));
    Ok(out)
}
