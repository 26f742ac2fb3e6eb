//! Bootstrap tokens: the credential a joining node starts with.
//!
//! As in Kubernetes, a token `<id>.<secret>` (6 and 16 characters of
//! `[a-z0-9]`) is stored as the Secret `kube-system/bootstrap-token-<id>` of
//! type `bootstrap.kubernetes.io/token` (`ctl node token create` makes one).
//! A request with `Authorization: Bearer <id>.<secret>` is authenticated as
//! user `system:bootstrap:<id>` in group `system:bootstrappers` (plus the
//! Secret's `auth-extra-groups`) while the Secret exists, is meant for
//! authentication and has not expired.
//!
//! [`BootstrapScoped`] keeps such users to what joining needs: they may only
//! ask for a node client certificate (see `node_certs`), nothing else.
//!
//! Sluice binds a token to the node it was issued for: the Secret's
//! annotation `bootstrap.sluice.dev/node-name` (set by whoever writes the
//! Secret, an administrator) becomes the extra group
//! `system:bootstrappers:sluice:node:<name>` of the token's user, and
//! `node_certs` signs a node client certificate for that user only when the
//! request's subject is `system:node:<name>`. That group can only come from
//! the annotation (one named in `auth-extra-groups` is dropped). A token
//! without the annotation is not bound, as in Kubernetes.

use base64::Engine;
use serde_json::Value;

use crate::http::auth::{Authorizer, RequestAttributes, UserInfo};
use crate::kinds;
use crate::registry::Registry;

/// Group of every bootstrap-token user.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Namespace bootstrap-token Secrets live in.
pub const NAMESPACE: &str = "kube-system";
/// Annotation of a bootstrap-token Secret naming the only node it may join as.
pub const NODE_NAME_ANNOTATION: &str = "bootstrap.sluice.dev/node-name";
/// Prefix of the group that carries a token's node name.
pub const NODE_GROUP_PREFIX: &str = "system:bootstrappers:sluice:node:";

/// The node a bootstrap user's token is bound to, if it is bound.
pub fn bound_node(groups: &[String]) -> Option<&str> {
    groups.iter().find_map(|g| g.strip_prefix(NODE_GROUP_PREFIX))
}

/// Split `<id>.<secret>` if it has the bootstrap token shape.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// A field of the Secret: `data` (base64) or, for objects written raw, `stringData`.
fn field(secret: &Value, key: &str) -> Option<String> {
    if let Some(b64) = secret.pointer(&format!("/data/{key}")).and_then(Value::as_str) {
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        return String::from_utf8(raw).ok();
    }
    secret
        .pointer(&format!("/stringData/{key}"))
        .and_then(Value::as_str)
        .map(String::from)
}

