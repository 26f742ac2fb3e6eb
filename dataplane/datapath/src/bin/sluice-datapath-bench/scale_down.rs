//! Scale-down loss under load (`--scale-down-only`, `cargo xtask bench
//! scale-down`): how many requests fail when a Service loses 4 of its 5
//! pods while clients keep connecting, with kube-proxy-style iptables and
//! with Sluice, each in Kubernetes' order (SIGTERM at once, the balancing
//! node learns it later) and Sluice in its own (terminating first, SIGTERM
//! after the endpoint drain delay).
//!
//! Every round runs on a fresh [`Bed`] with the 1,000 background Services of
//! the data plane benchmark programmed, plus one Service `SD_VIP`:80 → the
//! backend pods b0..b4 on port `SD_PORT` (the bed's own servers on
//! `TCP_PORT` are left alone). Per backend a TCP server thread with its own
//! stop flag answers each connection with its name and closes it; "SIGTERM"
//! is that server closing its listener (connections still in the backlog are
//! reset, new SYNs refused), as busybox httpd exiting does.

use super::{answer_name, backend_ip, enter, iptables_rules, median, program, sh_stdin, Bed, Mode, Result};
use sluice_datapath::{Backend, Datapath, Frontend, ServiceSpec};
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The Service's ClusterIP (outside the 1,000 background VIPs of `vip`).
const SD_VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 1);
/// The backends' port for this Service.
const SD_PORT: u16 = 8081;
/// Backends before the scale-down (b0..b4) and after it (b0).
const BEFORE: usize = 5;
const AFTER: usize = 1;
/// Client threads in the client pod.
const CLIENTS: usize = 4;
/// Services of the background (as the data plane benchmark's middle size).
const BACKGROUND: usize = 1000;
/// noded's default `--endpoint-drain-delay-ms`.
const DRAIN_DELAY_MS: u64 = 1000;
/// kube-proxy's chains for the Service (names in its style).
const SVC_CHAIN: &str = "KUBE-SVC-SCALEDOWN";
/// Load before the scale-down and after the scale-up.
const EDGE: Duration = Duration::from_millis(500);

/// Which system balances, and in which order a pod's removal happens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum System {
    /// kube-proxy-style iptables, Kubernetes' order: SIGTERM at t0, the
    /// node's rules rewritten (partial sync) at t0 + P.
    Iptables,
    /// Sluice's datapath in Kubernetes' order (drain off): SIGTERM at t0,
    /// the backends marked terminating at t0 + P.
    SluiceK8sOrder,
    /// Sluice in its order (drain on): terminating at t0 + P, SIGTERM at t0 + D.
    SluiceDrain,
}

impl System {
    const ALL: [System; 3] = [System::Iptables, System::SluiceK8sOrder, System::SluiceDrain];

    fn name(self) -> &'static str {
        match self {
            System::Iptables => "iptables (kube-proxy chains), Kubernetes' order",
            System::SluiceK8sOrder => "Sluice, Kubernetes' order (drain off)",
            System::SluiceDrain => "Sluice, its order (drain on)",
        }
    }
}

/// One backend's server on [`SD_PORT`]: its own thread and stop flag.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind a listener in `ns` and answer `name` to every connection.
    fn start(ns: String, name: String) -> Result<Server> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, ready) = std::sync::mpsc::channel::<std::result::Result<(), String>>();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let l = match TcpListener::bind(("0.0.0.0", SD_PORT)).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(format!("{name}: bind {SD_PORT}: {e}")));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            // The stop flag is looked at every 5 ms: "SIGTERM" takes effect at once.
            answer_name(&l, &name, &flag, 5);
            // The listener is dropped here: the process has exited.
        });
        ready.recv()??;
        Ok(Server {
            stop,
            thread: Some(thread),
        })
    }

    /// Ask the server to stop (it closes its listener within 5 ms).
    fn signal(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Wait until the listener is closed.
    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal();
        self.join();
    }
}

/// "SIGTERM" to several servers at once: all flags first, then the waits.
fn stop_all(servers: &mut [Option<Server>]) {
    for s in servers.iter().flatten() {
        s.signal();
    }
    for s in servers.iter_mut() {
        if let Some(mut s) = s.take() {
            s.join();
        }
    }
}

