//! Node-pressure eviction: signals measured on the node, hard thresholds,
//! pressure conditions and the pod to evict, as the kubelet's eviction manager.
//!
//! Every `--housekeeping-interval` (10 s) the [`Manager`] measures the
//! signals ([`measure`]): `memory.available` (MemTotal minus the root memory
//! cgroup's working set, usage less inactive file pages), `nodefs.available`
//! and `nodefs.inodesFree` (statvfs of noded's state directory),
//! `imagefs.available` and `imagefs.inodesFree` (statvfs of the runtime's image
//! filesystem from CRI `ImageFsInfo`, else the state directory's), and
//! `pid.available` (`pid_max` minus the threads running). It compares them with
//! the `--eviction-hard` thresholds ([`parse_thresholds`]; the signals a flag
//! leaves out keep Kubernetes' defaults, `0%` switches one off). A met
//! threshold turns its condition (MemoryPressure, DiskPressure, PIDPressure)
//! True, and it stays True until `--eviction-pressure-transition-period` (5 m)
//! has passed without the threshold met; the node agent posts it at once.
//! While a threshold is met, one pod is evicted per pass: the pods are ranked
//! as the kubelet ranks them ([`rank`]: usage above requests first, then lower
//! priority, then larger usage above requests; for PIDs priority then
//! processes), critical pods (priority of `system-*-critical`, static or
//! mirror pods) are skipped, and the pod worker stops the chosen pod's
//! containers with a 1 s grace period and reports it Failed / `Evicted` with
//! the kubelet's message ([`eviction_message`]) and a `DisruptionTarget`
//! condition. Per-pod usage comes from the pod's cgroups (working set,
//! `pids.current`) and, for disk, the size of its logs and volumes under the
//! state directory.

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A threshold flag that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvictionError {
    /// Not `signal<value`.
    #[error("eviction threshold {0:?}: expected <signal><<value>, e.g. memory.available<100Mi")]
    Syntax(String),
    /// A signal the kubelet does not know.
    #[error("unsupported eviction signal {0}")]
    UnknownSignal(String),
    /// A percentage outside 0..100 or not a number.
    #[error("eviction percentage threshold {signal} must be between 0% and 100%: {value}")]
    Percentage {
        /// The signal.
        signal: String,
        /// As written.
        value: String,
    },
    /// A quantity that does not parse or is not positive.
    #[error("eviction threshold {signal} must be a positive quantity: {value}")]
    Quantity {
        /// The signal.
        signal: String,
        /// As written.
        value: String,
    },
    /// A bad duration flag.
    #[error("invalid duration {0:?} (e.g. 5m0s, 30s)")]
    Duration(String),
}

/// An eviction signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// `memory.available`
    MemoryAvailable,
    /// `nodefs.available`
    NodeFsAvailable,
    /// `nodefs.inodesFree`
    NodeFsInodesFree,
    /// `imagefs.available`
    ImageFsAvailable,
    /// `imagefs.inodesFree`
    ImageFsInodesFree,
    /// `pid.available`
    PidAvailable,
}

/// The node conditions eviction drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    /// `MemoryPressure`
    Memory,
    /// `DiskPressure`
    Disk,
    /// `PIDPressure`
    Pid,
}

/// What a signal reclaims, as the kubelet names it in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `memory`
    Memory,
    /// `ephemeral-storage`
    EphemeralStorage,
    /// `inodes`
    Inodes,
    /// `pids`
    Pids,
}

impl Resource {
    /// The resource name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::EphemeralStorage => "ephemeral-storage",
            Resource::Inodes => "inodes",
            Resource::Pids => "pids",
        }
    }

    /// Quantities of this resource print in binary units (bytes) or decimal ones (counts).
    fn binary(self) -> bool {
        matches!(self, Resource::Memory | Resource::EphemeralStorage)
    }
}

impl Signal {
    const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::PidAvailable,
    ];

    /// The signal's name in flags.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    fn parse(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The node condition a met threshold of this signal sets.
    pub fn condition(self) -> Condition {
        match self {
            Signal::MemoryAvailable => Condition::Memory,
            Signal::PidAvailable => Condition::Pid,
            _ => Condition::Disk,
        }
    }

    /// The resource evictions for this signal reclaim.
    pub fn resource(self) -> Resource {
        match self {
            Signal::MemoryAvailable => Resource::Memory,
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => Resource::EphemeralStorage,
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => Resource::Inodes,
            Signal::PidAvailable => Resource::Pids,
        }
    }
}

/// A threshold's value: an absolute quantity or a share of capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Bytes or a count, with whether it was written in binary units (prints `100Mi`) or not.
    Quantity(i64, bool),
    /// A fraction of capacity (`0.1` for `10%`).
    Percentage(f32),
}

