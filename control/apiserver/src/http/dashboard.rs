//! The web dashboard's files, served under `/dashboard/` when the API server
//! is started with `--dashboard-dir` (the `dist/` of `control/dashboard`,
//! built by `cargo xtask dashboard`).
//!
//! The files are public, as `/version` is: they hold no cluster data, and the
//! page must load before its user has signed in. Everything the page shows
//! comes from the API on the same origin, authenticated like any client (a
//! bearer token the user pastes, or the browser's client certificate) and
//! authorized by RBAC. A path that names no file is the page itself, so the
//! page's own routes (`/dashboard/#/pods`) and reloads work. The page may
//! load nothing from elsewhere (`Content-Security-Policy`).

use std::path::Path;

use axum::Router;
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// Where the dashboard is served.
pub const PATH: &str = "/dashboard";

/// What the page may load: only from this server. Styles may be inline
/// (the chart library sizes its elements with `style` attributes).
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";

/// The routes serving the dashboard built into `dir`.
pub fn routes(dir: &Path) -> Router {
    let files = ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .fallback(ServeFile::new(dir.join("index.html")));
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    let files = Router::new()
        .fallback_service(files)
        .layer(header(CONTENT_SECURITY_POLICY, CSP))
        .layer(header(X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // The page's file names carry a hash of their content (Vite), but
        // index.html does not: ask browsers to check it every time.
        .layer(header(CACHE_CONTROL, "no-cache"));
    Router::new().nest_service(PATH, files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get(app: &Router, path: &str) -> (StatusCode, http::HeaderMap, String) {
        let resp = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn files_are_served_and_other_paths_are_the_page() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<html>page</html>").unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("assets/app-1a2b.js"), "console.log(1)").unwrap();
        let app = routes(dir.path());

        let (code, headers, body) = get(&app, "/dashboard/").await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "<html>page</html>"));
        assert_eq!(headers[CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
        let (code, headers, body) = get(&app, "/dashboard/assets/app-1a2b.js").await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "console.log(1)"));
        assert!(headers[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript"));
        let (code, _, body) = get(&app, "/dashboard/pods/default/web").await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "<html>page</html>"));
        let (code, _, _) = get(&app, "/dashboard/../Cargo.toml").await;
        assert_ne!(code, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
