//! The HTTPS server: TLS with optional client certificates, authentication
//! middleware, health endpoints, and the router that merges the resource
//! API with discovery/OpenAPI.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::json;
use tower::ServiceExt;

use crate::http::auth::{ClientCertIdentity, RequestAttributes, TokenAuthenticator, UserInfo};
use crate::http::handlers;
use crate::http::service_account_token::{ServiceAccountTokens, JWKS_PATH};
use crate::http::state::AppState;
use crate::kinds::{self, Kind};
use crate::pki;
use crate::registry::allocator::Allocator;
use crate::registry::{Registry, WriteOptions};
use crate::status::ApiError;
use crate::storage::store::Store;

/// Streams a client may have open on one HTTP/2 connection (Kubernetes'
/// `--http2-max-streams-per-connection` as its recommended options set it).
const MAX_CONCURRENT_STREAMS: u32 = 1000;

/// Request bytes a client may send on one stream before the server reads
/// them (Kubernetes: 256 KiB).
const UPLOAD_WINDOW_PER_STREAM: u32 = 256 << 10;

/// Everything `apiserver serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// etcd endpoints and TLS settings.
    pub etcd: crate::storage::etcd_config::EtcdConfig,
    /// Address to listen on.
    pub bind_address: IpAddr,
    /// HTTPS port.
    pub secure_port: u16,
    /// The address published in the `kubernetes` Endpoints (`--advertise-address`;
    /// see [`crate::registry::master_endpoints::advertise_address`]).
    pub advertise_address: Option<IpAddr>,
    /// Where the CA and serving certificate live.
    pub cert_dir: PathBuf,
    /// Static token file.
    pub token_auth_file: Option<PathBuf>,
    /// Service ClusterIP range.
    pub service_cluster_ip_range: String,
    /// NodePort range.
    pub service_node_port_range: String,
    /// Event TTL.
    pub event_ttl: Duration,
    /// Extra SANs for the serving certificate.
    pub extra_sans: Vec<String>,
    /// `iss` of ServiceAccount tokens (`--service-account-issuer`).
    pub service_account_issuer: String,
    /// Audiences the API accepts (`--api-audiences`; empty: the issuer).
    pub api_audiences: Vec<String>,
    /// The built web dashboard, served under `/dashboard/` (`--dashboard-dir`).
    pub dashboard_dir: Option<PathBuf>,
    /// Serve lists and watches from the watch cache (`--watch-cache`).
    pub watch_cache: bool,
}

/// Paths served to anonymous clients.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version" | "/version/")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let mut user: Option<UserInfo> = None;
    if let Some(h) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    {
        let token = match crate::http::auth::bearer_token(&h) {
            crate::http::auth::Bearer::Token(token) => Some(token),
            crate::http::auth::Bearer::Absent => None,
            crate::http::auth::Bearer::Invalid => return ApiError::unauthorized().into_response(),
        };
        if let Some(token) = token {
            user = match state.tokens.authenticate(token) {
                Some(u) => Some(u),
                None => crate::http::bootstrap_token::authenticate(&state.registry, token).await,
            };
            if user.is_none() {
                user = crate::http::auth::service_account(&state, token, &mut req).await;
            }
            if user.is_none() {
                return ApiError::unauthorized().into_response();
            }
        }
    }
    if user.is_none() {
        user = req.extensions().get::<ClientCertIdentity>().and_then(|c| c.0.clone());
    }
    match user {
        Some(u) => {
            // Requests the resource handlers do not serve (discovery,
            // OpenAPI, health, aggregated APIs, unknown paths) are
            // authorized here, before routing, as Kubernetes does.
            if let Some(attrs) = outside_handlers(&state, &req) {
                if let Err(reason) = state.authorizer.authorize(&u, &attrs) {
                    tracing::info!(path = %req.uri().path(), user = %u.name, code = 403, "request forbidden");
                    return crate::http::authz::forbidden(&u.name, &attrs, &reason).into_response();
                }
            }
            req.extensions_mut().insert(u);
        }
        None if is_public(req.uri().path()) => {}
        None => {
            tracing::info!(path = %req.uri().path(), code = 401, "anonymous request rejected");
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// What a request the resource handlers do not authorize asks for: a
/// resource of a group-version the catalog does not serve (aggregated APIs,
/// unknown paths), read from the path as Kubernetes' request info does, or
/// a non-resource URL. `None` for the handlers' own paths and for node
/// certificate requests (`node_certs` applies its own approval rules).
fn outside_handlers(state: &AppState, req: &Request) -> Option<RequestAttributes> {
    let path = req.uri().path();
    if path == crate::http::node_certs::PATH
        || crate::http::request::parse_path(&state.registry.catalog, path).is_some()
    {
        return None;
    }
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", group, _, rest @ ..] if !rest.is_empty() => (*group, rest),
        _ => {
            let verb = req.method().as_str().to_ascii_lowercase();
            return Some(RequestAttributes::non_resource(&verb, path));
        }
    };
    let query = crate::http::params::Query::parse(req.uri().query());
    let (watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (query.flag("watch"), rest),
    };
    let (namespace, resource, name, sub) = match rest {
        ["namespaces", ns, resource, tail @ ..] => (Some(*ns), *resource, tail.first(), tail.get(1)),
        ["namespaces", ns] => (None, "namespaces", Some(ns), None),
        [resource, tail @ ..] => (None, *resource, tail.first(), tail.get(1)),
        [] => return None,
    };
    let verb = crate::http::audit::resource_verb(req.method().as_str(), name.is_some(), watch);
    let mut attrs = RequestAttributes::resource(verb, group, resource, namespace, name.copied());
    attrs.subresource = sub.map(|s| s.to_string());
    Some(attrs)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.registry.store.current_revision()).await {
        Ok(Ok(_)) => "ok".into_response(),
        Ok(Err(e)) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!("[-]etcd failed: {}\nreadyz check failed", e.message),
        )
            .into_response(),
        Err(_) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            "[-]etcd failed: timeout\nreadyz check failed",
        )
            .into_response(),
    }
}

