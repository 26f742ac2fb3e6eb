//! Usage from two scrapes: the CPU rate between a kubelet's last two
//! cumulative readings (nanocores) and its latest working set, per node and
//! per container, as Kubernetes' metrics-server stores them.
//!
//! A rate needs two readings of the same thing: for a container, the same
//! start time (a restarted container starts its counter again) and a counter
//! that did not go back; otherwise the container has no usage until its next
//! scrape. A pod is reported only when every container the kubelet listed
//! for it has a usage, so a pod never shows a partial sum. A node whose
//! scrape failed is forgotten until it answers again.

use std::collections::{BTreeMap, HashMap};

use crate::prom::{ContainerKey, Point, Scrape};

/// CPU and memory usage over a window ending at a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// End of the window, in milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// Length of the window, in milliseconds.
    pub window_ms: i64,
    /// Average CPU over the window, in nanocores.
    pub cpu_nanocores: u64,
    /// Working set at the end of the window, in bytes.
    pub memory_bytes: u64,
}

/// A pod's usage: per container, in the kubelet's order (by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    /// The latest container timestamp.
    pub timestamp_ms: i64,
    /// The longest container window.
    pub window_ms: i64,
    /// (container name, usage).
    pub containers: Vec<(String, Usage)>,
}

/// The last two scrapes of every node.
#[derive(Debug, Default)]
pub struct Storage {
    nodes: HashMap<String, (Option<Scrape>, Scrape)>,
}

/// The usage between `prev` and `last`, if they are readings of one counter.
pub fn usage(prev: &Point, last: &Point) -> Option<Usage> {
    let (c0, c1) = (prev.cpu_seconds?, last.cpu_seconds?);
    let window_ms = last.timestamp_ms - prev.timestamp_ms;
    if window_ms <= 0 || c1 < c0 || prev.start_time != last.start_time {
        return None;
    }
    let memory = last.memory_bytes.filter(|m| m.is_finite() && *m >= 0.0)?;
    let nanocores = (c1 - c0) * 1e9 * 1000.0 / window_ms as f64;
    if !nanocores.is_finite() {
        return None;
    }
    Some(Usage {
        timestamp_ms: last.timestamp_ms,
        window_ms,
        cpu_nanocores: nanocores.round() as u64,
        memory_bytes: memory.round() as u64,
    })
}

impl Storage {
    /// Record a node's new scrape (a scrape not newer than the last one
    /// replaces nothing).
    pub fn store(&mut self, node: &str, scrape: Scrape) {
        match self.nodes.get_mut(node) {
            Some((prev, last)) => {
                let stale = scrape.node.cpu_seconds.is_some() && scrape.node.timestamp_ms <= last.node.timestamp_ms;
                if !stale {
                    *prev = Some(std::mem::replace(last, scrape));
                }
            }
            None => {
                self.nodes.insert(node.to_string(), (None, scrape));
            }
        }
    }

    /// Forget a node (its scrape failed, or it is gone).
    pub fn forget(&mut self, node: &str) {
        self.nodes.remove(node);
    }

    /// Forget every node not in `names`.
    pub fn retain(&mut self, names: &[String]) {
        self.nodes.retain(|n, _| names.contains(n));
    }

    /// Every node's usage.
    pub fn node_usage(&self) -> BTreeMap<String, Usage> {
        self.nodes
            .iter()
            .filter_map(|(name, (prev, last))| Some((name.clone(), usage(&prev.as_ref()?.node, &last.node)?)))
            .collect()
    }

    /// Every pod's usage, by (namespace, name).
    pub fn pod_usage(&self) -> BTreeMap<(String, String), PodUsage> {
        let mut pods: BTreeMap<(String, String), Option<PodUsage>> = BTreeMap::new();
        for (prev, last) in self.nodes.values() {
            for (key, point) in &last.containers {
                let ContainerKey {
                    namespace,
                    pod,
                    container,
                } = key;
                let u = prev
                    .as_ref()
                    .and_then(|p| p.containers.get(key))
                    .and_then(|p0| usage(p0, point));
                let entry = pods.entry((namespace.clone(), pod.clone())).or_insert_with(|| {
                    Some(PodUsage {
                        timestamp_ms: 0,
                        window_ms: 0,
                        containers: Vec::new(),
                    })
                });
                match (entry.as_mut(), u) {
                    (Some(p), Some(u)) => {
                        p.timestamp_ms = p.timestamp_ms.max(u.timestamp_ms);
                        p.window_ms = p.window_ms.max(u.window_ms);
                        p.containers.push((container.clone(), u));
                    }
                    _ => *entry = None,
                }
            }
        }
        pods.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()
    }
}

