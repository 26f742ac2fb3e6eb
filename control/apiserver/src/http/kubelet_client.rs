//! The API server's client towards node daemons (`pods/log`, `exec`,
//! `attach`, `portforward`).
//!
//! Both ends are authenticated with the cluster CA, as Kubernetes with
//! `--kubelet-certificate-authority` set:
//! - the API server presents a client certificate it issues itself from the
//!   cluster CA at start (CN `kube-apiserver-kubelet-client`, O
//!   `system:masters`, as kubeadm names it); noded accepts only that (or an
//!   administrator);
//! - the node must present a serving certificate signed by the cluster CA
//!   (noded gets one through a `kubernetes.io/kubelet-serving` request, see
//!   `node_certs`) whose subjectAltNames contain the address the API server
//!   dials (the Node's InternalIP). Anything else fails the handshake with an
//!   x509 error worded as Go's, and no request is sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::CertificateError;

use crate::pki::ClusterCa;

/// User name of the API server's client certificate towards node daemons.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// How the API server connects to node daemons: its TLS client identity and
/// the cluster CA it verifies nodes against.
pub struct KubeletClient {
    tls: tokio_rustls::TlsConnector,
}

impl KubeletClient {
    /// Issue the API server's node client certificate from the CA in
    /// `cert_dir`, and trust only that CA for nodes' serving certificates.
    pub fn from_cert_dir(cert_dir: &std::path::Path) -> Result<Self> {
        let ca = ClusterCa::load_or_create(cert_dir)?;
        let (cert_pem, key_pem) = ca.issue_client(KUBELET_CLIENT_USER, &["system:masters".to_string()])?;
        Self::new(&ca.cert_pem, &cert_pem, &key_pem)
    }

    /// A client presenting `cert_pem`/`key_pem` and trusting only `ca_pem`.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self> {
        let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key: PrivateKeyDer<'static> =
            rustls_pemfile::private_key(&mut key_pem.as_bytes())?.context("client key missing")?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            let ca: CertificateDer<'static> = ca.context("parsing the cluster CA")?;
            roots.add(ca).context("adding the cluster CA")?;
        }
        anyhow::ensure!(!roots.is_empty(), "no cluster CA certificate to verify nodes with");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .context("node certificate verifier")?;
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(certs, key)?;
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        })
    }

    /// Open a TLS connection to the node daemon at `addr`, verifying its
    /// serving certificate against the cluster CA and `addr`'s IP.
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| "dial tcp: i/o timeout".to_string())?
            .map_err(|e| format!("dial tcp {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::IpAddress(addr.ip().into());
        tokio::time::timeout(Duration::from_secs(10), self.tls.connect(name, tcp))
            .await
            .map_err(|_| "net/http: TLS handshake timeout".to_string())?
            .map_err(|e| describe_tls_error(&e, addr))
    }

    /// GET `path_and_query` from the node daemon at `addr`; the response body streams.
    pub async fn get(
        &self,
        addr: SocketAddr,
        path_and_query: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let req = http::Request::get(path_and_query)
            .header(http::header::HOST, addr.to_string())
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        self.send(addr, req).await
    }

    /// Send `req` to the node daemon at `addr` over a new connection that
    /// can be upgraded (the response to an upgrade request can be turned
    /// into a raw byte stream with `hyper::upgrade::on`).
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let tls = self.connect(addr).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "node connection ended");
            }
        });
        tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
            .await
            .map_err(|_| "timeout awaiting response headers".to_string())?
            .map_err(|e| e.to_string())
    }
}

