//! Resource usage of the node, its pods and their containers: what the
//! kubelet's `/stats/summary` and `/metrics/resource` report.
//!
//! **What is read, and why.** noded reads the cgroups it asks the runtime to
//! create (every pod under `<cgroup root>/pod<uid>`, each container below it
//! in a directory named by its runtime id, see [`crate::pod_spec`]) rather
//! than CRI `ListContainerStats`: containerd 1.6 answers that call from the
//! same cgroup files, but only per container (no pod totals, no sandbox's
//! share, no page faults), and one directory read per cgroup is cheaper than
//! a gRPC round trip per scrape. The files are cAdvisor's:
//! - CPU: cgroup v1 `cpuacct.usage` (nanoseconds), cgroup v2 `cpu.stat`
//!   `usage_usec`;
//! - memory: the working set as cAdvisor computes it, usage (`memory.usage_in_bytes`
//!   or `memory.current`) less inactive file pages (`total_inactive_file` or
//!   `inactive_file` of `memory.stat`), plus RSS (`total_rss`/`anon`) and
//!   page faults from `memory.stat`.
//!
//! The node's totals are the root cgroup's (what cAdvisor reports as "/"),
//! or `/proc/stat` and `/proc/meminfo` when the root has no such file (a
//! pure cgroup v2 machine has no root `memory.current`). Several simulated
//! nodes on one machine therefore each report the machine's totals, as kind
//! nodes do.
//!
//! `usageNanoCores` is a rate: the difference from the previous reading of
//! the same cgroup at least a second old (the first read of a cgroup has
//! none, and `/stats/summary` leaves the field out then, as the kubelet does
//! before its second housekeeping pass). Only running containers of ready
//! sandboxes are reported; their start time is the runtime's creation time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::cri::{api, Cri};
use crate::labels;

/// The cgroup parent of every pod of node `node_name` (pods are `pod<uid>` below it).
pub fn cgroup_root(node_name: &str) -> String {
    format!("/sluice/{node_name}")
}

/// Cumulative CPU use of a cgroup at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    /// Core-nanoseconds used since the cgroup was created.
    pub usage_core_nano_seconds: u64,
    /// Nanocores used on average since the previous reading (none on the first).
    pub usage_nano_cores: Option<u64>,
}

/// Memory of a cgroup at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Total usage, page cache included.
    pub usage_bytes: u64,
    /// Usage less inactive file pages (what the OOM killer and eviction look at).
    pub working_set_bytes: u64,
    /// Anonymous memory.
    pub rss_bytes: Option<u64>,
    /// Page faults.
    pub page_faults: Option<u64>,
    /// Major page faults.
    pub major_page_faults: Option<u64>,
    /// Node only: capacity less the working set.
    pub available_bytes: Option<u64>,
}

/// One running container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStats {
    /// Its name in the pod.
    pub name: String,
    /// When the runtime created it (seconds since the epoch).
    pub start_time: f64,
    /// CPU, when its cgroup could be read.
    pub cpu: Option<Cpu>,
    /// Memory, when its cgroup could be read.
    pub memory: Option<Memory>,
}

/// One pod with a ready sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct PodStats {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod uid.
    pub uid: String,
    /// When its sandbox was created (seconds since the epoch).
    pub start_time: f64,
    /// Its running containers.
    pub containers: Vec<ContainerStats>,
    /// The pod cgroup's CPU (all containers and the sandbox).
    pub cpu: Option<Cpu>,
    /// The pod cgroup's memory.
    pub memory: Option<Memory>,
}

/// One reading of the node.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// When it was read (milliseconds since the epoch).
    pub time_ms: i64,
    /// Boot time (seconds since the epoch), the node's start time.
    pub node_start_time: Option<f64>,
    /// The node's CPU.
    pub node_cpu: Option<Cpu>,
    /// The node's memory.
    pub node_memory: Option<Memory>,
    /// Pods with a ready sandbox.
    pub pods: Vec<PodStats>,
    /// Whether listing the runtime's containers failed (pods are then missing).
    pub runtime_error: bool,
}

// ---- Parsing (pure) ----