/// One hard threshold: evict when the signal's available amount is below `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The signal.
    pub signal: Signal,
    /// The limit.
    pub value: Value,
}

impl Threshold {
    /// The limit as an amount, for a signal of `capacity` (percentages truncate, as in Go).
    pub fn quantity(&self, capacity: i64) -> i64 {
        match self.value {
            Value::Quantity(q, _) => q,
            Value::Percentage(p) => (capacity as f64 * f64::from(p)) as i64,
        }
    }

    /// The threshold as the flag writes it (`memory.available<100Mi`, `nodefs.available<10%`).
    pub fn flag(&self) -> String {
        match self.value {
            Value::Quantity(q, binary) => format!("{}<{}", self.signal.name(), format_quantity(q, binary)),
            Value::Percentage(p) => format!(
                "{}<{}%",
                self.signal.name(),
                (f64::from(p) * 100_000.0).round() / 1000.0
            ),
        }
    }

    /// The limit as Kubernetes prints it (`100Mi`, or the bytes of a percentage).
    pub fn display(&self, capacity: i64) -> String {
        match self.value {
            Value::Quantity(q, binary) => format_quantity(q, binary),
            Value::Percentage(_) => format_quantity(self.quantity(capacity), self.signal.resource().binary()),
        }
    }
}

/// Kubernetes' default hard thresholds on Linux.
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%";

/// Parse `--eviction-hard` (`memory.available<100Mi,nodefs.available<10%`).
/// Signals it leaves out keep [`DEFAULT_EVICTION_HARD`]'s value; `0%` and
/// `100%` switch a signal off, as the kubelet ignores them.
pub fn parse_thresholds(flag: &str) -> Result<Vec<Threshold>, EvictionError> {
    let mut given: BTreeMap<Signal, Option<Threshold>> = BTreeMap::new();
    for statement in flag.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (signal, value) = parse_statement(statement)?;
        given.insert(signal, value);
    }
    for statement in DEFAULT_EVICTION_HARD.split(',') {
        let (signal, value) = parse_statement(statement)?;
        given.entry(signal).or_insert(value);
    }
    Ok(given.into_values().flatten().collect())
}

fn parse_statement(statement: &str) -> Result<(Signal, Option<Threshold>), EvictionError> {
    let (name, value) = statement
        .split_once('<')
        .ok_or_else(|| EvictionError::Syntax(statement.to_string()))?;
    let (name, value) = (name.trim(), value.trim());
    let signal = Signal::parse(name).ok_or_else(|| EvictionError::UnknownSignal(name.to_string()))?;
    if let Some(number) = value.strip_suffix('%') {
        if value == "0%" || value == "100%" {
            return Ok((signal, None));
        }
        let bad = || EvictionError::Percentage {
            signal: name.to_string(),
            value: value.to_string(),
        };
        let percent: f32 = number.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&percent) {
            return Err(bad());
        }
        return Ok((
            signal,
            Some(Threshold {
                signal,
                value: Value::Percentage(percent / 100.0),
            }),
        ));
    }
    let bad = || EvictionError::Quantity {
        signal: name.to_string(),
        value: value.to_string(),
    };
    let amount = sluice_kube::quantity::parse_value(value).map_err(|_| bad())?;
    if amount <= 0 {
        return Err(bad());
    }
    let binary = value.ends_with('i');
    Ok((
        signal,
        Some(Threshold {
            signal,
            value: Value::Quantity(amount, binary),
        }),
    ))
}

/// A Go duration as the kubelet's flags take it (`5m0s`, `30s`, `1h`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, EvictionError> {
    let bad = || EvictionError::Duration(text.to_string());
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let number: f64 = rest[..end].parse().map_err(|_| bad())?;
        rest = &rest[end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// A quantity as Kubernetes' canonical form prints it: the largest exact
/// suffix (`Ki`..`Ei` for binary, `k`..`E` for decimal), else the plain number.
pub fn format_quantity(value: i64, binary: bool) -> String {
    if value == 0 {
        return "0".into();
    }
    let (base, suffixes): (i64, [&str; 6]) = if binary {
        (1024, ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
    } else {
        (1000, ["k", "M", "G", "T", "P", "E"])
    };
    let (mut n, mut unit) = (value, "");
    for suffix in suffixes {
        if n % base != 0 {
            break;
        }
        n /= base;
        unit = suffix;
    }
    format!("{n}{unit}")
}

/// One signal as measured: what is available out of what capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Available now.
    pub available: i64,
    /// Capacity (percentages are of this).
    pub capacity: i64,
}

/// The signals measured at one instant.
pub type Observations = BTreeMap<Signal, Observation>;

/// The thresholds met by `observations` (signals not measured never are).
pub fn thresholds_met<'a>(thresholds: &'a [Threshold], observations: &Observations) -> Vec<&'a Threshold> {
    thresholds
        .iter()
        .filter(|t| {
            observations
                .get(&t.signal)
                .is_some_and(|o| o.available < t.quantity(o.capacity))
        })
        .collect()
}

