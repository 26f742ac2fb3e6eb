//! API aggregation: requests under `/apis/<group>/<version>` of a group/
//! version a remote APIService serves are proxied to that Service's
//! endpoint (see `crate::registry::apiservices`), as Kubernetes'
//! kube-aggregator proxies them.
//!
//! The caller's identity travels in the front-proxy headers
//! (`X-Remote-User`, one `X-Remote-Group` per group, `X-Remote-Extra-*`);
//! the caller's own credentials (`Authorization`) and any identity headers
//! it sent are dropped. The API server authenticates with its
//! `front-proxy-client` certificate. Status, headers and body of the answer
//! pass through unchanged and the body streams (watches work). An APIService
//! that is not `Available`, or whose Service has no endpoint, gets
//! `503 service unavailable`, as Kubernetes answers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::http::auth::UserInfo;
use crate::registry::apiservices::ApiServices;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The group and version of a path under `/apis/<group>/<version>`.
pub fn group_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/apis/")?;
    let mut segs = rest.splitn(3, '/');
    let group = segs.next().filter(|s| !s.is_empty())?;
    let version = segs.next().filter(|s| !s.is_empty())?;
    Some((group, version))
}

/// Whether a request header is passed to the extension server.
fn forwarded(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !(HOP_BY_HOP.contains(&n.as_str())
        || n == "authorization"
        || n == "host"
        || n.starts_with("x-remote-")
        || n.starts_with("impersonate-"))
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "service unavailable\n").into_response()
}

/// Middleware (inside authentication): proxies requests for remote
/// group/versions, passes everything else on.
pub async fn proxy(State(services): State<Arc<ApiServices>>, req: Request, next: Next) -> Response {
    let Some((group, version)) = group_version(req.uri().path()) else {
        return next.run(req).await;
    };
    let Some(remote) = services.remote(group, version) else {
        return next.run(req).await;
    };
    let Some(user) = req.extensions().get::<UserInfo>().cloned() else {
        return next.run(req).await;
    };
    if !remote.available {
        tracing::info!(apiservice = %remote.name, code = 503, "APIService not available");
        return unavailable();
    }
    let (mut sender, _) = match services.connect::<Body>(&remote, true).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(apiservice = %remote.name, code = 503, error = %e, "proxying to APIService failed");
            return unavailable();
        }
    };
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut out = http::Request::builder()
        .method(parts.method.clone())
        .uri(path_and_query)
        .body(body)
        .expect("request parts are valid");
    let headers = out.headers_mut();
    for (name, value) in parts.headers.iter() {
        if forwarded(name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Ok(host) = HeaderValue::from_str(&format!("{}:{}", remote.server_name(), remote.port)) {
        headers.insert(http::header::HOST, host);
    }
    let mut groups = user.groups.clone();
    if user.name != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    if let Ok(v) = HeaderValue::from_str(&user.name) {
        headers.insert(HeaderName::from_static("x-remote-user"), v);
    }
    for g in &groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            headers.append(HeaderName::from_static("x-remote-group"), v);
        }
    }
    if !user.uid.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&user.uid) {
            headers.insert(HeaderName::from_static("x-remote-uid"), v);
        }
    }
    match sender.send_request(out).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let mut r = Response::new(Body::new(body));
            *r.status_mut() = parts.status;
            for (name, value) in parts.headers.iter() {
                if !HOP_BY_HOP.contains(&name.as_str()) {
                    r.headers_mut().append(name.clone(), value.clone());
                }
            }
            r
        }
        Err(e) => {
            tracing::info!(apiservice = %remote.name, code = 503, error = %e, "proxying to APIService failed");
            unavailable()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_headers() {
        assert_eq!(
            group_version("/apis/metrics.k8s.io/v1beta1/nodes"),
            Some(("metrics.k8s.io", "v1beta1"))
        );
        assert_eq!(
            group_version("/apis/metrics.k8s.io/v1beta1"),
            Some(("metrics.k8s.io", "v1beta1"))
        );
        assert_eq!(group_version("/apis/metrics.k8s.io"), None);
        assert_eq!(group_version("/api/v1/pods"), None);
        assert!(forwarded("Accept"));
        assert!(!forwarded("Authorization"));
        assert!(!forwarded("X-Remote-User"));
        assert!(!forwarded("Impersonate-User"));
        assert!(!forwarded("Connection"));
    }
}
