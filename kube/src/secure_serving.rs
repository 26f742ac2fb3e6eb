//! The secure port of a control-plane component (kube-scheduler's 10259,
//! kube-controller-manager's 10257): `/metrics`, `/healthz`, `/livez` and
//! `/readyz` over HTTPS, authenticated and authorized by delegation to the
//! API server, as Kubernetes' `DelegatingAuthenticationOptions` and
//! `DelegatingAuthorizationOptions` do.
//!
//! - **Serving certificate.** `--tls-cert-file`/`--tls-private-key-file`, or,
//!   as kube-scheduler without them, a self-signed one made in memory at
//!   start for `localhost`, `127.0.0.1` and the bind address.
//! - **Authentication**, first that answers: a client certificate verified
//!   against `--client-ca-file` (default: the CA of the component's
//!   kubeconfig, which signs Sluice's client certificates) is user CN with
//!   groups O; a bearer token is sent to the API server as a `TokenReview`
//!   (successes cached 10 s, as `--authentication-token-webhook-cache-ttl`);
//!   anything else is `system:anonymous` in `system:unauthenticated`, as the
//!   delegating authenticator allows anonymous requests. A token the API
//!   server does not accept is `401 Unauthorized`.
//! - **Authorization**, as the delegating authorizer's union: `system:masters`
//!   may do anything, `--authorization-always-allow-paths` (default
//!   `/healthz,/readyz,/livez`, exact paths or `prefix*`) need nothing, and
//!   everything else is a `SubjectAccessReview` with the request's
//!   non-resource attributes (`get` of `/metrics`; answers cached 10 s
//!   allowed and denied). A denial is Kubernetes' 403 Status `forbidden: User
//!   "nobody" cannot get path "/metrics"`; the bootstrap `system:monitoring`
//!   ClusterRole grants the scrape.
//!
//! The component supplies the metrics text and its readiness checks
//! ([`Endpoints`]); this module owns the port.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tracing::Instrument;

/// How long an answer of the API server (token or access review) is reused.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Entries kept before expired ones are swept.
const CACHE_SWEEP: usize = 4096;
/// The content type of the OpenMetrics text format (what `prometheus-client` writes).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The flags of Kubernetes' secure serving, authentication and authorization
/// option groups that apply here. `--secure-port` is the component's own
/// (its default differs: 10259, 10257).
#[derive(clap::Args, Clone, Debug)]
pub struct SecureServingArgs {
    /// Address the secure port listens on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind_address: IpAddr,
    /// Serving certificate (PEM); without it a self-signed one is made in memory.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Key of --tls-cert-file (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA bundle client certificates are verified against (default: the kubeconfig's CA).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Paths authorized without asking the API server (exact, or a prefix ending in `*`).
    #[arg(long, value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub authorization_always_allow_paths: Vec<String>,
}

/// Why the secure port could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// A certificate or key file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The self-signed certificate could not be made.
    #[error("making the self-signed serving certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The TLS material was unusable.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The port could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A readiness check of `/readyz` (Kubernetes' `sched-handler-sync`, ...).
#[derive(Clone, Debug)]
pub struct Check {
    /// Its name in `/readyz?verbose`.
    pub name: &'static str,
    /// Whether it passes now.
    pub ok: Arc<AtomicBool>,
}

/// What the component serves on its secure port.
#[derive(Clone)]
pub struct Endpoints {
    /// Kubernetes' name of the component (`kube-scheduler`): the self-signed
    /// certificate's CN prefix and the log's.
    pub component: &'static str,
    /// The metrics text (OpenMetrics), made per scrape.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// `/readyz`'s checks beyond `ping`.
    pub ready: Vec<Check>,
}

