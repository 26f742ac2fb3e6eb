//! Connections to the container runtime's streaming server (containerd's
//! CRI streaming endpoint, plain HTTP on the node's loopback), and the
//! byte-for-byte join of two upgraded connections.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use hyper_util::rt::TokioIo;

/// Request headers carried to the runtime on a pass-through upgrade.
const UPGRADE_HEADERS: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Send an upgrade request to `url` (`http://host:port/path`, the URL the
/// runtime returned) with `extra_query` appended, over a connection that
/// can be upgraded.
pub async fn send(
    url: &str,
    extra_query: &str,
    method: Method,
    headers: &HeaderMap,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("runtime streaming URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("runtime streaming URL {url:?} is not plain http"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("runtime streaming URL {url:?} has no host"))?
        .to_string();
    let mut path = uri.path().to_string();
    let query: Vec<&str> = uri
        .query()
        .into_iter()
        .chain(Some(extra_query))
        .filter(|q| !q.is_empty())
        .collect();
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&authority))
        .await
        .map_err(|_| format!("dial {authority}: timeout"))?
        .map_err(|e| format!("dial {authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake with the runtime: {e}"))?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(%err, "runtime streaming connection ended");
        }
    });
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let req = req.body(Body::empty()).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .map_err(|_| "timeout awaiting the runtime's answer".to_string())?
        .map_err(|e| e.to_string())
}

/// The client's upgrade headers that go to the runtime unchanged.
pub fn pass_through_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        if UPGRADE_HEADERS.contains(&k.as_str()) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// Hand the client's upgrade request to the runtime as it is: the
/// runtime's answer goes back, and after a 101 both upgraded connections
/// are joined byte for byte (SPDY/3.1, and the WebSocket protocols the
/// runtime speaks itself).
pub async fn pass_through(url: &str, extra_query: &str, mut req: axum::extract::Request) -> Response {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let resp = match send(
        url,
        extra_query,
        req.method().clone(),
        &pass_through_headers(req.headers()),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return super::refuse(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        let mut out = Response::new(Body::new(body));
        *out.status_mut() = parts.status;
        *out.headers_mut() = parts.headers;
        return out;
    }
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = resp.headers().clone();
    tokio::spawn(async move {
        match tokio::try_join!(client_upgrade, hyper::upgrade::on(resp)) {
            Ok((client, runtime)) => {
                let (mut client, mut runtime) = (TokioIo::new(client), TokioIo::new(runtime));
                if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut runtime).await {
                    tracing::debug!(%err, "stream ended with an error");
                }
            }
            Err(err) => tracing::debug!(%err, "stream upgrade failed"),
        }
    });
    out
}
