//! Encryption at rest: kube-apiserver's `--encryption-provider-config`.
//!
//! The file is an `apiserver.config.k8s.io/v1` `EncryptionConfiguration`:
//! rules of `resources` (`secrets`, `deployments.apps`, `*.apps`, `*.` for
//! every core resource, `*.*` for everything) with an ordered list of
//! `providers` (`aescbc`, `aesgcm`, `secretbox`, `identity`; `kms` is
//! refused). The first provider's first key encrypts every write; every
//! provider and key can decrypt, so keys rotate the Kubernetes way (add the
//! new key second, restart, move it first, restart, rewrite all objects).
//!
//! Stored values are byte-compatible with Kubernetes':
//! `k8s:enc:<provider>:v1:<keyname>:` followed by
//! - `aescbc`: a random 16-byte IV, then AES-CBC ciphertext with PKCS#7 padding;
//! - `aesgcm`: a random 12-byte nonce, then AES-GCM ciphertext and 16-byte tag,
//!   authenticated with the etcd key (so a value copied under another key fails);
//! - `secretbox`: a random 24-byte nonce, then NaCl secretbox output
//!   (16-byte Poly1305 tag, then XSalsa20 ciphertext).
//!
//! `identity` stores the plain JSON. Values without the `k8s:enc:` prefix
//! are readable when `identity` is one of the rule's providers, which is
//! what lets encryption be switched on for a cluster with existing data.
//! The cipher primitives are RustCrypto's (`aes`, `cbc`, `aes-gcm`,
//! `crypto_secretbox`); only the framing (prefix, IV/nonce placement,
//! padding via `cbc`'s PKCS#7) is assembled here, to match Kubernetes.
//!
//! The configuration is installed once at start ([`install`]); the storage
//! layer's `encode`/`decode` call [`to_storage`]/[`from_storage`] with the
//! etcd key of every value, on every path (get, list, watch, transactions).

use std::borrow::Cow;
use std::path::Path;
use std::sync::OnceLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine;
use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use rand::RngCore;
use serde::Deserialize;

/// The prefix every encrypted value starts with.
pub const ENCRYPTED_PREFIX: &str = "k8s:enc:";

