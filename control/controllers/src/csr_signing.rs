//! CSR signing controller (Kubernetes' `csrsigning`): issues the
//! certificate of every approved CertificateSigningRequest of the signers
//! it serves, with the cluster CA given by `--cluster-signing-cert-file`
//! and `--cluster-signing-key-file`.
//!
//! Signers served: `kubernetes.io/kube-apiserver-client` (any subject; usages
//! within digital signature, key encipherment and client auth, client auth
//! required), `kubernetes.io/kube-apiserver-client-kubelet` (subject
//! `system:node:<name>`/`system:nodes`, client usages) and
//! `kubernetes.io/kubelet-serving` (same subject, server auth, DNS/IP SANs
//! only). A request another signer names is left alone, as Kubernetes
//! does; one of these signers whose request breaks the signer's rules gets
//! a `Failed` condition (reason `SignerValidationFailure`). The certificate
//! keeps the request's subject and SANs, gets the key usages of
//! `spec.usages`, and is valid from 5 minutes ago for `expirationSeconds`
//! (at least 600) capped by `--cluster-signing-duration` (default 1 year).
//! Keyed by request name, triggered by the CSR watch (no polling): an
//! approval is signed within one watch round trip.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::informer::Informer;
use crate::{runner, Context, Error};

/// The controller's name (`--controllers`).
pub const NAME: &str = "csrsigning";

/// Client certificates for the API server, any subject.
pub const API_SERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// Kubelet client certificates.
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Kubelet serving certificates.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

/// The cluster CA the controller signs with.
pub struct Signer {
    ca_pem: String,
    key: rcgen::KeyPair,
    max: Duration,
}

impl Signer {
    /// Loads the CA certificate and key (PEM files).
    pub fn load(cert: &std::path::Path, key: &std::path::Path, max: Duration) -> Result<Self, String> {
        let ca_pem = std::fs::read_to_string(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        let key_pem = std::fs::read_to_string(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| format!("{}: {e}", key.display()))?;
        rcgen::Issuer::from_ca_cert_pem(&ca_pem, &key).map_err(|e| format!("{}: {e}", cert.display()))?;
        Ok(Self { ca_pem, key, max })
    }

    /// Signs `request_pem` as `signer` says, with `usages`, for at most
    /// `expiration_seconds`. Returns the certificate PEM, or why the
    /// request breaks the signer's rules.
    pub fn sign(
        &self,
        signer: &str,
        request_pem: &str,
        usages: &[String],
        expiration_seconds: Option<i32>,
    ) -> Result<String, String> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(request_pem)
            .map_err(|e| format!("unable to parse csr: {e}"))?;
        check_signer_rules(signer, &csr.params, usages)?;
        let params = &mut csr.params;
        params.is_ca = rcgen::IsCa::NoCa;
        params.key_usages = Vec::new();
        params.extended_key_usages = Vec::new();
        for u in usages {
            match u.as_str() {
                "digital signature" | "signing" => params.key_usages.push(rcgen::KeyUsagePurpose::DigitalSignature),
                "key encipherment" => params.key_usages.push(rcgen::KeyUsagePurpose::KeyEncipherment),
                "client auth" => params
                    .extended_key_usages
                    .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => params
                    .extended_key_usages
                    .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth),
                other => return Err(format!("unsupported usage {other:?}")),
            }
        }
        let max = i64::try_from(self.max.as_secs()).unwrap_or(i64::MAX);
        let secs = expiration_seconds
            .map(i64::from)
            .map(|s| s.max(600))
            .unwrap_or(max)
            .min(max);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::seconds(secs);
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.ca_pem, &self.key).map_err(|e| e.to_string())?;
        csr.signed_by(&issuer).map(|c| c.pem()).map_err(|e| e.to_string())
    }
}

/// The rules of each signer (Kubernetes' `isKubeletServing`,
/// `isKubeletClient`, `validAPIServerClientUsages`).
pub(crate) fn check_signer_rules(
    signer: &str,
    params: &rcgen::CertificateParams,
    usages: &[String],
) -> Result<(), String> {
    let allowed: &[&str] = match signer {
        API_SERVER_CLIENT | KUBELET_CLIENT => &["digital signature", "key encipherment", "client auth"],
        _ => &["digital signature", "key encipherment", "server auth"],
    };
    let required = if signer == KUBELET_SERVING {
        "server auth"
    } else {
        "client auth"
    };
    if let Some(bad) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Err(format!("invalid usage for {signer} certificate: {bad}"));
    }
    if !usages.iter().any(|u| u == required) {
        return Err(format!("missing required usage for {signer} certificate: {required}"));
    }
    if signer == API_SERVER_CLIENT {
        return Ok(());
    }
    let mut cns = Vec::new();
    let mut orgs = Vec::new();
    for (kind, value) in params.distinguished_name.iter() {
        let text = match value {
            rcgen::DnValue::Utf8String(s) => s.clone(),
            rcgen::DnValue::PrintableString(s) => s.to_string(),
            _ => String::new(),
        };
        match kind {
            rcgen::DnType::CommonName => cns.push(text),
            rcgen::DnType::OrganizationName => orgs.push(text),
            _ => {}
        }
    }
    if orgs != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if cns.len() != 1 || !cns[0].starts_with("system:node:") || cns[0].len() == "system:node:".len() {
        return Err("subject common name does not begin with system:node:".into());
    }
    let sans = &params.subject_alt_names;
    if signer == KUBELET_CLIENT && !sans.is_empty() {
        return Err("subjectAltNames are not allowed in kubelet client certificates".into());
    }
    if signer == KUBELET_SERVING {
        if sans.is_empty() {
            return Err("DNS or IP subjectAltName is required".into());
        }
        if sans
            .iter()
            .any(|s| !matches!(s, rcgen::SanType::DnsName(_) | rcgen::SanType::IpAddress(_)))
        {
            return Err("only DNS and IP subjectAltNames are allowed".into());
        }
    }
    Ok(())
}