/// How one request ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Answered,
    /// connect(): ECONNREFUSED (the SYN met a closed port).
    Refused,
    /// Connected, then reset or closed without an answer.
    Reset,
    /// No connection within 1 s or no answer within 2 s.
    Timeout,
    /// Anything else (unreachable, ...).
    Other,
}

/// connect (1 s), read one line (2 s), close.
fn request(to: &SocketAddr) -> (Outcome, Option<String>) {
    let s = match TcpStream::connect_timeout(to, Duration::from_secs(1)) {
        Ok(s) => s,
        Err(e) => {
            let o = match e.kind() {
                ErrorKind::ConnectionRefused => Outcome::Refused,
                ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::Timeout,
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Outcome::Reset,
                _ => Outcome::Other,
            };
            return (o, Some(format!("connect: {e}")));
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut line = String::new();
    match BufReader::new(&s).read_line(&mut line) {
        Ok(_) if line.starts_with('b') => (Outcome::Answered, None),
        Ok(0) => (Outcome::Reset, Some("read: closed without an answer".into())),
        Ok(_) => (Outcome::Other, Some(format!("read: unexpected answer {line:?}"))),
        Err(e) => {
            let o = match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::Timeout,
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Outcome::Reset,
                _ => Outcome::Other,
            };
            (o, Some(format!("read: {e}")))
        }
    }
}

/// Requests and their failures, from all client threads.
#[derive(Default)]
struct Tally {
    answered: u64,
    /// (when the request started, how it failed, what the socket said)
    failures: Vec<(Instant, Outcome, String)>,
}

/// The clients: [`CLIENTS`] threads in the client pod, each looping over
/// [`request`] to the Service until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(ns: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let threads = (0..CLIENTS)
            .map(|_| {
                let (ns, stop, tally) = (ns.to_string(), stop.clone(), tally.clone());
                std::thread::spawn(move || {
                    enter(&ns);
                    let to = SocketAddr::V4(SocketAddrV4::new(SD_VIP, 80));
                    let mut answered = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        match request(&to) {
                            (Outcome::Answered, _) => answered += 1,
                            (o, why) => tally.lock().unwrap().failures.push((t, o, why.unwrap_or_default())),
                        }
                    }
                    tally.lock().unwrap().answered += answered;
                })
            })
            .collect();
        Load { stop, tally, threads }
    }

    /// Stop the clients (each ends its request in flight) and return the tally.
    fn finish(mut self) -> Tally {
        self.join();
        std::mem::take(&mut *self.tally.lock().unwrap())
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.join();
    }
}

/// What balances the Service on the node.
enum Balancer {
    /// kube-proxy-style chains; the backends of the Service as last written.
    Iptables { node: String, rules: Vec<usize> },
    /// Sluice's datapath (uninstalled on drop).
    Sluice(Option<Box<Datapath>>),
}

impl Balancer {
    /// The 1,000 background Services, then this Service with b0..b4.
    fn install(bed: &Bed, system: System, root: &str) -> Result<Balancer> {
        let mut b = match system {
            System::Iptables => {
                program(bed, Mode::Iptables, BACKGROUND, root)?;
                Balancer::Iptables {
                    node: bed.ns("node"),
                    rules: Vec::new(),
                }
            }
            System::SluiceK8sOrder | System::SluiceDrain => {
                let (_, dp) = program(bed, Mode::Sluice, BACKGROUND, root)?;
                Balancer::Sluice(Some(Box::new(dp.ok_or("the data plane was not installed")?)))
            }
        };
        let all: Vec<(usize, bool)> = (0..BEFORE).map(|j| (j, false)).collect();
        b.set(&all)?;
        Ok(b)
    }

