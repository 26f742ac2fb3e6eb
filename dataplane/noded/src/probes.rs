//! Container probes: httpGet, tcpSocket, gRPC (grpc.health.v1) and exec,
//! with their thresholds. Ports may be named after the container's `ports`.
//! A probe that fails or errors yields the kubelet's `Unhealthy` event text
//! (`Readiness probe failed: HTTP probe failed with statuscode: 500`).
//!
//! The pod worker asks [`Prober::observe`] on every tick; a probe runs only
//! when its period has passed (after `initialDelaySeconds`). Readiness
//! starts false and drives the pod's Ready condition (and so whether the
//! pod is a ready endpoint of its Services); liveness starts true and a
//! container that fails it `failureThreshold` times in a row is restarted;
//! startup holds the other two back until it has succeeded. After a noded
//! restart, running containers' results are [adopted](Prober::adopt) from
//! the Pod's last posted status rather than starting over.

use crate::cri::{Cri, CriError};
use crate::format::go_duration;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
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

/// The result of running a probe once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The probe passed.
    Success,
    /// The probe ran and failed; the output the kubelet shows.
    Failure(String),
    /// The probe could not run (e.g. an unknown named port).
    Error(String),
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Startup => "Startup",
            Kind::Readiness => "Readiness",
            Kind::Liveness => "Liveness",
        })
    }
}

impl Outcome {
    /// The `Unhealthy` event message of a failed or errored probe, as the kubelet words it.
    pub fn event_message(&self, kind: Kind) -> Option<String> {
        match self {
            Outcome::Success => None,
            Outcome::Failure(output) => Some(format!("{kind} probe failed: {output}")),
            Outcome::Error(err) => Some(format!("{kind} probe errored and resulted in unknown state: {err}")),
        }
    }
}

/// A probe's port: a number, or the name of one of the container's `ports`.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match container
            .ports
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
        {
            Some(p) => p.container_port,
            None => name.parse().map_err(|_| format!("port {name:?} not found"))?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// `host:port`, IPv6 hosts in brackets (Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// How Go's `net.Dial` words a failed connect (`connect: connection refused`).
fn dial_error(address: &str, err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let what = match err.kind() {
        ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        ErrorKind::HostUnreachable => "connect: no route to host".to_string(),
        ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_string(),
        ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => format!("connect: {err}"),
    };
    format!("dial tcp {address}: {what}")
}

/// Where an `httpGet` action (a probe's or a lifecycle hook's) goes: the
/// host (the pod IP unless given), the resolved port, the path (`/` unless
/// given), the headers, and the URL as Go's client prints it in errors.
pub struct HttpTarget {
    /// Host to connect to.
    pub host: String,
    /// Resolved port.
    pub port: u16,
    /// Request path.
    pub path: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// `http://host:port/path`.
    pub url: String,
}

impl HttpTarget {
    /// The target of `http` in `container` of the pod at `pod_ip`.
    pub fn of(http: &HTTPGetAction, container: &Container, pod_ip: &str) -> Result<Self, String> {
        let port = resolve_port(&http.port, container)?;
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        let path = http
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let headers = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let url = format!("http://{}{path}", join_host_port(&host, port));
        Ok(Self {
            host,
            port,
            path,
            headers,
            url,
        })
    }
}

/// Run one probe once.
pub async fn probe_once(cri: &Cri, probe: &Probe, container: &Container, pod_ip: &str, container_id: &str) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(http) = &probe.http_get {
        let HttpTarget {
            host,
            port,
            path,
            headers,
            url,
        } = match HttpTarget::of(http, container, pod_ip) {
            Ok(t) => t,
            Err(err) => return Outcome::Error(err),
        };
        return match tokio::time::timeout(timeout, http_status(&host, port, &path, &headers)).await {
            Err(_) => Outcome::Failure(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
            Ok(Err(err)) => Outcome::Failure(format!("Get {url:?}: {err}")),
            Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
            Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = match resolve_port(&tcp.port, container) {
            Ok(port) => port,
            Err(err) => return Outcome::Error(err),
        };
        let host = tcp
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        let address = join_host_port(&host, port);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(err)) => Outcome::Failure(dial_error(&address, &err)),
            Err(_) => Outcome::Failure(format!("dial tcp {address}: i/o timeout")),
        };
    }
    if let Some(grpc) = &probe.grpc {
        let port = match u16::try_from(grpc.port).ok().filter(|p| *p > 0) {
            Some(port) => port,
            None => return Outcome::Error(format!("invalid port number: {}", grpc.port)),
        };
        let address = join_host_port(pod_ip, port);
        return grpc_health(&address, grpc.service.as_deref().unwrap_or(""), timeout).await;
    }
    if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        return match cri.exec_sync(container_id, cmd.clone(), timeout).await {
            Ok(reply) if reply.exit_code == 0 => Outcome::Success,
            Ok(reply) => {
                let mut output = reply.stdout;
                output.extend_from_slice(&reply.stderr);
                Outcome::Failure(String::from_utf8_lossy(&output).into_owned())
            }
            Err(CriError::Timeout { .. }) => Outcome::Error(format!(
                "command timed out: {:?} timed out after {}",
                cmd.join(" "),
                go_duration(timeout)
            )),
            Err(err) => Outcome::Error(err.runtime_message()),
        };
    }
    Outcome::Error("missing probe handler".into())
}