/// Who sent a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct User {
    /// The user name.
    pub name: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// Its uid, from a token review.
    pub uid: Option<String>,
    /// Its extra attributes, from a token review.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// The delegating authenticator's anonymous user.
    pub fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            uid: None,
            extra: BTreeMap::new(),
        }
    }

    /// The user of a verified client certificate: CN, O values and `system:authenticated`.
    pub fn from_certificate(der: &[u8]) -> Option<User> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
        let mut groups: Vec<String> = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(String::from))
            .collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Some(User {
            name,
            groups,
            uid: None,
            extra: BTreeMap::new(),
        })
    }
}

/// Whether `path` is one of `allowed` (exact, or `prefix*`), as Kubernetes' path authorizer matches.
pub fn always_allowed(allowed: &[String], path: &str) -> bool {
    allowed.iter().any(|p| {
        let p = if p.starts_with('/') { p.clone() } else { format!("/{p}") };
        match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == p,
        }
    })
}

/// Kubernetes' message for a refused non-resource request.
pub fn forbidden_message(user: &str, verb: &str, path: &str, reason: &str) -> String {
    let mut message = format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\"");
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    message
}

type Cache<K, V> = Mutex<HashMap<K, (V, Instant)>>;

fn cached<K: std::hash::Hash + Eq, V: Clone>(cache: &Cache<K, V>, key: &K) -> Option<V> {
    let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    let (v, at) = cache.get(key)?;
    (at.elapsed() < CACHE_TTL).then(|| v.clone())
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &Cache<K, V>, key: K, v: V) {
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() > CACHE_SWEEP {
        cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
    }
    cache.insert(key, (v, Instant::now()));
}

/// What answers a request: authentication, authorization and the endpoints.
struct Server {
    client: kube::Client,
    endpoints: Endpoints,
    always_allow_paths: Vec<String>,
    tokens: Cache<String, User>,
    reviews: Cache<(User, String, String), (bool, String)>,
}

/// Why a request got no user.
enum Unauthenticated {
    /// The token was refused (or could not be reviewed).
    Refused,
}

impl Server {
    async fn authenticate(&self, cert_user: Option<User>, req: &Request<Incoming>) -> Result<User, Unauthenticated> {
        if let Some(user) = cert_user {
            return Ok(user);
        }
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Ok(User::anonymous());
        };
        if let Some(user) = cached(&self.tokens, &token.to_string()) {
            return Ok(user);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = match Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
        {
            Ok(a) => a,
            Err(err) => {
                tracing::warn!(%err, "TokenReview failed");
                return Err(Unauthenticated::Refused);
            }
        };
        let status = answer.status.unwrap_or_default();
        let info = status.user.unwrap_or_default();
        if status.authenticated != Some(true) || info.username.as_deref().unwrap_or_default().is_empty() {
            return Err(Unauthenticated::Refused);
        }
        let user = User {
            name: info.username.unwrap_or_default(),
            groups: info.groups.unwrap_or_default(),
            uid: info.uid,
            extra: info.extra.unwrap_or_default(),
        };
        remember(&self.tokens, token.to_string(), user.clone());
        Ok(user)
    }

