//! The node's serving certificate: what its HTTPS endpoint (logs, exec,
//! attach, port-forward) presents to the API server.
//!
//! As the kubelet with `serverTLSBootstrap`, noded makes a key pair at start
//! and asks the API server, with its own credentials, for a certificate from
//! signer `kubernetes.io/kubelet-serving`: CN `system:node:<name>`, O
//! `system:nodes`, subjectAltNames = the node's name and IPs, usages digital
//! signature, key encipherment, server auth. The API server approves the
//! node's own request at once and answers with the certificate signed by the
//! cluster CA, which is what it verifies nodes against. The key never leaves
//! memory: every start gets a new certificate (valid a year), and a running
//! noded asks for the next one once 80% of the current one's lifetime has
//! passed ([`keep_fresh`]; the kubelet's rotation renews between 70% and
//! 90%), swapping it into the running endpoint ([`Resolver`]) without a
//! restart.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// The signer of node serving certificates.
pub const SIGNER: &str = "kubernetes.io/kubelet-serving";

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct ServingCert {
    /// The certificate the cluster CA signed.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert").finish_non_exhaustive()
    }
}

/// Why no serving certificate was issued.
#[derive(Debug, thiserror::Error)]
pub enum ServingCertError {
    /// The key or certificate request could not be made.
    #[error("making the key and certificate request: {0}")]
    Key(#[from] rcgen::Error),
    /// The API server refused or could not be reached.
    #[error("requesting the serving certificate: {0}")]
    Api(#[from] kube::Error),
    /// The API server's answer had no certificate.
    #[error("the API server did not issue a serving certificate: {0}")]
    NotIssued(String),
    /// The certificate or key could not be loaded for TLS.
    #[error("loading the serving certificate: {0}")]
    Load(String),
}

impl ServingCertError {
    /// Whether asking again may help (not a refusal of the request itself).
    pub fn is_transient(&self) -> bool {
        match self {
            ServingCertError::Api(kube::Error::Api(status)) => status.code >= 500,
            ServingCertError::Api(_) => true,
            _ => false,
        }
    }
}

/// The certificate request for `node_name` covering `names` (DNS names and
/// IPs), with a new key: (request PEM, key PEM).
pub fn certificate_request(node_name: &str, names: &[String]) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node_name}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let request = params.serialize_request(&key)?.pem()?;
    Ok((request, key.serialize_pem()))
}

/// How long a serving certificate request may stay pending before the
/// endpoint falls back (to a self-signed certificate at start, to a retry
/// when renewing): the API server issues node serving certificates at once.
pub const SERVING_WAIT: Duration = Duration::from_secs(60);

/// Ask the API server behind `client` for this node's serving certificate.
#[tracing::instrument(skip(client), err)]
pub async fn request(
    client: &kube::Client,
    node_name: &str,
    names: &[String],
) -> Result<ServingCert, ServingCertError> {
    let (request_pem, key_pem) = certificate_request(node_name, names)?;
    let cert_pem = crate::bootstrap::request_certificate(
        client,
        "csr-",
        &request_pem,
        SIGNER,
        &["digital signature", "key encipherment", "server auth"],
        SERVING_WAIT,
    )
    .await?
    .map_err(ServingCertError::NotIssued)?;
    tracing::info!(node = node_name, ?names, "serving certificate issued by the cluster CA");
    Ok(ServingCert { cert_pem, key_pem })
}

