//! The kubelet's `/metrics/resource` answer, parsed: the Prometheus text
//! exposition format, reduced to the series metrics-server reads
//! (`node_cpu_usage_seconds_total`, `node_memory_working_set_bytes`,
//! `container_cpu_usage_seconds_total`, `container_memory_working_set_bytes`,
//! `container_start_time_seconds`; everything else is skipped). Samples carry
//! the kubelet's millisecond timestamps; a sample without one gets the scrape
//! time, as Kubernetes' metrics-server does.

use std::collections::BTreeMap;

/// A container, as the kubelet labels its series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerKey {
    /// `namespace` label.
    pub namespace: String,
    /// `pod` label.
    pub pod: String,
    /// `container` label.
    pub container: String,
}

/// A cumulative CPU reading and a memory reading taken at one time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// Milliseconds since the epoch the CPU counter was read at.
    pub timestamp_ms: i64,
    /// Cumulative CPU time in core-seconds.
    pub cpu_seconds: Option<f64>,
    /// Working set in bytes.
    pub memory_bytes: Option<f64>,
    /// When the container started (seconds since the epoch), if known.
    pub start_time: Option<f64>,
}

/// One scrape of one kubelet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scrape {
    /// The node's own readings.
    pub node: Point,
    /// Per container.
    pub containers: BTreeMap<ContainerKey, Point>,
}

/// Why a line of the answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One sample line: name, labels, value, timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
    /// Timestamp in milliseconds, if the line has one.
    pub timestamp_ms: Option<i64>,
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parse one sample line (not a comment, not blank).
pub fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or("no value")?;
    let name = line[..name_end].to_string();
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        loop {
            while chars.peek().is_some_and(|(_, c)| *c == ',' || c.is_ascii_whitespace()) {
                chars.next();
            }
            let Some(&(start, c)) = chars.peek() else { break };
            if c == '}' {
                end = Some(start + 1);
                break;
            }
            let mut key_end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c == '=' {
                    key_end = i;
                    break;
                }
                chars.next();
            }
            let key = after[start..key_end].trim().to_string();
            chars.next(); // '='
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key:?}: value not quoted"));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("label {key:?}: unterminated value"));
            }
            labels.insert(key, value);
        }
        let end = end.ok_or("labels not closed")?;
        rest = &after[end..];
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value).ok_or_else(|| format!("bad value {value:?}"))?;
    let timestamp_ms = match fields.next() {
        Some(t) => Some(t.parse().map_err(|_| format!("bad timestamp {t:?}"))?),
        None => None,
    };
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

fn container_key(labels: &BTreeMap<String, String>) -> Option<ContainerKey> {
    Some(ContainerKey {
        namespace: labels.get("namespace")?.clone(),
        pod: labels.get("pod")?.clone(),
        container: labels.get("container")?.clone(),
    })
}

/// Read a `/metrics/resource` answer scraped at `now_ms`.
pub fn parse(text: &str, now_ms: i64) -> Result<Scrape, ParseError> {
    let mut out = Scrape::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let s = parse_line(line).map_err(|message| ParseError { line: i + 1, message })?;
        let ts = s.timestamp_ms.unwrap_or(now_ms);
        match s.name.as_str() {
            "node_cpu_usage_seconds_total" => {
                out.node.cpu_seconds = Some(s.value);
                out.node.timestamp_ms = ts;
            }
            "node_memory_working_set_bytes" => out.node.memory_bytes = Some(s.value),
            "container_cpu_usage_seconds_total" => {
                if let Some(k) = container_key(&s.labels) {
                    let p = out.containers.entry(k).or_default();
                    p.cpu_seconds = Some(s.value);
                    p.timestamp_ms = ts;
                }
            }
            "container_memory_working_set_bytes" => {
                if let Some(k) = container_key(&s.labels) {
                    out.containers.entry(k).or_default().memory_bytes = Some(s.value);
                }
            }
            "container_start_time_seconds" => {
                if let Some(k) = container_key(&s.labels) {
                    out.containers.entry(k).or_default().start_time = Some(s.value);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The kubelet's answer, in the shape and order Kubernetes' kubelet
    /// prints it (HELP/TYPE lines, `[STABLE]`/`[ALPHA]` notes, exponent
    /// notation, millisecond timestamps).
    pub(crate) const SAMPLE: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="burn",namespace="top",pod="burner"} 12.5 1700000015000
container_cpu_usage_seconds_total{container="nap",namespace="top",pod="sleeper"} 0.0125 1700000015100
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="burn",namespace="top",pod="burner"} 1.048576e+06 1700000015000
container_memory_working_set_bytes{container="nap",namespace="top",pod="sleeper"} 524288 1700000015100
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="burn",namespace="top",pod="burner"} 1.6999999e+09 1699999900000
container_start_time_seconds{container="nap",namespace="top",pod="sleeper"} 1.6999999e+09 1699999900000
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 357.35 1700000014720
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.4e+09 1700000014720
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="top",pod="burner"} 12.5 1700000015000
# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
"#;

    #[test]
    fn the_kubelets_answer_is_read() {
        let s = parse(SAMPLE, 1).unwrap();
        assert_eq!(s.node.cpu_seconds, Some(357.35));
        assert_eq!(s.node.memory_bytes, Some(1.4e9));
        assert_eq!(s.node.timestamp_ms, 1_700_000_014_720);
        assert_eq!(s.containers.len(), 2);
        let burn = &s.containers[&ContainerKey {
            namespace: "top".into(),
            pod: "burner".into(),
            container: "burn".into(),
        }];
        assert_eq!(burn.cpu_seconds, Some(12.5));
        assert_eq!(burn.memory_bytes, Some(1_048_576.0));
        assert_eq!(burn.start_time, Some(1.6999999e9));
        assert_eq!(burn.timestamp_ms, 1_700_000_015_000);
    }

    #[test]
    fn labels_are_unescaped_and_timestamps_optional() {
        let s = parse_line(r#"m{a="x\"y",b="1\\2", c="n\nl",} 3"#).unwrap();
        assert_eq!(s.labels["a"], "x\"y");
        assert_eq!(s.labels["b"], "1\\2");
        assert_eq!(s.labels["c"], "n\nl");
        assert_eq!(s.value, 3.0);
        assert_eq!(s.timestamp_ms, None);
        let s = parse("node_cpu_usage_seconds_total 2\n", 42).unwrap();
        assert_eq!(s.node.timestamp_ms, 42);
        assert!(parse_line("m{a=1} 2").is_err());
        assert!(parse_line("m{a=\"1\"").is_err());
        assert_eq!(parse("x 1\nbroken{\n", 0).unwrap_err().line, 2);
    }
}
