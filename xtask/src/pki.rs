//! etcd's certificates for `cargo xtask up`, laid out as kubeadm lays them
//! out: a CA of its own for etcd (`pki/etcd/ca.crt`), etcd's serving and
//! peer certificates (`pki/etcd/server.crt`, `pki/etcd/peer.crt`, for
//! `localhost`, `127.0.0.1` and `::1`), the client certificate `up` checks
//! etcd's health with (`pki/etcd/healthcheck-client.crt`) and the API
//! server's client certificate (`pki/apiserver-etcd-client.crt`).
//!
//! etcd runs with `--client-cert-auth` and trusts only this CA, so a
//! certificate of the cluster CA (an admin's, a node's) cannot read etcd:
//! only holders of a certificate signed by the etcd CA can. Everything is
//! made once and kept across `up`s; a missing leaf is issued again from
//! the kept CA. Keys are written mode 0600.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Paths of etcd's certificates under a cluster's `pki` directory.
pub struct EtcdPki {
    dir: PathBuf,
    pki: PathBuf,
}

/// A certificate/key pair on disk.
pub struct Pair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM, mode 0600).
    pub key: PathBuf,
}

impl EtcdPki {
    /// The etcd certificates of the cluster whose `pki` directory is `pki`.
    pub fn new(pki: &Path) -> EtcdPki {
        EtcdPki {
            dir: pki.join("etcd"),
            pki: pki.to_path_buf(),
        }
    }

    /// The etcd CA certificate (`--trusted-ca-file`, `--etcd-cafile`).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn pair(dir: &Path, name: &str) -> Pair {
        Pair {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// etcd's serving certificate for clients.
    pub fn server(&self) -> Pair {
        Self::pair(&self.dir, "server")
    }

    /// etcd's certificate towards its peers.
    pub fn peer(&self) -> Pair {
        Self::pair(&self.dir, "peer")
    }

    /// The client certificate `up` asks etcd's `/health` with.
    pub fn healthcheck_client(&self) -> Pair {
        Self::pair(&self.dir, "healthcheck-client")
    }

    /// The API server's client certificate (`--etcd-certfile`, `--etcd-keyfile`).
    pub fn apiserver_client(&self) -> Pair {
        Self::pair(&self.pki, "apiserver-etcd-client")
    }

    /// Make whatever is missing: the CA, then each leaf.
    pub fn ensure(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let ca = self.load_or_create_ca()?;
        let serving_names = || {
            vec![
                SanType::DnsName("localhost".try_into().expect("a valid DNS name")),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ]
        };
        let both = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let leaves = [
            (self.server(), "sluice", None, serving_names(), both.clone()),
            (self.peer(), "sluice", None, serving_names(), both),
            (
                self.healthcheck_client(),
                "kube-etcd-healthcheck-client",
                None,
                Vec::new(),
                vec![ExtendedKeyUsagePurpose::ClientAuth],
            ),
            (
                self.apiserver_client(),
                "kube-apiserver-etcd-client",
                Some("system:masters"),
                Vec::new(),
                vec![ExtendedKeyUsagePurpose::ClientAuth],
            ),
        ];
        for (pair, cn, org, sans, usages) in leaves {
            if pair.cert.exists() && pair.key.exists() {
                continue;
            }
            let key = KeyPair::generate().context("generating a key")?;
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, cn);
            if let Some(org) = org {
                params.distinguished_name.push(DnType::OrganizationName, org);
            }
            params.subject_alt_names = sans;
            params.extended_key_usages = usages;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            params.not_before = rcgen::date_time_ymd(2024, 1, 1);
            params.not_after = rcgen::date_time_ymd(2124, 1, 1);
            let cert = params
                .signed_by(&key, &ca)
                .with_context(|| format!("signing {}", pair.cert.display()))?;
            write_private(&pair.key, &key.serialize_pem())?;
            fs::write(&pair.cert, cert.pem()).with_context(|| format!("writing {}", pair.cert.display()))?;
        }
        Ok(())
    }

    fn load_or_create_ca(&self) -> Result<Issuer<'static, KeyPair>> {
        let (crt, key_path) = (self.ca_cert(), self.dir.join("ca.key"));
        if crt.exists() && key_path.exists() {
            let pem = fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
            let key = KeyPair::from_pem(&pem).with_context(|| format!("parsing {}", key_path.display()))?;
            return Ok(Issuer::new(ca_params(), key));
        }
        let key = KeyPair::generate().context("generating the etcd CA key")?;
        let cert = ca_params().self_signed(&key).context("signing the etcd CA")?;
        // The key first: a crash in between leaves no CA certificate without its key.
        write_private(&key_path, &key.serialize_pem())?;
        fs::write(&crt, cert.pem()).with_context(|| format!("writing {}", crt.display()))?;
        Ok(Issuer::new(ca_params(), key))
    }
}

/// The etcd CA's parameters (the issuer name of every leaf, so they are
/// rebuilt identically when the CA is loaded).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "etcd-ca");
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
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
