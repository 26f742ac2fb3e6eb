//! The replica count a resource metric asks for: Kubernetes' replica
//! calculator (`GetResourceReplicas` for utilization targets,
//! `GetRawResourceReplicas` for average values), as pure functions over
//! the pods and their samples.
//!
//! Pods being deleted or Failed are ignored; Pending pods, and for CPU pods
//! that are not Ready (or whose sample may predate their readiness within
//! the CPU initialization period) are "unready"; pods without a sample are
//! "missing". The ratio of usage to target is taken over the ready pods
//! with samples; inside the tolerance nothing changes. When pods are
//! unready or missing, the ratio is recomputed conservatively (missing pods
//! count at the target on a scale-down and at 0 on a scale-up; unready ones
//! at 0 on a scale-up) and a recommendation that would flip direction or
//! stay within the tolerance keeps the current count.

use std::collections::BTreeMap;

/// What Kubernetes groups a pod by (the fields of the pod it reads).
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    /// Pod name (the key of the metrics).
    pub name: String,
    /// `status.phase`.
    pub phase: String,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The Ready condition: whether True, and its last transition (ms).
    pub ready: Option<(bool, i64)>,
    /// `status.startTime` (ms).
    pub start_time: Option<i64>,
    /// Sum of the containers' requests of the resource (milli), or the
    /// error naming the container without one.
    pub request: Result<i64, String>,
}

/// One pod's sample from `metrics.k8s.io`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Sum over the pod's containers (milli-units).
    pub value: i64,
    /// When it was taken (ms).
    pub timestamp: i64,
    /// The window it covers (ms).
    pub window: i64,
}

/// The metric's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `averageUtilization`, percent of the request.
    Utilization(i64),
    /// `averageValue` (milli-units).
    AverageValue(i64),
}

/// Controller settings the calculation depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Tolerance below 1.0 (scale down only beyond it).
    pub tolerance_down: f64,
    /// Tolerance above 1.0.
    pub tolerance_up: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (ms).
    pub cpu_initialization_period: i64,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (ms).
    pub initial_readiness_delay: i64,
    /// Now (ms).
    pub now: i64,
}

impl Settings {
    fn within_tolerance(&self, ratio: f64) -> bool {
        (1.0 - self.tolerance_down) <= ratio && ratio <= (1.0 + self.tolerance_up)
    }
}

/// A recommendation and the usage it was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// Replicas asked for.
    pub replicas: i32,
    /// Utilization in percent of the request (utilization targets).
    pub utilization: Option<i32>,
    /// Average usage per pod (milli-units).
    pub average: i64,
}

/// Error texts as Kubernetes'.
pub const NO_PODS: &str = "no pods returned by selector while calculating replica count";
/// No usable sample left.
pub const NO_METRICS: &str = "did not receive metrics for targeted pods (pods might be unready)";

struct Groups {
    ready: usize,
    unready: Vec<String>,
    missing: Vec<String>,
    ignored: Vec<String>,
}