/// A `key value` line of a cgroup stat file.
pub fn stat_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == field).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A `Field:   N kB` line of `/proc/meminfo`, in bytes.
pub fn meminfo_field(text: &str, field: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time of the whole machine from `/proc/stat` (user, nice, system, irq,
/// softirq, steal; not idle or iowait), in nanoseconds, `ticks_per_second` as `_SC_CLK_TCK`.
pub fn proc_stat_cpu_ns(text: &str, ticks_per_second: u64) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let busy: u64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .map(|i| ticks.get(*i).copied().unwrap_or(0))
        .sum();
    Some(busy.saturating_mul(1_000_000_000) / ticks_per_second.max(1))
}

/// Boot time (`btime`) from `/proc/stat`.
pub fn proc_stat_boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s as f64)
}

/// Memory from the contents of a cgroup's files: v1 (`usage` is
/// `memory.usage_in_bytes`) or v2 (`memory.current`), `stat` is `memory.stat`.
pub fn memory_from(usage: &str, stat: &str, v2: bool) -> Option<Memory> {
    let usage_bytes: u64 = usage.trim().parse().ok()?;
    let (inactive, rss, faults, major) = if v2 {
        ("inactive_file", "anon", "pgfault", "pgmajfault")
    } else {
        ("total_inactive_file", "total_rss", "total_pgfault", "total_pgmajfault")
    };
    Some(Memory {
        usage_bytes,
        working_set_bytes: usage_bytes.saturating_sub(stat_field(stat, inactive).unwrap_or(0)),
        rss_bytes: stat_field(stat, rss),
        page_faults: stat_field(stat, faults),
        major_page_faults: stat_field(stat, major),
        available_bytes: None,
    })
}

// ---- Reading (effectful) ----

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Where the cgroup files of a cgroup path are.
#[derive(Debug, Clone)]
pub struct Cgroups {
    mount: PathBuf,
    v2: bool,
}

impl Cgroups {
    /// The hierarchies mounted at `mount` (a pure v2 mount has `cgroup.controllers` at its top).
    pub fn at(mount: &Path) -> Cgroups {
        Cgroups {
            mount: mount.to_path_buf(),
            v2: mount.join("cgroup.controllers").exists(),
        }
    }

    fn dir(&self, controller: &str, cgroup: &str) -> PathBuf {
        let relative = cgroup.trim_start_matches('/');
        if self.v2 {
            self.mount.join(relative)
        } else {
            self.mount.join(controller).join(relative)
        }
    }

    /// Cumulative CPU nanoseconds of `cgroup` (`/` is the root).
    pub fn cpu_ns(&self, cgroup: &str) -> Option<u64> {
        if self.v2 {
            let stat = read(&self.dir("", cgroup).join("cpu.stat"))?;
            stat_field(&stat, "usage_usec").map(|us| us * 1000)
        } else {
            read(&self.dir("cpuacct", cgroup).join("cpuacct.usage"))?
                .trim()
                .parse()
                .ok()
        }
    }

    /// Memory of `cgroup`.
    pub fn memory(&self, cgroup: &str) -> Option<Memory> {
        let dir = self.dir("memory", cgroup);
        let usage = read(&dir.join(if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        }))?;
        memory_from(&usage, &read(&dir.join("memory.stat"))?, self.v2)
    }
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: SystemTime,
    usage: u64,
    rate: Option<u64>,
}

/// Reads usage and turns successive readings of a cgroup into rates.
pub struct Collector {
    cri: Cri,
    cgroup_root: String,
    cgroups: Cgroups,
    readings: Mutex<HashMap<String, Reading>>,
}

/// Readings older than this are forgotten (their cgroup is gone).
const FORGET_AFTER: Duration = Duration::from_secs(300);
/// A rate needs readings at least this far apart.
const MIN_RATE_WINDOW: Duration = Duration::from_secs(1);

impl Collector {
    /// A collector for the pods under `cgroup_root` (see [`cgroup_root`]), using the runtime `cri`.
    pub fn new(cri: Cri, cgroup_root: String) -> Collector {
        Collector {
            cri,
            cgroup_root,
            cgroups: Cgroups::at(Path::new(crate::cgroups::CGROUP_MOUNT)),
            readings: Mutex::default(),
        }
    }