/// The pressure conditions the node reports, as booleans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// MemoryPressure is True.
    pub memory: bool,
    /// DiskPressure is True.
    pub disk: bool,
    /// PIDPressure is True.
    pub pid: bool,
}

impl Pressure {
    fn set(&mut self, condition: Condition) {
        match condition {
            Condition::Memory => self.memory = true,
            Condition::Disk => self.disk = true,
            Condition::Pid => self.pid = true,
        }
    }

    /// Condition names that are True (`[MemoryPressure]`).
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.memory, "MemoryPressure"),
            (self.disk, "DiskPressure"),
            (self.pid, "PIDPressure"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// When each condition's threshold was last seen met: a condition stays True
/// for the transition period after that (no flapping around a threshold).
#[derive(Debug, Default)]
pub struct PressureMemory {
    last_met: BTreeMap<Condition, Instant>,
}

impl PressureMemory {
    /// Record the thresholds `met` at `now`; the conditions to report.
    pub fn observe(&mut self, met: &[&Threshold], now: Instant, transition: Duration) -> Pressure {
        for t in met {
            self.last_met.insert(t.signal.condition(), now);
        }
        let mut pressure = Pressure::default();
        for (condition, at) in &self.last_met {
            if now.saturating_duration_since(*at) < transition || met.iter().any(|t| t.signal.condition() == *condition)
            {
                pressure.set(*condition);
            }
        }
        pressure
    }
}

/// The threshold to act on first: memory before everything else.
pub fn to_reclaim<'a>(met: &[&'a Threshold]) -> Option<&'a Threshold> {
    met.iter()
        .find(|t| t.signal == Signal::MemoryAvailable)
        .or_else(|| met.first())
        .copied()
}

/// One container's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerUsage {
    /// Container name.
    pub name: String,
    /// Working set bytes.
    pub memory: Option<i64>,
}

/// One pod's usage, from its cgroups and its directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// Working set bytes of the pod's cgroup.
    pub memory: i64,
    /// Bytes of logs and volumes.
    pub disk: i64,
    /// Inodes of logs and volumes.
    pub inodes: i64,
    /// Processes (threads) in the pod's cgroup.
    pub processes: i64,
    /// Per container.
    pub containers: Vec<ContainerUsage>,
}

impl PodUsage {
    fn of(&self, resource: Resource) -> i64 {
        match resource {
            Resource::Memory => self.memory,
            Resource::EphemeralStorage => self.disk,
            Resource::Inodes => self.inodes,
            Resource::Pids => self.processes,
        }
    }
}

/// A pod that may be evicted, with its usage when it could be measured.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// Its usage (`None`: no stats; such pods go first, as in the kubelet).
    pub usage: Option<PodUsage>,
}

/// The pod's priority (`spec.priority`, 0 when unset).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// The request of `resource` the pod makes: the larger of its containers' sum
/// and its largest init container (the kubelet's effective request).
pub fn pod_request(pod: &Pod, resource: Resource) -> i64 {
    let key = match resource {
        Resource::Memory => "memory",
        Resource::EphemeralStorage => "ephemeral-storage",
        Resource::Inodes | Resource::Pids => return 0,
    };
    let Some(spec) = pod.spec.as_ref() else { return 0 };
    let request = |c: &k8s_openapi::api::core::v1::Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(key))
            .and_then(|q| sluice_kube::quantity::parse_value(&q.0).ok())
            .unwrap_or(0)
    };
    let sum: i64 = spec.containers.iter().map(request).sum();
    let init = spec.init_containers.iter().flatten().map(request).max().unwrap_or(0);
    sum.max(init)
}

/// The priority at and above which a pod is critical (`system-cluster-critical` is 2000000000).
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Whether the kubelet never evicts `pod`: static or mirror pods and the
/// `system-node-critical` / `system-cluster-critical` priority classes.
pub fn is_critical(pod: &Pod) -> bool {
    let annotations = pod.metadata.annotations.as_ref();
    let static_pod = annotations
        .and_then(|a| a.get("kubernetes.io/config.source"))
        .is_some_and(|s| s != "api");
    let mirror = annotations.is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let class = pod.spec.as_ref().and_then(|s| s.priority_class_name.as_deref());
    static_pod
        || mirror
        || priority(pod) >= SYSTEM_CRITICAL_PRIORITY
        || matches!(class, Some("system-node-critical" | "system-cluster-critical"))
}

