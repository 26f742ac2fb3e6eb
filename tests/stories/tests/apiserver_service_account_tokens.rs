//! Story: workloads get an identity. An administrator asks for a
//! ServiceAccount token with `kubectl create token`, and the token is a JWT
//! with Kubernetes' claims; with it a client is
//! `system:serviceaccount:<ns>:default`, forbidden to list pods until a
//! RoleBinding allows it. A token bound to a pod dies with the pod, a token
//! for another audience or an expired one is refused, too short a lifetime
//! is refused as Kubernetes words it, TokenReview tells a relying party who
//! a token belongs to, the OIDC discovery documents publish the key, and a
//! pod created in the namespace gets the `kube-api-access-*` volume mounted
//! in its containers unless it opts out.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_tests::{eventually, ApiServer, ControlPlane, Etcd};

const NS: &str = "tokens";
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// kubectl with `kubeconfig`: (success, stdout, stderr).
fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(kubeconfig, args);
    assert!(ok, "kubectl {args:?} failed:\n{out}{err}");
    out
}

fn b64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let n = chunk.iter().fold(0u32, |acc, &c| (acc << 6) | val(c)) << (6 * (4 - chunk.len()));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}

fn b64url_encode(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A JWT's header and claims.
fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS in compact form: {token}");
    let part = |i: usize| serde_json::from_slice(&b64url_decode(parts[i])).expect("JSON");
    (part(0), part(1))
}

/// A kubeconfig that authenticates with `token` only.
fn token_kubeconfig(cp: &ControlPlane, dir: &Path, name: &str, token: &str) -> PathBuf {
    let path = dir.join(format!("{name}.kubeconfig"));
    let ca = cp.apiserver.cert_dir().join("ca.crt");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u, namespace: {NS}}}\ncurrent-context: x\n",
        cp.url(),
        ca.display(),
        token.trim()
    );
    std::fs::write(&path, text).expect("kubeconfig written");
    path
}

/// Signs `claims` with the API server's key (`sa.key`) through openssl, as
/// an attacker holding the key could, to make an already expired token.
fn sign_with_openssl(key: &Path, kid: &str, claims: &Value, dir: &Path) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(json!({"alg": "ES256", "kid": kid}).to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    );
    let msg = dir.join("jws-input");
    std::fs::write(&msg, &input).expect("input written");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg(&msg)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // DER SEQUENCE { INTEGER r, INTEGER s } -> r || s, 32 bytes each.
    let der = out.stdout;
    let mut raw = Vec::new();
    let mut i = 2;
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        raw.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        raw.extend_from_slice(int);
        i += 2 + len;
    }
    format!("{input}.{}", b64url_encode(&raw))
}