    /// `Ok((allowed, reason))`, or the API server's failure.
    async fn authorize(&self, user: &User, verb: &str, path: &str) -> Result<(bool, String), kube::Error> {
        if user.groups.iter().any(|g| g == "system:masters") || always_allowed(&self.always_allow_paths, path) {
            return Ok((true, String::new()));
        }
        let key = (user.clone(), verb.to_string(), path.to_string());
        if let Some(answer) = cached(&self.reviews, &key) {
            return Ok(answer);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                uid: user.uid.clone(),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_string()),
                    verb: Some(verb.to_string()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let status = answer.status.unwrap_or_default();
        let decision = (
            status.allowed && status.denied != Some(true),
            status.reason.unwrap_or_default(),
        );
        remember(&self.reviews, key, decision.clone());
        Ok(decision)
    }

    async fn handle(&self, cert_user: Option<User>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let verb = req.method().as_str().to_ascii_lowercase();
        let user = match self.authenticate(cert_user, &req).await {
            Ok(user) => user,
            Err(Unauthenticated::Refused) => {
                return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into());
            }
        };
        match self.authorize(&user, &verb, &path).await {
            Ok((true, _)) => {}
            Ok((false, reason)) => {
                tracing::debug!(user = %user.name, %path, "forbidden");
                return status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    forbidden_message(&user.name, &verb, &path, &reason),
                );
            }
            Err(err) => {
                tracing::warn!(%err, user = %user.name, "SubjectAccessReview failed");
                return status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    format!("Internal error occurred: {err}"),
                );
            }
        }
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n".into());
        }
        let verbose = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "verbose"));
        match path.as_str() {
            "/metrics" => Response::builder()
                .header(http::header::CONTENT_TYPE, OPENMETRICS)
                .body(Full::new(Bytes::from((self.endpoints.metrics)())))
                .unwrap_or_default(),
            "/healthz" | "/livez" => health(&path[1..], &[], verbose),
            "/readyz" => health("readyz", &self.endpoints.ready, verbose),
            _ => plain(StatusCode::NOT_FOUND, "404 page not found\n".into()),
        }
    }
}

/// `/healthz`-style answer: `ok`, or 500 naming the failed checks (as Kubernetes' healthz handler).
fn health(what: &str, checks: &[Check], verbose: bool) -> Response<Full<Bytes>> {
    let mut lines = vec!["[+]ping ok".to_string()];
    let mut failed = false;
    for c in checks {
        if c.ok.load(Ordering::Relaxed) {
            lines.push(format!("[+]{} ok", c.name));
        } else {
            failed = true;
            lines.push(format!("[-]{} failed: reason withheld", c.name));
        }
    }
    if failed {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}\n{what} check failed\n", lines.join("\n")),
        );
    }
    if verbose {
        return plain(StatusCode::OK, format!("{}\n{what} check passed\n", lines.join("\n")));
    }
    plain(StatusCode::OK, "ok".into())
}

