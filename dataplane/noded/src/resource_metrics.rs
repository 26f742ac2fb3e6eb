//! The kubelet's `/metrics/resource`: one [`crate::stats::Stats`] reading in
//! the Prometheus text format (0.0.4), with the kubelet's series, help texts
//! and labels (`pkg/kubelet/metrics/collectors/resource_metrics.go`) and each
//! sample stamped with the reading's time in milliseconds, which is what
//! metrics-server reads:
//! - `node_cpu_usage_seconds_total`, `node_memory_working_set_bytes`;
//! - `pod_cpu_usage_seconds_total`, `pod_memory_working_set_bytes` (`namespace`, `pod`);
//! - `container_cpu_usage_seconds_total`, `container_memory_working_set_bytes`,
//!   `container_start_time_seconds` (`container`, `namespace`, `pod`), running containers only;
//! - `scrape_error`: 1 when the runtime could not be listed, else 0.
//!
//! Written by hand rather than with `prometheus-client`: that crate encodes
//! OpenMetrics, which has no per-sample timestamps in milliseconds.

use std::fmt::Write;

use crate::stats::Stats;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escape a label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64, Option<i64>)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, labels: &[(&str, &str)], value: f64, time_ms: Option<i64>) {
        let labels = if labels.is_empty() {
            String::new()
        } else {
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            format!("{{{}}}", inner.join(","))
        };
        self.samples.push((labels, value, time_ms));
    }

    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        // Writing into a String cannot fail.
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value, time) in &self.samples {
            let _ = match time {
                Some(t) => writeln!(out, "{}{labels} {value} {t}", self.name),
                None => writeln!(out, "{}{labels} {value}", self.name),
            };
        }
    }
}

/// `stats` as the kubelet's `/metrics/resource` text.
pub fn render(stats: &Stats) -> String {
    let t = Some(stats.time_ms);
    let seconds = |ns: u64| ns as f64 / 1e9;
    let mut container_start = Family::new(
        "container_start_time_seconds",
        "gauge",
        "[STABLE] Start time of the container since unix epoch in seconds",
    );
    let mut container_cpu = Family::new(
        "container_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
    );
    let mut container_memory = Family::new(
        "container_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the container in bytes",
    );
    let mut node_cpu = Family::new(
        "node_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
    );
    let mut node_memory = Family::new(
        "node_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the node in bytes",
    );
    let mut pod_cpu = Family::new(
        "pod_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
    );
    let mut pod_memory = Family::new(
        "pod_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the pod in bytes",
    );
    let mut scrape_error = Family::new(
        "scrape_error",
        "gauge",
        "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
    );
    if let Some(cpu) = &stats.node_cpu {
        node_cpu.push(&[], seconds(cpu.usage_core_nano_seconds), t);
    }
    if let Some(memory) = &stats.node_memory {
        node_memory.push(&[], memory.working_set_bytes as f64, t);
    }
    for pod in &stats.pods {
        let pod_labels = [("namespace", pod.namespace.as_str()), ("pod", pod.name.as_str())];
        if let Some(cpu) = &pod.cpu {
            pod_cpu.push(&pod_labels, seconds(cpu.usage_core_nano_seconds), t);
        }
        if let Some(memory) = &pod.memory {
            pod_memory.push(&pod_labels, memory.working_set_bytes as f64, t);
        }
        for c in &pod.containers {
            let labels = [
                ("container", c.name.as_str()),
                ("namespace", pod.namespace.as_str()),
                ("pod", pod.name.as_str()),
            ];
            container_start.push(&labels, c.start_time, t);
            if let Some(cpu) = &c.cpu {
                container_cpu.push(&labels, seconds(cpu.usage_core_nano_seconds), t);
            }
            if let Some(memory) = &c.memory {
                container_memory.push(&labels, memory.working_set_bytes as f64, t);
            }
        }
    }
    scrape_error.push(&[], if stats.runtime_error { 1.0 } else { 0.0 }, None);
    let mut out = String::new();
    for family in [
        &container_cpu,
        &container_memory,
        &container_start,
        &node_cpu,
        &node_memory,
        &pod_cpu,
        &pod_memory,
        &scrape_error,
    ] {
        family.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ContainerStats, Cpu, Memory, PodStats};

    #[test]
    fn the_kubelet_series_with_labels_and_millisecond_timestamps() {
        let cpu = Cpu {
            usage_core_nano_seconds: 1_500_000_000,
            usage_nano_cores: None,
        };
        let memory = Memory {
            working_set_bytes: 4096,
            ..Memory::default()
        };
        let stats = Stats {
            time_ms: 1_700_000_000_123,
            node_start_time: None,
            node_cpu: Some(cpu),
            node_memory: Some(memory),
            pods: vec![PodStats {
                name: "web".into(),
                namespace: "shop".into(),
                uid: "u".into(),
                start_time: 1_699_999_000.0,
                containers: vec![ContainerStats {
                    name: "app".into(),
                    start_time: 1_699_999_001.5,
                    cpu: Some(cpu),
                    memory: Some(memory),
                }],
                cpu: Some(cpu),
                memory: Some(memory),
            }],
            runtime_error: false,
        };
        let text = render(&stats);
        for line in [
            "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds",
            "# TYPE container_cpu_usage_seconds_total counter",
            "container_cpu_usage_seconds_total{container=\"app\",namespace=\"shop\",pod=\"web\"} 1.5 1700000000123",
            "container_memory_working_set_bytes{container=\"app\",namespace=\"shop\",pod=\"web\"} 4096 1700000000123",
            "container_start_time_seconds{container=\"app\",namespace=\"shop\",pod=\"web\"} 1699999001.5 1700000000123",
            "node_cpu_usage_seconds_total 1.5 1700000000123",
            "node_memory_working_set_bytes 4096 1700000000123",
            "pod_cpu_usage_seconds_total{namespace=\"shop\",pod=\"web\"} 1.5 1700000000123",
            "pod_memory_working_set_bytes{namespace=\"shop\",pod=\"web\"} 4096 1700000000123",
            "# TYPE scrape_error gauge",
            "scrape_error 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_runtime_failure_is_a_scrape_error_and_label_values_are_escaped() {
        let stats = Stats {
            time_ms: 1,
            node_start_time: None,
            node_cpu: None,
            node_memory: None,
            pods: Vec::new(),
            runtime_error: true,
        };
        let text = render(&stats);
        assert!(text.contains("\nscrape_error 1\n"), "{text}");
        assert!(
            !text.contains("node_cpu_usage_seconds_total"),
            "unmeasured series are left out"
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
