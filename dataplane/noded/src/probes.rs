//! Container probes: httpGet, tcpSocket and exec, with their thresholds.
//!
//! The pod worker asks [`Prober::observe`] on every tick; a probe runs only
//! when its period has passed (after `initialDelaySeconds`). Readiness
//! starts false and drives the pod's Ready condition (and so whether the
//! pod is a ready endpoint of its Services); liveness starts true and a
//! container that fails it `failureThreshold` times in a row is restarted;
//! startup holds the other two back until it has succeeded. After a noded
//! restart, running containers' results are [adopted](Prober::adopt) from
//! the Pod's last posted status rather than starting over.

use crate::cri::Cri;
use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which probe of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `startupProbe`.
    Startup,
    /// `readinessProbe`.
    Readiness,
    /// `livenessProbe`.
    Liveness,
}

#[derive(Debug, Clone)]
struct State {
    started: Instant,
    last_run: Option<Instant>,
    successes: i32,
    failures: i32,
    result: bool,
}

/// Probe results of every running container on the node, keyed by runtime container id.
///
/// Shared by all pod workers; the lock is held only to read or record a
/// state, never while a probe runs, so one slow probe delays no other pod.
#[derive(Debug, Default)]
pub struct Prober {
    states: Mutex<HashMap<(String, Kind), State>>,
}

/// Run one probe once: `true` on success.
pub async fn probe_once(cri: &Cri, probe: &Probe, pod_ip: &str, container_id: &str) -> bool {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let port = |p: &IntOrString| match p {
        IntOrString::Int(n) => Some(*n as u16),
        IntOrString::String(s) => s.parse().ok(),
    };
    if let Some(http) = &probe.http_get {
        let Some(port) = port(&http.port) else { return false };
        let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        return tokio::time::timeout(timeout, http_status(&host, port, &path))
            .await
            .ok()
            .flatten()
            .is_some_and(|code| (200..400).contains(&code));
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = port(&tcp.port) else { return false };
        let host = tcp.host.clone().unwrap_or_else(|| pod_ip.to_string());
        return matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await,
            Ok(Ok(_))
        );
    }
    if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        return matches!(cri.exec_sync(container_id, cmd, timeout).await, Ok(reply) if reply.exit_code == 0);
    }
    false
}

/// `GET path` over HTTP/1.0; the status code.
async fn http_status(host: &str, port: u16, path: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: sluice-noded-probe\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.ok()?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Prober {
    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Kind), State>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current result of a probe, running it first when due.
    /// Without a probe: readiness/startup are true once running, liveness true.
    pub async fn observe(
        &self,
        cri: &Cri,
        kind: Kind,
        probe: Option<&Probe>,
        pod_ip: &str,
        container_id: &str,
    ) -> bool {
        let Some(probe) = probe else { return true };
        let now = Instant::now();
        let key = (container_id.to_string(), kind);
        {
            let mut states = self.states();
            let state = states.entry(key.clone()).or_insert(State {
                started: now,
                last_run: None,
                successes: 0,
                failures: 0,
                result: kind == Kind::Liveness,
            });
            let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
            let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
            let due = now >= state.started + delay && state.last_run.is_none_or(|last| now >= last + period);
            if !due {
                return state.result;
            }
            state.last_run = Some(now);
        }
        let ok = probe_once(cri, probe, pod_ip, container_id).await;
        let mut states = self.states();
        let Some(state) = states.get_mut(&key) else {
            return false;
        };
        if ok {
            state.successes += 1;
            state.failures = 0;
            if state.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                state.result = true;
            }
        } else {
            state.failures += 1;
            state.successes = 0;
            if state.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                state.result = false;
            }
        }
        state.result
    }

    /// Whether a probe of a container has state yet (false for containers
    /// this process has not probed, e.g. right after a noded restart).
    pub fn knows(&self, container_id: &str, kind: Kind) -> bool {
        self.states().contains_key(&(container_id.to_string(), kind))
    }

    /// Start a probe's state from a result observed before (a running
    /// container adopted after a noded restart keeps the readiness the API
    /// last showed instead of flapping to not-ready); `started` is when the
    /// container started, so `initialDelaySeconds` counts from there.
    pub fn adopt(&self, container_id: &str, kind: Kind, result: bool, started: Instant) {
        self.states().entry((container_id.to_string(), kind)).or_insert(State {
            started,
            last_run: None,
            successes: 0,
            failures: 0,
            result,
        });
    }

    /// Forget containers that no longer exist.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.states().retain(|(id, _), _| live(id));
    }
}
