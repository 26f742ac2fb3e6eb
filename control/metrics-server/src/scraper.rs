//! Scraping kubelets: every `--metric-resolution` the Nodes are listed and
//! each kubelet's `GET /metrics/resource` is read over HTTPS at the Node's
//! preferred address (`--kubelet-preferred-address-types`, in order) and
//! `status.daemonEndpoints.kubeletEndpoint.Port` (10250 when unset), as
//! Kubernetes' metrics-server does. The client presents the credential of
//! the kubeconfig (the kubelet authorizes it with a SubjectAccessReview for
//! `get nodes/metrics`) and verifies the kubelet's serving certificate
//! against `--kubelet-certificate-authority`, else the kubeconfig's CA, for
//! the address it dials.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Node;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::prom::{self, Scrape};

/// The kubelet's port when the Node does not say.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// A TLS client towards kubelets.
pub struct KubeletClient {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    address_types: Vec<String>,
}

/// Why one kubelet could not be scraped.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The Node has no address of a preferred type.
    #[error("no address of the types {0:?} on the Node")]
    NoAddress(Vec<String>),
    /// Dialing, TLS, HTTP or the status.
    #[error("request to {url} failed: {message}")]
    Request {
        /// What was asked.
        url: String,
        /// Why it failed.
        message: String,
    },
    /// The answer is not the kubelet's format.
    #[error("parsing {url}: {source}")]
    Parse {
        /// What was asked.
        url: String,
        /// The bad line.
        source: prom::ParseError,
    },
}

impl KubeletClient {
    /// A client with the identity `cert_pem`/`key_pem`, trusting `ca_pem`.
    pub fn new(
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
        timeout: Duration,
        address_types: Vec<String>,
    ) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pemfile::certs(&mut &ca_pem[..]) {
            let ca: CertificateDer<'static> = ca.context("parsing the kubelet CA")?;
            roots.add(ca).context("adding the kubelet CA")?;
        }
        if roots.is_empty() {
            bail!("no CA certificate to verify kubelets with");
        }
        let certs = rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<Vec<_>, _>>()?;
        if certs.is_empty() {
            bail!("the kubeconfig holds no client certificate to present to kubelets");
        }
        let key: PrivateKeyDer<'static> =
            rustls_pemfile::private_key(&mut &key_pem[..])?.context("the kubeconfig holds no client key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?;
        Ok(KubeletClient {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            timeout,
            address_types,
        })
    }

    /// Where the kubelet of `node` answers.
    pub fn address(&self, node: &Node) -> Result<(String, u16), ScrapeError> {
        let status = node.status.as_ref();
        let addresses = status.and_then(|s| s.addresses.as_ref()).cloned().unwrap_or_default();
        let host = self
            .address_types
            .iter()
            .find_map(|t| addresses.iter().find(|a| &a.type_ == t).map(|a| a.address.clone()))
            .ok_or_else(|| ScrapeError::NoAddress(self.address_types.clone()))?;
        let port = status
            .and_then(|s| s.daemon_endpoints.as_ref())
            .and_then(|d| d.kubelet_endpoint.as_ref())
            .and_then(|e| u16::try_from(e.port).ok())
            .filter(|p| *p != 0)
            .unwrap_or(DEFAULT_KUBELET_PORT);
        Ok((host, port))
    }

    /// `GET https://host:port/metrics/resource`, parsed.
    pub async fn scrape(&self, host: &str, port: u16) -> Result<Scrape, ScrapeError> {
        let authority = match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        let url = format!("https://{authority}/metrics/resource");
        let fail = |message: String| ScrapeError::Request {
            url: url.clone(),
            message,
        };
        let text = tokio::time::timeout(self.timeout, self.get(host, port, &authority))
            .await
            .map_err(|_| fail("context deadline exceeded".into()))?
            .map_err(fail)?;
        let now_ms = now_ms();
        prom::parse(&text, now_ms).map_err(|source| ScrapeError::Parse {
            url: url.clone(),
            source,
        })
    }

    async fn get(&self, host: &str, port: u16, authority: &str) -> Result<String, String> {
        let addr: SocketAddr = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => tokio::net::lookup_host(authority)
                .await
                .map_err(|e| format!("dial tcp: lookup {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("dial tcp: lookup {host}: no such host"))?,
        };
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("dial tcp {addr}: connect: {e}"))?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("tls: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::get("/metrics/resource")
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "text/plain")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if !status.is_success() {
            return Err(format!(
                "request failed, status: \"{status}\": {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{DaemonEndpoint, NodeAddress, NodeDaemonEndpoints, NodeStatus};

    #[test]
    fn the_preferred_address_and_the_advertised_port() {
        let ca = crate::certs::generate(&["x".into()], &[]).unwrap();
        let c = KubeletClient::new(
            ca.ca_pem.as_bytes(),
            ca.cert_pem.as_bytes(),
            ca.key_pem.as_bytes(),
            Duration::from_secs(1),
            vec!["InternalIP".into(), "Hostname".into()],
        )
        .unwrap();
        let mut node = Node {
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: "n1".into(),
                    },
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: "10.251.0.2".into(),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(c.address(&node).unwrap(), ("10.251.0.2".to_string(), 10250));
        node.status.as_mut().unwrap().daemon_endpoints = Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10350 }),
        });
        assert_eq!(c.address(&node).unwrap().1, 10350);
        node.status.as_mut().unwrap().addresses = None;
        assert!(matches!(c.address(&node), Err(ScrapeError::NoAddress(_))));
    }
}
