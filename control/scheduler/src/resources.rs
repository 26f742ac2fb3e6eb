//! Resource arithmetic: `resource.Quantity` parsing and what a pod requests.
//!
//! The scheduler compares integers: CPU in millicores, memory in bytes, pods as a count.
//! Quantities are parsed once when a pod or node enters the cache, never in the filter loop.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// CPU assumed for a container without a CPU request when *scoring* (like kube-scheduler).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container without a memory request when *scoring* (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

use sluice_kube::quantity::{parse_milli, parse_value};

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
