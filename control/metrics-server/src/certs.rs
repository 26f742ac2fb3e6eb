//! The serving certificate. Like Kubernetes' metrics-server without
//! `--tls-cert-file`, it makes its own: a CA (`metrics-server-ca@<unix
//! time>`) and a certificate it signs for `metrics-server.kube-system.svc`
//! (the name the API server's aggregator checks) and the serving address.
//! The CA is what the APIService's `caBundle` carries. With `--cert-dir`
//! both are kept there (`ca.crt`, `tls.crt`, `tls.key`) and reused while
//! they name the same hosts, so a restart keeps the registration valid.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// PEM serving material.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The CA that signed the certificate (the APIService's `caBundle`).
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// Its key.
    pub key_pem: String,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params
}

/// A new CA and a serving certificate for `hosts` (DNS names) and `ips`.
pub fn generate(hosts: &[String], ips: &[IpAddr]) -> Result<Serving> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let ca_name = format!("metrics-server-ca@{now}");
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let ca = ca_params(&ca_name).self_signed(&ca_key).context("signing the CA")?;
    let issuer = Issuer::new(ca_params(&ca_name), &ca_key);
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("metrics-server@{now}"));
    params.subject_alt_names = hosts
        .iter()
        .map(|h| h.clone().try_into().map(SanType::DnsName))
        .collect::<Result<_, _>>()
        .context("a host name")?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let key = KeyPair::generate().context("generating the serving key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the serving certificate")?;
    Ok(Serving {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Whether the certificate in `cert_pem` names every host and address.
fn names_all(cert_pem: &str, hosts: &[String], ips: &[IpAddr]) -> bool {
    let Some(Ok(der)) = rustls_pemfile::certs(&mut cert_pem.as_bytes()).next() else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    use x509_parser::extensions::GeneralName;
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    hosts.iter().all(|h| names.contains(h)) && ips.iter().all(|ip| names.contains(&ip.to_string()))
}

/// The material kept in `dir` if it names `hosts` and `ips`, else new
/// material written there; without a directory, new material.
pub fn load_or_generate(dir: Option<&Path>, hosts: &[String], ips: &[IpAddr]) -> Result<Serving> {
    let Some(dir) = dir else { return generate(hosts, ips) };
    let read = |f: &str| std::fs::read_to_string(dir.join(f));
    if let (Ok(ca_pem), Ok(cert_pem), Ok(key_pem)) = (read("ca.crt"), read("tls.crt"), read("tls.key")) {
        if names_all(&cert_pem, hosts, ips) {
            return Ok(Serving {
                ca_pem,
                cert_pem,
                key_pem,
            });
        }
    }
    let s = generate(hosts, ips)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (f, text) in [("ca.crt", &s.ca_pem), ("tls.crt", &s.cert_pem), ("tls.key", &s.key_pem)] {
        let path = dir.join(f);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.join("tls.key"), std::fs::Permissions::from_mode(0o600));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_is_kept_while_it_names_the_same_hosts() {
        let dir = std::env::temp_dir().join(format!("ms-certs-{}", std::process::id()));
        let hosts = vec!["metrics-server.kube-system.svc".to_string()];
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = load_or_generate(Some(&dir), &hosts, &[ip]).unwrap();
        assert!(a.ca_pem.contains("BEGIN CERTIFICATE") && a.key_pem.contains("PRIVATE KEY"));
        let b = load_or_generate(Some(&dir), &hosts, &[ip]).unwrap();
        assert_eq!(a.cert_pem, b.cert_pem);
        let c = load_or_generate(Some(&dir), &hosts, &["10.0.0.1".parse().unwrap()]).unwrap();
        assert_ne!(a.cert_pem, c.cert_pem);
        let _ = std::fs::remove_dir_all(dir);
    }
}
