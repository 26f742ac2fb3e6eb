//! Resource arithmetic: `resource.Quantity` parsing and what a pod requests.
//!
//! The scheduler compares integers: CPU in millicores, memory in bytes, pods as a count.
//! Quantities are parsed once when a pod or node enters the cache, never in the filter loop.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;
use thiserror::Error;

/// CPU assumed for a container without a CPU request when *scoring* (like kube-scheduler).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container without a memory request when *scoring* (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A quantity string that is not a valid `resource.Quantity`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// Parse a Kubernetes quantity and return its value multiplied by 1000, rounded up
/// (the `MilliValue` of the Go implementation): `"100m"` → 100, `"1"` → 1000, `"1Ki"` → 1024000.
pub fn parse_milli(q: &str) -> Result<i64, QuantityError> {
    let err = || QuantityError(q.to_string());
    let s = q.trim();
    if s.is_empty() {
        return Err(err());
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // value = digits * 10^(-frac_len) * base^exp; work in i128 with the value scaled by 1000.
    let digits: i128 = format!("{int_part}{frac_part}").parse().map_err(|_| err())?;
    let mut dec_exp: i32 = -(frac_part.len() as i32) + 3; // +3: milli
    let mut bin_mult: i128 = 1;
    match suffix {
        "" => {}
        "n" => dec_exp -= 9,
        "u" => dec_exp -= 6,
        "m" => dec_exp -= 3,
        "k" => dec_exp += 3,
        "M" => dec_exp += 6,
        "G" => dec_exp += 9,
        "T" => dec_exp += 12,
        "P" => dec_exp += 15,
        "E" => dec_exp += 18,
        "Ki" => bin_mult = 1 << 10,
        "Mi" => bin_mult = 1 << 20,
        "Gi" => bin_mult = 1 << 30,
        "Ti" => bin_mult = 1 << 40,
        "Pi" => bin_mult = 1 << 50,
        "Ei" => bin_mult = 1 << 60,
        other if other.starts_with(['e', 'E']) => {
            let e: i32 = other[1..].parse().map_err(|_| err())?;
            if e.abs() > 30 {
                return Err(err());
            }
            dec_exp += e;
        }
        _ => return Err(err()),
    }
    let mut value = digits.checked_mul(bin_mult).ok_or_else(err)?;
    if dec_exp >= 0 {
        if dec_exp > 30 {
            return Err(err());
        }
        value = value.checked_mul(10i128.pow(dec_exp as u32)).ok_or_else(err)?;
    } else {
        let div = 10i128.checked_pow((-dec_exp) as u32).ok_or_else(err)?;
        value = (value + div - 1) / div; // round up, like MilliValue
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).map_err(|_| err())
}

/// Parse a quantity as a whole number of units (bytes, pods), rounding up.
pub fn parse_value(q: &str) -> Result<i64, QuantityError> {
    let milli = parse_milli(q)?;
    Ok(if milli >= 0 { (milli + 999) / 1000 } else { milli / 1000 })
}

/// The three resources the scheduler accounts for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Number of pods.
    pub pods: i64,
}

impl Resources {
    /// Component-wise sum.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.pods += other.pods;
    }

    /// Component-wise difference.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.pods -= other.pods;
    }

    /// Component-wise maximum.
    fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.pods = self.pods.max(other.pods);
    }

    /// Read cpu/memory/pods from a resource list (node capacity or allocatable).
    /// Unparseable entries count as zero: a node with a broken status offers nothing.
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let get = |name: &str, milli: bool| {
            list.and_then(|l| l.get(name))
                .and_then(|q| if milli { parse_milli(&q.0) } else { parse_value(&q.0) }.ok())
                .unwrap_or(0)
        };
        Resources {
            milli_cpu: get("cpu", true),
            memory: get("memory", false),
            pods: get("pods", false),
        }
    }
}

/// What a pod asks of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// Requests used for fitting (`pods` is always 1).
    pub requests: Resources,
    /// Requests with per-container defaults for missing cpu/memory, used for scoring.
    pub non_zero: Resources,
}

/// A container's effective request for one resource: its request, else its limit
/// (the API defaults requests to limits; do it here too in case it did not).
fn container_request(c: &Container, name: &str, milli: bool) -> Option<i64> {
    let res = c.resources.as_ref()?;
    let q = res
        .requests
        .as_ref()
        .and_then(|r| r.get(name))
        .or_else(|| res.limits.as_ref().and_then(|l| l.get(name)))?;
    if milli { parse_milli(&q.0) } else { parse_value(&q.0) }.ok()
}

