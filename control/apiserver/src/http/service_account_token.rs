//! ServiceAccount tokens: the signing key, the JWTs Kubernetes' TokenRequest
//! issues (`pkg/serviceaccount`), and their authentication.
//!
//! **Key.** One ECDSA P-256 key (JWS `ES256`, which Kubernetes accepts as
//! well as `RS256`) made at first start in the cert dir: `sa.key` (PKCS#8
//! PEM, mode 0600) and `sa.pub` (SPKI PEM, for relying parties). It is
//! created under a temporary name and hard-linked into place, so API servers
//! sharing a cert dir that start together end up with the same key (the
//! loser of the race reads the winner's). The key id (`kid`) is Kubernetes':
//! the unpadded base64url SHA-256 of the public key's SPKI DER. Signing and
//! verification use `ring`, already the TLS stack's crypto provider, so no
//! JOSE crate is needed for one algorithm.
//!
//! **Claims** are Kubernetes': `iss`, `sub` (`system:serviceaccount:<ns>:
//! <name>`), `aud` (a list), `exp`, `iat`, `nbf`, `jti` (a UUID) and the
//! private `kubernetes.io` claim with `namespace`, `serviceaccount`, the bound
//! `pod` (and its `node`), `secret` or `node`, and `warnafter` when the
//! expiry was extended for a kubelet (see `token_request`).
//!
//! **Authentication** ([`ServiceAccountTokens::authenticate`]): a JWT whose
//! `iss` is not ours is not ours to judge (the token is then unknown: 401);
//! otherwise the signature, `exp`/`nbf`/`iat` (with go-jose's one-minute
//! leeway), the audiences (at least one of the accepted ones), and then the
//! live objects: the ServiceAccount must exist with the token's uid, a bound
//! Pod or Secret must exist with the bound uid (a Secret being deleted
//! counts as gone), a token bound to a Node only that Node. The errors are
//! Kubernetes' words (TokenReview shows them in `status.error`). Live
//! objects are read from etcd at each request (one get for the account, one
//! per bound object: about a millisecond on a local etcd), so a deleted pod's
//! token is refused at once; Kubernetes reads informers and caches successes
//! for 10 s.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Map, Value};

use crate::http::auth::UserInfo;
use crate::kinds::{self, Resource};
use crate::registry::Registry;
use crate::storage::store;

/// `--service-account-issuer`'s default, as kubeadm and kind set it.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The JWS algorithm of our key.
pub const ALGORITHM: &str = "ES256";
/// Where the key set is served (and named in the discovery document).
pub const JWKS_PATH: &str = "/openid/v1/jwks";
/// The OIDC discovery document's path.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
/// The group every ServiceAccount is in.
pub const ALL_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// go-jose's default leeway on `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: i64 = 60;