/// Constant-time string comparison (the secret part must not leak by timing).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `secret` (the stored object) accepts the token `id.token_secret` at `now`.
pub fn check(
    secret: &Value,
    id: &str,
    token_secret: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<UserInfo, String> {
    if secret["type"] != SECRET_TYPE {
        return Err("secret has the wrong type".into());
    }
    if field(secret, "token-id").as_deref() != Some(id) {
        return Err("token-id does not match".into());
    }
    match field(secret, "token-secret") {
        Some(s) if same(&s, token_secret) => {}
        _ => return Err("token-secret does not match".into()),
    }
    if field(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err("token is not meant for authentication".into());
    }
    if let Some(exp) = field(secret, "expiration") {
        let at = chrono::DateTime::parse_from_rfc3339(&exp).map_err(|e| format!("bad expiration {exp:?}: {e}"))?;
        if at <= now {
            return Err(format!("token expired at {exp}"));
        }
    }
    if secret
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return Err("token is being deleted".into());
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    for g in field(secret, "auth-extra-groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
    {
        if g.starts_with("system:bootstrappers:") && !g.starts_with(NODE_GROUP_PREFIX) && !groups.iter().any(|x| x == g)
        {
            groups.push(g.to_string());
        }
    }
    let node = secret
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(NODE_NAME_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    if let Some(node) = node {
        groups.push(format!("{NODE_GROUP_PREFIX}{node}"));
    }
    Ok(UserInfo {
        name: format!("system:bootstrap:{id}"),
        uid: String::new(),
        groups,
    })
}

/// Authenticate a bearer token against the bootstrap-token Secrets.
/// `None` when it is not a (valid, current) bootstrap token.
pub async fn authenticate(registry: &Registry, token: &str) -> Option<UserInfo> {
    let (id, token_secret) = parse(token)?;
    let secrets = kinds::Kind::Builtin(&kinds::secret::Secrets);
    let stored = registry
        .get(&secrets, Some(NAMESPACE), &format!("bootstrap-token-{id}"))
        .await
        .ok()?;
    match check(&stored.object, id, token_secret, chrono::Utc::now()) {
        Ok(user) => Some(user),
        Err(why) => {
            tracing::info!(token_id = id, why, "bootstrap token rejected");
            None
        }
    }
}

/// Wraps an authorizer so bootstrap-token users can only request node certificates.
pub struct BootstrapScoped<A>(pub A);

impl<A: Authorizer> Authorizer for BootstrapScoped<A> {
    fn authorize(&self, user: &UserInfo, attrs: &RequestAttributes) -> Result<(), String> {
        if user.groups.iter().any(|g| g == BOOTSTRAPPERS) {
            let allowed = attrs.group == "certificates.k8s.io"
                && attrs.resource == "certificatesigningrequests"
                && matches!(attrs.verb.as_str(), "create" | "get" | "list" | "watch");
            return if allowed { Ok(()) } else { Err(String::new()) };
        }
        self.0.authorize(user, attrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::auth::AllowAll;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(expiration: &str) -> Value {
        json!({"type": SECRET_TYPE, "metadata": {"name": "bootstrap-token-abcdef"}, "data": {
            "token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64("true"), "expiration": b64(expiration),
            "auth-extra-groups": b64("system:bootstrappers:sluice:nodes,system:masters"),
        }})
    }

    #[test]
    fn token_shape() {
        assert_eq!(parse("abcdef.0123456789abcdef"), Some(("abcdef", "0123456789abcdef")));
        assert!(parse("ABCDEF.0123456789abcdef").is_none());
        assert!(parse("abcdef.0123").is_none());
        assert!(parse("admin-token").is_none());
    }

    #[test]
    fn valid_token_maps_to_bootstrap_user_and_never_gains_other_groups() {
        let now = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let user = check(&secret("2030-01-02T00:00:00Z"), "abcdef", "0123456789abcdef", now).unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(user.groups, vec![BOOTSTRAPPERS, "system:bootstrappers:sluice:nodes"]);
        assert!(check(&secret("2030-01-02T00:00:00Z"), "abcdef", "0123456789abcdeX", now).is_err());
        assert!(
            check(&secret("2029-12-31T00:00:00Z"), "abcdef", "0123456789abcdef", now)
                .unwrap_err()
                .contains("expired")
        );
        let mut forged = secret("2030-01-02T00:00:00Z");
        forged["data"]["auth-extra-groups"] = json!(b64("system:bootstrappers:sluice:node:n2"));
        let user = check(&forged, "abcdef", "0123456789abcdef", now).unwrap();
        assert_eq!(bound_node(&user.groups), None);
        forged["metadata"]["annotations"] = json!({NODE_NAME_ANNOTATION: "n1"});
        let user = check(&forged, "abcdef", "0123456789abcdef", now).unwrap();
        assert_eq!(bound_node(&user.groups), Some("n1"));
        let mut wrong_type = secret("2030-01-02T00:00:00Z");
        wrong_type["type"] = json!("Opaque");
        assert!(check(&wrong_type, "abcdef", "0123456789abcdef", now).is_err());
    }

    #[test]
    fn bootstrappers_may_only_request_certificates() {
        let authz = BootstrapScoped(AllowAll);
        let user = UserInfo {
            name: "system:bootstrap:abcdef".into(),
            uid: String::new(),
            groups: vec![BOOTSTRAPPERS.into()],
        };
        let attrs = |verb: &str, group: &str, resource: &str| {
            RequestAttributes::resource(verb, group, resource, Some("default"), None)
        };
        assert!(authz
            .authorize(
                &user,
                &attrs("create", "certificates.k8s.io", "certificatesigningrequests")
            )
            .is_ok());
        let reason = authz.authorize(&user, &attrs("list", "", "pods")).unwrap_err();
        let err = crate::http::authz::forbidden(&user.name, &attrs("list", "", "pods"), &reason).message;
        assert_eq!(err, "pods is forbidden: User \"system:bootstrap:abcdef\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"");
        let admin = UserInfo {
            name: "admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
        };
        assert!(authz.authorize(&admin, &attrs("list", "", "pods")).is_ok());
    }
}
