//! The API of ServiceAccount tokens: `serviceaccounts/token` (TokenRequest,
//! `kubectl create token`), TokenReview, and the OIDC discovery documents,
//! as Kubernetes' `TokenREST`, `tokenreview` REST and `serviceaccount`
//! discovery serve them. The JWTs themselves are `service_account_token`'s.
//!
//! TokenRequest: `expirationSeconds` defaults to 3600 and must be at least
//! 600 and at most 2^32; `audiences` default to `--api-audiences`; a
//! `boundObjectRef` names a Pod (which must run as this ServiceAccount; its
//! node is named in the token too), a Secret or a Node of core/v1, read live,
//! with the uid checked when given. A pod-bound token for the API's own
//! audiences asking for exactly 3607 s — what the kubelet asks for its
//! projected volume — is issued for a year with `warnafter` at 3607 s, as
//! Kubernetes' `--service-account-extend-token-expiration` (on by default)
//! does, so old clients that never re-read the file keep working; the
//! response states the 3607 s.
//!
//! TokenReview answers at once and is never stored: ServiceAccount tokens
//! (with the review's `spec.audiences`, or the API audiences), then the
//! audience-agnostic static and bootstrap tokens, which only authenticate
//! for the API's own audiences.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::http::service_account_token::{self as sat, Bound, Ref, ServiceAccountTokens};
use crate::http::state::AppState;
use crate::kinds::{self, Resource};
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult, FieldError};
use crate::storage::store;

/// TokenRequest's default lifetime.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime TokenRequest accepts.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The kubelet's projected-token lifetime, which Kubernetes extends.
pub const WARN_ONLY_EXPIRATION_SECONDS: i64 = 3607;
/// The lifetime an extended token gets (a year).
pub const EXTENDED_EXPIRATION_SECONDS: i64 = 365 * 24 * 60 * 60;

const GROUP: &str = "authentication.k8s.io";

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// The validation errors of a TokenRequest's spec (Kubernetes'
/// `ValidateTokenRequest`).
pub fn validate_expiration(seconds: i64) -> Vec<FieldError> {
    let field = "spec.expirationSeconds";
    if seconds < MIN_EXPIRATION_SECONDS {
        vec![FieldError::invalid(
            field,
            &json!(seconds),
            "may not specify a duration less than 10 minutes",
        )]
    } else if seconds > 1 << 32 {
        vec![FieldError::invalid(
            field,
            &json!(seconds),
            "may not specify a duration larger than 2^32 seconds",
        )]
    } else {
        Vec::new()
    }
}

/// Whether the extended (kubelet) expiry applies.
pub fn extends(bound_to_pod: bool, seconds: i64, audiences: &[String], api_audiences: &[String]) -> bool {
    bound_to_pod
        && seconds == WARN_ONLY_EXPIRATION_SECONDS
        && !audiences.is_empty()
        && audiences.iter().all(|a| api_audiences.contains(a))
}

fn invalid(name: &str, causes: Vec<FieldError>) -> ApiError {
    ApiError::invalid_kind(GROUP, "TokenRequest", name, causes)
}

async fn live(registry: &Registry, r: &Resource, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    match registry.store.get(&store::object_key(r, ns, name)).await? {
        Some(s) => Ok(s.object),
        None => Err(ApiError::not_found(r, name)),
    }
}