/// Kubernetes' `groupPods`.
fn group(pods: &[PodSample], samples: &BTreeMap<String, Sample>, cpu: bool, s: &Settings) -> Groups {
    let mut g = Groups {
        ready: 0,
        unready: Vec::new(),
        missing: Vec::new(),
        ignored: Vec::new(),
    };
    for pod in pods {
        if pod.deleting || pod.phase == "Failed" {
            g.ignored.push(pod.name.clone());
            continue;
        }
        if pod.phase == "Pending" {
            g.unready.push(pod.name.clone());
            continue;
        }
        let Some(sample) = samples.get(&pod.name) else {
            g.missing.push(pod.name.clone());
            continue;
        };
        if cpu {
            let unready = match (pod.ready, pod.start_time) {
                (Some((ready, transition)), Some(start)) => {
                    if start + s.cpu_initialization_period > s.now {
                        // Within initialization: the sample must be of a ready pod
                        // and cover a full window after it became so.
                        !ready || sample.timestamp < transition + sample.window
                    } else {
                        // Never been ready: ignore it.
                        !ready && start + s.initial_readiness_delay > transition
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.push(pod.name.clone());
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// Kubernetes' `GetResourceUtilizationRatio`: (ratio, utilization, average).
fn utilization_ratio(
    samples: &BTreeMap<String, Sample>,
    requests: &BTreeMap<String, i64>,
    target: i64,
) -> Result<(f64, i32, i64), String> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, sample) in samples {
        let Some(req) = requests.get(pod) else { continue };
        used += sample.value;
        requested += req;
        n += 1;
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = (used * 100 / requested) as i32;
    Ok((f64::from(utilization) / target as f64, utilization, used / n))
}

/// Kubernetes' `GetMetricUsageRatio`: (ratio, average).
fn usage_ratio(samples: &BTreeMap<String, Sample>, target: i64) -> (f64, i64) {
    let total: i64 = samples.values().map(|s| s.value).sum();
    let average = total / samples.len().max(1) as i64;
    (average as f64 / target as f64, average)
}

/// The replicas `target` asks for, given the scale's current replica count,
/// the pods its selector matches and their samples.
pub fn replicas(
    current: i32,
    target: Target,
    cpu: bool,
    pods: &[PodSample],
    samples: &BTreeMap<String, Sample>,
    s: &Settings,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err(NO_PODS.into());
    }
    let groups = group(pods, samples, cpu, s);
    let mut samples: BTreeMap<String, Sample> = samples
        .iter()
        .filter(|(name, _)| pods.iter().any(|p| &p.name == *name))
        .filter(|(name, _)| !groups.ignored.contains(name) && !groups.unready.contains(name))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if samples.is_empty() {
        return Err(NO_METRICS.into());
    }
    let requests: BTreeMap<String, i64> = match target {
        Target::Utilization(_) => pods
            .iter()
            .map(|p| p.request.clone().map(|r| (p.name.clone(), r)))
            .collect::<Result<_, _>>()?,
        Target::AverageValue(_) => BTreeMap::new(),
    };
    let ratio = |samples: &BTreeMap<String, Sample>| -> Result<(f64, Option<i32>, i64), String> {
        match target {
            Target::Utilization(t) => utilization_ratio(samples, &requests, t).map(|(r, u, a)| (r, Some(u), a)),
            Target::AverageValue(t) => {
                let (r, a) = usage_ratio(samples, t);
                Ok((r, None, a))
            }
        }
    };
    let (usage, utilization, average) = ratio(&samples)?;
    let keep = Proposal {
        replicas: current,
        utilization,
        average,
    };
    let scale_up_with_unready = !groups.unready.is_empty() && usage > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if s.within_tolerance(usage) {
            return Ok(keep);
        }
        return Ok(Proposal {
            replicas: (usage * groups.ready as f64).ceil() as i32,
            ..keep
        });
    }
    let at = |value: i64| Sample {
        value,
        timestamp: s.now,
        window: 0,
    };
    for pod in &groups.missing {
        let value = if usage < 1.0 {
            // Scaling down: a pod without a sample counts as using its
            // request (or the target, if higher).
            match target {
                Target::Utilization(t) => requests.get(pod).copied().unwrap_or(0) * t.max(100) / 100,
                Target::AverageValue(t) => t,
            }
        } else {
            0
        };
        if usage != 1.0 {
            samples.insert(pod.clone(), at(value));
        }
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            samples.insert(pod.clone(), at(0));
        }
    }
    let (new_usage, _, _) = ratio(&samples)?;
    if s.within_tolerance(new_usage) || (usage < 1.0 && new_usage > 1.0) || (usage > 1.0 && new_usage < 1.0) {
        return Ok(keep);
    }
    let proposed = (new_usage * samples.len() as f64).ceil() as i32;
    if (new_usage < 1.0 && proposed > current) || (new_usage > 1.0 && proposed < current) {
        return Ok(keep);
    }
    Ok(Proposal {
        replicas: proposed,
        ..keep
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000;

    fn settings() -> Settings {
        Settings {
            tolerance_down: 0.1,
            tolerance_up: 0.1,
            cpu_initialization_period: 300_000,
            initial_readiness_delay: 30_000,
            now: NOW,
        }
    }

    /// A Running pod, Ready for ten minutes, requesting 100m.
    fn pod(name: &str) -> PodSample {
        PodSample {
            name: name.into(),
            phase: "Running".into(),
            deleting: false,
            ready: Some((true, NOW - 600_000)),
            start_time: Some(NOW - 700_000),
            request: Ok(100),
        }
    }

    fn samples(values: &[(&str, i64)]) -> BTreeMap<String, Sample> {
        values
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    Sample {
                        value: *v,
                        timestamp: NOW - 5_000,
                        window: 15_000,
                    },
                )
            })
            .collect()
    }

    fn cpu(current: i32, target: i64, pods: &[PodSample], values: &[(&str, i64)]) -> Result<Proposal, String> {
        replicas(
            current,
            Target::Utilization(target),
            true,
            pods,
            &samples(values),
            &settings(),
        )
    }

    #[test]
    fn ceil_of_current_times_usage_over_target() {
        // One pod at 200% of its request, target 50%: 4 replicas.
        let p = cpu(1, 50, &[pod("a")], &[("a", 200)]).unwrap();
        assert_eq!(
            p,
            Proposal {
                replicas: 4,
                utilization: Some(200),
                average: 200
            }
        );
        // Three pods at 10%: ceil(3 * 0.2) = 1.
        let pods = [pod("a"), pod("b"), pod("c")];
        assert_eq!(
            cpu(3, 50, &pods, &[("a", 10), ("b", 10), ("c", 10)]).unwrap().replicas,
            1
        );
    }

    #[test]
    fn within_ten_percent_nothing_changes() {
        let pods = [pod("a"), pod("b")];
        assert_eq!(cpu(2, 50, &pods, &[("a", 54), ("b", 54)]).unwrap().replicas, 2);
        assert_eq!(cpu(2, 50, &pods, &[("a", 46), ("b", 46)]).unwrap().replicas, 2);
        assert_eq!(cpu(2, 50, &pods, &[("a", 60), ("b", 60)]).unwrap().replicas, 3);
    }

    #[test]
    fn missing_pods_count_at_the_request_on_scale_down_and_zero_on_scale_up() {
        let pods = [pod("a"), pod("b"), pod("c"), pod("d")];
        // Two at 10% and two unknown: on a scale-down the unknown count as 100%,
        // so usage (10+10+100+100)/4 = 55% of 50 is within reach: ceil(4*1.1) flips
        // direction, so the count stays.
        assert_eq!(cpu(4, 50, &pods, &[("a", 10), ("b", 10)]).unwrap().replicas, 4);
        // Two at 200% and two unknown (counted as 0): (200+200)/4 = 100% of 50: 8.
        assert_eq!(cpu(4, 50, &pods, &[("a", 200), ("b", 200)]).unwrap().replicas, 8);
    }

    #[test]
    fn unready_and_pending_pods_hold_back_a_scale_up() {
        let mut pending = pod("b");
        pending.phase = "Pending".into();
        // a at 100% of target 50 (ratio 2), b Pending counted as 0: ratio 1.0 → keep 2.
        assert_eq!(
            cpu(2, 50, &[pod("a"), pending.clone()], &[("a", 100)])
                .unwrap()
                .replicas,
            2
        );
        // An unready (never-ready, just started) pod's sample is not used either.
        let mut starting = pod("c");
        starting.ready = Some((false, NOW - 1_000));
        starting.start_time = Some(NOW - 2_000);
        let p = cpu(3, 50, &[pod("a"), pending, starting], &[("a", 300), ("c", 500)]).unwrap();
        // (300 + 0 + 0) / 300 = 100% → ratio 2 → ceil(2 * 3) = 6.
        assert_eq!(p.replicas, 6);
        assert_eq!(p.utilization, Some(300));
    }

    #[test]
    fn deleted_and_failed_pods_are_ignored_and_errors_read_as_kubernetes() {
        let mut gone = pod("b");
        gone.deleting = true;
        let mut failed = pod("c");
        failed.phase = "Failed".into();
        assert_eq!(
            cpu(3, 50, &[pod("a"), gone, failed], &[("a", 100), ("b", 900), ("c", 900)])
                .unwrap()
                .replicas,
            2
        );
        assert_eq!(cpu(1, 50, &[], &[]).unwrap_err(), NO_PODS);
        let mut pending = pod("a");
        pending.phase = "Pending".into();
        assert_eq!(cpu(1, 50, &[pending], &[("a", 10)]).unwrap_err(), NO_METRICS);
        let mut no_request = pod("a");
        no_request.request = Err("missing request for cpu in container app of Pod a".into());
        assert_eq!(
            cpu(1, 50, &[no_request], &[("a", 10)]).unwrap_err(),
            "missing request for cpu in container app of Pod a"
        );
    }

    #[test]
    fn average_value_targets_divide_by_pods() {
        let pods = [pod("a"), pod("b")];
        // Memory 300Mi and 100Mi against 100Mi per pod (in milli): ratio 2 → 4.
        let mi = 1024 * 1024 * 1000;
        let p = replicas(
            2,
            Target::AverageValue(100 * mi),
            false,
            &pods,
            &samples(&[("a", 300 * mi), ("b", 100 * mi)]),
            &settings(),
        )
        .unwrap();
        assert_eq!(
            p,
            Proposal {
                replicas: 4,
                utilization: None,
                average: 200 * mi
            }
        );
    }
}