    /// `usage` read now for `key`, with the rate since the last reading that is at least a second old.
    fn cpu(&self, key: &str, usage: u64, now: SystemTime) -> Cpu {
        let mut readings = self.readings.lock().unwrap_or_else(|e| e.into_inner());
        let rate = match readings.get(key).copied() {
            Some(prev) => match now.duration_since(prev.at) {
                Ok(elapsed) if elapsed >= MIN_RATE_WINDOW => {
                    let rate = (usage.saturating_sub(prev.usage) as u128 * 1_000_000_000 / elapsed.as_nanos().max(1))
                        .min(u64::MAX as u128) as u64;
                    readings.insert(
                        key.to_string(),
                        Reading {
                            at: now,
                            usage,
                            rate: Some(rate),
                        },
                    );
                    Some(rate)
                }
                _ => prev.rate,
            },
            None => {
                readings.insert(
                    key.to_string(),
                    Reading {
                        at: now,
                        usage,
                        rate: None,
                    },
                );
                None
            }
        };
        readings.retain(|_, r| now.duration_since(r.at).is_ok_and(|d| d < FORGET_AFTER) || r.at > now);
        Cpu {
            usage_core_nano_seconds: usage,
            usage_nano_cores: rate,
        }
    }

    fn cgroup_cpu(&self, cgroup: &str, now: SystemTime) -> Option<Cpu> {
        self.cgroups.cpu_ns(cgroup).map(|ns| self.cpu(cgroup, ns, now))
    }

    /// Read the node and every running pod now.
    pub async fn collect(&self) -> Stats {
        let now = SystemTime::now();
        let time_ms = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let proc_stat = read(Path::new("/proc/stat")).unwrap_or_default();
        let node_cpu = self
            .cgroups
            .cpu_ns("/")
            .or_else(|| proc_stat_cpu_ns(&proc_stat, clock_ticks()))
            .map(|ns| self.cpu("/", ns, now));
        let node_memory = node_memory(&self.cgroups);
        let listed = async {
            let managed = [(labels::MANAGED_BY, labels::MANAGER)];
            let sandboxes = self.cri.list_pod_sandboxes(&managed).await?;
            let containers = self.cri.list_containers(None).await?;
            Ok::<_, crate::cri::CriError>((sandboxes, containers))
        }
        .await;
        let (pods, runtime_error) = match listed {
            Ok((sandboxes, containers)) => (self.pods(&sandboxes, &containers, now), false),
            Err(err) => {
                tracing::warn!(%err, "listing the runtime's containers for stats failed");
                (Vec::new(), true)
            }
        };
        Stats {
            time_ms,
            node_start_time: proc_stat_boot_time(&proc_stat),
            node_cpu,
            node_memory,
            pods,
            runtime_error,
        }
    }

