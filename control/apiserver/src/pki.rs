//! The cluster's certificates: CA, serving certificate, client certificates
//! and kubeconfig files.
//!
//! The CA (`ca.crt`/`ca.key` in the cert dir) is generated once and reused;
//! everything the API server trusts for client certificates is signed by it.
//! The serving certificate is regenerated only when its SAN list changes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

const CA_COMMON_NAME: &str = "sluice-ca";

/// The cluster CA, loaded from or created in the cert dir.
pub struct ClusterCa {
    /// PEM of the CA certificate (`ca.crt`).
    pub cert_pem: String,
    key: KeyPair,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "sluice");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

impl ClusterCa {
    /// Load `ca.crt`/`ca.key` from `dir`, creating them (and `dir`) if missing.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let crt = dir.join("ca.crt");
        let key = dir.join("ca.key");
        if crt.exists() && key.exists() {
            let cert_pem = std::fs::read_to_string(&crt)?;
            let key = KeyPair::from_pem(&std::fs::read_to_string(&key)?).context("parsing ca.key")?;
            return Ok(Self { cert_pem, key });
        }
        let key_pair = KeyPair::generate().context("generating CA key")?;
        let cert = ca_params().self_signed(&key_pair).context("signing CA")?;
        // Write the key first: a crash in between leaves no CA cert without key.
        write_private(&key, &key_pair.serialize_pem())?;
        std::fs::write(&crt, cert.pem())?;
        Ok(Self {
            cert_pem: cert.pem(),
            key: key_pair,
        })
    }

    fn issuer(&self) -> Issuer<'static, &KeyPair> {
        Issuer::new(ca_params(), &self.key)
    }

    /// Sign a node's certificate request (PEM) as its serving certificate
    /// (signer `kubernetes.io/kubelet-serving`): CN `system:node:<node>`, O
    /// `system:nodes`, server auth, exactly the SANs given (already checked
    /// by the caller), valid for `seconds`. Returns the certificate PEM.
    pub fn sign_node_serving(
        &self,
        csr_pem: &str,
        node: &str,
        sans: Vec<rcgen::SanType>,
        seconds: i64,
    ) -> Result<String> {
        let mut csr =
            rcgen::CertificateSigningRequestParams::from_pem(csr_pem).context("parsing the certificate request")?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("system:node:{node}"));
        params.distinguished_name.push(DnType::OrganizationName, "system:nodes");
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::seconds(seconds);
        csr.params = params;
        Ok(csr.signed_by(&self.issuer())?.pem())
    }

    /// Issue a TLS serving certificate for these names/IPs. Returns (cert PEM, key PEM).
    pub fn issue_serving(&self, sans: &[String]) -> Result<(String, String)> {
        let mut params = CertificateParams::new(sans.to_vec()).context("serving SANs")?;
        params.distinguished_name.push(DnType::CommonName, "sluice-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer())?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issue a client certificate: CN = user, O = groups. Returns (cert PEM, key PEM).
    pub fn issue_client(&self, user: &str, groups: &[String]) -> Result<(String, String)> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, g.as_str());
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer())?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Paths of the serving certificate files in the cert dir.
pub struct ServingFiles {
    /// `apiserver.crt`
    pub cert: PathBuf,
    /// `apiserver.key`
    pub key: PathBuf,
    /// `ca.crt`
    pub ca: PathBuf,
}

/// Make sure the CA and a serving certificate covering `sans` exist in `dir`.
pub fn ensure_serving(dir: &Path, bind: IpAddr, extra_sans: &[String]) -> Result<ServingFiles> {
    let ca = ClusterCa::load_or_create(dir)?;
    let mut sans: Vec<String> = vec!["127.0.0.1".into(), "localhost".into(), "::1".into()];
    if !bind.is_unspecified() {
        sans.push(bind.to_string());
    }
    for s in extra_sans {
        if !s.is_empty() {
            sans.push(s.clone());
        }
    }
    sans.sort();
    sans.dedup();
    let files = ServingFiles {
        cert: dir.join("apiserver.crt"),
        key: dir.join("apiserver.key"),
        ca: dir.join("ca.crt"),
    };
    let sans_file = dir.join("apiserver.sans");
    let wanted = sans.join("\n");
    let current = std::fs::read_to_string(&sans_file).unwrap_or_default();
    if !(files.cert.exists() && files.key.exists() && current == wanted) {
        let (cert, key) = ca.issue_serving(&sans)?;
        write_private(&files.key, &key)?;
        std::fs::write(&files.cert, cert)?;
        std::fs::write(&sans_file, wanted)?;
    }
    Ok(files)
}

/// Write a kubeconfig for `user` (client certificate signed by the CA in `cert_dir`).
pub fn write_kubeconfig(cert_dir: &Path, server: &str, user: &str, groups: &[String], out: &Path) -> Result<()> {
    let ca = ClusterCa::load_or_create(cert_dir)?;
    let (cert, key) = ca.issue_client(user, groups)?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sluice", "cluster": {
            "server": server,
            "certificate-authority-data": b64(&ca.cert_pem),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(&cert),
            "client-key-data": b64(&key),
        }}],
        "contexts": [{"name": "sluice", "context": {"cluster": "sluice", "user": user}}],
        "current-context": "sluice",
        "preferences": {},
    });
    let yaml = serde_yaml::to_string(&config)?;
    if let Some(parent) = out.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    write_private(out, &yaml)
}

/// A TLS client verifier that accepts any server certificate but still
/// checks the handshake signatures: APIServices with `insecureSkipTLSVerify`.
#[derive(Debug)]
pub struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl AcceptAnyServerCert {
    /// With `provider`'s signature algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self(provider)
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