/// Order `candidates` for eviction under pressure of `resource`, first to go
/// first: memory and disk by (no stats, usage above request, lower priority,
/// larger usage above request); PIDs by (no stats, lower priority, more
/// processes). The sort is stable.
pub fn rank(candidates: &mut [Candidate<'_>], resource: Resource) {
    candidates.sort_by(|a, b| {
        let key = |c: &Candidate<'_>| {
            let request = pod_request(c.pod, resource);
            match &c.usage {
                None => (0u8, 0u8, i64::from(priority(c.pod)), 0i64),
                Some(u) => {
                    let used = u.of(resource);
                    let exceeds = match resource {
                        Resource::Pids => 1,
                        _ if used > request => 0,
                        _ => 1,
                    };
                    (1, exceeds, i64::from(priority(c.pod)), -(used - request))
                }
            }
        };
        key(a).cmp(&key(b))
    });
}

/// The `Evicted` message: the starved resource, the threshold and what was
/// available, and each container using more than it requested.
pub fn eviction_message(
    resource: Resource,
    threshold: &Threshold,
    observation: &Observation,
    pod: &Pod,
    usage: Option<&PodUsage>,
) -> String {
    let binary = resource.binary();
    let mut message = format!(
        "The node was low on resource: {}. Threshold quantity: {}, available: {}. ",
        resource.name(),
        threshold.display(observation.capacity),
        format_quantity(observation.available, binary),
    );
    let (Some(usage), Resource::Memory) = (usage, resource) else {
        return message;
    };
    let spec = pod.spec.as_ref();
    let containers = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()));
    for container in containers {
        let Some(used) = usage
            .containers
            .iter()
            .find(|c| c.name == container.name)
            .and_then(|c| c.memory)
        else {
            continue;
        };
        let request = container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("memory"));
        let request_bytes = request
            .and_then(|q| sluice_kube::quantity::parse_value(&q.0).ok())
            .unwrap_or(0);
        if used > request_bytes {
            let shown = request.map(|q| q.0.clone()).unwrap_or_else(|| "0".into());
            message.push_str(&format!(
                "Container {} was using {}, request is {shown}, has larger consumption of {}. ",
                container.name,
                format_quantity(used, true),
                resource.name()
            ));
        }
    }
    message
}

/// Mark `status` as the kubelet leaves an evicted pod: Failed, reason
/// `Evicted`, the message, and a `DisruptionTarget` condition.
pub fn mark_evicted(status: &mut PodStatus, message: &str, previous: Option<&PodStatus>, now: &Time) {
    status.phase = Some("Failed".into());
    status.reason = Some("Evicted".into());
    status.message = Some(message.to_string());
    let since = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget" && c.status == "True"))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("TerminationByKubelet".into()),
        message: Some(message.to_string()),
        last_transition_time: Some(since),
        ..Default::default()
    });
}

// ---- Measuring (effectful) ----

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn meminfo_field(meminfo: &str, field: &str) -> Option<i64> {
    let line = meminfo
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn stat_field(stat: &str, field: &str) -> Option<i64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == field).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Working set of a memory cgroup directory: usage less inactive file pages
/// (cgroup v1 `memory.usage_in_bytes`/`total_inactive_file`, v2 `memory.current`/`inactive_file`).
pub fn cgroup_working_set(dir: &Path) -> Option<i64> {
    let stat = read(&dir.join("memory.stat"))?;
    let (usage, inactive) = match read(&dir.join("memory.usage_in_bytes")) {
        Some(v1) => (v1.trim().parse::<i64>().ok()?, stat_field(&stat, "total_inactive_file")),
        None => (
            read(&dir.join("memory.current"))?.trim().parse::<i64>().ok()?,
            stat_field(&stat, "inactive_file"),
        ),
    };
    Some((usage - inactive.unwrap_or(0)).max(0))
}

/// `memory.available` of the node: MemTotal minus the working set of the
/// root memory cgroup (cgroup v1), or, on a pure cgroup v2 machine (no root
/// usage file), MemTotal - MemFree - Inactive(file) from `/proc/meminfo`.
pub fn node_memory(cgroup_mount: &Path) -> Option<Observation> {
    let meminfo = read(Path::new("/proc/meminfo"))?;
    let total = meminfo_field(&meminfo, "MemTotal")?;
    let working_set = match cgroup_working_set(&cgroup_mount.join("memory")) {
        Some(ws) => ws,
        None => {
            let free = meminfo_field(&meminfo, "MemFree")?;
            let inactive = meminfo_field(&meminfo, "Inactive(file)").unwrap_or(0);
            (total - free - inactive).max(0)
        }
    };
    Some(Observation {
        available: (total - working_set).max(0),
        capacity: total,
    })
}