/// A failed handshake with a node, worded as Go's TLS and x509 errors
/// (what `kubectl` users see from Kubernetes), naming the cluster CA when
/// the node's certificate is not signed by it.
fn describe_tls_error(e: &std::io::Error, addr: SocketAddr) -> String {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return format!("remote error: tls: {e}");
    };
    let x509 = match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "x509: certificate signed by unknown authority (the node's serving certificate is not signed by the cluster CA)"
                    .to_string()
            }
            CertificateError::NotValidForName => format!("x509: certificate is not valid for {}", addr.ip()),
            CertificateError::NotValidForNameContext { expected, presented } => {
                // webpki presents names as `IpAddress(10.0.0.2)` / `DnsName("n1")`;
                // Go lists the IP SANs when an IP was dialed.
                let ips: Vec<&str> = presented
                    .iter()
                    .filter_map(|p| p.strip_prefix("IpAddress(")?.strip_suffix(')'))
                    .collect();
                let expected = expected.to_str();
                if ips.is_empty() {
                    format!("x509: cannot validate certificate for {expected} because it doesn't contain any IP SANs")
                } else {
                    format!("x509: certificate is valid for {}, not {expected}", ips.join(", "))
                }
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "x509: certificate has expired or is not yet valid".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "x509: certificate has expired or is not yet valid".to_string()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "x509: certificate specifies an incompatible key usage".to_string()
            }
            other => format!("x509: {other:?}"),
        },
        other => return format!("remote error: tls: {other}"),
    };
    format!("tls: failed to verify certificate: {x509}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, and leaf certificates signed by it (or self-signed) for the
    /// names given, as the node would serve them.
    struct Pki {
        ca_key: rcgen::KeyPair,
        ca: rcgen::Certificate,
    }

    impl Pki {
        fn new() -> Pki {
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name.push(rcgen::DnType::CommonName, "test-ca");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::DigitalSignature,
            ];
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let ca = params.self_signed(&ca_key).unwrap();
            Pki { ca_key, ca }
        }

        fn leaf(&self, sans: &[&str], server: bool, signed: bool) -> (String, String) {
            let mut params =
                rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "system:node:n1");
            params.extended_key_usages = vec![if server {
                rcgen::ExtendedKeyUsagePurpose::ServerAuth
            } else {
                rcgen::ExtendedKeyUsagePurpose::ClientAuth
            }];
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = if signed {
                let issuer = rcgen::Issuer::from_ca_cert_der(self.ca.der(), &self.ca_key).unwrap();
                params.signed_by(&key, &issuer).unwrap()
            } else {
                params.self_signed(&key).unwrap()
            };
            (cert.pem(), key.serialize_pem())
        }
    }

    /// A TLS server on loopback serving `cert`; handshakes are completed and dropped.
    async fn serve(cert_pem: &str, key_pem: &str) -> SocketAddr {
        let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes()).unwrap().unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        addr
    }

    async fn dial(client: &KubeletClient, cert: (String, String)) -> Result<(), String> {
        let addr = serve(&cert.0, &cert.1).await;
        client.connect(addr).await.map(|_| ())
    }

    #[tokio::test]
    async fn only_nodes_with_a_cluster_ca_certificate_for_their_address_are_reached() {
        let cluster = Pki::new();
        let (client_cert, client_key) = cluster.leaf(&["apiserver"], false, true);
        let client = KubeletClient::new(&cluster.ca.pem(), &client_cert, &client_key).unwrap();

        // Signed by the cluster CA for the dialed address: accepted.
        dial(&client, cluster.leaf(&["n1", "127.0.0.1"], true, true))
            .await
            .unwrap();

        // Self-signed (what noded served before): refused, naming the CA.
        let e = dial(&client, cluster.leaf(&["n1", "127.0.0.1"], true, false))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "tls: failed to verify certificate: x509: certificate signed by unknown authority (the node's serving certificate is not signed by the cluster CA)"
        );

        // Signed by another CA: refused the same way.
        let other = Pki::new();
        let e = dial(&client, other.leaf(&["127.0.0.1"], true, true)).await.unwrap_err();
        assert!(e.contains("certificate signed by unknown authority"), "{e}");

        // The cluster CA's, but for another node's address: refused, naming both.
        let e = dial(&client, cluster.leaf(&["n2", "10.0.0.2"], true, true))
            .await
            .unwrap_err();
        assert!(
            e.starts_with("tls: failed to verify certificate: x509: certificate is valid for"),
            "{e}"
        );
        assert!(e.contains("10.0.0.2") && e.ends_with("not 127.0.0.1"), "{e}");

        // The cluster CA's for the address but a client certificate: refused.
        let e = dial(&client, cluster.leaf(&["127.0.0.1"], false, true))
            .await
            .unwrap_err();
        assert!(e.contains("incompatible key usage"), "{e}");
    }
}