    /// Program the Service's backends (index, terminating); returns how
    /// long the update took (ms). iptables has no terminating backends for
    /// a ClusterIP with ready ones: kube-proxy leaves them out.
    fn set(&mut self, backends: &[(usize, bool)]) -> Result<f64> {
        match self {
            Balancer::Iptables { node, rules } => {
                let serving: Vec<usize> = backends.iter().filter(|b| !b.1).map(|b| b.0).collect();
                let input = partial_sync(&serving, rules);
                let t = Instant::now();
                sh_stdin(
                    &["ip", "netns", "exec", node.as_str(), "iptables-restore", "--noflush"],
                    &input,
                )?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                *rules = serving;
                Ok(ms)
            }
            Balancer::Sluice(dp) => {
                let dp = dp.as_mut().ok_or("the data plane is gone")?;
                let list = backends
                    .iter()
                    .map(|&(j, terminating)| Backend {
                        terminating,
                        ..Backend::new(backend_ip(j), SD_PORT).local()
                    })
                    .collect();
                let spec = ServiceSpec::cluster_ip(Frontend::tcp(SD_VIP, 80), list);
                let t = Instant::now();
                dp.upsert_service(&spec)?;
                Ok(t.elapsed().as_secs_f64() * 1e3)
            }
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Balancer::Sluice(dp) = self {
            if let Some(dp) = dp.take() {
                if let Err(e) = (*dp).uninstall() {
                    eprintln!("==> uninstalling the data plane failed: {e}");
                }
            }
        }
    }
}

/// The `iptables-restore --noflush` input of a kube-proxy partial sync
/// (KEP-3453, `MinimizeIPTablesRestore`) after this Service's endpoints
/// changed from `before` to `serving`: the top-level chains are rewritten
/// whole as in every sync (KUBE-SERVICES with every Service's jump), this
/// Service's chains re-declared (which flushes them) and refilled, the
/// endpoint chains that left declared and deleted; the chains of the
/// other Services are not in the input and stay as they are.
fn partial_sync(serving: &[usize], before: &[usize]) -> String {
    const TOP: [&str; 4] = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-MARK-MASQ", "KUBE-POSTROUTING"];
    let sep = |j: usize| format!("KUBE-SEP-SCALEDOWN-{j}");
    let mut chains = String::from("*nat\n");
    let mut rules = String::new();
    for c in TOP {
        chains.push_str(&format!(":{c} - [0:0]\n"));
    }
    // The background's top-level rules, as the full restore wrote them
    // (their order within each chain kept), with this Service's jump before
    // the NodePort catch-all at the end of KUBE-SERVICES.
    let jump = format!("-A KUBE-SERVICES -d {SD_VIP}/32 -p tcp --dport 80 -j {SVC_CHAIN}\n");
    for line in iptables_rules(BACKGROUND).lines() {
        if !TOP.iter().any(|c| line.starts_with(&format!("-A {c} "))) {
            continue;
        }
        if line.starts_with("-A KUBE-SERVICES -m addrtype") && !serving.is_empty() {
            rules.push_str(&jump);
        }
        rules.push_str(line);
        rules.push('\n');
    }
    chains.push_str(&format!(":{SVC_CHAIN} - [0:0]\n"));
    for (k, &j) in serving.iter().enumerate() {
        chains.push_str(&format!(":{} - [0:0]\n", sep(j)));
        if k + 1 < serving.len() {
            rules.push_str(&format!(
                "-A {SVC_CHAIN} -m statistic --mode random --probability {:.5} -j {}\n",
                1.0 / (serving.len() - k) as f64,
                sep(j)
            ));
        } else {
            rules.push_str(&format!("-A {SVC_CHAIN} -j {}\n", sep(j)));
        }
        rules.push_str(&format!(
            "-A {} -p tcp -j DNAT --to-destination {}:{SD_PORT}\n",
            sep(j),
            backend_ip(j)
        ));
    }
    for &j in before.iter().filter(|j| !serving.contains(j)) {
        chains.push_str(&format!(":{} - [0:0]\n", sep(j)));
        rules.push_str(&format!("-X {}\n", sep(j)));
    }
    chains + &rules + "COMMIT\n"
}

/// One round's figures.
struct Round {
    answered: u64,
    refused: u64,
    reset: u64,
    timeout: u64,
    other: u64,
    /// When the balancing node stopped sending new flows to the removed
    /// backends (ms after t0: the update's end).
    out_at_ms: f64,
    /// That update's own time (iptables-restore, or upsert_service).
    remove_ms: f64,
    /// The scale-up's update time.
    add_ms: f64,
    /// First and last failed request (start, ms after t0).
    failures_ms: Option<(f64, f64)>,
    /// The first failure of each kind: what the socket said.
    examples: Vec<String>,
}

impl Round {
    fn failed(&self) -> u64 {
        self.refused + self.reset + self.timeout + self.other
    }
}

/// What happens to the removed pods and when (ms after t0).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// SIGTERM: their servers close their listeners.
    Stop,
    /// The balancing node marks them terminating (Sluice) or, for
    /// iptables, rewrites the Service's chains without them.
    Learn,
    /// They leave the Service (the pods are gone; Sluice only).
    Remove,
}