/// Build the router (without TLS).
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::http::metrics::serve))
        .fallback(handlers::handle)
        .with_state(state.clone())
        // Discovery, /version and OpenAPI documents.
        .merge(crate::discovery::routes(state.registry.catalog.clone()))
        .merge(crate::http::node_certs::routes(state.clone(), handlers::handle))
        .merge(crate::http::token_request::discovery_routes(state.sa_tokens.clone()));
    let api = api.layer(middleware::from_fn_with_state(
        state.aggregator.clone(),
        crate::http::aggregator::proxy,
    ));
    let api = api.layer(middleware::from_fn(crate::http::audit::layer));
    api.layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state, crate::http::metrics::layer))
}

/// Create the namespaces and PriorityClasses every cluster has, the
/// default RBAC policy (reconciled), and the `kubernetes` Service.
pub async fn bootstrap(registry: &Registry, secure_port: u16) -> Result<()> {
    let ns = &Kind::Builtin(&kinds::namespace::Namespaces);
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match registry.create(ns, None, obj, WriteOptions::default()).await {
            Ok(_) => tracing::info!(namespace = name, "created namespace"),
            Err(e) if e.code == 409 => {}
            Err(e) => anyhow::bail!("creating namespace {name}: {e}"),
        }
    }
    let pcs = &Kind::Builtin(&kinds::priorityclass::PriorityClasses);
    for (name, value, description) in kinds::priorityclass::SYSTEM_CLASSES {
        let obj = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                         "metadata": {"name": name}, "value": value, "description": description});
        match registry.create(pcs, None, obj, WriteOptions::default()).await {
            Ok(_) => tracing::info!(priority_class = name, "created priority class"),
            Err(e) if e.code == 409 => {}
            Err(e) => anyhow::bail!("creating priority class {name}: {e}"),
        }
    }
    crate::registry::rbac::bootstrap::reconcile(registry)
        .await
        .map_err(|e| anyhow::anyhow!("reconciling the default RBAC policy: {e}"))?;
    let svc = &Kind::Builtin(&kinds::service::Services);
    let obj = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": registry.allocator.kubernetes_ip().to_string(),
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": secure_port}]},
    });
    match registry
        .create(svc, Some("default"), obj, WriteOptions::default())
        .await
    {
        Ok(_) => tracing::info!("created the kubernetes service"),
        Err(e) if e.code == 409 || e.code == 422 => {}
        Err(e) => anyhow::bail!("creating the kubernetes service: {e}"),
    }
    Ok(())
}

fn load_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(rustls_pemfile::certs(&mut data.as_slice()).collect::<Result<Vec<_>, _>>()?)
}

fn load_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())?.context("no private key found")
}

fn tls_config(files: &pki::ServingFiles) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&files.ca)? {
        roots.add(c)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The key set's URL in the OIDC discovery document: this server's
/// address (or first SAN when bound to all addresses), as Kubernetes uses
/// its external address.
fn jwks_uri(cfg: &ServeConfig) -> String {
    let host = match cfg.extra_sans.first() {
        Some(san) if cfg.bind_address.is_unspecified() => san.clone(),
        _ if cfg.bind_address.is_unspecified() => "127.0.0.1".to_string(),
        _ => cfg.bind_address.to_string(),
    };
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{host}]"),
        Err(_) => host,
    };
    format!("https://{host}:{}{JWKS_PATH}", cfg.secure_port)
}