fn has(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// Subscribes the controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let c = &ctx.config;
    let signer = match (&c.cluster_signing_cert_file, &c.cluster_signing_key_file) {
        (Some(cert), Some(key)) => match Signer::load(cert, key, c.cluster_signing_duration) {
            Ok(s) => Some(Arc::new(s)),
            Err(err) => {
                tracing::error!(%err, "cannot load the cluster signing CA; no certificate signing requests are signed");
                None
            }
        },
        _ => {
            tracing::warn!("no --cluster-signing-cert-file/--cluster-signing-key-file: certificate signing requests are not signed");
            None
        }
    };
    let Some(signer) = signer else {
        return futures::future::pending().boxed();
    };
    let csrs = Arc::new(Informer::<CertificateSigningRequest>::new(
        Api::all(ctx.client.clone()),
        watcher::Config::default(),
    ));
    let own = csrs.trigger(|c: &CertificateSigningRequest| Some(ObjectRef::from_obj(c)));
    let store = csrs.store();
    async move {
        csrs.start();
        csrs.wait_synced().await;
        runner::run(NAME, ctx, store, vec![own.boxed()], move |csr, ctx| {
            reconcile(csr, ctx, signer.clone())
        })
        .await
    }
    .boxed()
}

#[tracing::instrument(skip_all, fields(csr = %csr.name_any()))]
async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
    signer: Arc<Signer>,
) -> Result<Action, Error> {
    let signer_name = csr.spec.signer_name.as_str();
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if !matches!(signer_name, API_SERVER_CLIENT | KUBELET_CLIENT | KUBELET_SERVING)
        || issued
        || !has(&csr, "Approved")
        || has(&csr, "Failed")
        || has(&csr, "Denied")
    {
        return Ok(Action::await_change());
    }
    let request_pem = String::from_utf8_lossy(&csr.spec.request.0).to_string();
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let mut next = (*csr).clone();
    let status = next.status.get_or_insert_with(Default::default);
    match signer.sign(signer_name, &request_pem, &usages, csr.spec.expiration_seconds) {
        Ok(pem) => {
            status.certificate = Some(k8s_openapi::ByteString(pem.into_bytes()));
            tracing::info!(signer = signer_name, user = ?csr.spec.username, "signed certificate");
        }
        Err(message) => {
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(CertificateSigningRequestCondition {
                    type_: "Failed".into(),
                    status: "True".into(),
                    reason: Some("SignerValidationFailure".into()),
                    message: Some(message.clone()),
                    last_update_time: Some(now.clone()),
                    last_transition_time: Some(now),
                });
            tracing::info!(signer = signer_name, %message, "certificate signing request failed the signer's rules");
        }
    }
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    match api.replace_status(&csr.name_any(), &PostParams::default(), &next).await {
        Ok(_) => {}
        // Changed or deleted meanwhile: the watch brings us back.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn request(cn: &str, orgs: &[&str]) -> String {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn signer(max: Duration) -> Signer {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "test-ca");
        let ca = params.self_signed(&key).unwrap();
        Signer {
            ca_pem: ca.pem(),
            key,
            max,
        }
    }

    fn usages(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn client_certificates_keep_the_subject_and_honour_the_shorter_duration() {
        let s = signer(Duration::from_secs(3600));
        let pem = s
            .sign(
                API_SERVER_CLIENT,
                &request("alice", &["devs"]),
                &usages(&["client auth"]),
                Some(700),
            )
            .unwrap();
        let der = rustls_pemfile_like(&pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=alice, O=devs");
        let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(life, 700 + 300);
        let capped = s
            .sign(
                API_SERVER_CLIENT,
                &request("alice", &[]),
                &usages(&["client auth"]),
                Some(86400),
            )
            .unwrap();
        let der = rustls_pemfile_like(&capped);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(life, 3600 + 300);
    }

    fn rustls_pemfile_like(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }

    #[test]
    fn each_signer_keeps_its_rules() {
        let s = signer(Duration::from_secs(3600));
        assert_eq!(
            s.sign(
                API_SERVER_CLIENT,
                &request("alice", &[]),
                &usages(&["server auth"]),
                None
            )
            .unwrap_err(),
            "invalid usage for kubernetes.io/kube-apiserver-client certificate: server auth"
        );
        assert!(s
            .sign(
                KUBELET_CLIENT,
                &request("alice", &["system:nodes"]),
                &usages(&["client auth"]),
                None
            )
            .is_err());
        assert!(s
            .sign(
                KUBELET_CLIENT,
                &request("system:node:n1", &["system:nodes"]),
                &usages(&["client auth"]),
                None
            )
            .is_ok());
        assert_eq!(
            s.sign(
                KUBELET_SERVING,
                &request("system:node:n1", &["system:nodes"]),
                &usages(&["server auth"]),
                None
            )
            .unwrap_err(),
            "DNS or IP subjectAltName is required"
        );
    }
}