/// The steps of `system`'s scale-down, by time (ms after t0).
fn schedule(system: System, p: u64, d: u64) -> Vec<(u64, Step)> {
    let gone = p.max(d) + 500;
    let mut steps = match system {
        System::Iptables => vec![(0, Step::Stop), (p, Step::Learn)],
        System::SluiceK8sOrder => vec![(0, Step::Stop), (p, Step::Learn), (gone, Step::Remove)],
        System::SluiceDrain => vec![(p, Step::Learn), (d, Step::Stop), (gone, Step::Remove)],
    };
    steps.sort_by_key(|s| s.0);
    steps
}

/// When the removed pods come back (ms after t0): 2.5 s, later if P or D
/// need it.
fn scale_up_at(p: u64, d: u64) -> u64 {
    2500.max(p.max(d) + 1000)
}

fn sleep_until(t: Instant) {
    if let Some(left) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// One round of `system` on a fresh bed.
fn round(system: System, p: u64, d: u64) -> Result<Round> {
    let bed = Bed::new("sd")?;
    let root = format!("/sys/fs/bpf/sluice-bench-sd-{}", std::process::id());
    let mut servers: Vec<Option<Server>> = Vec::new();
    for j in 0..BEFORE {
        servers.push(Some(Server::start(bed.ns(&format!("b{j}")), format!("b{j}"))?));
    }
    let mut lb = Balancer::install(&bed, system, &root)?;
    let load = Load::start(&bed.ns("pod"));
    std::thread::sleep(EDGE);
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let since_t0 = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1e3;
    let kept: Vec<(usize, bool)> = (0..AFTER).map(|j| (j, false)).collect();
    let mut marked = kept.clone();
    marked.extend((AFTER..BEFORE).map(|j| (j, true)));
    let (mut out_at_ms, mut remove_ms) = (f64::NAN, f64::NAN);
    for (ms, step) in schedule(system, p, d) {
        sleep_until(at(ms));
        match step {
            Step::Stop => stop_all(&mut servers[AFTER..]),
            Step::Learn => {
                remove_ms = lb.set(if system == System::Iptables { &kept } else { &marked })?;
                out_at_ms = since_t0(Instant::now());
            }
            Step::Remove => {
                lb.set(&kept)?;
            }
        }
    }
    // Scale back up as readiness would: the servers first, then the Service.
    sleep_until(at(scale_up_at(p, d)));
    for (j, s) in servers.iter_mut().enumerate().skip(AFTER) {
        *s = Some(Server::start(bed.ns(&format!("b{j}")), format!("b{j}"))?);
    }
    let all: Vec<(usize, bool)> = (0..BEFORE).map(|j| (j, false)).collect();
    let add_ms = lb.set(&all)?;
    std::thread::sleep(EDGE);
    let tally = load.finish();
    drop(servers);
    drop(lb);
    drop(bed);
    let count = |o: Outcome| tally.failures.iter().filter(|f| f.1 == o).count() as u64;
    let signed = |t: Instant| {
        if t >= t0 {
            since_t0(t)
        } else {
            -(t0 - t).as_secs_f64() * 1e3
        }
    };
    let mut examples: Vec<String> = Vec::new();
    for o in [Outcome::Refused, Outcome::Reset, Outcome::Timeout, Outcome::Other] {
        if let Some(f) = tally.failures.iter().find(|f| f.1 == o) {
            examples.push(format!("{o:?} at {:.0} ms: {}", signed(f.0), f.2));
        }
    }
    let failures_ms = tally
        .failures
        .iter()
        .map(|f| signed(f.0))
        .fold(None, |acc, ms| match acc {
            None => Some((ms, ms)),
            Some((lo, hi)) => Some((f64::min(lo, ms), f64::max(hi, ms))),
        });
    Ok(Round {
        answered: tally.answered,
        refused: count(Outcome::Refused),
        reset: count(Outcome::Reset),
        timeout: count(Outcome::Timeout),
        other: count(Outcome::Other),
        out_at_ms,
        remove_ms,
        add_ms,
        failures_ms,
        examples,
    })
}

/// `--propagation-ms N` or `--propagation-ms=N` (default 200).
pub fn propagation_ms() -> Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    for (i, a) in args.iter().enumerate() {
        let v = if a == "--propagation-ms" {
            args.get(i + 1).cloned()
        } else if let Some(v) = a.strip_prefix("--propagation-ms=") {
            Some(v.to_string())
        } else {
            continue;
        };
        return Ok(v.ok_or("--propagation-ms needs a value")?.parse()?);
    }
    Ok(200)
}