/// SPKI DER header of an uncompressed P-256 point (id-ecPublicKey, prime256v1).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The user name of a ServiceAccount (`system:serviceaccount:<ns>:<name>`).
pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The issuer: signing key, `--service-account-issuer`, `--api-audiences`.
pub struct ServiceAccountTokens {
    key: EcdsaKeyPair,
    kid: String,
    /// `iss` of the tokens we issue and accept.
    pub issuer: String,
    /// The audiences the API server accepts (and TokenRequest's default).
    pub api_audiences: Vec<String>,
    /// `jwks_uri` of the discovery document.
    pub jwks_uri: String,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountTokens")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes `contents` at `path` unless a file is there already (then that
/// file wins): temporary file, then a hard link, which fails if the name
/// is taken.
fn write_once(path: &Path, contents: &str, mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

impl ServiceAccountTokens {
    /// The issuer with the key in `cert_dir` (`sa.key`, created at first start).
    pub fn load_or_create(cert_dir: &Path, issuer: &str, api_audiences: Vec<String>, jwks_uri: String) -> Result<Self> {
        std::fs::create_dir_all(cert_dir).with_context(|| format!("creating {}", cert_dir.display()))?;
        let key_path = cert_dir.join("sa.key");
        if !key_path.exists() {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("generating the service account signing key"))?;
            write_once(&key_path, &pem("PRIVATE KEY", doc.as_ref()), 0o600)?;
        }
        let text = std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let der = match rustls_pemfile::private_key(&mut text.as_slice())? {
            Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k)) => k.secret_pkcs8_der().to_vec(),
            _ => bail!("{}: expected a PKCS#8 ECDSA P-256 private key", key_path.display()),
        };
        let me = Self::from_pkcs8(&der, issuer, api_audiences, jwks_uri)
            .with_context(|| format!("loading {}", key_path.display()))?;
        write_once(&cert_dir.join("sa.pub"), &pem("PUBLIC KEY", &me.spki_der()), 0o644)?;
        Ok(me)
    }

    /// The issuer with a PKCS#8 DER P-256 key.
    pub fn from_pkcs8(der: &[u8], issuer: &str, api_audiences: Vec<String>, jwks_uri: String) -> Result<Self> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
            .map_err(|e| anyhow::anyhow!("not an ECDSA P-256 key: {e}"))?;
        let mut me = Self {
            key,
            kid: String::new(),
            issuer: issuer.to_string(),
            api_audiences: if api_audiences.is_empty() {
                vec![issuer.to_string()]
            } else {
                api_audiences
            },
            jwks_uri,
        };
        me.kid = b64(ring::digest::digest(&ring::digest::SHA256, &me.spki_der()).as_ref());
        Ok(me)
    }

    fn spki_der(&self) -> Vec<u8> {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.key.public_key().as_ref());
        der
    }

    /// The key id in every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed compact JWS of `claims` (`iss` is set here).
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let mut claims = claims.clone();
        if let Some(o) = claims.as_object_mut() {
            o.insert("iss".into(), json!(self.issuer));
            // Keys in alphabetical order, as Kubernetes' tokens have them.
            let sorted: BTreeMap<String, Value> = std::mem::take(o).into_iter().collect();
            o.extend(sorted);
        }
        let header = json!({"alg": ALGORITHM, "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| "failed to generate token: signing failed".to_string())?;
        Ok(format!("{input}.{}", b64(sig.as_ref())))
    }

    /// The OIDC discovery document.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
        })
    }

    /// The public key set (`/openid/v1/jwks`).
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": ALGORITHM,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }]})
    }

    /// Checks a token's form, issuer, signature and times (at `now`, Unix
    /// seconds): `Ok(None)` when it is not a token of this issuer.
    pub fn verify(&self, token: &str, now: i64) -> Result<Option<Claims>, String> {
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = parts.as_slice() else {
            return Ok(None);
        };
        let decode = |s: &str| -> Option<Value> { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok() };
        let (Some(header), Some(payload), Ok(sig)) =
            (decode(header), decode(payload), URL_SAFE_NO_PAD.decode(signature))
        else {
            return Ok(None);
        };
        if payload.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Ok(None);
        }
        let input_len = token.len() - signature.len() - 1;
        let verified = header.get("alg").and_then(Value::as_str) == Some(ALGORITHM)
            && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
                .verify(&token.as_bytes()[..input_len], &sig)
                .is_ok();
        if !verified {
            return Err("square/go-jose: error in cryptographic primitive".into());
        }
        let time = |k: &str| payload.get(k).and_then(Value::as_i64);
        if time("exp").is_some_and(|exp| now > exp + LEEWAY_SECONDS) {
            return Err("service account token has expired".into());
        }
        if time("nbf").is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
            return Err("service account token is not valid yet".into());
        }
        if time("iat").is_some_and(|iat| now + LEEWAY_SECONDS < iat) {
            return Err("service account token is issued in the future".into());
        }
        Claims::parse(&payload).map(Some)
    }

    /// Authenticates `token` against `audiences` (the API audiences for a
    /// request, a TokenReview's own otherwise): `Ok(None)` when the token is
    /// not ours, `Err` with Kubernetes' reason when it is ours but invalid.
    pub async fn authenticate(
        &self,
        registry: &Registry,
        token: &str,
        audiences: &[String],
    ) -> Result<Option<Authenticated>, String> {
        let Some(claims) = self.verify(token, chrono::Utc::now().timestamp())? else {
            return Ok(None);
        };
        let matched: Vec<String> = audiences
            .iter()
            .filter(|a| claims.audiences.contains(a))
            .cloned()
            .collect();
        if matched.is_empty() {
            return Err(format!(
                "token audiences {} is invalid for the target audiences {}",
                go_quoted(&claims.audiences),
                go_quoted(audiences)
            ));
        }
        check_live(registry, &claims).await?;
        Ok(Some(Authenticated {
            user: claims.user(),
            extra: claims.extra(),
            audiences: matched,
        }))
    }
}

