//! Request metrics and the `/metrics` endpoint.
//!
//! [`layer`] wraps every request (outermost, so refused ones count too) and
//! records `apiserver_request_total` and `apiserver_request_duration_seconds`
//! with the labels Kubernetes uses ([`crate::metrics`]). Watches and
//! connections (exec, attach, port-forward, proxy) are long-running: they
//! are in `apiserver_longrunning_requests` while open and are counted, with
//! their whole duration, when their response ends, as Kubernetes does.
//! [`serve`] answers `GET /metrics`; the authenticate step has already
//! authorized it as a non-resource URL (`system:monitoring` may).

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::http::audit;
use crate::http::state::AppState;
use crate::metrics::{metrics, RequestCodeLabels, RequestLabels};

/// Content type of the OpenMetrics text exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`.
pub async fn serve() -> Response {
    ([(http::header::CONTENT_TYPE, OPENMETRICS)], metrics().encode()).into_response()
}

/// Subresources that upgrade the connection or proxy it.
const CONNECT_SUBRESOURCES: &[&str] = &["exec", "attach", "portforward", "proxy"];

/// The labels of a request, as Kubernetes' metrics report it. Resources
/// the server does not serve get no resource labels (their path is not
/// trusted into a label).
fn labels(req: &Request, served: bool) -> RequestLabels {
    let path = req.uri().path();
    let query = req.uri().query();
    let info = audit::request_info(req.method().as_str(), path, query);
    let dry_run = crate::http::params::Query::parse(query)
        .get("dryRun")
        .unwrap_or_default()
        .to_string();
    if !info.resource_request || !served {
        return RequestLabels {
            verb: req.method().as_str().to_string(),
            dry_run,
            component: "apiserver".into(),
            ..RequestLabels::default()
        };
    }
    let apply = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/apply-patch"));
    let verb = if CONNECT_SUBRESOURCES.contains(&info.subresource.as_str()) {
        "CONNECT"
    } else {
        match info.verb.as_str() {
            "get" => "GET",
            "list" => "LIST",
            "watch" => "WATCH",
            "create" => "POST",
            "update" => "PUT",
            "patch" if apply => "APPLY",
            "patch" => "PATCH",
            "delete" => "DELETE",
            "deletecollection" => "DELETECOLLECTION",
            _ => "other",
        }
    };
    let scope = if !info.name.is_empty() {
        "resource"
    } else if !info.namespace.is_empty() {
        "namespace"
    } else {
        "cluster"
    };
    RequestLabels {
        verb: verb.into(),
        dry_run,
        group: info.group,
        version: info.version,
        resource: info.resource,
        subresource: info.subresource,
        scope: scope.into(),
        component: "apiserver".into(),
    }
}

/// Counts a request when dropped: at once for a short request, when its
/// body ends for a long-running one.
struct Finished {
    labels: RequestLabels,
    code: u16,
    start: Instant,
    longrunning: bool,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let m = metrics();
        if self.longrunning {
            m.longrunning.get_or_create(&self.labels).dec();
        }
        m.requests
            .get_or_create(&RequestCodeLabels {
                request: self.labels.clone(),
                code: self.code.to_string(),
            })
            .inc();
        m.request_duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// The metrics middleware.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let served = crate::http::request::parse_path(&state.registry.catalog, req.uri().path()).is_some();
    let labels = labels(&req, served);
    let longrunning = matches!(labels.verb.as_str(), "WATCH" | "CONNECT");
    if longrunning {
        metrics().longrunning.get_or_create(&labels).inc();
    }
    let response = next.run(req).await;
    let finished = Finished {
        labels,
        code: response.status().as_u16(),
        start,
        longrunning,
    };
    if !longrunning {
        drop(finished);
        return response;
    }
    // Count it when the stream ends (or the client goes away).
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _keep = &finished;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, content_type: Option<&str>) -> Request {
        let mut b = http::Request::builder().method(method).uri(uri);
        if let Some(c) = content_type {
            b = b.header(http::header::CONTENT_TYPE, c);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn labels_are_kubernetes_verbs_and_scopes() {
        let l = labels(&request("GET", "/api/v1/namespaces/default/pods", None), true);
        assert_eq!(
            (l.verb.as_str(), l.scope.as_str(), l.resource.as_str()),
            ("LIST", "namespace", "pods")
        );
        let l = labels(&request("GET", "/apis/apps/v1/deployments?watch=1", None), true);
        assert_eq!(
            (l.verb.as_str(), l.scope.as_str(), l.group.as_str()),
            ("WATCH", "cluster", "apps")
        );
        let l = labels(
            &request(
                "PATCH",
                "/api/v1/namespaces/a/configmaps/c?dryRun=All",
                Some("application/apply-patch+yaml"),
            ),
            true,
        );
        assert_eq!(
            (l.verb.as_str(), l.scope.as_str(), l.dry_run.as_str()),
            ("APPLY", "resource", "All")
        );
        let l = labels(&request("POST", "/api/v1/namespaces/a/pods/p/exec", None), true);
        assert_eq!((l.verb.as_str(), l.subresource.as_str()), ("CONNECT", "exec"));
        let l = labels(&request("GET", "/api/v1/nonsense-from-a-client", None), false);
        assert_eq!((l.verb.as_str(), l.resource.as_str()), ("GET", ""));
        let l = labels(&request("GET", "/healthz", None), false);
        assert_eq!((l.verb.as_str(), l.scope.as_str()), ("GET", ""));
    }
}
