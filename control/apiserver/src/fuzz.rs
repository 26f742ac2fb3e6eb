//! Fuzz targets of the authentication path: every function that reads what
//! a client sends before the server knows who it is.
//!
//! Each target takes arbitrary bytes, must never panic, and checks the
//! property that makes the function safe (a forged or altered credential is
//! never accepted). They run two ways:
//! - coverage-guided, with libFuzzer: `cargo xtask fuzz <target>` (the
//!   `fuzz/` crate, nightly and cargo-fuzz);
//! - in every test run, on stable: the unit tests below feed each target its
//!   checked-in seeds (`fuzz/corpus/<target>/`, which libFuzzer starts
//!   from) plus a few thousand random and mutated inputs.
//!
//! The targets sit above every layer, as the tests do: they drive the HTTP
//! layer's authenticators directly.

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use crate::http::auth::{self, Bearer, TokenAuthenticator};
use crate::http::bootstrap_token;
use crate::http::service_account_token::{self as sa_token, Bound, Ref, ServiceAccountTokens};

/// A fuzz target: arbitrary bytes in, a panic when a property breaks.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` and the corpus
/// folders name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("authorization_header", authorization_header),
    ("token_file", token_file),
    ("bootstrap_token", bootstrap_token),
    ("service_account_token", service_account_token),
    ("client_certificate", client_certificate),
];

/// An `Authorization` header value: a token is only ever read after the
/// scheme `Bearer` (any case) and never contains the separating space.
pub fn authorization_header(data: &[u8]) {
    let header = String::from_utf8_lossy(data);
    match auth::bearer_token(&header) {
        Bearer::Token(token) => {
            assert!(!token.is_empty() && !token.contains(' '), "token {token:?}");
            let trimmed = header.trim_matches(|c: char| c.is_ascii_whitespace());
            assert!(
                trimmed.len() > 7 && trimmed[..7].eq_ignore_ascii_case("bearer "),
                "token read from {header:?}"
            );
        }
        Bearer::Invalid => assert!(header.to_ascii_lowercase().contains("bearer  "), "{header:?}"),
        Bearer::Absent => {}
    }
}

/// A `--token-auth-file`: parsing never panics, and every token it accepts
/// authenticates as a named user.
pub fn token_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(tokens) = TokenAuthenticator::parse(&text) else {
        return;
    };
    for line in text.lines() {
        if let Some(token) = line.trim().split(',').next() {
            if let Some(user) = tokens.authenticate(token) {
                assert!(!user.name.is_empty(), "user without a name for {token:?}");
            }
        }
    }
}

/// A bootstrap token against a stored token Secret: only the exact
/// `<id>.<secret>` it holds is accepted, and the user is named after the id.
pub fn bootstrap_token(data: &[u8]) {
    const ID: &str = "abcdef";
    const SECRET: &str = "0123456789abcdef";
    let token = String::from_utf8_lossy(data);
    let Some((id, secret)) = bootstrap_token::parse(&token) else {
        return;
    };
    assert_eq!(format!("{id}.{secret}"), token, "parse keeps the whole token");
    let stored = json!({
        "type": bootstrap_token::SECRET_TYPE,
        "metadata": {"name": format!("bootstrap-token-{ID}"), "namespace": "kube-system"},
        "data": {
            "token-id": STANDARD.encode(ID),
            "token-secret": STANDARD.encode(SECRET),
            "usage-bootstrap-authentication": STANDARD.encode("true"),
        },
    });
    let accepted = bootstrap_token::check(&stored, id, secret, chrono::Utc::now());
    if let Ok(user) = accepted {
        assert_eq!((id, secret), (ID, SECRET), "a forged bootstrap token was accepted");
        assert_eq!(user.name, format!("system:bootstrap:{ID}"));
    }
}

/// The issuer every run of [`service_account_token`] uses, and a token it
/// signed.
fn issuer() -> &'static (ServiceAccountTokens, String) {
    static ISSUER: OnceLock<(ServiceAccountTokens, String)> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("a P-256 key");
        let tokens = ServiceAccountTokens::from_pkcs8(
            pkcs8.as_ref(),
            sa_token::DEFAULT_ISSUER,
            Vec::new(),
            "https://fuzz/openid/v1/jwks".into(),
        )
        .expect("the issuer");
        let sa = json!({"metadata": {"name": "default", "namespace": "fuzz", "uid": "sa-uid"}});
        let bound = Bound {
            pod: Some(Ref {
                name: "p".into(),
                uid: "p-uid".into(),
            }),
            ..Bound::default()
        };
        let request = sa_token::Request {
            audiences: vec![sa_token::DEFAULT_ISSUER.into()],
            expiration_seconds: 3600,
            warn_after: None,
            jti: "fuzz".into(),
        };
        let claims = sa_token::claims(&sa, &bound, &request, chrono::Utc::now().timestamp());
        let token = tokens.sign(&claims).expect("a signed token");
        (tokens, token)
    })
}

