//! Authentication (bearer tokens — static, bootstrap and ServiceAccount
//! tokens — and client certificates) and the authorization seam.
//!
//! Authentication turns a request into a [`UserInfo`]; the TLS layer has
//! already verified any client certificate against the cluster CA and put
//! the identity it carries into the request extensions. Authorization is a
//! trait ([`Authorizer`]) consulted for every API request; the server's is
//! the chain in `authz` (privileged group, Node, RBAC).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name (token file column 2, or certificate CN).
    pub name: String,
    /// User id (token file column 3; empty for certificates).
    pub uid: String,
    /// Groups (token file column 4, or certificate O values).
    pub groups: Vec<String>,
}

/// Identity carried by a verified client certificate, inserted into request
/// extensions by the TLS acceptor.
#[derive(Debug, Clone)]
pub struct ClientCertIdentity(pub Option<UserInfo>);

/// Static bearer tokens from `--token-auth-file`.
#[derive(Debug, Default, Clone)]
pub struct TokenAuthenticator {
    tokens: HashMap<String, UserInfo>,
}

/// Split one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

impl TokenAuthenticator {
    /// Parse a token file: `token,user,uid,"group1,group2"` per line.
    pub fn parse(text: &str) -> Result<Self> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let cols = split_csv(line);
            if cols.len() < 2 || cols[0].is_empty() || cols[1].is_empty() {
                bail!("token file line {}: expected token,user,uid[,groups]", i + 1);
            }
            let groups = cols
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(
                cols[0].clone(),
                UserInfo {
                    name: cols[1].clone(),
                    uid: cols.get(2).cloned().unwrap_or_default(),
                    groups,
                },
            );
        }
        Ok(Self { tokens })
    }

    /// Load a token file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading token file {}", path.display()))?;
        Self::parse(&text)
    }

    /// The user a bearer token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }
}

/// What an `Authorization` header says about bearer tokens, read as
/// Kubernetes' bearer-token authenticator reads it: the scheme `Bearer` in
/// any case, then the token up to the next space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer<'a> {
    /// No header, or another scheme (e.g. `Basic`): not a token; other
    /// authenticators (client certificates) decide.
    Absent,
    /// The token.
    Token(&'a str),
    /// `Bearer` with an empty token (`Bearer  x`: two spaces): refused with 401.
    Invalid,
}

/// Read the bearer token of an `Authorization` header value.
pub fn bearer_token(header: &str) -> Bearer<'_> {
    let header = header.trim_matches(|c: char| c.is_ascii_whitespace());
    let mut parts = header.splitn(3, ' ');
    let scheme = parts.next().unwrap_or_default();
    let Some(token) = parts.next() else {
        return Bearer::Absent;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Bearer::Absent;
    }
    if token.is_empty() {
        return Bearer::Invalid;
    }
    Bearer::Token(token)
}

/// Extract CN (user) and O (groups) from a DER certificate already verified by rustls.
pub fn identity_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    // As Kubernetes: a certificate without a common name names no user.
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()
        .filter(|cn| !cn.is_empty())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    Some(UserInfo {
        name,
        uid: String::new(),
        groups,
    })
}

/// The `extra` attributes of the request's user (ServiceAccount tokens:
/// `authentication.kubernetes.io/pod-name`, `credential-id`, ...), put in
/// the request extensions beside its [`UserInfo`].
#[derive(Debug, Clone, Default)]
pub struct UserExtra(pub std::collections::BTreeMap<String, Vec<String>>);

/// A ServiceAccount token (`service_account_token`) for the API's own
/// audiences: its user, with the user's [`UserExtra`] added to `req`; `None`
/// (then 401) when the token is not one, or is invalid (the reason is logged).
pub async fn service_account(
    state: &crate::http::state::AppState,
    token: &str,
    req: &mut axum::extract::Request,
) -> Option<UserInfo> {
    let tokens = &state.sa_tokens;
    match tokens.authenticate(&state.registry, token, &tokens.api_audiences).await {
        Ok(Some(a)) => {
            req.extensions_mut().insert(UserExtra(a.extra));
            Some(a.user)
        }
        Ok(None) => None,
        Err(reason) => {
            tracing::info!(%reason, "service account token rejected");
            None
        }
    }
}

/// What a request wants to do, for authorization (a resource request, or
/// a non-resource URL when `path` is set).
pub use crate::registry::rbac::Attributes as RequestAttributes;

/// Decides whether an authenticated user may perform a request.
pub trait Authorizer: Send + Sync {
    /// `Err(reason)` denies the request with 403 (the reason, often empty,
    /// follows Kubernetes' message; see `authz::forbidden`).
    fn authorize(&self, user: &UserInfo, attrs: &RequestAttributes) -> Result<(), String>;
}

/// Allows every authenticated request (tests; the server runs `authz::Chain`).
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _user: &UserInfo, _attrs: &RequestAttributes) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_with_quoted_groups() {
        let a = TokenAuthenticator::parse("abc,admin,1,\"system:masters,devs\"\n# c\nxyz,bob,2\n").unwrap();
        let u = a.authenticate("abc").unwrap();
        assert_eq!(u.name, "admin");
        assert_eq!(u.groups, vec!["system:masters", "devs"]);
        assert_eq!(a.authenticate("xyz").unwrap().groups, Vec::<String>::new());
        assert!(a.authenticate("nope").is_none());
        assert!(TokenAuthenticator::parse("onlytoken\n").is_err());
    }
}