/// The certificate chain and signing key of `cert`, as rustls serves them.
pub fn certified_key(cert: &ServingCert) -> Result<CertifiedKey, ServingCertError> {
    let chain = x509_parser::pem::Pem::iter_from_buffer(cert.cert_pem.as_bytes())
        .map(|p| p.map(|p| CertificateDer::from(p.contents)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServingCertError::Load(e.to_string()))?;
    let key = rcgen::KeyPair::from_pem(&cert.key_pem)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| ServingCertError::Load(e.to_string()))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// When the certificate in `cert_pem` should be renewed: 80% of the way
/// from its notBefore to its notAfter.
pub fn renew_at(cert_pem: &str) -> Option<SystemTime> {
    lifetime_point(cert_pem, 0.8)
}

/// The moment `fraction` of the way from the notBefore of the certificate
/// in `cert_pem` to its notAfter (1.0: its expiry).
pub fn lifetime_point(cert_pem: &str, fraction: f64) -> Option<SystemTime> {
    let (from, to) = validity(cert_pem)?;
    Some(from + to.duration_since(from).ok()?.mul_f64(fraction.clamp(0.0, 1.0)))
}

/// The notBefore and notAfter of the certificate in `cert_pem`.
pub fn validity(cert_pem: &str) -> Option<(SystemTime, SystemTime)> {
    let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = block.parse_x509().ok()?;
    let at = |t: i64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).ok()?));
    Some((
        at(cert.validity().not_before.timestamp())?,
        at(cert.validity().not_after.timestamp())?,
    ))
}

/// The serving certificate of a running endpoint, replaceable while it
/// serves (new handshakes get the new one).
#[derive(Debug)]
pub struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Resolver {
    /// Serving `first`.
    pub fn new(first: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(first)),
        }
    }

    /// Serve `next` from now on.
    pub fn replace(&self, next: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }
}

impl rustls::server::ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Renew `current` (for `names`) at [`renew_at`] and swap each new
/// certificate into `resolver`, forever; a failed request is retried every
/// minute.
pub async fn keep_fresh(
    resolver: Arc<Resolver>,
    client: kube::Client,
    node_name: String,
    names: Vec<String>,
    mut current: ServingCert,
) {
    loop {
        let wait = renew_at(&current.cert_pem)
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        tokio::time::sleep(wait).await;
        let next = request(&client, &node_name, &names)
            .await
            .and_then(|cert| certified_key(&cert).map(|key| (cert, key)));
        match next {
            Ok((cert, key)) => {
                resolver.replace(key);
                tracing::info!(node = node_name, "serving certificate renewed");
                current = cert;
            }
            Err(err) => {
                tracing::warn!(%err, "renewing the serving certificate failed (retrying in a minute)");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_four_fifths_of_the_lifetime() {
        let mut params = rcgen::CertificateParams::new(vec!["n1".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 11);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let jan_1_2030 = 1_893_456_000;
        assert_eq!(
            renew_at(&cert.pem()),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(jan_1_2030 + 8 * 86_400))
        );
        let served = ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let resolver = Resolver::new(certified_key(&served).unwrap());
        resolver.replace(certified_key(&served).unwrap());
        assert!(renew_at("not a certificate").is_none());
    }

    #[test]
    fn the_request_names_the_node_and_its_addresses() {
        use x509_parser::certification_request::X509CertificationRequest;
        use x509_parser::extensions::{GeneralName, ParsedExtension};
        use x509_parser::prelude::FromDer;
        let (pem, key) = certificate_request("n1", &["n1".into(), "10.0.0.7".into()]).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let (_, csr) = X509CertificationRequest::from_der(&block.contents).unwrap();
        let subject = &csr.certification_request_info.subject;
        assert_eq!(
            subject.iter_common_name().next().unwrap().as_str().unwrap(),
            "system:node:n1"
        );
        assert_eq!(
            subject.iter_organization().next().unwrap().as_str().unwrap(),
            "system:nodes"
        );
        let mut names = Vec::new();
        for ext in csr.requested_extensions().into_iter().flatten() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for n in &san.general_names {
                    match n {
                        GeneralName::DNSName(d) => names.push(d.to_string()),
                        GeneralName::IPAddress(ip) => names.push(format!("{ip:?}")),
                        _ => {}
                    }
                }
            }
        }
        assert_eq!(names, vec!["n1".to_string(), "[10, 0, 0, 7]".to_string()]);
    }
}
