//! Posting an `AdmissionReview` to a webhook over HTTPS.
//!
//! One TLS connection per call (HTTP/1.1), the server certificate verified
//! against the webhook's `caBundle` (or the dispatcher's default roots when
//! the bundle is empty), the whole call bounded by `timeoutSeconds`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
use rustls::pki_types::ServerName;
use rustls::RootCertStore;
use tokio::net::TcpStream;

/// Largest response body accepted from a webhook.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Resolves `clientConfig.service` to an address to dial (a ClusterIP or an
/// endpoint). Implemented by the API server.
pub trait ServiceResolver: Send + Sync {
    /// The address for port `port` of Service `namespace/name`, or why there is none.
    fn resolve<'a>(&'a self, namespace: &'a str, name: &'a str, port: u16)
        -> BoxFuture<'a, Result<SocketAddr, String>>;
}

/// A resolver for tests and static setups: a fixed table.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver(pub std::collections::HashMap<(String, String, u16), SocketAddr>);

impl ServiceResolver for StaticResolver {
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<SocketAddr, String>> {
        let found = self.0.get(&(namespace.to_owned(), name.to_owned(), port)).copied();
        Box::pin(async move { found.ok_or_else(|| format!("service \"{namespace}/{name}\" not found")) })
    }
}

/// Where and how to reach one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// URL as shown in errors, including `?timeout=<n>s` like Kubernetes' client.
    pub display_url: String,
    /// Name the server certificate must be valid for.
    pub server_name: String,
    /// `Host` header value.
    pub authority: String,
    /// Request target (path and query).
    pub path_and_query: String,
    /// How to find the address to dial.
    pub target: Target,
}

/// The address part of an [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Dial this host (name or IP) and port.
    Host(String, u16),
    /// Ask the [`ServiceResolver`].
    Service { namespace: String, name: String, port: u16 },
}

/// Computes the endpoint of a client config. Errors are configuration errors.
pub fn endpoint(config: &WebhookClientConfig, timeout_seconds: u64) -> Result<Endpoint, String> {
    let (scheme_authority, authority, path, query, server_name, target) = match (&config.url, &config.service) {
        (Some(url), None) => {
            let uri: http::Uri = url.parse().map_err(|e| format!("invalid webhook URL {url:?}: {e}"))?;
            if uri.scheme_str() != Some("https") {
                return Err(format!("webhook URL {url:?} must use the https scheme"));
            }
            let host = uri
                .host()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("webhook URL {url:?} has no host"))?;
            let port = uri.port_u16().unwrap_or(443);
            let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let authority = uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_else(|| host.to_owned());
            let path = match uri.path() {
                "" => "/".to_owned(),
                p => p.to_owned(),
            };
            (
                format!("https://{authority}"),
                authority,
                path,
                uri.query().map(str::to_owned),
                bare.clone(),
                Target::Host(bare, port),
            )
        }
        (None, Some(svc)) => {
            let port =
                u16::try_from(svc.port.unwrap_or(443)).map_err(|_| format!("invalid service port {:?}", svc.port))?;
            let host = format!("{}.{}.svc", svc.name, svc.namespace);
            let authority = format!("{host}:{port}");
            let path = match svc.path.as_deref() {
                None | Some("") => "/".to_owned(),
                Some(p) if p.starts_with('/') => p.to_owned(),
                Some(p) => format!("/{p}"),
            };
            let target = Target::Service {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                port,
            };
            (format!("https://{authority}"), authority, path, None, host, target)
        }
        (Some(_), Some(_)) => return Err("webhook clientConfig has both url and service".to_owned()),
        (None, None) => return Err("webhook clientConfig has neither url nor service".to_owned()),
    };
    let query = match query {
        Some(q) if !q.is_empty() => format!("{q}&timeout={timeout_seconds}s"),
        _ => format!("timeout={timeout_seconds}s"),
    };
    let path_and_query = format!("{path}?{query}");
    Ok(Endpoint {
        display_url: format!("{scheme_authority}{path_and_query}"),
        server_name,
        authority,
        path_and_query,
        target,
    })
}

/// Builds the TLS client configuration: roots from the PEM `caBundle`, or
/// `default_roots` if it is empty.
pub fn tls_config(ca_bundle: Option<&[u8]>, default_roots: &RootCertStore) -> Result<rustls::ClientConfig, String> {
    let roots = match ca_bundle.filter(|b| !b.is_empty()) {
        None => default_roots.clone(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            let mut reader = pem;
            for cert in rustls_pemfile::certs(&mut reader) {
                let cert = cert.map_err(|e| format!("unable to load caBundle: {e}"))?;
                roots.add(cert).map_err(|e| format!("unable to load caBundle: {e}"))?;
            }
            if roots.is_empty() {
                return Err("unable to load caBundle: no certificate found".to_owned());
            }
            roots
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How a call failed, before the `Post "<url>": ` prefix.
fn tls_cause(e: &std::io::Error) -> String {
    use rustls::{CertificateError, Error};
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        // BadSignature: an issuer with the right name but another key (e.g. a regenerated CA).
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer))
        | Some(Error::InvalidCertificate(CertificateError::BadSignature)) => {
            "tls: failed to verify certificate: x509: certificate signed by unknown authority".to_owned()
        }
        Some(Error::InvalidCertificate(CertificateError::NotValidForName))
        | Some(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
            "tls: failed to verify certificate: x509: certificate is not valid for the requested name".to_owned()
        }
        Some(Error::InvalidCertificate(CertificateError::Expired))
        | Some(Error::InvalidCertificate(CertificateError::ExpiredContext { .. })) => {
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid".to_owned()
        }
        Some(other) => format!("tls: {other}"),
        None => format!("tls: {e}"),
    }
}