#[tokio::test]
async fn service_accounts_get_tokens_that_authenticate_them() {
    // etcd and the API server only, with every admission step it has (the
    // harness's ControlPlane switches ServiceAccount admission off).
    let etcd = Etcd::start().await;
    let apiserver = ApiServer::start(&etcd, &[]).await;
    let cp = ControlPlane { apiserver, etcd };
    let admin = cp.kubeconfig_path().to_path_buf();
    let raw = cp.raw().await;
    let dir = tempfile::tempdir().expect("tempdir");

    // The namespace and its default account (no controller-manager here).
    kubectl_ok(&admin, &["create", "namespace", NS]);
    kubectl_ok(&admin, &["create", "serviceaccount", "default", "-n", NS]);
    let sa = raw
        .get(&format!("/api/v1/namespaces/{NS}/serviceaccounts/default"))
        .await
        .json();
    let sa_uid = sa["metadata"]["uid"].as_str().expect("uid").to_string();

    // kubectl create token: a JWT with Kubernetes' claims.
    let token = kubectl_ok(&admin, &["create", "token", "default", "-n", NS]);
    let (header, claims) = decode(&token);
    assert_eq!(header["alg"], "ES256");
    let kid = header["kid"].as_str().expect("kid").to_string();
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], format!("system:serviceaccount:{NS}:default"));
    assert_eq!(claims["aud"], json!([ISSUER]));
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!((nbf, exp - iat), (iat, 3600), "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 36), "{claims}");
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": NS, "serviceaccount": {"name": "default", "uid": sa_uid}})
    );

    // With the token, the client is the account.
    let sa_config = token_kubeconfig(&cp, dir.path(), "sa", &token);
    let whoami = kubectl_ok(&sa_config, &["auth", "whoami"]);
    assert!(
        whoami.contains(&format!("system:serviceaccount:{NS}:default")),
        "{whoami}"
    );
    assert!(
        whoami.contains(&format!(
            "[system:serviceaccounts system:serviceaccounts:{NS} system:authenticated]"
        )),
        "{whoami}"
    );
    // Forbidden to list pods, with Kubernetes' words, until a binding allows it.
    let (ok, _, err) = kubectl(&sa_config, &["get", "pods"]);
    assert!(!ok);
    assert!(
        err.contains(&format!("pods is forbidden: User \"system:serviceaccount:{NS}:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"{NS}\"")),
        "{err}"
    );
    kubectl_ok(
        &admin,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
            "-n",
            NS,
        ],
    );
    kubectl_ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "read-pods",
            "--role=pod-reader",
            &format!("--serviceaccount={NS}:default"),
            "-n",
            NS,
        ],
    );
    eventually(
        Duration::from_secs(10),
        "the binding lets the account list pods",
        || async { kubectl(&sa_config, &["get", "pods"]).0.then_some(()) },
    )
    .await;

    // Too short a lifetime is refused as Kubernetes refuses it.
    let (ok, _, err) = kubectl(&admin, &["create", "token", "default", "-n", NS, "--duration=5m"]);
    assert!(!ok);
    assert!(
        err.contains("spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let longer = kubectl_ok(&admin, &["create", "token", "default", "-n", NS, "--duration=2h"]);
    let (_, c) = decode(&longer);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 7200);

    // An expired token (signed with the real key) and a tampered one: 401.
    let now = c["iat"].as_i64().unwrap();
    let mut old = claims.clone();
    old["iat"] = json!(now - 7200);
    old["nbf"] = json!(now - 7200);
    old["exp"] = json!(now - 3600);
    let expired = sign_with_openssl(&cp.apiserver.cert_dir().join("sa.key"), &kid, &old, dir.path());
    let fresh = sign_with_openssl(&cp.apiserver.cert_dir().join("sa.key"), &kid, &claims, dir.path());
    assert_eq!(cp.apiserver.with_token(&fresh).await.get("/api").await.status, 200);
    let r = cp.apiserver.with_token(&expired).await.get("/api").await;
    assert_eq!(r.status, 401, "{}", r.text());
    let expired_config = token_kubeconfig(&cp, dir.path(), "expired", &expired);
    let (ok, _, err) = kubectl(&expired_config, &["auth", "whoami"]);
    assert!(!ok && err.contains("Unauthorized"), "{err}");
    let mut tampered = token.trim().to_string();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    assert_eq!(cp.apiserver.with_token(&tampered).await.get("/api").await.status, 401);

    // Another audience: not for this API server, but TokenReview with that
    // audience says whose it is.
    let vault = kubectl_ok(&admin, &["create", "token", "default", "-n", NS, "--audience=vault"]);
    assert_eq!(decode(&vault).1["aud"], json!(["vault"]));
    assert_eq!(
        cp.apiserver.with_token(vault.trim()).await.get("/api").await.status,
        401
    );
    let review = |token: &str, audiences: Value| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "spec": {"token": token.trim(), "audiences": audiences}})
    };
    let r = raw
        .post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            &review(&vault, json!(["vault"])),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let status = &r.json()["status"];
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        format!("system:serviceaccount:{NS}:default")
    );
    assert_eq!(status["user"]["uid"], sa_uid);
    assert_eq!(status["audiences"], json!(["vault"]));
    let jti = decode(&vault).1["jti"].as_str().unwrap().to_string();
    assert_eq!(
        status["user"]["extra"]["authentication.kubernetes.io/credential-id"],
        json!([format!("JTI={jti}")])
    );
    let r = raw
        .post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            &review(&vault, json!(null)),
        )
        .await;
    let status = &r.json()["status"];
    assert_ne!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["error"],
        format!("token audiences [\"vault\"] is invalid for the target audiences [\"{ISSUER}\"]")
    );
    let r = raw
        .post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            &review(&token, json!(null)),
        )
        .await;
    let status = &r.json()["status"];
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["groups"],
        json!([
            "system:serviceaccounts",
            format!("system:serviceaccounts:{NS}"),
            "system:authenticated"
        ])
    );
    let r = raw
        .post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            &review(&expired, json!(null)),
        )
        .await;
    assert_eq!(r.json()["status"]["error"], "service account token has expired");
    // The account itself may not review tokens.
    let r = cp
        .apiserver
        .with_token(token.trim())
        .await
        .post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            &review(&token, json!(null)),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());

    // OIDC discovery: the issuer and its key, readable by service accounts.
    let config = cp
        .apiserver
        .with_token(token.trim())
        .await
        .get("/.well-known/openid-configuration")
        .await;
    assert_eq!(config.status, 200, "{}", config.text());
    let config = config.json();
    assert_eq!(config["issuer"], ISSUER);
    assert!(
        config["jwks_uri"].as_str().unwrap().ends_with("/openid/v1/jwks"),
        "{config}"
    );
    assert_eq!(config["response_types_supported"], json!(["id_token"]));
    assert_eq!(config["subject_types_supported"], json!(["public"]));
    assert_eq!(config["id_token_signing_alg_values_supported"], json!(["ES256"]));
    let jwks = raw.get("/openid/v1/jwks").await.json();
    assert_eq!(jwks["keys"][0]["kid"], kid);
    assert_eq!(
        (jwks["keys"][0]["kty"].as_str(), jwks["keys"][0]["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(cp.anonymous().await.get("/openid/v1/jwks").await.status, 401);
    let roles = kubectl_ok(
        &admin,
        &[
            "get",
            "clusterrolebinding",
            "system:service-account-issuer-discovery",
            "-o",
            "wide",
        ],
    );
    assert!(roles.contains("system:serviceaccounts"), "{roles}");

    // A pod created in the namespace runs as default and mounts the token
    // volume; one that opts out does not.
    let pod = |name: &str, extra: Value| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"initContainers": [{"name": "init", "image": "busybox"}],
                     "containers": [{"name": "app", "image": "busybox"},
                                    {"name": "own", "image": "busybox",
                                     "volumeMounts": [{"name": "mine", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
                     "volumes": [{"name": "mine", "emptyDir": {}}]}});
        if let (Some(spec), Some(extra)) = (p["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        p
    };
    let r = raw
        .post(&format!("/api/v1/namespaces/{NS}/pods"), &pod("web", json!({})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let web = r.json();
    assert_eq!(web["spec"]["serviceAccountName"], "default");
    assert_eq!(web["spec"]["serviceAccount"], "default");
    let volume = web["spec"]["volumes"][1].clone();
    let name = volume["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
        "{name}"
    );
    assert_eq!(
        volume["projected"],
        json!({"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
            "defaultMode": 420})
    );
    let mount = json!({"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
    assert_eq!(web["spec"]["initContainers"][0]["volumeMounts"], json!([mount]));
    assert_eq!(web["spec"]["containers"][0]["volumeMounts"], json!([mount]));
    assert_eq!(web["spec"]["containers"][1]["volumeMounts"][0]["name"], "mine");
    let r = raw
        .post(
            &format!("/api/v1/namespaces/{NS}/pods"),
            &pod("quiet", json!({"automountServiceAccountToken": false})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["spec"]["volumes"].as_array().unwrap().len(), 1, "{}", r.text());
    // A missing account is refused with Kubernetes' words.
    let r = raw
        .post(
            &format!("/api/v1/namespaces/{NS}/pods"),
            &pod("lost", json!({"serviceAccountName": "robot"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        format!("pods \"lost\" is forbidden: error looking up service account {NS}/robot: serviceaccount \"robot\" not found")
    );

    // A token bound to the pod names it, and dies with it.
    let bound = kubectl_ok(
        &admin,
        &[
            "create",
            "token",
            "default",
            "-n",
            NS,
            "--bound-object-kind=Pod",
            "--bound-object-name=web",
        ],
    );
    let (_, c) = decode(&bound);
    assert_eq!(
        c["kubernetes.io"]["pod"],
        json!({"name": "web", "uid": web["metadata"]["uid"]})
    );
    let (ok, _, err) = kubectl(
        &admin,
        &[
            "create",
            "token",
            "default",
            "-n",
            NS,
            "--bound-object-kind=Pod",
            "--bound-object-name=web",
            "--bound-object-uid=0000",
        ],
    );
    assert!(
        !ok && err.contains("the UID in the bound object reference (0000) does not match"),
        "{err}"
    );
    let bound_config = token_kubeconfig(&cp, dir.path(), "bound", &bound);
    let r = raw
        .post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            &review(&bound, json!(null)),
        )
        .await;
    assert_eq!(
        r.json()["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["web"])
    );
    kubectl_ok(&bound_config, &["auth", "whoami"]);
    kubectl_ok(
        &admin,
        &["delete", "pod", "web", "-n", NS, "--grace-period=0", "--force"],
    );
    eventually(Duration::from_secs(10), "the pod is gone", || async {
        (raw.get(&format!("/api/v1/namespaces/{NS}/pods/web")).await.status == 404).then_some(())
    })
    .await;
    let (ok, _, err) = kubectl(&bound_config, &["auth", "whoami"]);
    assert!(!ok && err.contains("Unauthorized"), "{err}");
    let r = raw
        .post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            &review(&bound, json!(null)),
        )
        .await;
    assert_eq!(r.json()["status"]["error"], format!("pod {NS}/web has been deleted"));
    // The unbound token still works.
    kubectl_ok(&sa_config, &["auth", "whoami"]);
}