/// A ServiceAccount JWT: the first byte picks how the rest is used (the
/// whole token; spliced into a genuine token at a position; a forged
/// payload with the genuine header and signature). Whatever comes in, a
/// token is only accepted when its signed part (header and payload) is the
/// genuine one.
pub fn service_account_token(data: &[u8]) {
    let (tokens, genuine) = issuer();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let candidate = match mode % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => {
            let Some((&at, insert)) = rest.split_first() else {
                return;
            };
            let at = usize::from(at) * genuine.len() / 256;
            let mut bytes = genuine.as_bytes().to_vec();
            let end = (at + insert.len()).min(bytes.len());
            bytes.splice(at..end, insert.iter().copied());
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => {
            let parts: Vec<&str> = genuine.split('.').collect();
            let payload = serde_json::from_slice::<Value>(rest)
                .map(|v| v.to_string())
                .unwrap_or_else(|_| String::from_utf8_lossy(rest).into_owned());
            format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload), parts[2])
        }
    };
    let now = chrono::Utc::now().timestamp();
    if let Ok(Some(claims)) = tokens.verify(&candidate, now) {
        let signed = |t: &str| t.rsplit_once('.').map(|(input, _)| input.to_string());
        assert_eq!(
            signed(&candidate),
            signed(genuine),
            "an altered token was accepted as {claims:?}"
        );
    }
}

/// A client certificate's DER (already verified by rustls in the server;
/// here anything): reading the user never panics, and a certificate without
/// a common name is no user at all.
pub fn client_certificate(data: &[u8]) {
    if let Some(user) = auth::identity_from_cert(data) {
        assert!(!user.name.is_empty(), "a user without a name from {data:?}");
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;

    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target);
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the corpus {}: {e}", dir.display()))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(!inputs.is_empty(), "{} has seeds", dir.display());
        inputs.sort();
        inputs
    }

    /// A seed from the corpus with a few bytes flipped, inserted or cut.
    fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(seeds),
            prop::collection::vec((any::<u16>(), any::<u8>(), 0..3u8), 1..6),
        )
            .prop_map(|(mut seed, edits)| {
                for (at, byte, how) in edits {
                    let at = usize::from(at) % (seed.len() + 1);
                    match how {
                        0 if at < seed.len() => seed[at] ^= byte | 1,
                        1 => seed.insert(at, byte),
                        _ if at < seed.len() => {
                            seed.remove(at);
                        }
                        _ => seed.push(byte),
                    }
                }
                seed
            })
    }

    fn run(target: &str) {
        let (_, f) = TARGETS.iter().find(|(name, _)| *name == target).unwrap();
        let seeds = corpus(target);
        for seed in &seeds {
            f(seed);
        }
        let config = ProptestConfig {
            cases: 1500,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(input in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            mutated(seeds.clone()),
        ])| {
            f(&input);
        });
    }

    #[test]
    fn every_target_has_a_fuzz_target_file_and_a_corpus() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        for (name, _) in TARGETS {
            let file = root.join("fuzz_targets").join(format!("{name}.rs"));
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(
                text.contains(&format!("fuzz::{name}(")),
                "{} calls the target",
                file.display()
            );
            assert!(!corpus(name).is_empty());
        }
    }

    #[test]
    fn fuzz_authorization_header() {
        run("authorization_header");
        assert_eq!(auth::bearer_token("bearer abc"), Bearer::Token("abc"));
        assert_eq!(auth::bearer_token("  Bearer abc extra"), Bearer::Token("abc"));
        assert_eq!(auth::bearer_token("Bearer  abc"), Bearer::Invalid);
        assert_eq!(auth::bearer_token("Basic dXNlcjpw"), Bearer::Absent);
        assert_eq!(auth::bearer_token("Bearer"), Bearer::Absent);
    }

    #[test]
    fn fuzz_token_file() {
        run("token_file");
    }

    #[test]
    fn fuzz_bootstrap_token() {
        run("bootstrap_token");
        // The genuine token is accepted (so the property above is not vacuous).
        bootstrap_token(b"abcdef.0123456789abcdef");
    }

    #[test]
    fn fuzz_service_account_token() {
        run("service_account_token");
        let (tokens, genuine) = issuer();
        assert!(matches!(
            tokens.verify(genuine, chrono::Utc::now().timestamp()),
            Ok(Some(_))
        ));
    }

    #[test]
    fn fuzz_client_certificate() {
        run("client_certificate");
        let der = corpus("client_certificate").into_iter().max_by_key(Vec::len).unwrap();
        assert!(
            auth::identity_from_cert(&der).is_some(),
            "the seed certificate names a user"
        );
    }
}