/// Run the API server until the process is stopped.
pub async fn serve(cfg: ServeConfig) -> Result<()> {
    let advertise = crate::registry::master_endpoints::advertise_address(cfg.bind_address, cfg.advertise_address);
    let kubernetes_ip = Allocator::new(&cfg.service_cluster_ip_range, &cfg.service_node_port_range)?.kubernetes_ip();
    let sans = crate::registry::master_endpoints::serving_sans(&cfg.extra_sans, advertise, kubernetes_ip);
    let files = pki::ensure_serving(&cfg.cert_dir, cfg.bind_address, &sans)?;
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&files)?));
    let tokens = match &cfg.token_auth_file {
        Some(p) => TokenAuthenticator::load(p)?,
        None => TokenAuthenticator::default(),
    };
    let allocator = Allocator::new(&cfg.service_cluster_ip_range, &cfg.service_node_port_range)?;
    let store = Store::connect(&cfg.etcd).await.context("connecting to etcd")?;
    let mut registry = Registry::new(store, allocator, cfg.event_ttl);
    if !cfg.watch_cache {
        registry.watch_cache = crate::storage::watch_cache::WatchCache::disabled();
    }
    let registry = Arc::new(registry);
    // etcd may still be starting: retry the bootstrap for a while.
    let mut attempt = 0;
    loop {
        match bootstrap(&registry, cfg.secure_port).await {
            Ok(()) => break,
            Err(e) if attempt < 30 => {
                tracing::warn!(error = %e, "bootstrap failed; retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
    // Custom resources are served before the server listens.
    crate::registry::crds::start(registry.clone()).await?;
    crate::registry::admission::start(registry.clone()).await?;
    // Roles and bindings are in memory before the first request is authorized.
    crate::registry::rbac::start(registry.clone()).await?;
    match advertise {
        Some(ip) => crate::registry::master_endpoints::start(registry.clone(), ip, cfg.secure_port),
        None => tracing::warn!("no advertise address: the kubernetes Service gets no endpoints"),
    }
    crate::registry::node_graph::start(registry.clone()).await?;
    let aggregator = crate::registry::apiservices::start(registry.clone(), &cfg.cert_dir).await?;
    let state = AppState {
        aggregator,
        registry: registry.clone(),
        tokens: Arc::new(tokens),
        authorizer: Arc::new(crate::http::bootstrap_token::BootstrapScoped(
            crate::http::authz::Chain(registry.clone()),
        )),
        kubelet: Arc::new(crate::http::node_proxy::KubeletClient::from_cert_dir(&cfg.cert_dir)?),
        node_certs: Arc::new(crate::http::node_certs::NodeCertSigner::load(&cfg.cert_dir)?),
        sa_tokens: Arc::new(ServiceAccountTokens::load_or_create(
            &cfg.cert_dir,
            &cfg.service_account_issuer,
            cfg.api_audiences.clone(),
            jwks_uri(&cfg),
        )?),
    };
    let app = match &cfg.dashboard_dir {
        Some(dir) => {
            tracing::info!(dir = %dir.display(), "serving the dashboard at {}/", crate::http::dashboard::PATH);
            router(state).merge(crate::http::dashboard::routes(dir))
        }
        None => router(state),
    };
    let addr = SocketAddr::new(cfg.bind_address, cfg.secure_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "serving HTTPS");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|c| crate::http::auth::identity_from_cert(c.as_ref()));
            let ident = ClientCertIdentity(identity);
            let svc = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ident.clone());
                req.extensions_mut().insert(crate::http::audit::PeerAddr(peer));
                req
            });
            let svc = TowerToHyperService::new(svc);
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // Every request and watch of a component shares its HTTP/2
            // connection (`sluice_kube::client`), and hyper's client waits
            // for a free stream where Go's would dial another connection:
            // the limit must hold a controller-manager's watches and its
            // bursts (hyper's default is 200).
            // The connection's window holds every stream's (as Kubernetes
            // sizes it), so bodies waiting on busy handlers do not hold
            // back the other streams.
            builder
                .http2()
                .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
                .initial_stream_window_size(UPLOAD_WINDOW_PER_STREAM)
                .initial_connection_window_size(UPLOAD_WINDOW_PER_STREAM * MAX_CONCURRENT_STREAMS);
            if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        });
    }
}