fn http_status_cause(status: http::StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if !text.is_empty() && status == http::StatusCode::INTERNAL_SERVER_ERROR {
        let short: String = text.chars().take(1024).collect();
        format!("an error on the server ({short:?}) has prevented the request from succeeding")
    } else {
        format!(
            "the server responded with the status code {} but did not return more information",
            status.as_u16()
        )
    }
}

/// Sends `body` to the webhook and returns the response body.
///
/// The error is the cause Kubernetes reports after `failed to call webhook: `,
/// e.g. `Post "https://…?timeout=10s": context deadline exceeded`.
pub async fn post(
    endpoint: &Endpoint,
    tls: rustls::ClientConfig,
    resolver: &dyn ServiceResolver,
    timeout: Duration,
    body: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let fut = post_inner(endpoint, tls, resolver, body);
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(cause)) => Err(format!("Post {:?}: {cause}", endpoint.display_url)),
        Err(_) => Err(format!("Post {:?}: context deadline exceeded", endpoint.display_url)),
    }
}

async fn post_inner(
    endpoint: &Endpoint,
    tls: rustls::ClientConfig,
    resolver: &dyn ServiceResolver,
    body: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let tcp = match &endpoint.target {
        Target::Host(host, port) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|e| format!("dial tcp: lookup {host}: {e}"))?
                .collect();
            let mut last = format!("dial tcp: lookup {host}: no such host");
            let mut stream = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => last = dial_cause(addr, &e),
                }
            }
            stream.ok_or(last)?
        }
        Target::Service { namespace, name, port } => {
            let addr = resolver.resolve(namespace, name, *port).await?;
            TcpStream::connect(addr).await.map_err(|e| dial_cause(addr, &e))?
        }
    };
    let _ = tcp.set_nodelay(true);
    let server_name = ServerName::try_from(endpoint.server_name.clone())
        .map_err(|e| format!("invalid server name {:?}: {e}", endpoint.server_name))?;
    let tls_stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(server_name, tcp)
        .await
        .map_err(|e| tls_cause(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls_stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn_task = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "webhook connection ended with an error");
        }
    });
    let request = http::Request::post(endpoint.path_and_query.as_str())
        .header(http::header::HOST, endpoint.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .header(http::header::USER_AGENT, "sluice-apiserver")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let collected = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the response body: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(http_status_cause(status, &collected));
        }
        Ok(collected.to_vec())
    }
    .await;
    conn_task.abort();
    result
}

fn dial_cause(addr: SocketAddr, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => format!("dial tcp {addr}: connect: connection refused"),
        _ => format!("dial tcp {addr}: connect: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::ServiceReference;

    #[test]
    fn endpoint_from_url() {
        let cfg = WebhookClientConfig {
            url: Some("https://127.0.0.1:8443/mutate".into()),
            ..Default::default()
        };
        let e = endpoint(&cfg, 10).unwrap();
        assert_eq!(e.display_url, "https://127.0.0.1:8443/mutate?timeout=10s");
        assert_eq!(e.server_name, "127.0.0.1");
        assert_eq!(e.target, Target::Host("127.0.0.1".into(), 8443));
        assert_eq!(e.path_and_query, "/mutate?timeout=10s");
        let cfg = WebhookClientConfig {
            url: Some("https://hooks.example.com?x=1".into()),
            ..Default::default()
        };
        let e = endpoint(&cfg, 3).unwrap();
        assert_eq!(e.display_url, "https://hooks.example.com/?x=1&timeout=3s");
        assert_eq!(e.target, Target::Host("hooks.example.com".into(), 443));
        let cfg = WebhookClientConfig {
            url: Some("https://[::1]:9443/v".into()),
            ..Default::default()
        };
        let e = endpoint(&cfg, 3).unwrap();
        assert_eq!(e.server_name, "::1");
        assert_eq!(e.authority, "[::1]:9443");
    }

    #[test]
    fn endpoint_from_service() {
        let cfg = WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: "sys".into(),
                name: "hook".into(),
                path: Some("/validate".into()),
                port: None,
            }),
            ..Default::default()
        };
        let e = endpoint(&cfg, 10).unwrap();
        assert_eq!(e.display_url, "https://hook.sys.svc:443/validate?timeout=10s");
        assert_eq!(e.server_name, "hook.sys.svc");
        assert_eq!(
            e.target,
            Target::Service {
                namespace: "sys".into(),
                name: "hook".into(),
                port: 443
            }
        );
    }

    #[test]
    fn endpoint_errors() {
        let url = |u: &str| WebhookClientConfig {
            url: Some(u.into()),
            ..Default::default()
        };
        assert!(endpoint(&url("http://x/"), 1).is_err());
        assert!(endpoint(&url("not a url"), 1).is_err());
        assert!(endpoint(&WebhookClientConfig::default(), 1).is_err());
        let mut both = url("https://x/");
        both.service = Some(ServiceReference::default());
        assert!(endpoint(&both, 1).is_err());
        let svc = WebhookClientConfig {
            service: Some(ServiceReference {
                port: Some(70000),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(endpoint(&svc, 1).is_err());
    }

    #[test]
    fn bad_ca_bundle() {
        let roots = RootCertStore::empty();
        assert!(tls_config(Some(b"garbage"), &roots).is_err());
        assert!(tls_config(None, &roots).is_ok());
    }
}