/// Bytes and inodes of the filesystem holding `path`.
pub fn filesystem(path: &Path) -> Option<(Observation, Observation)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a statvfs the call fills.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as i64;
    Some((
        Observation {
            available: stat.f_bavail as i64 * block,
            capacity: stat.f_blocks as i64 * block,
        },
        Observation {
            available: stat.f_ffree as i64,
            capacity: stat.f_files as i64,
        },
    ))
}

/// `pid.available`: the PID limit (`pid_max`, or `threads-max` when lower) minus the threads running.
pub fn pids() -> Option<Observation> {
    let number = |p: &str| read(Path::new(p)).and_then(|s| s.trim().parse::<i64>().ok());
    let mut max = number("/proc/sys/kernel/pid_max")?;
    if let Some(threads) = number("/proc/sys/kernel/threads-max") {
        max = max.min(threads);
    }
    // `/proc/loadavg`'s fourth field is running/total scheduling entities.
    let loadavg = read(Path::new("/proc/loadavg"))?;
    let total: i64 = loadavg.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()?;
    Some(Observation {
        available: max - total,
        capacity: max,
    })
}

/// Measure every signal: the node filesystem is `state_dir`'s, the image
/// filesystem `image_fs` (the state directory's when unknown).
pub fn measure(state_dir: &Path, image_fs: Option<&Path>) -> Observations {
    let mut observations = Observations::new();
    if let Some(memory) = node_memory(Path::new(crate::cgroups::CGROUP_MOUNT)) {
        observations.insert(Signal::MemoryAvailable, memory);
    }
    let node_fs = filesystem(state_dir);
    if let Some((bytes, inodes)) = node_fs {
        observations.insert(Signal::NodeFsAvailable, bytes);
        observations.insert(Signal::NodeFsInodesFree, inodes);
    }
    if let Some((bytes, inodes)) = image_fs.and_then(filesystem).or(node_fs) {
        observations.insert(Signal::ImageFsAvailable, bytes);
        observations.insert(Signal::ImageFsInodesFree, inodes);
    }
    if let Some(pids) = pids() {
        observations.insert(Signal::PidAvailable, pids);
    }
    observations
}

/// Bytes and inodes under `dir` (not following symlinks).
fn tree_size(dir: &Path) -> (i64, i64) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let mut total = (meta.len() as i64, 1);
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let (bytes, inodes) = tree_size(&entry.path());
            total.0 += bytes;
            total.1 += inodes;
        }
    }
    total
}