/// The scale-down section: `rounds` rounds of each system (systems rotated
/// per round, each round on a fresh bed); `p` is the propagation delay (ms).
pub fn report(rounds: usize, p: u64) -> Result<String> {
    let d = DRAIN_DELAY_MS;
    let mut results: Vec<(System, Vec<Round>)> = System::ALL.iter().map(|s| (*s, Vec::new())).collect();
    for r in 0..rounds {
        for k in 0..System::ALL.len() {
            let i = (r + k) % System::ALL.len();
            let system = System::ALL[i];
            eprintln!("==> scale-down: {} (round {})", system.name(), r + 1);
            let got = round(system, p, d)?;
            eprintln!(
                "    answered {}, failed {} (refused {}, reset {}, timeout {}, other {}){}",
                got.answered,
                got.failed(),
                got.refused,
                got.reset,
                got.timeout,
                got.other,
                if got.examples.is_empty() {
                    String::new()
                } else {
                    format!("; first: {}", got.examples.join("; "))
                }
            );
            results[i].1.push(got);
        }
    }
    let up = scale_up_at(p, d);
    let gone = p.max(d) + 500;
    let mut out = String::from("## Scale-down under load: failed requests\n\n");
    out.push_str(&format!(
        "One Service (ClusterIP {SD_VIP}:80 → {BEFORE} backend pods on the node, port {SD_PORT}) among {BACKGROUND} others ({} backends each), {CLIENTS} client threads in the client pod each looping connect (1 s timeout) → read one line (2 s) → close, for the whole round. A round: {:.1} s of load with {BEFORE} backends, scale {BEFORE} → {AFTER} at t0 (b1..b4 removed at once), back to {BEFORE} at t0 + {:.1} s (servers started first, then added to the Service, as readiness would), {:.1} s more load. Each system {rounds} rounds, each round on a fresh bed (namespaces, rules or eBPF maps, conntrack); systems rotated per round (round 1: iptables, Sluice drain off, Sluice drain on; round 2 starts with Sluice drain off, and so on). Propagation delay P = {p} ms, Sluice's endpoint drain delay D = {d} ms (noded's default `--endpoint-drain-delay-ms`).\n\n",
        super::BACKENDS,
        EDGE.as_secs_f64(),
        up as f64 / 1e3,
        EDGE.as_secs_f64(),
    ));
    out.push_str(&format!(
        "- **iptables, Kubernetes' order**: SIGTERM at t0 (no preStop: the servers close their listeners); at t0 + P the node rewrites the Service's chains without the removed endpoints as a kube-proxy partial sync does (`iptables-restore --noflush`: the top-level chains whole, KUBE-SERVICES with all {} jumps; this Service's chains flushed and refilled; the removed endpoints' chains deleted; the restore time is real, measured, and delays the switch). Conntrack keeps established flows.\n- **Sluice, Kubernetes' order (drain off)**: SIGTERM at t0; at t0 + P `upsert_service` marks the removed backends terminating; they leave the Service at t0 + {gone} ms.\n- **Sluice, its order (drain on)**: at t0 + P the balancing node marks them terminating (on the pod's own node noded does it at once, before the EndpointSlice changes); SIGTERM at t0 + D; they leave the Service at t0 + {gone} ms, after they stopped.\n\n",
        BACKGROUND + 1
    ));
    let mut summary = Vec::new();
    for (system, rows) in &results {
        out.push_str(&format!("### {}\n\n", system.name()));
        out.push_str("| round | requests answered | failed | refused | reset / empty | timeout | other | failed per 10,000 | removed endpoints out at (ms after t0) | that update took (ms) | failures seen (ms after t0) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for (i, r) in rows.iter().enumerate() {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.2} | {} |\n",
                i + 1,
                r.answered,
                r.failed(),
                r.refused,
                r.reset,
                r.timeout,
                r.other,
                per_10k(r.failed(), r.answered),
                r.out_at_ms,
                r.remove_ms,
                r.failures_ms
                    .map(|(a, b)| format!("{a:.0} … {b:.0}"))
                    .unwrap_or_else(|| "none".into())
            ));
        }
        let sum = |f: &dyn Fn(&Round) -> u64| rows.iter().map(f).sum::<u64>();
        let (answered, failed) = (sum(&|r| r.answered), sum(&|r| r.failed()));
        out.push_str(&format!(
            "| **all** | **{answered}** | **{failed}** | {} | {} | {} | {} | **{:.1}** | | median {:.2} | |\n\n",
            sum(&|r| r.refused),
            sum(&|r| r.reset),
            sum(&|r| r.timeout),
            sum(&|r| r.other),
            per_10k(failed, answered),
            median(rows.iter().map(|r| r.remove_ms)),
        ));
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| !r.examples.is_empty()) {
            out.push_str(&format!(
                "First failure of each kind (round {}): {}.\n\n",
                i + 1,
                r.examples.join("; ")
            ));
        }
        summary.push((
            *system,
            answered,
            failed,
            median(rows.iter().map(|r| r.remove_ms)),
            rows.iter().map(|r| r.remove_ms).fold(f64::NAN, f64::max),
            median(rows.iter().map(|r| r.add_ms)),
        ));
    }
    out.push_str("### Summary\n\n| system | rounds | requests answered | failed | failed per 10,000 | scale-down update, median (ms) | max (ms) | scale-up update, median (ms) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (system, answered, failed, med, max, add) in &summary {
        out.push_str(&format!(
            "| {} | {rounds} | {answered} | {failed} | {:.1} | {med:.2} | {max:.2} | {add:.2} |\n",
            system.name(),
            per_10k(*failed, *answered)
        ));
    }
    let failed_of = |s: System| summary.iter().find(|r| r.0 == s).map(|r| r.2).unwrap_or(0);
    let (ipt, k8s, drain) = (
        failed_of(System::Iptables),
        failed_of(System::SluiceK8sOrder),
        failed_of(System::SluiceDrain),
    );
    out.push_str(&format!(
        "\nFailed requests over {rounds} rounds: **Sluice (drain on) {drain}** vs **iptables {ipt}**{}; Sluice in Kubernetes' order (drain off) {k8s}. Goal from the issue: 0 for Sluice.\n\n",
        if drain == 0 {
            String::new()
        } else {
            format!(" ({:.3} of iptables')", drain as f64 / ipt.max(1) as f64)
        }
    ));
    out.push_str(&format!(
        "What is real and what is modelled. One node stands for the node that balances the client's connections (in a cluster, every node with clients of the Service); the backend pods run on it. Real: the kernel (sockets, veths, routing, conntrack), iptables (`iptables-restore` of kube-proxy-style rules into a table with {BACKGROUND} other Services), Sluice's eBPF datapath and its maps, the servers closing their listeners and the clients' connections. Modelled: the timings. P ({p} ms, `--propagation-ms`) stands for the time from the pod's deletion until the balancing node has learned it (EndpointSlice controller → API server → watch → proxy); in Kubernetes kube-proxy's default `minSyncPeriod` (1 s) rate-limits its syncs, which makes P larger there, so the default favours iptables. D is noded's delay between taking the pod out of its own node's maps and SIGTERM; Sluice's order loses nothing only while P < D (the other nodes must learn of the pod before it stops). No preStop hook in either (with a `preStop: sleep` longer than P Kubernetes' order would also lose nothing, at the cost of every pod's shutdown). The kubelet, API server and controllers are not running: the steps are called directly at their times.\n"
    ));
    Ok(out)
}

fn per_10k(failed: u64, answered: u64) -> f64 {
    let total = failed + answered;
    if total == 0 {
        f64::NAN
    } else {
        failed as f64 * 1e4 / total as f64
    }
}