/// `%q` of a Go string slice: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// A name and uid in the `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// Object name.
    pub name: String,
    /// Object uid.
    pub uid: String,
}

impl Ref {
    fn parse(v: Option<&Value>) -> Option<Ref> {
        let v = v?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Some(Ref {
            name: s("name"),
            uid: s("uid"),
        })
    }

    /// Of a live object.
    pub fn of(obj: &Value) -> Ref {
        let s = |k: &str| {
            obj.pointer(&format!("/metadata/{k}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ref {
            name: s("name"),
            uid: s("uid"),
        }
    }

    fn to_json(&self) -> Value {
        json!({"name": self.name, "uid": self.uid})
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `kubernetes.io.namespace`.
    pub namespace: String,
    /// The ServiceAccount.
    pub service_account: Ref,
    /// The bound Pod, if any.
    pub pod: Option<Ref>,
    /// The bound Secret, if any.
    pub secret: Option<Ref>,
    /// The bound Node, or the bound Pod's node.
    pub node: Option<Ref>,
    /// `aud`.
    pub audiences: Vec<String>,
    /// `jti`.
    pub jti: Option<String>,
}

impl Claims {
    fn parse(payload: &Value) -> Result<Claims, String> {
        let Some(k) = payload.get("kubernetes.io") else {
            // Legacy Secret-based tokens are not accepted.
            return Err("service account token claims could not be read".into());
        };
        let audiences = match payload.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(String::from).collect(),
            _ => Vec::new(),
        };
        let claims = Claims {
            namespace: k
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            service_account: Ref::parse(k.get("serviceaccount")).unwrap_or(Ref {
                name: String::new(),
                uid: String::new(),
            }),
            pod: Ref::parse(k.get("pod")),
            secret: Ref::parse(k.get("secret")),
            node: Ref::parse(k.get("node")),
            audiences,
            jti: payload.get("jti").and_then(Value::as_str).map(String::from),
        };
        let sub = payload.get("sub").and_then(Value::as_str).unwrap_or_default();
        if claims.namespace.is_empty()
            || claims.service_account.name.is_empty()
            || sub != username(&claims.namespace, &claims.service_account.name)
        {
            return Err("service account token claims could not be read".into());
        }
        Ok(claims)
    }

    /// The user the token authenticates as.
    pub fn user(&self) -> UserInfo {
        UserInfo {
            name: username(&self.namespace, &self.service_account.name),
            uid: self.service_account.uid.clone(),
            groups: vec![
                ALL_SERVICE_ACCOUNTS.to_string(),
                format!("{ALL_SERVICE_ACCOUNTS}:{}", self.namespace),
            ],
        }
    }

    /// The user's extra attributes, as Kubernetes names them.
    pub fn extra(&self) -> BTreeMap<String, Vec<String>> {
        let mut extra = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            extra.insert(format!("authentication.kubernetes.io/{k}"), vec![v.to_string()]);
        };
        if let Some(p) = &self.pod {
            put("pod-name", &p.name);
            put("pod-uid", &p.uid);
        }
        if let Some(n) = &self.node {
            put("node-name", &n.name);
            put("node-uid", &n.uid);
        }
        if let Some(j) = &self.jti {
            put("credential-id", &format!("JTI={j}"));
        }
        extra
    }
}

/// A user a ServiceAccount token authenticated.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Name, uid, groups (`system:authenticated` is added by authorization).
    pub user: UserInfo,
    /// `authentication.kubernetes.io/*` attributes.
    pub extra: BTreeMap<String, Vec<String>>,
    /// The token's audiences that were asked for.
    pub audiences: Vec<String>,
}

/// The objects a token may be bound to.
#[derive(Debug, Default, Clone)]
pub struct Bound {
    /// A Pod (with its node, when scheduled and found).
    pub pod: Option<Ref>,
    /// A Secret.
    pub secret: Option<Ref>,
    /// A Node: the bound one, or the bound pod's.
    pub node: Option<Ref>,
}

