//! Projected `serviceAccountToken` sources, as the kubelet's token manager.
//!
//! A token is requested through the TokenRequest API
//! (`POST .../serviceaccounts/<name>/token`, as this node's identity) for the
//! pod's ServiceAccount with the source's `audience` (none: no audiences, so
//! the API server's defaults apply), `expirationSeconds` (3600 when unset)
//! and the Pod (name and uid) as `boundObjectRef`, so the token dies with
//! the pod. Tokens are cached per request; the volume refresh loop asks
//! again every few seconds and a cached token is reused until it needs a
//! refresh: once 80% of its lifetime has passed (less than 20% left) or it
//! is older than 24 hours, as the kubelet decides (without the kubelet's
//! up-to-10-second random jitter). A pod's tokens are dropped when the pod
//! is forgotten. A failure is the kubelet's `failed to fetch token: ...`.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::{Api, PostParams};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The lifetime of a token whose source sets no `expirationSeconds` (the API's default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// A token older than this is refreshed whatever its lifetime (the kubelet's `maxTTL`).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// What identifies one token request (the kubelet's cache key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    service_account: String,
    audiences: Vec<String>,
    expiration_seconds: i64,
    pod_name: String,
    pod_uid: String,
}

/// A token and when it was issued and expires.
#[derive(Debug, Clone)]
pub struct Token {
    /// The JWT.
    pub token: String,
    /// When it stops being valid (`status.expirationTimestamp`).
    pub expires: SystemTime,
    /// Its lifetime (`spec.expirationSeconds` of the answer, else of the request).
    pub lifetime: Duration,
}