    fn pods(&self, sandboxes: &[api::PodSandbox], containers: &[api::Container], now: SystemTime) -> Vec<PodStats> {
        let mut pods: Vec<PodStats> = sandboxes
            .iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
            .filter_map(|sandbox| {
                let uid = sandbox.labels.get(labels::POD_UID)?.clone();
                let meta = sandbox.metadata.as_ref();
                let pod_cgroup = format!("{}/pod{uid}", self.cgroup_root.trim_end_matches('/'));
                let running = containers
                    .iter()
                    .filter(|c| c.pod_sandbox_id == sandbox.id)
                    .filter(|c| c.state == api::ContainerState::ContainerRunning as i32);
                let mut stats: Vec<ContainerStats> = running
                    .filter_map(|c| {
                        let cgroup = format!("{pod_cgroup}/{}", c.id);
                        Some(ContainerStats {
                            name: c.labels.get(labels::CONTAINER_NAME)?.clone(),
                            start_time: c.created_at as f64 / 1e9,
                            cpu: self.cgroup_cpu(&cgroup, now),
                            memory: self.cgroups.memory(&cgroup),
                        })
                    })
                    .collect();
                stats.sort_by(|a, b| a.name.cmp(&b.name));
                Some(PodStats {
                    name: meta.map(|m| m.name.clone()).unwrap_or_default(),
                    namespace: meta.map(|m| m.namespace.clone()).unwrap_or_default(),
                    uid,
                    start_time: sandbox.created_at as f64 / 1e9,
                    containers: stats,
                    cpu: self.cgroup_cpu(&pod_cgroup, now),
                    memory: self.cgroups.memory(&pod_cgroup),
                })
            })
            .collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        pods
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// The root memory cgroup's working set, or `/proc/meminfo`'s (MemTotal -
/// MemFree - Inactive(file)) on a pure v2 machine; available is MemTotal less it.
fn node_memory(cgroups: &Cgroups) -> Option<Memory> {
    let meminfo = read(Path::new("/proc/meminfo"))?;
    let total = meminfo_field(&meminfo, "MemTotal")?;
    let mut memory = match cgroups.memory("/") {
        Some(m) => m,
        None => {
            let free = meminfo_field(&meminfo, "MemFree")?;
            let inactive = meminfo_field(&meminfo, "Inactive(file)").unwrap_or(0);
            let usage = total.saturating_sub(free);
            Memory {
                usage_bytes: usage,
                working_set_bytes: usage.saturating_sub(inactive),
                ..Memory::default()
            }
        }
    };
    memory.available_bytes = Some(total.saturating_sub(memory.working_set_bytes));
    Some(memory)
}

// ---- The summary API (`statsapi.Summary`) ----

fn rfc3339(seconds: f64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds as i64)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn cpu_json(cpu: &Cpu, time: &str) -> Value {
    let mut v = json!({"time": time, "usageCoreNanoSeconds": cpu.usage_core_nano_seconds});
    if let Some(rate) = cpu.usage_nano_cores {
        v["usageNanoCores"] = rate.into();
    }
    v
}

fn memory_json(m: &Memory, time: &str) -> Value {
    let mut v = json!({"time": time, "usageBytes": m.usage_bytes, "workingSetBytes": m.working_set_bytes});
    for (key, value) in [
        ("availableBytes", m.available_bytes),
        ("rssBytes", m.rss_bytes),
        ("pageFaults", m.page_faults),
        ("majorPageFaults", m.major_page_faults),
    ] {
        if let Some(value) = value {
            v[key] = value.into();
        }
    }
    v
}

/// Put `cpu` and `memory` into `v` when measured.
fn with_usage(mut v: Value, cpu: Option<&Cpu>, memory: Option<&Memory>, time: &str) -> Value {
    if let Some(cpu) = cpu {
        v["cpu"] = cpu_json(cpu, time);
    }
    if let Some(memory) = memory {
        v["memory"] = memory_json(memory, time);
    }
    v
}

/// The kubelet's `/stats/summary` document for node `node_name`: only what
/// noded measures (CPU and memory); network, filesystem and volume stats are left out.
pub fn summary(node_name: &str, stats: &Stats) -> Value {
    let time = rfc3339(stats.time_ms as f64 / 1000.0);
    let mut node = json!({"nodeName": node_name});
    if let Some(start) = stats.node_start_time {
        node["startTime"] = rfc3339(start).into();
    }
    let node = with_usage(node, stats.node_cpu.as_ref(), stats.node_memory.as_ref(), &time);
    let pods: Vec<Value> = stats
        .pods
        .iter()
        .map(|p| {
            let containers: Vec<Value> = p
                .containers
                .iter()
                .map(|c| {
                    with_usage(
                        json!({"name": c.name, "startTime": rfc3339(c.start_time)}),
                        c.cpu.as_ref(),
                        c.memory.as_ref(),
                        &time,
                    )
                })
                .collect();
            with_usage(
                json!({
                    "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                    "startTime": rfc3339(p.start_time),
                    "containers": containers,
                }),
                p.cpu.as_ref(),
                p.memory.as_ref(),
                &time,
            )
        })
        .collect();
    json!({"node": node, "pods": pods})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_as_cadvisor_reads_it() {
        let v1 = memory_from(
            "1000000\n",
            "cache 5\nrss 7\ntotal_rss 300000\ntotal_inactive_file 250000\ntotal_pgfault 42\ntotal_pgmajfault 3\n",
            false,
        )
        .unwrap();
        assert_eq!(v1.usage_bytes, 1_000_000);
        assert_eq!(v1.working_set_bytes, 750_000);
        assert_eq!(
            (v1.rss_bytes, v1.page_faults, v1.major_page_faults),
            (Some(300_000), Some(42), Some(3))
        );
        let v2 = memory_from("4096\n", "anon 1024\ninactive_file 8192\npgfault 9\n", true).unwrap();
        assert_eq!(v2.working_set_bytes, 0, "inactive pages above usage clamp to zero");
        assert_eq!(
            (v2.rss_bytes, v2.page_faults, v2.major_page_faults),
            (Some(1024), Some(9), None)
        );
        assert!(memory_from("max", "", true).is_none());
    }

    #[test]
    fn proc_stat_gives_busy_cpu_and_boot_time() {
        let text = "cpu  100 20 30 5000 40 5 5 0 0 0\ncpu0 1 2 3 4\nbtime 1700000000\n";
        // user+nice+system+irq+softirq+steal = 160 ticks at 100 Hz = 1.6 s.
        assert_eq!(proc_stat_cpu_ns(text, 100), Some(1_600_000_000));
        assert_eq!(proc_stat_boot_time(text), Some(1_700_000_000.0));
        assert_eq!(
            meminfo_field("MemTotal:  2048 kB\nMemFree: 1 kB\n", "MemTotal"),
            Some(2048 * 1024)
        );
    }

    #[test]
    fn cgroup_files_are_found_in_v1_and_v2_layouts() {
        let v1 = tempfile::tempdir().unwrap();
        let pod = v1.path().join("cpuacct/sluice/n1/podu");
        std::fs::create_dir_all(&pod).unwrap();
        std::fs::write(pod.join("cpuacct.usage"), "123456789\n").unwrap();
        let mem = v1.path().join("memory/sluice/n1/podu");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "100\n").unwrap();
        std::fs::write(mem.join("memory.stat"), "total_inactive_file 40\n").unwrap();
        let cgroups = Cgroups::at(v1.path());
        assert_eq!(cgroups.cpu_ns("/sluice/n1/podu"), Some(123_456_789));
        assert_eq!(cgroups.memory("/sluice/n1/podu").unwrap().working_set_bytes, 60);

        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu memory").unwrap();
        let pod = v2.path().join("sluice/n1/podu");
        std::fs::create_dir_all(&pod).unwrap();
        std::fs::write(pod.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        assert_eq!(Cgroups::at(v2.path()).cpu_ns("/sluice/n1/podu"), Some(1_500_000));
    }

    #[test]
    fn the_summary_has_the_kubelet_shape_and_leaves_out_what_is_not_measured() {
        let cpu = Cpu {
            usage_core_nano_seconds: 2_000_000_000,
            usage_nano_cores: Some(500_000_000),
        };
        let memory = Memory {
            usage_bytes: 2048,
            working_set_bytes: 1024,
            ..Memory::default()
        };
        let stats = Stats {
            time_ms: 1_700_000_010_500,
            node_start_time: Some(1_700_000_000.0),
            node_cpu: Some(Cpu {
                usage_nano_cores: None,
                ..cpu
            }),
            node_memory: Some(Memory {
                available_bytes: Some(4096),
                ..memory
            }),
            pods: vec![PodStats {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                start_time: 1_700_000_001.0,
                containers: vec![ContainerStats {
                    name: "app".into(),
                    start_time: 1_700_000_002.0,
                    cpu: Some(cpu),
                    memory: Some(memory),
                }],
                cpu: Some(cpu),
                memory: None,
            }],
            runtime_error: false,
        };
        let s = summary("n1", &stats);
        assert_eq!(s["node"]["nodeName"], "n1");
        assert_eq!(s["node"]["startTime"], "2023-11-14T22:13:20Z");
        assert_eq!(s["node"]["cpu"]["time"], "2023-11-14T22:13:30Z");
        assert!(s["node"]["cpu"].get("usageNanoCores").is_none(), "no rate yet");
        assert_eq!(s["node"]["memory"]["availableBytes"], 4096);
        let pod = &s["pods"][0];
        assert_eq!(
            pod["podRef"],
            json!({"name": "web", "namespace": "default", "uid": "u1"})
        );
        assert_eq!(pod["cpu"]["usageNanoCores"], 500_000_000);
        assert!(pod.get("memory").is_none());
        assert_eq!(pod["containers"][0]["name"], "app");
        assert_eq!(pod["containers"][0]["memory"]["workingSetBytes"], 1024);
        assert!(pod["containers"][0]["memory"].get("rssBytes").is_none());
    }
}