/// `POST .../serviceaccounts/{name}/token`: the TokenRequest `body`
/// answered with its `status` (token and expiration).
pub async fn create(
    registry: &Registry,
    tokens: &ServiceAccountTokens,
    namespace: &str,
    name: &str,
    body: Value,
) -> ApiResult<Value> {
    let Value::Object(mut req) = body else {
        return Err(ApiError::bad_request("the request body must be an object"));
    };
    let req_name = text(&Value::Object(req.clone()), "/metadata/name").to_string();
    if !req_name.is_empty() && req_name != name {
        return Err(invalid(
            name,
            vec![FieldError::invalid(
                "metadata.name",
                &json!(req_name),
                "must match the service account name if specified",
            )],
        ));
    }
    let req_ns = text(&Value::Object(req.clone()), "/metadata/namespace").to_string();
    if !req_ns.is_empty() && req_ns != namespace {
        return Err(invalid(
            name,
            vec![FieldError::invalid(
                "metadata.namespace",
                &json!(req_ns),
                "must match the service account namespace if specified",
            )],
        ));
    }
    let mut spec = req.get("spec").cloned().filter(Value::is_object).unwrap_or(json!({}));
    let seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    let errs = validate_expiration(seconds);
    if !errs.is_empty() {
        return Err(invalid("", errs));
    }
    let sa = live(registry, &kinds::serviceaccount::RESOURCE, Some(namespace), name).await?;
    registry
        .admit_node_token_request(namespace, name, &Value::Object(req.clone()))
        .await?;
    let mut bound = Bound::default();
    if let Some(r) = spec.get("boundObjectRef").filter(|r| r.is_object()).cloned() {
        let (api_version, kind, obj_name, want_uid) = (
            text(&r, "/apiVersion"),
            text(&r, "/kind"),
            text(&r, "/name"),
            text(&r, "/uid"),
        );
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let obj = match (group, kind) {
            ("", "Pod") => {
                let pod = live(registry, &kinds::pod::RESOURCE, Some(namespace), obj_name).await?;
                let runs_as = text(&pod, "/spec/serviceAccountName");
                if runs_as != name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with serviceaccount {runs_as:?}"
                    )));
                }
                let node = text(&pod, "/spec/nodeName");
                if !node.is_empty() {
                    if let Some(n) = registry
                        .store
                        .get(&store::object_key(&kinds::node::RESOURCE, None, node))
                        .await?
                    {
                        bound.node = Some(Ref::of(&n.object));
                    }
                }
                bound.pod = Some(Ref::of(&pod));
                pod
            }
            ("", "Secret") => {
                let secret = live(registry, &kinds::secret::RESOURCE, Some(namespace), obj_name).await?;
                bound.secret = Some(Ref::of(&secret));
                secret
            }
            ("", "Node") => {
                let node = live(registry, &kinds::node::RESOURCE, None, obj_name).await?;
                bound.node = Some(Ref::of(&node));
                node
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {group}/{version}, Kind={kind}"
                )))
            }
        };
        let uid = text(&obj, "/metadata/uid");
        if !want_uid.is_empty() && want_uid != uid {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {kind} {obj_name:?}: the UID in the bound object reference ({want_uid}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
                ),
            ));
        }
        spec["boundObjectRef"]["uid"] = json!(uid);
    }
    let mut audiences = strings(spec.get("audiences"));
    if audiences.is_empty() {
        audiences = tokens.api_audiences.clone();
    }
    let extended = extends(bound.pod.is_some(), seconds, &audiences, &tokens.api_audiences);
    let request = sat::Request {
        audiences: audiences.clone(),
        expiration_seconds: if extended { EXTENDED_EXPIRATION_SECONDS } else { seconds },
        warn_after: extended.then_some(seconds),
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let now = chrono::Utc::now();
    let claims = sat::claims(&sa, &bound, &request, now.timestamp());
    let token = tokens.sign(&claims).map_err(|e| ApiError::internal(e.to_string()))?;
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(seconds);
    let expires = chrono::DateTime::from_timestamp(now.timestamp() + seconds, 0).unwrap_or(now);
    let mut meta = req
        .get("metadata")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    meta["name"] = json!(name);
    meta["namespace"] = json!(namespace);
    meta["creationTimestamp"] = json!(now.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    req.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
    req.insert("kind".into(), json!("TokenRequest"));
    req.insert("metadata".into(), meta);
    req.insert("spec".into(), spec);
    req.insert(
        "status".into(),
        json!({"token": token, "expirationTimestamp": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string()}),
    );
    Ok(Value::Object(req))
}

/// A TokenReview's `status` for `token` against `audiences` (empty: the
/// API audiences).
pub async fn review_status(state: &AppState, token: &str, audiences: &[String]) -> Value {
    let tokens = &state.sa_tokens;
    let auds: Vec<String> = if audiences.is_empty() {
        tokens.api_audiences.clone()
    } else {
        audiences.to_vec()
    };
    match tokens.authenticate(&state.registry, token, &auds).await {
        Ok(Some(a)) => {
            let mut groups = a.user.groups.clone();
            groups.push(crate::registry::rbac::AUTHENTICATED.to_string());
            let mut user = json!({"username": a.user.name, "uid": a.user.uid, "groups": groups});
            if !a.extra.is_empty() {
                user["extra"] = json!(a.extra);
            }
            return json!({"authenticated": true, "user": user, "audiences": a.audiences});
        }
        Ok(None) => {}
        Err(e) => return json!({"user": {}, "error": e}),
    }
    // Audience-agnostic authenticators answer for the API's audiences only.
    let matched: Vec<String> = auds
        .iter()
        .filter(|a| tokens.api_audiences.contains(a))
        .cloned()
        .collect();
    if !matched.is_empty() {
        let user = match state.tokens.authenticate(token) {
            Some(u) => Some(u),
            None => crate::http::bootstrap_token::authenticate(&state.registry, token).await,
        };
        if let Some(u) = user {
            let mut groups = u.groups.clone();
            if !groups.iter().any(|g| g == crate::registry::rbac::AUTHENTICATED) {
                groups.push(crate::registry::rbac::AUTHENTICATED.to_string());
            }
            let mut info = json!({"username": u.name, "groups": groups});
            if !u.uid.is_empty() {
                info["uid"] = json!(u.uid);
            }
            return json!({"authenticated": true, "user": info, "audiences": matched});
        }
    }
    json!({"user": {}})
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: the review with its
/// `status`.
pub async fn review(state: &AppState, body: Value) -> ApiResult<Value> {
    let Value::Object(mut o) = body else {
        return Err(ApiError::bad_request("the request body must be an object"));
    };
    let spec = o.get("spec").cloned().unwrap_or(json!({}));
    let token = text(&spec, "/token");
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let status = review_status(state, token, &strings(spec.get("audiences"))).await;
    o.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
    o.insert("kind".into(), json!("TokenReview"));
    if !o.get("metadata").is_some_and(Value::is_object) {
        o.insert("metadata".into(), json!({}));
    }
    o.insert("status".into(), status);
    Ok(Value::Object(o))
}

async fn openid_configuration(State(tokens): State<Arc<ServiceAccountTokens>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        tokens.openid_configuration().to_string(),
    )
        .into_response()
}

async fn jwks(State(tokens): State<Arc<ServiceAccountTokens>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/jwk-set+json")],
        tokens.jwks().to_string(),
    )
        .into_response()
}

/// The OIDC discovery routes (authorized as non-resource URLs by the
/// authentication middleware, like every path outside the handlers).
pub fn discovery_routes(tokens: Arc<ServiceAccountTokens>) -> Router {
    Router::new()
        .route(sat::OPENID_CONFIGURATION_PATH, get(openid_configuration))
        .route(sat::JWKS_PATH, get(jwks))
        .with_state(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_bounds_are_kubernetes() {
        let lines = |s| {
            validate_expiration(s)
                .iter()
                .map(FieldError::to_line)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines(599),
            ["spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"]
        );
        assert!(lines(600).is_empty());
        assert!(lines(1 << 32).is_empty());
        assert_eq!(
            lines((1 << 32) + 1),
            ["spec.expirationSeconds: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds"]
        );
    }

    #[test]
    fn only_kubelet_style_pod_tokens_are_extended() {
        let api = vec![sat::DEFAULT_ISSUER.to_string()];
        assert!(extends(true, 3607, &api, &api));
        assert!(!extends(false, 3607, &api, &api));
        assert!(!extends(true, 3600, &api, &api));
        assert!(!extends(true, 3607, &["vault".to_string()], &api));
    }
}