fn plain(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("X-Content-Type-Options", "nosniff")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// A Kubernetes `Status` failure (a 401 carries no `details`, as Kubernetes writes it).
fn status(code: StatusCode, reason: &str, message: String) -> Response<Full<Bytes>> {
    let mut body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    if code != StatusCode::UNAUTHORIZED {
        body["details"] = serde_json::json!({});
    }
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ServingError> {
    std::fs::read(path).map_err(|source| ServingError::Read {
        path: path.clone(),
        source,
    })
}

fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ServingError> {
    rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServingError::Tls(format!("reading PEM certificates: {e}")))
}

/// The serving chain and key: the files, or a self-signed certificate for
/// `localhost`, `127.0.0.1` and `bind` (when it is a specific address).
fn serving_identity(
    args: &SecureServingArgs,
    component: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ServingError> {
    if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_private_key_file) {
        let chain = pem_certs(&read(cert)?)?;
        let key = rustls_pemfile::private_key(&mut &read(key)?[..])
            .map_err(|e| ServingError::Tls(format!("reading {}: {e}", key.display())))?
            .ok_or_else(|| ServingError::Tls(format!("no private key in {}", key.display())))?;
        return Ok((chain, key));
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !args.bind_address.is_unspecified() && !args.bind_address.is_loopback() {
        names.push(args.bind_address.to_string());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("localhost@{now}"));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    tracing::info!(
        component,
        "serving a self-signed certificate for localhost (no --tls-cert-file)"
    );
    Ok((
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
}

fn tls_config(
    args: &SecureServingArgs,
    config: &kube::Config,
    component: &str,
) -> Result<rustls::ServerConfig, ServingError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_cas = match &args.client_ca_file {
        Some(path) => pem_certs(&read(path)?)?,
        None => config
            .root_cert
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(CertificateDer::from)
            .collect(),
    };
    let (chain, key) = serving_identity(args, component)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServingError::Tls(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in client_cas {
        roots
            .add(ca)
            .map_err(|e| ServingError::Tls(format!("client CA: {e}")))?;
    }
    let mut tls = if roots.is_empty() {
        tracing::warn!(component, "no client CA: client certificates are not accepted");
        builder.with_no_client_auth().with_single_cert(chain, key)
    } else {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| ServingError::Tls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier).with_single_cert(chain, key)
    }
    .map_err(|e| ServingError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// A running secure port; stops serving when dropped.
pub struct SecureServer {
    /// Where it listens (the port taken when 0 was asked for).
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SecureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bind `port` (0: any free one) on `--bind-address` and serve `endpoints`,
/// reviewing tokens and access with the API server of `config`.
pub async fn start(
    args: &SecureServingArgs,
    port: u16,
    config: &kube::Config,
    endpoints: Endpoints,
) -> Result<SecureServer, ServingError> {
    let component = endpoints.component;
    let tls = tls_config(args, config, component)?;
    let client = kube::Client::try_from(config.clone()).map_err(|e| ServingError::Tls(e.to_string()))?;
    let addr = SocketAddr::new(args.bind_address, port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServingError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServingError::Bind { addr, source })?;
    tracing::info!(component, address = %local_addr, "serving securely (/metrics, /healthz, /livez, /readyz)");
    let server = Arc::new(Server {
        client,
        endpoints,
        always_allow_paths: args.authorization_always_allow_paths.clone(),
        tokens: Mutex::default(),
        reviews: Mutex::default(),
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let task = tokio::spawn(
        async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(err) => {
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, server) = (acceptor.clone(), server.clone());
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, %err, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let cert_user = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| User::from_certificate(c.as_ref()));
                    let service = hyper::service::service_fn(move |req| {
                        let (server, cert_user) = (server.clone(), cert_user.clone());
                        async move {
                            let span = tracing::debug_span!("secure_port", path = %req.uri().path());
                            Ok::<_, std::convert::Infallible>(server.handle(cert_user, req).instrument(span).await)
                        }
                    });
                    if let Err(err) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(%peer, %err, "connection ended with an error");
                    }
                });
            }
        }
        .instrument(tracing::info_span!("secure_serving", component)),
    );
    Ok(SecureServer { local_addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_allowed_paths_match_exactly_or_by_prefix() {
        let paths: Vec<String> = ["/healthz", "/readyz", "livez", "/debug/*"].map(String::from).into();
        assert!(always_allowed(&paths, "/healthz"));
        assert!(always_allowed(&paths, "/livez"), "a leading / is optional");
        assert!(always_allowed(&paths, "/debug/pprof/heap"));
        assert!(!always_allowed(&paths, "/healthz/ping"), "exact paths match exactly");
        assert!(!always_allowed(&paths, "/metrics"));
    }

    #[test]
    fn refusals_read_as_kubernetes_writes_them() {
        assert_eq!(
            forbidden_message("system:anonymous", "get", "/metrics", ""),
            "forbidden: User \"system:anonymous\" cannot get path \"/metrics\""
        );
        assert_eq!(
            forbidden_message("bob", "get", "/metrics", "no RBAC policy matched"),
            "forbidden: User \"bob\" cannot get path \"/metrics\": no RBAC policy matched"
        );
    }

    #[test]
    fn a_client_certificate_is_its_cn_and_organizations() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "prometheus");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:monitoring");
        let cert = params.self_signed(&key).unwrap();
        let user = User::from_certificate(cert.der()).unwrap();
        assert_eq!(user.name, "prometheus");
        assert_eq!(user.groups, ["system:monitoring", "system:authenticated"]);
    }

    #[test]
    fn readiness_names_the_failed_check() {
        let synced = Check {
            name: "sched-handler-sync",
            ok: Arc::new(AtomicBool::new(false)),
        };
        let r = health("readyz", std::slice::from_ref(&synced), false);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        synced.ok.store(true, Ordering::Relaxed);
        assert_eq!(health("readyz", &[synced], false).status(), StatusCode::OK);
    }
}