/// CPU in nanocores as Kubernetes prints such a quantity (`resource.
/// NewScaledQuantity(n, -9)` in canonical form): the largest of `""`, `m`,
/// `u`, `n` that keeps the number whole (`250m`, `1234567n`, `2`).
pub fn cpu_quantity(nanocores: u64) -> String {
    if nanocores == 0 {
        return "0".into();
    }
    for (div, suffix) in [(1_000_000_000, ""), (1_000_000, "m"), (1_000, "u")] {
        if nanocores.is_multiple_of(div) {
            return format!("{}{suffix}", nanocores / div);
        }
    }
    format!("{nanocores}n")
}

/// Bytes as Kubernetes prints a binary-SI quantity in canonical form: the
/// largest power of 1024 that divides it (`512Ki`, `3Mi`), else plain bytes.
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let mut n = bytes;
    for suffix in ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
        if !n.is_multiple_of(1024) || suffix == "Ei" {
            return format!("{n}{suffix}");
        }
        n /= 1024;
    }
    unreachable!("the loop returns at Ei")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::parse;

    fn point(ts: i64, cpu: f64, mem: f64, start: Option<f64>) -> Point {
        Point {
            timestamp_ms: ts,
            cpu_seconds: Some(cpu),
            memory_bytes: Some(mem),
            start_time: start,
        }
    }

    #[test]
    fn rates_come_from_two_readings_of_one_counter() {
        let u = usage(
            &point(1_000, 1.0, 10.0, Some(5.0)),
            &point(16_000, 8.5, 20.0, Some(5.0)),
        )
        .unwrap();
        assert_eq!(u.cpu_nanocores, 500_000_000);
        assert_eq!(u.window_ms, 15_000);
        assert_eq!(u.memory_bytes, 20);
        // A restart (new start time), a counter going back, no time passing.
        assert_eq!(
            usage(&point(1_000, 1.0, 1.0, Some(5.0)), &point(2_000, 2.0, 1.0, Some(6.0))),
            None
        );
        assert_eq!(
            usage(&point(1_000, 3.0, 1.0, None), &point(2_000, 2.0, 1.0, None)),
            None
        );
        assert_eq!(
            usage(&point(1_000, 1.0, 1.0, None), &point(1_000, 2.0, 1.0, None)),
            None
        );
    }

    #[test]
    fn quantities_print_as_kubernetes_prints_them() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(1_500), "1500n");
        assert_eq!(cpu_quantity(12_000), "12u");
        assert_eq!(cpu_quantity(1_234_567), "1234567n");
        assert_eq!(memory_quantity(524_288), "512Ki");
        assert_eq!(memory_quantity(3 * 1024 * 1024), "3Mi");
        assert_eq!(memory_quantity(1_400_000_000), "1400000000");
        assert_eq!(memory_quantity(1_433_600_000), "1400000Ki");
        assert_eq!(memory_quantity(1_000_001), "1000001");
    }

    #[test]
    fn pods_and_nodes_from_two_scrapes() {
        let first = parse(crate::prom::tests::SAMPLE, 0).unwrap();
        let mut second = first.clone();
        second.node.timestamp_ms += 10_000;
        second.node.cpu_seconds = Some(357.35 + 5.0);
        for (k, p) in second.containers.iter_mut() {
            p.timestamp_ms += 10_000;
            if k.pod == "burner" {
                p.cpu_seconds = Some(12.5 + 9.0);
            }
        }
        let mut s = Storage::default();
        s.store("n1", first);
        assert!(s.node_usage().is_empty() && s.pod_usage().is_empty());
        s.store("n1", second);
        let n = s.node_usage()["n1"];
        assert_eq!(n.cpu_nanocores, 500_000_000);
        assert_eq!(n.memory_bytes, 1_400_000_000);
        let pods = s.pod_usage();
        let burner = &pods[&("top".to_string(), "burner".to_string())];
        assert_eq!(burner.containers[0].0, "burn");
        assert_eq!(burner.containers[0].1.cpu_nanocores, 900_000_000);
        assert_eq!(burner.window_ms, 10_000);
        let sleeper = &pods[&("top".to_string(), "sleeper".to_string())];
        assert_eq!(sleeper.containers[0].1.cpu_nanocores, 0);
        assert_eq!(sleeper.containers[0].1.memory_bytes, 524_288);
        s.forget("n1");
        assert!(s.pod_usage().is_empty());
    }
}
