//! An API client from `--kubeconfig`, or from the environment
//! (`$KUBECONFIG`, `~/.kube/config`, in-cluster service account) when no
//! path is given — the same lookup for every Sluice binary.
//!
//! The client speaks HTTP/2 when the server offers it (ALPN), as client-go
//! does: every request and watch of a component shares one TLS connection.
//! kube's own client speaks HTTP/1.1 only, so each request in flight holds a
//! connection of its own; a controller-manager creating pods in bursts
//! opened about 900 of them against the API server in a 2,000-node
//! benchmark, each a TLS handshake (3 % of the server's CPU) and a set of
//! buffers on both sides. The stack is kube's (base URI, credentials, extra
//! headers) with client-go's connection health check in place of kube's
//! read timeout: a ping after 30 s without frames, the connection closed
//! when no answer comes within 15 s. A configuration with a proxy gets
//! kube's client, which handles proxies.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::client::legacy::{self, connect::HttpConnector};
use kube::client::ConfigExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// How long an HTTP/2 connection may go without a frame before it is pinged
/// (client-go's `ReadIdleTimeout`).
pub const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a ping may go unanswered before the connection is closed
/// (client-go's `PingTimeout`).
pub const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// Bytes the server may send on one stream before the client reads them
/// (Go's HTTP/2 transport: 4 MiB).
const STREAM_WINDOW: u32 = 4 << 20;

/// Bytes the server may send on the connection before the client reads them
/// (Go's HTTP/2 transport: 1 GiB). A window the size of a few streams' would
/// let one watch whose consumer is busy hold back every other request.
const CONNECTION_WINDOW: u32 = 1 << 30;

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file could not be read or parsed.
    #[error("reading kubeconfig {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig was read but names no usable context, cluster or user.
    #[error("loading kubeconfig {path}: {source}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// No path was given and the environment holds no configuration.
    #[error("no --kubeconfig given and none could be inferred: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// The configuration could not make a client (e.g. bad TLS material).
    #[error("building the API client: {0}")]
    Build(#[from] kube::Error),
    /// `tls-server-name` is not a DNS name or IP address.
    #[error("tls-server-name {0:?}: {1}")]
    ServerName(String, String),
}

/// The client configuration of the kubeconfig at `path`, or the inferred one.
pub async fn config(path: Option<&Path>) -> Result<Config, ClientError> {
    match path {
        Some(p) => {
            let kc = Kubeconfig::read_from(p).map_err(|source| ClientError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClientError::Load {
                    path: p.to_path_buf(),
                    source,
                })
        }
        None => Ok(Config::infer().await?),
    }
}

/// A client for the kubeconfig at `path`, or the inferred one.
pub async fn client(path: Option<&Path>) -> Result<Client, ClientError> {
    from_config(config(path).await?)
}

/// A client for `config` that multiplexes its requests over HTTP/2 when the
/// server offers it (see the module's doc).
pub fn from_config(config: Config) -> Result<Client, ClientError> {
    if config.proxy_url.is_some() {
        return Ok(Client::try_from(config)?);
    }
    let tls = config.rustls_client_config()?;
    let http = http_client(connector(&config, tls)?);
    over(config, http)
}

/// The HTTPS connector for `config` with `tls`: it offers HTTP/2 and then
/// HTTP/1.1 (ALPN), verifies the server as `tls-server-name` when the
/// kubeconfig gives one, and connects with `config`'s timeout. A caller
/// with its own TLS settings (noded's rotating client certificate) builds
/// them from `config` and passes them here.
pub fn connector(
    config: &Config,
    tls: rustls::ClientConfig,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, ClientError> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(config.connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let https = match &config.tls_server_name {
        Some(name) => {
            let name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| ClientError::ServerName(name.clone(), e.to_string()))?;
            https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => https,
    };
    Ok(https.enable_http1().enable_http2().wrap_connector(tcp))
}

/// hyper's client over `connector`, with client-go's HTTP/2 settings: the
/// health check ([`READ_IDLE_TIMEOUT`], [`PING_TIMEOUT`]) and Go's flow
/// control windows.
pub fn http_client<C>(connector: C) -> legacy::Client<C, kube::client::Body>
where
    C: legacy::connect::Connect + Clone,
{
    legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .http2_keep_alive_interval(READ_IDLE_TIMEOUT)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
        .build(connector)
}

/// An API client sending its requests through `http` with `config`'s
/// server address, credentials and extra headers (kube's own stack).
pub fn over<C>(config: Config, http: legacy::Client<C, kube::client::Body>) -> Result<Client, ClientError>
where
    C: legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After its first request, a client sends concurrent requests as
    /// streams of one HTTP/2 connection to a server that offers `h2`.
    #[cfg(feature = "serving")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_http2_connection() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    // Each answer names the request's HTTP version, a moment
                    // later, so that the concurrent requests overlap.
                    let service = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let version = bytes::Bytes::from(format!("{:?}", req.version()));
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(version)))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let mut config = Config::new(format!("https://127.0.0.1:{port}").parse().unwrap());
        config.root_cert = Some(vec![cert.der().to_vec()]);
        let client = from_config(config).unwrap();
        let version = || http::Request::get("/version").body(Vec::new()).unwrap();
        assert_eq!(client.request_text(version()).await.unwrap(), "HTTP/2.0");
        let mut answers = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let client = client.clone();
            let request = version();
            answers.spawn(async move { client.request_text(request).await.map_err(|e| e.to_string()) });
        }
        while let Some(answer) = answers.join_next().await {
            assert_eq!(answer.unwrap().unwrap(), "HTTP/2.0");
        }
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "one connection for nine requests"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_file() {
        let Err(err) = client(Some(Path::new("/nonexistent/kubeconfig"))).await else {
            panic!("a client from a missing file");
        };
        assert!(matches!(err, ClientError::Read { .. }));
        assert!(
            err.to_string()
                .starts_with("reading kubeconfig /nonexistent/kubeconfig: "),
            "{err}"
        );
    }
}
