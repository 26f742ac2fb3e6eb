//! Container lifecycle hooks: `postStart` and `preStop` with `exec`,
//! `httpGet` and `sleep` handlers, as the kubelet's handler runner.
//!
//! The runners are the probes' ([`crate::probes`]: CRI `ExecSync`, the same
//! HTTP GET with named ports and headers); only the outcome differs. As in
//! the kubelet, an exec hook fails on a non-zero exit, an HTTP hook only when
//! the request cannot be made (any status code passes), a sleep hook never.
//! The error is the kubelet's event text (`FailedPostStartHook`,
//! `FailedPreStopHook`), e.g. `Exec lifecycle hook ([sh -c exit 3]) for
//! Container "app" in Pod "web_default(uid)" failed - error: command 'sh -c
//! exit 3' exited with 3: , message: ""`. `tcpSocket` handlers are refused at
//! admission (`pod_support`), so they only fail here.

use crate::cri::{Cri, CriError};
use crate::probes;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler, Pod};
use std::time::Duration;

/// Run one lifecycle handler of `container` (running as `container_id` in
/// `pod`, whose IP is `pod_ip`), giving up after `timeout`; `Err` carries the
/// kubelet's event message.
pub async fn run(
    cri: &Cri,
    handler: &LifecycleHandler,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
    container_id: &str,
    timeout: Duration,
) -> Result<(), String> {
    let pod_name = crate::format::pod(pod);
    let name = &container.name;
    if let Some(exec) = &handler.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let shown = format!("[{}]", cmd.join(" "));
        let failed = |error: String, output: &[u8]| {
            format!(
                "Exec lifecycle hook ({shown}) for Container {name:?} in Pod {pod_name:?} failed - error: {error}, message: {:?}",
                String::from_utf8_lossy(output)
            )
        };
        return match cri.exec_sync(container_id, cmd.clone(), timeout).await {
            Ok(reply) if reply.exit_code == 0 => Ok(()),
            Ok(reply) => {
                let mut output = reply.stdout.clone();
                output.extend_from_slice(&reply.stderr);
                let error = format!(
                    "command '{}' exited with {}: {}",
                    cmd.join(" "),
                    reply.exit_code,
                    String::from_utf8_lossy(&reply.stderr)
                );
                Err(failed(error, &output))
            }
            Err(CriError::Timeout { .. }) => Err(failed("context deadline exceeded".into(), b"")),
            Err(err) => Err(failed(err.runtime_message(), b"")),
        };
    }
    if let Some(http) = &handler.http_get {
        return http_get(http, container, pod_ip, timeout).await.map_err(|error| {
            format!(
                "HTTP lifecycle hook ({}) for Container {name:?} in Pod {pod_name:?} failed - error: {error}",
                http.path.as_deref().unwrap_or("")
            )
        });
    }
    if let Some(sleep) = &handler.sleep {
        let wanted = Duration::from_secs(sleep.seconds.max(0) as u64);
        tokio::time::sleep(wanted.min(timeout)).await;
        return Ok(());
    }
    Err(format!(
        "Lifecycle hook for Container {name:?} in Pod {pod_name:?} failed - error: invalid handler"
    ))
}

/// An HTTP hook's GET (host defaults to the pod IP); the error as Go's HTTP client words it.
async fn http_get(http: &HTTPGetAction, container: &Container, pod_ip: &str, timeout: Duration) -> Result<(), String> {
    let probes::HttpTarget {
        host,
        port,
        path,
        headers,
        url,
    } = probes::HttpTarget::of(http, container, pod_ip)?;
    match tokio::time::timeout(timeout, probes::http_status(&host, port, &path, &headers)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(format!("Get {url:?}: {err}")),
        Err(_) => Err(format!("Get {url:?}: context deadline exceeded")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_hooks_pass_on_any_status_and_fail_only_when_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream.write_all(b"HTTP/1.0 500 Internal Server Error\r\n\r\n").await;
        });
        let container = Container {
            name: "app".into(),
            ..Default::default()
        };
        let http: HTTPGetAction = serde_json::from_value(serde_json::json!({"path": "/stop", "port": port})).unwrap();
        let timeout = Duration::from_secs(2);
        assert_eq!(http_get(&http, &container, "127.0.0.1", timeout).await, Ok(()));
        server.await.unwrap();
        assert_eq!(
            http_get(&http, &container, "127.0.0.1", timeout).await,
            Err(format!(
                "Get \"http://127.0.0.1:{port}/stop\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }
}