/// A pod's usage: memory and processes from its cgroup `cgroup_parent`
/// (`containers` maps container names to runtime ids, the cgroups below it),
/// disk from `pod_dir` (logs and volumes).
pub fn pod_usage(cgroup_parent: &str, containers: &[(String, String)], pod_dir: &Path) -> Option<PodUsage> {
    let mount = Path::new(crate::cgroups::CGROUP_MOUNT);
    let relative = cgroup_parent.trim_start_matches('/');
    let v2 = mount.join("cgroup.controllers").exists();
    let (memory_dir, pids_dir): (PathBuf, PathBuf) = if v2 {
        (mount.join(relative), mount.join(relative))
    } else {
        (mount.join("memory").join(relative), mount.join("pids").join(relative))
    };
    let memory = cgroup_working_set(&memory_dir)?;
    let processes = read(&pids_dir.join("pids.current"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let (disk, inodes) = tree_size(pod_dir);
    Some(PodUsage {
        memory,
        disk,
        inodes,
        processes,
        containers: containers
            .iter()
            .map(|(name, id)| ContainerUsage {
                name: name.clone(),
                memory: cgroup_working_set(&memory_dir.join(id)),
            })
            .collect(),
    })
}

// ---- The manager (runs beside the pod loop) ----

/// Flags of node-pressure eviction (the kubelet's names).
#[derive(clap::Args, Debug, Clone)]
pub struct EvictionArgs {
    /// Hard eviction thresholds, e.g. `memory.available<100Mi,nodefs.available<10%`;
    /// signals left out keep Kubernetes' defaults (`memory.available<100Mi,
    /// nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%`), `0%` switches one off.
    #[arg(long, default_value = "")]
    pub eviction_hard: String,
    /// How long a pressure condition stays True after its threshold was last met.
    #[arg(long, default_value = "5m0s")]
    pub eviction_pressure_transition_period: String,
    /// How often signals are measured (and at most one pod evicted).
    #[arg(long, default_value = "10s")]
    pub housekeeping_interval: String,
}

/// Parsed eviction settings.
#[derive(Debug, Clone)]
pub struct EvictionConfig {
    /// Hard thresholds.
    pub thresholds: Vec<Threshold>,
    /// `--eviction-pressure-transition-period`.
    pub transition: Duration,
    /// `--housekeeping-interval`.
    pub interval: Duration,
}

impl EvictionArgs {
    /// Parse the flags; an error names the bad one.
    pub fn config(&self) -> Result<EvictionConfig, EvictionError> {
        Ok(EvictionConfig {
            thresholds: parse_thresholds(&self.eviction_hard)?,
            transition: parse_duration(&self.eviction_pressure_transition_period)?,
            interval: parse_duration(&self.housekeeping_interval)?.max(Duration::from_millis(100)),
        })
    }
}

/// The node-pressure eviction loop.
pub struct Manager {
    config: EvictionConfig,
    pressure: tokio::sync::watch::Sender<Pressure>,
}

/// How long the manager waits for an evicted pod to be stopped (the kubelet's `podCleanupTimeout`).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

impl Manager {
    /// A manager and the pressure it publishes (read by the node agent).
    pub fn new(config: EvictionConfig) -> (Self, tokio::sync::watch::Receiver<Pressure>) {
        let (pressure, receiver) = tokio::sync::watch::channel(Pressure::default());
        (Self { config, pressure }, receiver)
    }

    /// Run forever: measure, publish pressure, evict at most one pod per pass.
    pub async fn run(
        self,
        pods: kube::runtime::reflector::Store<Pod>,
        workers: std::sync::Arc<crate::pod_worker::PodWorkers>,
    ) {
        let ctx = workers.context();
        let image_fs = match ctx.cri.image_fs_mountpoint().await {
            Ok(found) => found,
            Err(err) => {
                tracing::info!(%err, "no image filesystem from the runtime; imagefs is the state directory's");
                None
            }
        };
        tracing::info!(
            thresholds = ?self.config.thresholds.iter().map(Threshold::flag).collect::<Vec<_>>(),
            image_fs = ?image_fs,
            "eviction manager started"
        );
        let mut memory = PressureMemory::default();
        loop {
            let evicted = self
                .synchronize(&pods, &workers, &mut memory, image_fs.as_deref())
                .await;
            match evicted {
                Some(uid) => {
                    let began = Instant::now();
                    while !workers.eviction_done(&uid) && began.elapsed() < CLEANUP_TIMEOUT {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                None => tokio::time::sleep(self.config.interval).await,
            }
        }
    }

    #[tracing::instrument(skip_all)]
    async fn synchronize(
        &self,
        pods: &kube::runtime::reflector::Store<Pod>,
        workers: &crate::pod_worker::PodWorkers,
        memory: &mut PressureMemory,
        image_fs: Option<&Path>,
    ) -> Option<String> {
        let ctx = workers.context();
        let observations = measure(&ctx.state_dir, image_fs);
        let met = thresholds_met(&self.config.thresholds, &observations);
        let pressure = memory.observe(&met, Instant::now(), self.config.transition);
        self.pressure.send_if_modified(|p| {
            let changed = *p != pressure;
            if changed {
                tracing::info!(conditions = ?pressure.names(), "node pressure changed");
            }
            *p = pressure;
            changed
        });
        let threshold = to_reclaim(&met)?;
        let observation = observations.get(&threshold.signal)?;
        let resource = threshold.signal.resource();
        tracing::info!(
            signal = threshold.signal.name(),
            available = %format_quantity(observation.available, resource.binary()),
            threshold = %threshold.display(observation.capacity),
            "eviction threshold met; must evict a pod to reclaim {}",
            resource.name()
        );
        let snapshot = match crate::pleg::Snapshot::relist(&ctx.cri).await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(%err, "relist for eviction failed");
                return None;
            }
        };
        let all = pods.state();
        let active: Vec<&Pod> = all
            .iter()
            .map(|p| &**p)
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(ctx.node_name.as_str()))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .filter(|p| !workers.is_evicted(p.metadata.uid.as_deref().unwrap_or_default()))
            .collect();
        let mut candidates: Vec<Candidate<'_>> = active
            .into_iter()
            .map(|pod| {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let containers: Vec<(String, String)> = snapshot
                    .sandboxes_of(&uid)
                    .iter()
                    .flat_map(|s| snapshot.containers.iter().filter(move |c| c.pod_sandbox_id == s.id))
                    .filter(|c| c.state == crate::cri::api::ContainerState::ContainerRunning as i32)
                    .filter_map(|c| {
                        c.labels
                            .get(crate::labels::CONTAINER_NAME)
                            .map(|name| (name.clone(), c.id.clone()))
                    })
                    .collect();
                let usage = pod_usage(
                    &workers.cgroup_parent(&uid),
                    &containers,
                    &crate::volumes::pod_dir(&ctx.state_dir, &uid),
                );
                Candidate { pod, usage }
            })
            .collect();
        if candidates.is_empty() {
            tracing::warn!("eviction thresholds met, but no pods are active to evict");
            return None;
        }
        rank(&mut candidates, resource);
        for candidate in &candidates {
            let pod = candidate.pod;
            let name = crate::format::pod(pod);
            if is_critical(pod) {
                tracing::warn!(pod = name, "cannot evict a critical pod");
                continue;
            }
            let message = eviction_message(resource, threshold, observation, pod, candidate.usage.as_ref());
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            tracing::info!(pod = name, %message, "evicting pod");
            workers.request_eviction(&uid, message);
            return Some(uid);
        }
        tracing::warn!("unable to evict any pods from the node");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, priority: i32, memory_request: Option<&str>) -> Pod {
        let resources = match memory_request {
            Some(r) => serde_json::json!({"requests": {"memory": r}, "limits": {"memory": r}}),
            None => serde_json::json!({}),
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"priority": priority, "containers": [{"name": "c", "image": "i", "resources": resources}]}
        }))
        .unwrap()
    }

    fn usage(memory: i64) -> Option<PodUsage> {
        Some(PodUsage {
            memory,
            containers: vec![ContainerUsage {
                name: "c".into(),
                memory: Some(memory),
            }],
            ..Default::default()
        })
    }

    #[test]
    fn flags_parse_with_defaults_for_signals_left_out() {
        let t = parse_thresholds("memory.available<1Gi, nodefs.available<20%").unwrap();
        let find = |s: Signal| t.iter().find(|t| t.signal == s).map(|t| t.value.clone());
        assert_eq!(find(Signal::MemoryAvailable), Some(Value::Quantity(1 << 30, true)));
        assert_eq!(find(Signal::NodeFsAvailable), Some(Value::Percentage(0.2)));
        assert_eq!(find(Signal::ImageFsAvailable), Some(Value::Percentage(0.15)));
        assert_eq!(find(Signal::NodeFsInodesFree), Some(Value::Percentage(0.05)));
        assert_eq!(find(Signal::PidAvailable), None);
        let defaults = parse_thresholds("").unwrap();
        assert_eq!(defaults.len(), 4);
        let off = parse_thresholds("imagefs.available<0%,pid.available<1k").unwrap();
        assert!(!off.iter().any(|t| t.signal == Signal::ImageFsAvailable));
        assert!(off
            .iter()
            .any(|t| t.signal == Signal::PidAvailable && t.value == Value::Quantity(1000, false)));
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        assert_eq!(
            parse_thresholds("memory.free<1Gi"),
            Err(EvictionError::UnknownSignal("memory.free".into()))
        );
        assert!(matches!(
            parse_thresholds("memory.available>1Gi"),
            Err(EvictionError::Syntax(_))
        ));
        assert!(matches!(
            parse_thresholds("nodefs.available<150%"),
            Err(EvictionError::Percentage { .. })
        ));
        assert!(matches!(
            parse_thresholds("memory.available<-1Gi"),
            Err(EvictionError::Quantity { .. })
        ));
        assert!(matches!(
            parse_thresholds("memory.available<lots"),
            Err(EvictionError::Quantity { .. })
        ));
        assert_eq!(
            parse_thresholds("memory.available<0").unwrap_err().to_string(),
            "eviction threshold memory.available must be a positive quantity: 0"
        );
    }

    #[test]
    fn durations_and_quantities_read_and_print_as_kubernetes() {
        assert_eq!(parse_duration("5m0s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("5 minutes").is_err());
        assert_eq!(format_quantity(100 << 20, true), "100Mi");
        assert_eq!(format_quantity(1536 << 10, true), "1536Ki");
        assert_eq!(format_quantity(12345, true), "12345");
        assert_eq!(format_quantity(0, true), "0");
        assert_eq!(format_quantity(5000, false), "5k");
        let flags: Vec<String> = parse_thresholds("").unwrap().iter().map(Threshold::flag).collect();
        assert_eq!(
            flags,
            [
                "memory.available<100Mi",
                "nodefs.available<10%",
                "nodefs.inodesFree<5%",
                "imagefs.available<15%"
            ]
        );
    }

    #[test]
    fn thresholds_compare_with_capacity_and_drive_conditions() {
        let t = parse_thresholds("memory.available<100Mi,pid.available<10%").unwrap();
        let mut obs = Observations::new();
        obs.insert(
            Signal::MemoryAvailable,
            Observation {
                available: 50 << 20,
                capacity: 1 << 30,
            },
        );
        obs.insert(
            Signal::NodeFsAvailable,
            Observation {
                available: 50,
                capacity: 100,
            },
        );
        obs.insert(
            Signal::PidAvailable,
            Observation {
                available: 950,
                capacity: 1000,
            },
        );
        let met = thresholds_met(&t, &obs);
        assert_eq!(
            met.iter().map(|t| t.signal).collect::<Vec<_>>(),
            vec![Signal::MemoryAvailable]
        );
        assert_eq!(to_reclaim(&met).map(|t| t.signal), Some(Signal::MemoryAvailable));
        let mut memory = PressureMemory::default();
        let t0 = Instant::now();
        let period = Duration::from_secs(300);
        let p = memory.observe(&met, t0, period);
        assert_eq!(p.names(), vec!["MemoryPressure"]);
        // Relieved, but within the transition period: still True; after it: False.
        assert!(memory.observe(&[], t0 + Duration::from_secs(10), period).memory);
        assert!(!memory.observe(&[], t0 + Duration::from_secs(301), period).memory);
        // Percentages are of capacity.
        let nodefs = parse_thresholds("nodefs.available<60%,memory.available<0%").unwrap();
        assert_eq!(
            thresholds_met(&nodefs, &obs)
                .iter()
                .map(|t| (t.signal, t.display(100)))
                .collect::<Vec<_>>(),
            vec![(Signal::NodeFsAvailable, "60".to_string())]
        );
    }

    #[test]
    fn pods_rank_by_usage_over_requests_then_priority_then_usage() {
        let best_effort_small = pod("be-small", 0, None);
        let best_effort_big = pod("be-big", 0, None);
        let guaranteed = pod("guaranteed", 0, Some("64Mi"));
        let important = pod("important", 1000, None);
        let no_stats = pod("no-stats", 0, Some("64Mi"));
        let mut candidates = vec![
            Candidate {
                pod: &guaranteed,
                usage: usage(10 << 20),
            },
            Candidate {
                pod: &important,
                usage: usage(900 << 20),
            },
            Candidate {
                pod: &best_effort_small,
                usage: usage(10 << 20),
            },
            Candidate {
                pod: &best_effort_big,
                usage: usage(500 << 20),
            },
            Candidate {
                pod: &no_stats,
                usage: None,
            },
        ];
        rank(&mut candidates, Resource::Memory);
        let names: Vec<&str> = candidates
            .iter()
            .map(|c| c.pod.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, ["no-stats", "be-big", "be-small", "important", "guaranteed"]);
        // PIDs: priority first, then the most processes.
        let mut by_pids = vec![
            Candidate {
                pod: &important,
                usage: Some(PodUsage {
                    processes: 500,
                    ..Default::default()
                }),
            },
            Candidate {
                pod: &guaranteed,
                usage: Some(PodUsage {
                    processes: 5,
                    ..Default::default()
                }),
            },
            Candidate {
                pod: &best_effort_big,
                usage: Some(PodUsage {
                    processes: 50,
                    ..Default::default()
                }),
            },
        ];
        rank(&mut by_pids, Resource::Pids);
        let names: Vec<&str> = by_pids
            .iter()
            .map(|c| c.pod.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, ["be-big", "guaranteed", "important"]);
    }

    #[test]
    fn critical_pods_are_recognised() {
        let mut p = pod("p", 0, None);
        assert!(!is_critical(&p));
        p.spec.as_mut().unwrap().priority = Some(2_000_001_000);
        assert!(is_critical(&p));
        let mut s = pod("s", 0, None);
        s.metadata.annotations = Some([("kubernetes.io/config.source".to_string(), "file".to_string())].into());
        assert!(is_critical(&s));
    }

    #[test]
    fn messages_and_status_are_the_kubelets() {
        let p = pod("hog", 0, None);
        let threshold = &parse_thresholds("memory.available<100Mi").unwrap()[0];
        let observation = Observation {
            available: 50 << 20,
            capacity: 1 << 30,
        };
        let message = eviction_message(Resource::Memory, threshold, &observation, &p, usage(10 << 20).as_ref());
        assert_eq!(
            message,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
             Container c was using 10Mi, request is 0, has larger consumption of memory. "
        );
        let g = pod("g", 0, Some("64Mi"));
        let quiet = eviction_message(Resource::Memory, threshold, &observation, &g, usage(10 << 20).as_ref());
        assert_eq!(
            quiet,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
        );
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap());
        let mut status = PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        mark_evicted(&mut status, &message, None, &now);
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("Evicted"));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.reason.as_deref()),
            ("DisruptionTarget", Some("TerminationByKubelet"))
        );
    }

    #[test]
    fn working_sets_read_from_v1_and_v2_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.usage_in_bytes"), "1000\n").unwrap();
        std::fs::write(dir.path().join("memory.stat"), "cache 5\ntotal_inactive_file 300\n").unwrap();
        assert_eq!(cgroup_working_set(dir.path()), Some(700));
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("memory.current"), "1000\n").unwrap();
        std::fs::write(v2.path().join("memory.stat"), "anon 600\ninactive_file 100\n").unwrap();
        assert_eq!(cgroup_working_set(v2.path()), Some(900));
        assert!(filesystem(dir.path()).is_some_and(|(b, i)| b.capacity > 0 && i.capacity > 0));
    }
}