/// grpc.health.v1 `Health/Check` of `service` at `address`; `SERVING` passes.
async fn grpc_health(address: &str, service: &str, timeout: Duration) -> Outcome {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let connect_failed = || {
        Outcome::Failure(format!(
            "timeout: failed to connect service {address:?} within {}: context deadline exceeded",
            go_duration(timeout)
        ))
    };
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => endpoint.connect_timeout(timeout),
        Err(err) => return Outcome::Failure(format!("error: failed to connect service at {address:?}: {err}")),
    };
    // The kubelet dials until the deadline, so a refused connection reads as a timeout.
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(_)) | Err(_) => return connect_failed(),
    };
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        )),
        Ok(Err(status)) => Outcome::Failure(match status.code() {
            tonic::Code::Unimplemented => format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                status.message()
            ),
            tonic::Code::DeadlineExceeded => {
                format!("timeout: health rpc did not complete within {}", go_duration(timeout))
            }
            _ => crate::format::grpc_status(&status),
        }),
        Ok(Ok(reply)) => {
            let status = reply.into_inner().status();
            if status == ServingStatus::Serving {
                Outcome::Success
            } else {
                Outcome::Failure(format!("service unhealthy (responded with {:?})", status.as_str_name()))
            }
        }
    }
}

/// `GET path` over HTTP/1.0; the status code, or what went wrong as Go words it
/// (probes and `lifecycle` hooks share it).
pub(crate) async fn http_status(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, String> {
    let address = join_host_port(host, port);
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| dial_error(&address, &e))?;
    let mut request =
        format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nUser-Agent: sluice-noded-probe\r\nAccept: */*\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    if head.is_empty() {
        return Err("EOF".into());
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "net/http: malformed HTTP response".to_string())
}

/// One observation of a probe: its current result, and the `Unhealthy`
/// event message when it ran just now and did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The probe's result after thresholds.
    pub ok: bool,
    /// Set when the probe ran now and failed or errored.
    pub unhealthy: Option<String>,
}

impl Observation {
    fn quiet(ok: bool) -> Self {
        Self { ok, unhealthy: None }
    }
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
        container: &Container,
        pod_ip: &str,
        container_id: &str,
    ) -> Observation {
        let probe = match kind {
            Kind::Startup => container.startup_probe.as_ref(),
            Kind::Readiness => container.readiness_probe.as_ref(),
            Kind::Liveness => container.liveness_probe.as_ref(),
        };
        let Some(probe) = probe else {
            return Observation::quiet(true);
        };
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
                return Observation::quiet(state.result);
            }
            state.last_run = Some(now);
        }
        let outcome = probe_once(cri, probe, container, pod_ip, container_id).await;
        let ok = outcome == Outcome::Success;
        let mut states = self.states();
        let Some(state) = states.get_mut(&key) else {
            return Observation::quiet(false);
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
        Observation {
            ok: state.result,
            unhealthy: outcome.event_message(kind),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    fn container() -> Container {
        Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn named_ports_resolve_against_the_container() {
        let c = container();
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(resolve_port(&IntOrString::Int(9000), &c), Ok(9000));
        assert_eq!(
            resolve_port(&IntOrString::String("metrics".into()), &c),
            Err("port \"metrics\" not found".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &c),
            Err("invalid port number: 70000".into())
        );
    }

    #[test]
    fn unhealthy_messages_are_worded_like_the_kubelet() {
        let failed = Outcome::Failure("HTTP probe failed with statuscode: 500".into());
        assert_eq!(
            failed.event_message(Kind::Readiness).as_deref(),
            Some("Readiness probe failed: HTTP probe failed with statuscode: 500")
        );
        assert_eq!(
            Outcome::Error("port \"http\" not found".into())
                .event_message(Kind::Liveness)
                .as_deref(),
            Some("Liveness probe errored and resulted in unknown state: port \"http\" not found")
        );
        assert_eq!(Outcome::Success.event_message(Kind::Startup), None);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            dial_error("10.244.0.5:8080", &refused),
            "dial tcp 10.244.0.5:8080: connect: connection refused"
        );
        assert_eq!(join_host_port("fd00::5", 80), "[fd00::5]:80");
    }

    #[tokio::test]
    async fn http_and_tcp_probes_report_refused_connections_and_status_codes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(b"HTTP/1.0 500 Internal Server Error\r\n\r\n").await;
            }
        });
        let status = http_status("127.0.0.1", port, "/healthz", &[]).await;
        assert_eq!(status, Ok(500));
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        assert_eq!(
            http_status("127.0.0.1", closed_port, "/", &[]).await,
            Err(format!("dial tcp 127.0.0.1:{closed_port}: connect: connection refused"))
        );
        assert!(matches!(
            grpc_health(&format!("127.0.0.1:{closed_port}"), "", Duration::from_secs(1)).await,
            Outcome::Failure(m) if m.starts_with("timeout: failed to connect service")
        ));
    }

    #[tokio::test]
    async fn grpc_probes_pass_on_serving_and_fail_on_not_serving() {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("db", tonic_health::ServingStatus::NotServing)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        assert_eq!(
            grpc_health(&address, "", Duration::from_secs(2)).await,
            Outcome::Success
        );
        assert_eq!(
            grpc_health(&address, "db", Duration::from_secs(2)).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        server.abort();
    }
}