fn container_resources(c: &Container, non_zero: bool) -> Resources {
    let cpu = container_request(c, "cpu", true);
    let mem = container_request(c, "memory", false);
    Resources {
        milli_cpu: cpu.unwrap_or(if non_zero { DEFAULT_MILLI_CPU_REQUEST } else { 0 }),
        memory: mem.unwrap_or(if non_zero { DEFAULT_MEMORY_REQUEST } else { 0 }),
        pods: 0,
    }
}

/// Effective requests of a pod spec, following Kubernetes' rule:
/// `max(sum(containers) + sum(sidecars), max over init containers i of (init_i + sidecars started before i))`
/// plus the pod overhead, where sidecars are init containers with `restartPolicy: Always`.
fn spec_requests(spec: &PodSpec, non_zero: bool) -> Resources {
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&container_resources(c, non_zero));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_resources(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_max.max(&sidecars);
        } else {
            let mut during = sidecars;
            during.add(&r);
            init_max.max(&during);
        }
    }
    sum.add(&sidecars);
    sum.max(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        let o = Resources::from_list(Some(overhead));
        sum.milli_cpu += o.milli_cpu;
        sum.memory += o.memory;
    }
    sum.pods = 1;
    sum
}

/// Compute a pod's requests once, for the cache and the filters.
pub fn pod_requests(pod: &Pod) -> PodRequests {
    match pod.spec.as_ref() {
        Some(spec) => PodRequests {
            requests: spec_requests(spec, false),
            non_zero: spec_requests(spec, true),
        },
        None => PodRequests {
            requests: Resources {
                pods: 1,
                ..Default::default()
            },
            non_zero: Resources {
                milli_cpu: DEFAULT_MILLI_CPU_REQUEST,
                memory: DEFAULT_MEMORY_REQUEST,
                pods: 1,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    #[test]
    fn parses_quantities_like_kubernetes() {
        assert_eq!(parse_milli("100m"), Ok(100));
        assert_eq!(parse_milli("1"), Ok(1000));
        assert_eq!(parse_milli("0.5"), Ok(500));
        assert_eq!(parse_milli("2.5"), Ok(2500));
        assert_eq!(parse_milli("1u"), Ok(1)); // rounded up
        assert_eq!(parse_value("1Ki"), Ok(1024));
        assert_eq!(parse_value("128Mi"), Ok(128 << 20));
        assert_eq!(parse_value("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_value("1G"), Ok(1_000_000_000));
        assert_eq!(parse_value("1e3"), Ok(1000));
        assert_eq!(parse_value("110"), Ok(110));
        assert_eq!(parse_value("5k"), Ok(5000));
        for bad in ["", "abc", "1.2.3", "12Xi", "m", "1e"] {
            assert!(parse_milli(bad).is_err(), "{bad} should be rejected");
        }
    }

    fn container(cpu: Option<&str>, mem: Option<&str>) -> Container {
        let mut requests = BTreeMap::new();
        if let Some(c) = cpu {
            requests.insert("cpu".to_string(), Quantity(c.into()));
        }
        if let Some(m) = mem {
            requests.insert("memory".to_string(), Quantity(m.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_requests_take_the_init_container_maximum() {
        let mut sidecar = container(Some("100m"), Some("10Mi"));
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            containers: vec![container(Some("200m"), Some("100Mi")), container(Some("300m"), None)],
            init_containers: Some(vec![container(Some("2"), Some("50Mi")), sidecar]),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(spec),
            ..Default::default()
        };
        let r = pod_requests(&pod);
        // cpu: max(500 + 100 sidecar, 2000 init) = 2000; memory: max(100Mi + 10Mi, 50Mi) = 110Mi.
        assert_eq!(
            r.requests,
            Resources {
                milli_cpu: 2000,
                memory: 110 << 20,
                pods: 1
            }
        );
        // The container without a memory request counts 200Mi when scoring.
        assert_eq!(r.non_zero.memory, (110 << 20) + DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn limits_stand_in_for_missing_requests() {
        let mut limits = BTreeMap::new();
        limits.insert("cpu".to_string(), Quantity("1".into()));
        let c = Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: Some(limits),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![c],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(pod_requests(&pod).requests.milli_cpu, 1000);
    }
}