/// What TokenRequest asks for, once resolved.
#[derive(Debug, Clone)]
pub struct Request {
    /// `aud`.
    pub audiences: Vec<String>,
    /// Lifetime of the token in seconds.
    pub expiration_seconds: i64,
    /// Seconds after which a kubelet should have refreshed it (`warnafter`).
    pub warn_after: Option<i64>,
    /// `jti`.
    pub jti: String,
}

/// The claims (without `iss`) of a token for `sa` at `now`.
pub fn claims(sa: &Value, bound: &Bound, req: &Request, now: i64) -> Value {
    let sa_ref = Ref::of(sa);
    let namespace = sa
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut k = Map::new();
    k.insert("namespace".into(), json!(namespace));
    if let Some(n) = &bound.node {
        k.insert("node".into(), n.to_json());
    }
    if let Some(p) = &bound.pod {
        k.insert("pod".into(), p.to_json());
    }
    if let Some(s) = &bound.secret {
        k.insert("secret".into(), s.to_json());
    }
    k.insert("serviceaccount".into(), sa_ref.to_json());
    if let Some(w) = req.warn_after {
        k.insert("warnafter".into(), json!(now + w));
    }
    json!({
        "aud": req.audiences,
        "exp": now + req.expiration_seconds,
        "iat": now,
        "jti": req.jti,
        "kubernetes.io": k,
        "nbf": now,
        "sub": username(namespace, &sa_ref.name),
    })
}

async fn live(registry: &Registry, r: &Resource, ns: Option<&str>, name: &str) -> Result<Option<Value>, String> {
    match registry.store.get(&store::object_key(r, ns, name)).await {
        Ok(o) => Ok(o.map(|s| s.object)),
        Err(e) => Err(e.message),
    }
}

fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default()
}