/// Why a configuration could not be loaded or a value transformed.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The configuration file could not be read.
    #[error("error reading encryption provider configuration file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not a valid `EncryptionConfiguration`.
    #[error("error while parsing encryption provider configuration file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A value could not be decrypted or encrypted.
    #[error("{0}")]
    Transform(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResourceConfig {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<ProviderConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProviderConfig {
    aescbc: Option<KeysConfig>,
    aesgcm: Option<KeysConfig>,
    secretbox: Option<KeysConfig>,
    identity: Option<serde_json::Value>,
    kms: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeysConfig {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyConfig {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
}

/// Which resources a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    /// One resource of one group (`""` = core).
    Exact { group: String, resource: String },
    /// Every resource of a group (`*.apps`; `*.` = core).
    Group(String),
    /// Everything (`*.*`).
    All,
}

impl Selector {
    fn parse(s: &str) -> Result<Self, String> {
        if s == "*.*" {
            return Ok(Self::All);
        }
        if s == "*" {
            return Err(
                "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources".into(),
            );
        }
        if let Some(group) = s.strip_prefix("*.") {
            return Ok(Self::Group(group.to_string()));
        }
        if s.is_empty() || s.contains('*') || s.contains('/') || s != s.to_lowercase() {
            return Err(format!(
                "resource {s:?} must be a lowercase plural resource name, optionally qualified by its group \
                 (e.g. secrets, deployments.apps, *.apps, *.*)"
            ));
        }
        let (resource, group) = s.split_once('.').unwrap_or((s, ""));
        Ok(Self::Exact {
            group: group.to_string(),
            resource: resource.to_string(),
        })
    }

    fn matches(&self, group: &str, resource: &str) -> bool {
        match self {
            Self::All => true,
            Self::Group(g) => g == group,
            Self::Exact { group: g, resource: r } => g == group && r == resource,
        }
    }
}

/// One cipher with its key.
#[derive(Clone)]
enum Cipher {
    AesCbc(Vec<u8>),
    AesGcm(Vec<u8>),
    Secretbox([u8; 32]),
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str(match self {
            Self::AesCbc(_) => "aescbc",
            Self::AesGcm(_) => "aesgcm",
            Self::Secretbox(_) => "secretbox",
        })
    }
}

/// One key of one provider, with the prefix its values carry.
#[derive(Debug, Clone)]
struct Keyed {
    prefix: Vec<u8>,
    cipher: Cipher,
}

/// What writes use.
#[derive(Debug, Clone)]
enum Writer {
    Identity,
    Key(usize),
}

#[derive(Debug, Clone)]
struct Rule {
    selectors: Vec<Selector>,
    writer: Writer,
    keys: Vec<Keyed>,
    identity: bool,
}

/// A loaded `EncryptionConfiguration`.
#[derive(Debug, Clone, Default)]
pub struct Transformers {
    rules: Vec<Rule>,
}

fn decode_key(provider: &str, k: &KeyConfig, at: &str, sizes: &[usize]) -> Result<Vec<u8>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(k.secret.trim())
        .map_err(|e| format!("{at}.secret: Invalid value: \"REDACTED\": secrets must be base64 encoded: {e}"))?;
    if !sizes.contains(&bytes.len()) {
        return Err(format!(
            "{at}.secret: Invalid value: \"REDACTED\": {provider} secret is {} bytes, expected one of {sizes:?}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

impl Transformers {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Self, EncryptionError> {
        let text = std::fs::read_to_string(path).map_err(|source| EncryptionError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| EncryptionError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parse and validate a configuration (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: ConfigFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        match (file.api_version.as_deref(), file.kind.as_deref()) {
            (Some("apiserver.config.k8s.io/v1"), Some("EncryptionConfiguration")) => {}
            (v, k) => {
                return Err(format!(
                    "apiVersion/kind: Invalid value: \"{}/{}\": expected apiserver.config.k8s.io/v1 \
                     EncryptionConfiguration",
                    v.unwrap_or(""),
                    k.unwrap_or("")
                ))
            }
        }
        if file.resources.is_empty() {
            return Err("resources: Required value: resources cannot be empty".into());
        }
        let mut rules = Vec::new();
        for (i, rc) in file.resources.iter().enumerate() {
            let at = format!("resources[{i}]");
            if rc.resources.is_empty() {
                return Err(format!("{at}.resources: Required value: resources cannot be empty"));
            }
            let selectors = rc
                .resources
                .iter()
                .enumerate()
                .map(|(j, s)| Selector::parse(s).map_err(|e| format!("{at}.resources[{j}]: Invalid value: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            if rc.providers.is_empty() {
                return Err(format!("{at}.providers: Required value: providers cannot be empty"));
            }
            let mut keys = Vec::new();
            let mut writer = None;
            let mut identity = false;
            for (j, p) in rc.providers.iter().enumerate() {
                let at = format!("{at}.providers[{j}]");
                let set = [
                    p.aescbc.is_some(),
                    p.aesgcm.is_some(),
                    p.secretbox.is_some(),
                    p.identity.is_some(),
                    p.kms.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if set != 1 {
                    return Err(format!(
                        "{at}: Invalid value: exactly one provider must be configured, found {set}"
                    ));
                }
                if p.kms.is_some() {
                    return Err(format!(
                        "{at}.kms: Unsupported value: the kms provider is not supported by Sluice"
                    ));
                }
                if p.identity.is_some() {
                    identity = true;
                    writer.get_or_insert(Writer::Identity);
                    continue;
                }
                let (name, kc, sizes): (&str, &KeysConfig, &[usize]) = if let Some(k) = &p.aescbc {
                    ("aescbc", k, &[16, 24, 32])
                } else if let Some(k) = &p.aesgcm {
                    ("aesgcm", k, &[16, 24, 32])
                } else if let Some(k) = &p.secretbox {
                    ("secretbox", k, &[32])
                } else {
                    unreachable!("one provider is set")
                };
                if kc.keys.is_empty() {
                    return Err(format!("{at}.{name}.keys: Required value: keys cannot be empty"));
                }
                let mut names = std::collections::HashSet::new();
                for (n, k) in kc.keys.iter().enumerate() {
                    let at = format!("{at}.{name}.keys[{n}]");
                    if k.name.is_empty() {
                        return Err(format!("{at}.name: Required value: key name is required"));
                    }
                    if k.name.contains(':') {
                        return Err(format!(
                            "{at}.name: Invalid value: {:?}: should not contain ':'",
                            k.name
                        ));
                    }
                    if !names.insert(k.name.as_str()) {
                        return Err(format!("{at}.name: Duplicate value: {:?}", k.name));
                    }
                    if k.secret.is_empty() {
                        return Err(format!("{at}.secret: Required value: secret is required"));
                    }
                    let bytes = decode_key(name, k, &at, sizes)?;
                    let cipher = match name {
                        "aescbc" => Cipher::AesCbc(bytes),
                        "aesgcm" => Cipher::AesGcm(bytes),
                        _ => {
                            let mut key = [0u8; 32];
                            key.copy_from_slice(&bytes);
                            Cipher::Secretbox(key)
                        }
                    };
                    writer.get_or_insert(Writer::Key(keys.len()));
                    keys.push(Keyed {
                        prefix: format!("{ENCRYPTED_PREFIX}{name}:v1:{}:", k.name).into_bytes(),
                        cipher,
                    });
                }
            }
            rules.push(Rule {
                selectors,
                writer: writer.unwrap_or(Writer::Identity),
                keys,
                identity,
            });
        }
        Ok(Self { rules })
    }

    /// The rule covering an etcd key (`/registry/<group>/<plural>/...`).
    fn rule_for(&self, key: &[u8]) -> Option<&Rule> {
        let (group, resource) = group_resource(key)?;
        self.rules
            .iter()
            .find(|r| r.selectors.iter().any(|s| s.matches(group, resource)))
    }

    /// Transform a value for storage under `key`.
    pub fn to_storage(&self, key: &[u8], plain: Vec<u8>) -> Result<Vec<u8>, EncryptionError> {
        let Some(rule) = self.rule_for(key) else {
            return Ok(plain);
        };
        match rule.writer {
            Writer::Identity => Ok(plain),
            Writer::Key(i) => {
                let k = &rule.keys[i];
                let mut out = k.prefix.clone();
                out.extend(seal(&k.cipher, key, &plain)?);
                Ok(out)
            }
        }
    }

    /// Transform a stored value back into the object's bytes.
    pub fn from_storage<'a>(&self, key: &[u8], stored: &'a [u8]) -> Result<Cow<'a, [u8]>, EncryptionError> {
        let rule = self.rule_for(key);
        if let Some(rule) = rule {
            for k in &rule.keys {
                if let Some(body) = stored.strip_prefix(k.prefix.as_slice()) {
                    return open(&k.cipher, key, body).map(Cow::Owned);
                }
            }
        }
        if stored.starts_with(ENCRYPTED_PREFIX.as_bytes()) {
            return Err(EncryptionError::Transform(format!(
                "no matching prefix found for the value stored at {}: {}",
                String::from_utf8_lossy(key),
                describe_prefix(stored)
            )));
        }
        match rule {
            Some(r) if !r.identity => Err(EncryptionError::Transform(format!(
                "the value stored at {} is not encrypted and the identity provider is not configured for it",
                String::from_utf8_lossy(key)
            ))),
            _ => Ok(Cow::Borrowed(stored)),
        }
    }
}

impl Transformers {
    /// Whether a value stored under `key` is not what a write now would
    /// store: encrypted with a key other than the writing one, encrypted
    /// where writes are plain, or plain where writes encrypt. Kubernetes
    /// calls such a read "stale" and writes an unchanged update anyway, which
    /// is what makes `kubectl replace` re-encrypt objects after a key rotation.
    pub fn is_stale(&self, key: &[u8], stored: &[u8]) -> bool {
        let encrypted = stored.starts_with(ENCRYPTED_PREFIX.as_bytes());
        match self.rule_for(key).map(|r| (r, &r.writer)) {
            None | Some((_, Writer::Identity)) => encrypted,
            Some((rule, Writer::Key(i))) => !stored.starts_with(rule.keys[*i].prefix.as_slice()),
        }
    }

    /// Whether a rule covers the resource stored under `key`.
    pub fn covers(&self, key: &[u8]) -> bool {
        self.rule_for(key).is_some()
    }
}

/// [`Transformers::is_stale`] with the installed configuration (without
/// one, only encrypted values are stale).
pub fn is_stale(key: &[u8], stored: &[u8]) -> bool {
    match ACTIVE.get() {
        Some(t) => t.is_stale(key, stored),
        None => stored.starts_with(ENCRYPTED_PREFIX.as_bytes()),
    }
}

/// Whether the installed configuration has a rule for the resource under `key`.
pub fn covers(key: &[u8]) -> bool {
    ACTIVE.get().is_some_and(|t| t.covers(key))
}

/// `k8s:enc:<provider>:v1:<key>` of a stored value (for errors).
fn describe_prefix(stored: &[u8]) -> String {
    let head = &stored[..stored.len().min(64)];
    let text = String::from_utf8_lossy(head);
    text.splitn(6, ':').take(5).collect::<Vec<_>>().join(":")
}

/// (group, resource) of `/registry/<group>/<plural>/...`; `core` is `""`.
fn group_resource(key: &[u8]) -> Option<(&str, &str)> {
    let key = std::str::from_utf8(key).ok()?;
    let mut parts = key.strip_prefix("/registry/")?.split('/');
    let group = parts.next()?;
    let resource = parts.next()?;
    Some((if group == "core" { "" } else { group }, resource))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

fn transform_error(what: &str) -> EncryptionError {
    EncryptionError::Transform(what.to_string())
}

fn seal(c: &Cipher, key: &[u8], plain: &[u8]) -> Result<Vec<u8>, EncryptionError> {
    match c {
        Cipher::AesCbc(k) => cbc_seal(k, &random::<16>(), plain),
        Cipher::AesGcm(k) => gcm_seal(k, &random::<12>(), key, plain),
        Cipher::Secretbox(k) => secretbox_seal(k, &random::<24>(), plain),
    }
}

fn open(c: &Cipher, key: &[u8], body: &[u8]) -> Result<Vec<u8>, EncryptionError> {
    match c {
        Cipher::AesCbc(k) => cbc_open(k, body),
        Cipher::AesGcm(k) => gcm_open(k, key, body),
        Cipher::Secretbox(k) => secretbox_open(k, body),
    }
}

fn cbc_seal(k: &[u8], iv: &[u8; 16], plain: &[u8]) -> Result<Vec<u8>, EncryptionError> {
    let ct = match k.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(k, iv)
            .map_err(|_| transform_error("invalid aescbc key"))?
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(k, iv)
            .map_err(|_| transform_error("invalid aescbc key"))?
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
        _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(k, iv)
            .map_err(|_| transform_error("invalid aescbc key"))?
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
    };
    let mut out = iv.to_vec();
    out.extend(ct);
    Ok(out)
}

fn cbc_open(k: &[u8], body: &[u8]) -> Result<Vec<u8>, EncryptionError> {
    if body.len() < 16 {
        return Err(transform_error("the stored data was shorter than the required size"));
    }
    let (iv, ct) = body.split_at(16);
    if ct.len() % 16 != 0 {
        return Err(transform_error("the stored data is not a multiple of the block size"));
    }
    let bad = |_| transform_error("invalid PKCS7 data (empty or not padded)");
    match k.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(k, iv)
            .map_err(|_| transform_error("invalid aescbc key"))?
            .decrypt_padded_vec_mut::<Pkcs7>(ct)
            .map_err(bad),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(k, iv)
            .map_err(|_| transform_error("invalid aescbc key"))?
            .decrypt_padded_vec_mut::<Pkcs7>(ct)
            .map_err(bad),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(k, iv)
            .map_err(|_| transform_error("invalid aescbc key"))?
            .decrypt_padded_vec_mut::<Pkcs7>(ct)
            .map_err(bad),
    }
}

type Aes192Gcm = aes_gcm::AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

fn gcm_seal(k: &[u8], nonce: &[u8; 12], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, EncryptionError> {
    let payload = Payload { msg: plain, aad };
    let n = aes_gcm::Nonce::from_slice(nonce);
    let bad = |_| transform_error("aesgcm encryption failed");
    let ct = match k.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(k)
            .map_err(|_| transform_error("invalid aesgcm key"))?
            .encrypt(n, payload),
        24 => Aes192Gcm::new_from_slice(k)
            .map_err(|_| transform_error("invalid aesgcm key"))?
            .encrypt(n, payload),
        _ => aes_gcm::Aes256Gcm::new_from_slice(k)
            .map_err(|_| transform_error("invalid aesgcm key"))?
            .encrypt(n, payload),
    }
    .map_err(bad)?;
    let mut out = nonce.to_vec();
    out.extend(ct);
    Ok(out)
}

fn gcm_open(k: &[u8], aad: &[u8], body: &[u8]) -> Result<Vec<u8>, EncryptionError> {
    if body.len() < 12 {
        return Err(transform_error("the stored data was shorter than the required size"));
    }
    let (nonce, ct) = body.split_at(12);
    let payload = Payload { msg: ct, aad };
    let n = aes_gcm::Nonce::from_slice(nonce);
    let bad = |_| transform_error("cipher: message authentication failed");
    match k.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(k)
            .map_err(|_| transform_error("invalid aesgcm key"))?
            .decrypt(n, payload),
        24 => Aes192Gcm::new_from_slice(k)
            .map_err(|_| transform_error("invalid aesgcm key"))?
            .decrypt(n, payload),
        _ => aes_gcm::Aes256Gcm::new_from_slice(k)
            .map_err(|_| transform_error("invalid aesgcm key"))?
            .decrypt(n, payload),
    }
    .map_err(bad)
}

fn secretbox_seal(k: &[u8; 32], nonce: &[u8; 24], plain: &[u8]) -> Result<Vec<u8>, EncryptionError> {
    let c = crypto_secretbox::XSalsa20Poly1305::new(k.into());
    let ct = c
        .encrypt(crypto_secretbox::Nonce::from_slice(nonce), plain)
        .map_err(|_| transform_error("secretbox encryption failed"))?;
    let mut out = nonce.to_vec();
    out.extend(ct);
    Ok(out)
}

fn secretbox_open(k: &[u8; 32], body: &[u8]) -> Result<Vec<u8>, EncryptionError> {
    if body.len() < 24 {
        return Err(transform_error("the stored data was shorter than the required size"));
    }
    let (nonce, ct) = body.split_at(24);
    let c = crypto_secretbox::XSalsa20Poly1305::new(k.into());
    c.decrypt(crypto_secretbox::Nonce::from_slice(nonce), ct)
        .map_err(|_| transform_error("output array too small or failed to decrypt"))
}

static ACTIVE: OnceLock<Transformers> = OnceLock::new();

/// Install the configuration for this process (once, at start).
pub fn install(t: Transformers) {
    let _ = ACTIVE.set(t);
}

/// Transform a value for storage under `key` with the installed configuration.
pub fn to_storage(key: &[u8], plain: Vec<u8>) -> Result<Vec<u8>, EncryptionError> {
    match ACTIVE.get() {
        Some(t) => t.to_storage(key, plain),
        None => Ok(plain),
    }
}

/// Read a value stored under `key` with the installed configuration.
pub fn from_storage<'a>(key: &[u8], stored: &'a [u8]) -> Result<Cow<'a, [u8]>, EncryptionError> {
    match ACTIVE.get() {
        Some(t) => t.from_storage(key, stored),
        None if stored.starts_with(ENCRYPTED_PREFIX.as_bytes()) => Err(EncryptionError::Transform(format!(
            "the value stored at {} is encrypted ({}) but no --encryption-provider-config was given",
            String::from_utf8_lossy(key),
            describe_prefix(stored)
        ))),
        None => Ok(Cow::Borrowed(stored)),
    }
}

/// A fresh random 32-byte key, base64-encoded (for generated configurations).
pub fn generate_key_base64() -> String {
    base64::engine::general_purpose::STANDARD.encode(random::<32>())
}

/// A configuration encrypting Secrets with one aescbc key, identity for reading old values.
pub fn default_config_yaml(key_base64: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - \
         secrets\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: \
         {key_base64}\n      - identity: {{}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_KEY: &[u8] = b"/registry/core/secrets/default/s";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn config(provider: &str, secret: &str) -> Transformers {
        Transformers::parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: \
             [secrets, '*.apps']\n  providers:\n  - {provider}:\n      keys:\n      - name: k1\n        secret: \
             {secret}\n  - identity: {{}}\n"
        ))
        .unwrap()
    }

    fn b64(n: usize, byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode(vec![byte; n])
    }

    #[test]
    fn every_provider_round_trips_with_the_kubernetes_prefix() {
        for p in ["aescbc", "aesgcm", "secretbox"] {
            let t = config(p, &b64(32, 7));
            let plain = br#"{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}"#.to_vec();
            let stored = t.to_storage(SECRET_KEY, plain.clone()).unwrap();
            let prefix = format!("k8s:enc:{p}:v1:k1:");
            assert!(stored.starts_with(prefix.as_bytes()), "{p}");
            assert!(!stored.windows(8).any(|w| w == b"aHVudGVy"), "{p} leaks plaintext");
            assert_eq!(
                t.from_storage(SECRET_KEY, &stored).unwrap().as_ref(),
                plain.as_slice(),
                "{p}"
            );
            // Another key of the same name never gives the plaintext back.
            // aesgcm and secretbox authenticate, so they refuse; aescbc does
            // not (as in Kubernetes): its PKCS#7 check catches most wrong
            // keys, but about 1 in 256 ends in a valid pad and yields garbage.
            let other = config(p, &b64(32, 8));
            let opened = other.from_storage(SECRET_KEY, &stored);
            if p == "aescbc" {
                assert!(
                    opened.map_or(true, |v| v.as_ref() != plain.as_slice()),
                    "{p} decrypted with a wrong key"
                );
            } else {
                assert!(opened.is_err(), "{p} decrypted with a wrong key");
            }
        }
    }

    #[test]
    fn values_under_an_old_key_or_plain_are_stale() {
        let old = config("secretbox", &b64(32, 1));
        let by_old = old.to_storage(SECRET_KEY, b"{}".to_vec()).unwrap();
        assert!(!old.is_stale(SECRET_KEY, &by_old));
        assert!(old.is_stale(SECRET_KEY, b"{}"), "plain where writes encrypt");
        // key2 first, key1 still readable: key1's values are stale.
        let rotated = Transformers::parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: \
             [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: k2\n        secret: {}\n      \
             - name: k1\n        secret: {}\n",
            b64(32, 2),
            b64(32, 1)
        ))
        .unwrap();
        assert!(rotated.from_storage(SECRET_KEY, &by_old).is_ok());
        assert!(rotated.is_stale(SECRET_KEY, &by_old));
        let by_new = rotated.to_storage(SECRET_KEY, b"{}".to_vec()).unwrap();
        assert!(!rotated.is_stale(SECRET_KEY, &by_new));
        // Resources no rule covers: only encrypted values are stale.
        let pods = b"/registry/core/pods/default/p";
        assert!(!rotated.covers(pods) && rotated.covers(SECRET_KEY));
        assert!(!rotated.is_stale(pods, b"{}"));
    }

    #[test]
    fn aesgcm_binds_the_value_to_its_etcd_key() {
        let t = config("aesgcm", &b64(16, 1));
        let stored = t.to_storage(SECRET_KEY, b"{}".to_vec()).unwrap();
        assert!(t
            .from_storage(b"/registry/core/secrets/default/other", &stored)
            .is_err());
    }

    #[test]
    fn uncovered_resources_and_old_plaintext_stay_readable() {
        let t = config("aescbc", &b64(32, 7));
        let cm = b"/registry/core/configmaps/default/c";
        assert_eq!(t.to_storage(cm, b"{}".to_vec()).unwrap(), b"{}");
        assert_eq!(t.from_storage(SECRET_KEY, b"{}").unwrap().as_ref(), b"{}");
        let d = b"/registry/apps/deployments/default/d";
        assert!(t
            .to_storage(d, b"{}".to_vec())
            .unwrap()
            .starts_with(b"k8s:enc:aescbc:v1:k1:"));
    }

    #[test]
    fn without_identity_plaintext_is_refused() {
        let t = Transformers::parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: \
             [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - {{name: a, secret: {}}}\n",
            b64(32, 3)
        ))
        .unwrap();
        assert!(t.from_storage(SECRET_KEY, b"{}").is_err());
    }

    #[test]
    fn later_keys_and_providers_decrypt_for_rotation() {
        let old = config("aescbc", &b64(32, 7));
        let stored = old.to_storage(SECRET_KEY, b"{\"a\":1}".to_vec()).unwrap();
        let rotated = Transformers::parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: \
             [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - {{name: new, secret: {}}}\n  - aescbc:\n      \
             keys:\n      - {{name: k1, secret: {}}}\n",
            b64(32, 9),
            b64(32, 7)
        ))
        .unwrap();
        assert_eq!(
            rotated.from_storage(SECRET_KEY, &stored).unwrap().as_ref(),
            b"{\"a\":1}"
        );
        let rewritten = rotated.to_storage(SECRET_KEY, b"{}".to_vec()).unwrap();
        assert!(rewritten.starts_with(b"k8s:enc:secretbox:v1:new:"));
    }

    #[test]
    fn invalid_configurations_name_the_field() {
        let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n";
        let cases = [
            ("kind: Foo\nresources: []\n".to_string(), "apiVersion/kind"),
            (format!("{head}resources: []\n"), "resources: Required"),
            (format!("{head}resources:\n- resources: ['*']\n  providers: [identity: {{}}]\n"), "resources[0].resources[0]"),
            (format!("{head}resources:\n- resources: [secrets]\n  providers: []\n"), "resources[0].providers"),
            (
                format!("{head}resources:\n- resources: [secrets]\n  providers:\n  - aescbc: {{keys: [{{name: a, secret: {}}}]}}\n", b64(10, 1)),
                "resources[0].providers[0].aescbc.keys[0].secret",
            ),
            (
                format!("{head}resources:\n- resources: [secrets]\n  providers:\n  - secretbox: {{keys: [{{name: a, secret: {}}}]}}\n", b64(16, 1)),
                "secretbox secret is 16 bytes",
            ),
            (format!("{head}resources:\n- resources: [secrets]\n  providers:\n  - kms: {{name: x}}\n"), "providers[0].kms"),
            (
                format!("{head}resources:\n- resources: [secrets]\n  providers:\n  - aescbc: {{keys: [{{name: a, secret: {k}}}, {{name: a, secret: {k}}}]}}\n", k = b64(32, 1)),
                "keys[1].name: Duplicate",
            ),
            (format!("{head}resources:\n- resources: [secrets]\n  providers:\n  - identity: {{}}\n    aescbc: {{keys: []}}\n"), "exactly one provider"),
            (format!("{head}resources:\n- resources: [secrets]\n  provider: []\n"), "unknown field `provider`"),
        ];
        for (text, want) in cases {
            let err = Transformers::parse(&text).unwrap_err();
            assert!(err.contains(want), "{text}\n=> {err}\nwant {want}");
        }
    }

    /// NIST SP 800-38A F.2.5 (CBC-AES256.Encrypt), first block: our layout is IV then ciphertext.
    #[test]
    fn aescbc_matches_the_nist_vector() {
        let key = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let iv: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let out = cbc_seal(&key, &iv, &hex("6bc1bee22e409f96e93d7e117393172a")).unwrap();
        assert_eq!(&out[..16], &iv);
        assert_eq!(&out[16..32], hex("f58c4c04d6e5f1ba779eabfb5f7bfbd6").as_slice());
        assert_eq!(out.len(), 48, "a full block of PKCS#7 padding follows");
        assert_eq!(cbc_open(&key, &out).unwrap(), hex("6bc1bee22e409f96e93d7e117393172a"));
    }

    /// McGrew–Viega GCM test case 2 (AES-128, zero key/IV, one zero block): nonce, ciphertext, tag.
    #[test]
    fn aesgcm_matches_the_gcm_spec_vector() {
        let out = gcm_seal(&[0; 16], &[0; 12], b"", &[0; 16]).unwrap();
        assert_eq!(&out[..12], &[0; 12]);
        assert_eq!(&out[12..28], hex("0388dace60b6a392f328c2b971b2fe78").as_slice());
        assert_eq!(&out[28..], hex("ab6e47d42cec13bdf53a67b21257bddf").as_slice());
    }

    #[test]
    fn secretbox_puts_the_nonce_then_the_tag_first() {
        let k = [5u8; 32];
        let out = secretbox_seal(&k, &[1; 24], b"hello").unwrap();
        assert_eq!(&out[..24], &[1; 24]);
        assert_eq!(out.len(), 24 + 16 + 5);
        assert_eq!(secretbox_open(&k, &out).unwrap(), b"hello");
        let mut tampered = out.clone();
        tampered[24] ^= 1;
        assert!(secretbox_open(&k, &tampered).is_err());
    }

    #[test]
    fn generated_default_config_encrypts_secrets() {
        let t = Transformers::parse(&default_config_yaml(&generate_key_base64())).unwrap();
        let stored = t.to_storage(SECRET_KEY, b"{}".to_vec()).unwrap();
        assert!(stored.starts_with(b"k8s:enc:aescbc:v1:key1:"));
    }
}