impl Token {
    /// When it was issued: its expiry less its lifetime.
    fn issued(&self) -> SystemTime {
        self.expires
            .checked_sub(self.lifetime)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Whether the kubelet would request a new one at `now`: older than
    /// [`MAX_TTL`], or less than 20% of its lifetime left.
    pub fn requires_refresh(&self, now: SystemTime) -> bool {
        if now > self.issued() + MAX_TTL {
            return true;
        }
        let margin = self.lifetime / 5;
        now > self.expires.checked_sub(margin).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// The node's cache of service account tokens.
pub struct TokenManager {
    tokens: Mutex<HashMap<Key, Token>>,
    now: fn() -> SystemTime,
}

impl Default for TokenManager {
    fn default() -> Self {
        Self::with_clock(SystemTime::now)
    }
}

impl TokenManager {
    /// A manager reading the time from `now` (tests inject a clock).
    pub fn with_clock(now: fn() -> SystemTime) -> Self {
        Self {
            tokens: Mutex::new(HashMap::new()),
            now,
        }
    }

    /// The token for `source` of `pod`: the cached one unless it needs a
    /// refresh, else a new one from the API. `Err` is the kubelet's message
    /// (`failed to fetch token: ...`).
    pub async fn token(
        &self,
        client: &kube::Client,
        pod: &Pod,
        source: &ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        let key = key(pod, source);
        if let Some(cached) = self.cached(&key) {
            return Ok(cached);
        }
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &key.namespace);
        let answer = api
            .create_token_request(&key.service_account, &PostParams::default(), &request(&key))
            .await
            .map_err(|e| format!("failed to fetch token: {}", api_message(&e)))?;
        let token = parse_answer(&key, answer).map_err(|e| format!("failed to fetch token: {e}"))?;
        let out = token.token.clone();
        self.lock().insert(key, token);
        Ok(out)
    }

    /// A cached token for `key` that is still good at the manager's clock.
    fn cached(&self, key: &Key) -> Option<String> {
        let now = (self.now)();
        let tokens = self.lock();
        tokens
            .get(key)
            .filter(|t| !t.requires_refresh(now))
            .map(|t| t.token.clone())
    }

    /// Drop every token bound to pod `uid` (it is gone), and any expired token.
    pub fn forget_pod(&self, uid: &str) {
        let now = (self.now)();
        self.lock().retain(|k, t| k.pod_uid != uid && t.expires > now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Token>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn key(pod: &Pod, source: &ServiceAccountTokenProjection) -> Key {
    let spec = pod.spec.as_ref();
    let service_account = spec
        .and_then(|s| s.service_account_name.clone().or_else(|| s.service_account.clone()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    Key {
        namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        service_account,
        audiences: source.audience.iter().filter(|a| !a.is_empty()).cloned().collect(),
        expiration_seconds: source.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
        pod_name: pod.metadata.name.clone().unwrap_or_default(),
        pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The TokenRequest the kubelet sends for `key`.
fn request(key: &Key) -> TokenRequest {
    TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: (!key.audiences.is_empty()).then(|| key.audiences.clone()),
            expiration_seconds: Some(key.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(key.pod_name.clone()),
                uid: Some(key.pod_uid.clone()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn parse_answer(key: &Key, answer: TokenRequest) -> Result<Token, String> {
    let status = answer.status.ok_or("the TokenRequest answer has no status")?;
    let token = status
        .token
        .filter(|t| !t.is_empty())
        .ok_or("the TokenRequest answer has no token")?;
    let expires = status
        .expiration_timestamp
        .ok_or("the TokenRequest answer has no expirationTimestamp")?;
    let seconds = answer
        .spec
        .and_then(|s| s.expiration_seconds)
        .unwrap_or(key.expiration_seconds)
        .max(0);
    let expires = SystemTime::from(expires.0);
    Ok(Token {
        token,
        expires,
        lifetime: Duration::from_secs(seconds as u64),
    })
}

/// An API error as its Status message (`serviceaccounts "x" not found`).
fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1"},
            "spec": {"serviceAccountName": "builder", "containers": [{"name": "c"}]}
        }))
        .unwrap()
    }

    #[test]
    fn the_request_names_the_pod_and_defaults_like_the_kubelet() {
        let source = ServiceAccountTokenProjection {
            path: "token".into(),
            ..Default::default()
        };
        let k = key(&pod(), &source);
        assert_eq!(k.service_account, "builder");
        assert_eq!(k.namespace, "ns");
        let r = request(&k).spec.unwrap();
        assert_eq!(r.audiences, None, "no audience: the API server's defaults");
        assert_eq!(r.expiration_seconds, Some(3600));
        let bound = r.bound_object_ref.unwrap();
        assert_eq!(
            (bound.kind.as_deref(), bound.name.as_deref(), bound.uid.as_deref()),
            (Some("Pod"), Some("web"), Some("u-1"))
        );
        let source = ServiceAccountTokenProjection {
            path: "token".into(),
            audience: Some("vault".into()),
            expiration_seconds: Some(600),
            user: None,
        };
        let r = request(&key(&pod(), &source)).spec.unwrap();
        assert_eq!(r.audiences, Some(vec!["vault".to_string()]));
        assert_eq!(r.expiration_seconds, Some(600));
        let mut no_sa = pod();
        no_sa.spec.as_mut().unwrap().service_account_name = None;
        assert_eq!(key(&no_sa, &source).service_account, "default");
    }

    #[test]
    fn refreshed_after_80_percent_of_the_lifetime_or_a_day() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = Token {
            token: "t".into(),
            lifetime: Duration::from_secs(3600),
            expires: issued + Duration::from_secs(3600),
        };
        assert!(!token.requires_refresh(issued));
        assert!(!token.requires_refresh(issued + Duration::from_secs(2880)));
        assert!(token.requires_refresh(issued + Duration::from_secs(2881)));
        // A year-long token is still refreshed after a day.
        let long = Token {
            token: "t".into(),
            lifetime: Duration::from_secs(365 * 24 * 3600),
            expires: issued + Duration::from_secs(365 * 24 * 3600),
        };
        assert!(!long.requires_refresh(issued + Duration::from_secs(23 * 3600)));
        assert!(long.requires_refresh(issued + Duration::from_secs(24 * 3600 + 1)));
    }

    static CLOCK: AtomicU64 = AtomicU64::new(1_000_000);

    fn clock() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(CLOCK.load(Ordering::SeqCst))
    }

    #[test]
    fn the_cache_serves_a_token_until_it_needs_a_refresh_and_forgets_the_pod() {
        let manager = TokenManager::with_clock(clock);
        let source = ServiceAccountTokenProjection {
            path: "token".into(),
            expiration_seconds: Some(600),
            ..Default::default()
        };
        let k = key(&pod(), &source);
        let answer: TokenRequest = serde_json::from_value(serde_json::json!({
            "spec": {"expirationSeconds": 600, "audiences": []},
            "status": {"token": "jwt-1", "expirationTimestamp": "1970-01-12T13:56:40Z"}
        }))
        .unwrap();
        // 1_000_000 s after the epoch is 1970-01-12T13:46:40Z; it expires 600 s later.
        let token = parse_answer(&k, answer).unwrap();
        assert_eq!(token.expires, clock() + Duration::from_secs(600));
        manager.lock().insert(k.clone(), token);
        assert_eq!(manager.cached(&k).as_deref(), Some("jwt-1"));
        CLOCK.fetch_add(480, Ordering::SeqCst);
        assert_eq!(
            manager.cached(&k).as_deref(),
            Some("jwt-1"),
            "80% of 600 s not yet passed"
        );
        CLOCK.fetch_add(1, Ordering::SeqCst);
        assert_eq!(manager.cached(&k), None, "past 80%: a new token is requested");
        manager.forget_pod("u-1");
        assert!(manager.lock().is_empty());
    }

    #[test]
    fn an_answer_without_a_token_is_an_error() {
        let k = key(
            &pod(),
            &ServiceAccountTokenProjection {
                path: "token".into(),
                ..Default::default()
            },
        );
        assert!(parse_answer(&k, TokenRequest::default()).is_err());
    }
}