/// The ServiceAccount and bound objects must still be there, with the uids
/// the token names (Kubernetes' `validator.Validate`).
async fn check_live(registry: &Registry, c: &Claims) -> Result<(), String> {
    let ns = c.namespace.as_str();
    let sa = &c.service_account;
    match live(registry, &kinds::serviceaccount::RESOURCE, Some(ns), &sa.name).await? {
        None => return Err(format!("service account {ns}/{} has been deleted", sa.name)),
        Some(o) if uid_of(&o) != sa.uid => {
            return Err(format!(
                "service account UID ({}) does not match claim ({})",
                uid_of(&o),
                sa.uid
            ))
        }
        Some(_) => {}
    }
    if let Some(p) = &c.pod {
        match live(registry, &kinds::pod::RESOURCE, Some(ns), &p.name).await? {
            None => return Err(format!("pod {ns}/{} has been deleted", p.name)),
            Some(o) if uid_of(&o) != p.uid => {
                return Err(format!("pod UID ({}) does not match claim ({})", uid_of(&o), p.uid))
            }
            Some(_) => {}
        }
    }
    if let Some(s) = &c.secret {
        match live(registry, &kinds::secret::RESOURCE, Some(ns), &s.name).await? {
            None => return Err(format!("secret {ns}/{} has been deleted", s.name)),
            Some(o) if uid_of(&o) != s.uid => {
                return Err(format!("secret UID ({}) does not match claim ({})", uid_of(&o), s.uid))
            }
            Some(o) if o.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) => {
                return Err(format!("secret {ns}/{} has been deleted", s.name))
            }
            Some(_) => {}
        }
    }
    if let (Some(n), None, None) = (&c.node, &c.pod, &c.secret) {
        match live(registry, &kinds::node::RESOURCE, None, &n.name).await? {
            None => return Err(format!("node {} has been deleted", n.name)),
            Some(o) if uid_of(&o) != n.uid => {
                return Err(format!("node UID ({}) does not match claim ({})", uid_of(&o), n.uid))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> ServiceAccountTokens {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        ServiceAccountTokens::from_pkcs8(doc.as_ref(), DEFAULT_ISSUER, vec![], "https://x/openid/v1/jwks".into())
            .unwrap()
    }

    fn sa() -> Value {
        json!({"metadata": {"name": "default", "namespace": "dev", "uid": "sa-uid"}})
    }

    fn request(seconds: i64) -> Request {
        Request {
            audiences: vec![DEFAULT_ISSUER.into()],
            expiration_seconds: seconds,
            warn_after: None,
            jti: "j-1".into(),
        }
    }

    #[test]
    fn audiences_default_to_the_issuer() {
        let t = issuer();
        assert_eq!(t.api_audiences, vec![DEFAULT_ISSUER.to_string()]);
        assert_eq!(
            t.openid_configuration()["id_token_signing_alg_values_supported"],
            json!(["ES256"])
        );
        let jwk = &t.jwks()["keys"][0];
        assert_eq!((jwk["kty"].as_str(), jwk["kid"].as_str()), (Some("EC"), Some(t.kid())));
        assert_eq!(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
    }

    #[test]
    fn claims_are_kubernetes_and_round_trip() {
        let t = issuer();
        let bound = Bound {
            pod: Some(Ref {
                name: "web".into(),
                uid: "pod-uid".into(),
            }),
            secret: None,
            node: Some(Ref {
                name: "n1".into(),
                uid: "node-uid".into(),
            }),
        };
        let mut req = request(3600);
        req.warn_after = Some(3607);
        let c = claims(&sa(), &bound, &req, 1_000);
        assert_eq!(c["sub"], "system:serviceaccount:dev:default");
        assert_eq!(
            (c["iat"].as_i64(), c["nbf"].as_i64(), c["exp"].as_i64()),
            (Some(1000), Some(1000), Some(4600))
        );
        assert_eq!(c["kubernetes.io"]["warnafter"], 4607);
        assert_eq!(
            c["kubernetes.io"]["serviceaccount"],
            json!({"name": "default", "uid": "sa-uid"})
        );
        let token = t.sign(&c).unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": t.kid()}));
        let got = t.verify(&token, 1_001).unwrap().unwrap();
        assert_eq!(got.user().name, "system:serviceaccount:dev:default");
        assert_eq!(got.user().uid, "sa-uid");
        assert_eq!(
            got.user().groups,
            vec!["system:serviceaccounts", "system:serviceaccounts:dev"]
        );
        let extra = got.extra();
        assert_eq!(extra["authentication.kubernetes.io/pod-name"], vec!["web"]);
        assert_eq!(extra["authentication.kubernetes.io/node-name"], vec!["n1"]);
        assert_eq!(extra["authentication.kubernetes.io/credential-id"], vec!["JTI=j-1"]);
    }

    #[test]
    fn time_signature_and_issuer_are_checked() {
        let t = issuer();
        let token = t.sign(&claims(&sa(), &Bound::default(), &request(600), 1_000)).unwrap();
        assert!(t.verify(&token, 1_600 + 60).unwrap().is_some());
        assert_eq!(
            t.verify(&token, 1_600 + 61).unwrap_err(),
            "service account token has expired"
        );
        assert_eq!(
            t.verify(&token, 900).unwrap_err(),
            "service account token is not valid yet"
        );
        // Another key: same issuer, bad signature.
        let other = issuer();
        assert_eq!(
            other.verify(&token, 1_001).unwrap_err(),
            "square/go-jose: error in cryptographic primitive"
        );
        // Another issuer, or not a JWT at all: not ours.
        let foreign = ServiceAccountTokens::from_pkcs8(
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap()
                .as_ref(),
            "https://elsewhere",
            vec![],
            String::new(),
        )
        .unwrap();
        assert!(foreign.verify(&token, 1_001).unwrap().is_none());
        assert!(t.verify("abc.def", 1_001).unwrap().is_none());
        assert!(t.verify("0123456789abcdef", 1_001).unwrap().is_none());
    }

    #[test]
    fn the_key_is_made_once_and_shared() {
        let dir = std::env::temp_dir().join(format!("sa-key-{}", uuid::Uuid::new_v4()));
        let a = ServiceAccountTokens::load_or_create(&dir, DEFAULT_ISSUER, vec![], String::new()).unwrap();
        let b = ServiceAccountTokens::load_or_create(&dir, DEFAULT_ISSUER, vec![], String::new()).unwrap();
        assert_eq!(a.kid(), b.kid());
        let token = a.sign(&claims(&sa(), &Bound::default(), &request(600), 1_000)).unwrap();
        assert!(b.verify(&token, 1_001).unwrap().is_some());
        assert!(std::fs::read_to_string(dir.join("sa.pub"))
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn audience_mismatch_is_worded_as_kubernetes() {
        assert_eq!(go_quoted(&["a".into(), "b".into()]), "[\"a\" \"b\"]");
    }
}
