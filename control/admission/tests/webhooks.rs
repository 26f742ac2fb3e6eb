//! Admission against real HTTPS webhook servers on 127.0.0.1 (hyper +
//! tokio-rustls, certificates made by rcgen).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use serde_json::{json, Value};
use sluice_admission::{
    AdmissionAttributes, AdmissionError, Dispatcher, GroupVersionKind, GroupVersionResource, Operation, StaticResolver,
};

struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    pki_named("admission test CA")
}

fn pki_named(ca_name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "hook.sys.svc".to_string()]).expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .expect("server config");
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Pki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}

type Handler = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// A running webhook server.
struct Server {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Value>>>,
}

/// Serves admission reviews: `handler` gets the request and returns the
/// response (its uid is filled in unless the handler set one).
async fn serve(pki: &Pki, delay: Duration, handler: Handler) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, s) = (calls.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, handler, calls, seen) = (acceptor.clone(), handler.clone(), c.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (handler, calls, seen) = (handler.clone(), calls.clone(), seen.clone());
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let path = req.uri().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let mut request = review["request"].clone();
                        request["__path"] = json!(path);
                        seen.lock().expect("lock").push(request.clone());
                        tokio::time::sleep(delay).await;
                        let mut response = handler(&request);
                        if response.get("uid").is_none() {
                            response["uid"] = request["uid"].clone();
                        }
                        let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(bytes::Bytes::from(out.to_string())))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server { addr, calls, seen }
}

fn allow() -> Handler {
    Arc::new(|_| json!({"allowed": true}))
}

fn patch_response(ops: Value) -> Value {
    let patch = base64::engine::general_purpose::STANDARD.encode(ops.to_string());
    json!({"allowed": true, "patchType": "JSONPatch", "patch": patch})
}

fn pod_rule() -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec!["".into()]),
        api_versions: Some(vec!["v1".into()]),
        resources: Some(vec!["pods".into()]),
        operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
        scope: Some("*".into()),
    }
}

fn url_config(pki_ca: &str, addr: SocketAddr, path: &str) -> WebhookClientConfig {
    WebhookClientConfig {
        url: Some(format!("https://{addr}{path}")),
        ca_bundle: Some(ByteString(pki_ca.as_bytes().to_vec())),
        service: None,
    }
}

fn mutating(name: &str, client_config: WebhookClientConfig) -> MutatingWebhook {
    MutatingWebhook {
        name: name.into(),
        admission_review_versions: vec!["v1".into()],
        side_effects: "None".into(),
        client_config,
        rules: Some(vec![pod_rule()]),
        ..Default::default()
    }
}

fn validating(name: &str, client_config: WebhookClientConfig) -> ValidatingWebhook {
    ValidatingWebhook {
        name: name.into(),
        admission_review_versions: vec!["v1".into()],
        side_effects: "None".into(),
        client_config,
        rules: Some(vec![pod_rule()]),
        ..Default::default()
    }
}

fn mconfig(name: &str, hooks: Vec<MutatingWebhook>) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        webhooks: Some(hooks),
    }
}

fn vconfig(name: &str, hooks: Vec<ValidatingWebhook>) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        webhooks: Some(hooks),
    }
}

fn create_pod() -> AdmissionAttributes {
    AdmissionAttributes {
        operation: Operation::Create,
        kind: GroupVersionKind::new("", "v1", "Pod"),
        resource: GroupVersionResource::new("", "v1", "pods"),
        sub_resource: String::new(),
        name: "web".into(),
        namespace: "default".into(),
        user_info: UserInfo {
            username: Some("alice".into()),
            uid: Some("uid-alice".into()),
            groups: Some(vec!["system:authenticated".into()]),
            extra: None,
        },
        object: Some(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}
        })),
        old_object: None,
        options: Some(json!({"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"})),
        dry_run: false,
    }
}

#[tokio::test]
async fn mutating_webhook_adds_a_label() {
    let pki = pki();
    let server = serve(
        &pki,
        Duration::ZERO,
        Arc::new(|_| {
            let mut r = patch_response(json!([{"op": "add", "path": "/metadata/labels/injected", "value": "yes"}]));
            r["warnings"] = json!(["label injected"]);
            r["auditAnnotations"] = json!({"why": "policy"});
            r
        }),
    )
    .await;
    let configs = [mconfig(
        "labels",
        vec![mutating(
            "label.example.com",
            url_config(&pki.ca_pem, server.addr, "/mutate"),
        )],
    )];
    let mut attrs = create_pod();
    let outcome = Dispatcher::default()
        .mutate(&configs, &mut attrs, None)
        .await
        .expect("admitted");
    assert!(outcome.changed);
    assert_eq!(
        attrs.object.as_ref().expect("object")["metadata"]["labels"]["injected"],
        "yes"
    );
    assert_eq!(outcome.warnings, ["label injected"]);
    assert_eq!(
        outcome
            .audit_annotations
            .get("label.example.com/why")
            .map(String::as_str),
        Some("policy")
    );
    // The request the webhook saw.
    let seen = server.seen.lock().expect("lock")[0].clone();
    assert_eq!(seen["__path"], "/mutate?timeout=10s");
    assert_eq!(seen["operation"], "CREATE");
    assert_eq!(seen["kind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
    assert_eq!(
        seen["resource"],
        json!({"group": "", "version": "v1", "resource": "pods"})
    );
    assert_eq!(seen["requestKind"], seen["kind"]);
    assert_eq!(seen["name"], "web");
    assert_eq!(seen["namespace"], "default");
    assert_eq!(seen["userInfo"]["username"], "alice");
    assert_eq!(seen["userInfo"]["groups"], json!(["system:authenticated"]));
    assert_eq!(seen["object"]["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(seen["oldObject"], Value::Null);
    assert_eq!(seen["dryRun"], false);
    assert_eq!(seen["options"]["kind"], "CreateOptions");
    assert!(seen["uid"].as_str().is_some_and(|u| !u.is_empty()));

    // A non-matching request (a different resource) never reaches the webhook.
    let mut other = create_pod();
    other.resource = GroupVersionResource::new("", "v1", "configmaps");
    let outcome = Dispatcher::default()
        .mutate(&configs, &mut other, None)
        .await
        .expect("admitted");
    assert!(!outcome.changed);
    assert_eq!(server.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn validating_webhook_denies_create() {
    let pki = pki();
    let server = serve(
        &pki,
        Duration::ZERO,
        Arc::new(|req| {
            if req["operation"] == "CREATE" {
                json!({"allowed": false, "status": {"message": "pods named web are not allowed", "reason": "Forbidden"}})
            } else {
                json!({"allowed": true})
            }
        }),
    )
    .await;
    let ok = serve(&pki, Duration::ZERO, allow()).await;
    let configs = [
        vconfig(
            "b-deny",
            vec![validating(
                "deny.example.com",
                url_config(&pki.ca_pem, server.addr, "/validate"),
            )],
        ),
        vconfig(
            "a-allow",
            vec![validating("allow.example.com", url_config(&pki.ca_pem, ok.addr, "/"))],
        ),
    ];
    let err = Dispatcher::default()
        .validate(&configs, &create_pod(), None)
        .await
        .expect_err("denied");
    assert_eq!(
        err.to_string(),
        "admission webhook \"deny.example.com\" denied the request: pods named web are not allowed"
    );
    assert!(matches!(err, AdmissionError::Denied { code: 403, .. }));
    let status = err.to_status();
    assert_eq!(status.code, Some(403));
    assert_eq!(status.reason.as_deref(), Some("Forbidden"));
    assert_eq!(ok.calls.load(Ordering::SeqCst), 1);

    let mut update = create_pod();
    update.operation = Operation::Update;
    update.old_object = update.object.clone();
    let outcome = Dispatcher::default()
        .validate(&configs, &update, None)
        .await
        .expect("allowed");
    assert_eq!(outcome.called, ["allow.example.com", "deny.example.com"]);
}

#[tokio::test]
async fn validating_webhooks_run_in_parallel() {
    let pki = pki();
    let a = serve(&pki, Duration::from_millis(900), allow()).await;
    let b = serve(&pki, Duration::from_millis(900), allow()).await;
    let configs = [vconfig(
        "slow",
        vec![
            validating("a.example.com", url_config(&pki.ca_pem, a.addr, "/")),
            validating("b.example.com", url_config(&pki.ca_pem, b.addr, "/")),
        ],
    )];
    let start = Instant::now();
    Dispatcher::default()
        .validate(&configs, &create_pod(), None)
        .await
        .expect("allowed");
    assert!(
        start.elapsed() < Duration::from_millis(1700),
        "took {:?}",
        start.elapsed()
    );
}

async fn refused_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

#[tokio::test]
async fn webhook_down_fail_and_ignore() {
    let pki = pki();
    let addr = refused_addr().await;
    let mut hook = mutating("down.example.com", url_config(&pki.ca_pem, addr, "/m"));
    let configs = [mconfig("down", vec![hook.clone()])];
    let err = Dispatcher::default()
        .mutate(&configs, &mut create_pod(), None)
        .await
        .expect_err("fails closed");
    let status = err.to_status();
    assert_eq!(status.code, Some(500));
    assert_eq!(status.reason.as_deref(), Some("InternalError"));
    assert_eq!(
        status.message.as_deref(),
        Some(
            format!(
                "Internal error occurred: failed calling webhook \"down.example.com\": failed to call webhook: \
                 Post \"https://{addr}/m?timeout=10s\": dial tcp {addr}: connect: connection refused"
            )
            .as_str()
        )
    );

    hook.failure_policy = Some("Ignore".into());
    let configs = [mconfig("down", vec![hook])];
    let mut attrs = create_pod();
    let before = attrs.object.clone();
    let outcome = Dispatcher::default()
        .mutate(&configs, &mut attrs, None)
        .await
        .expect("fails open");
    assert_eq!(outcome.failed_open, ["down.example.com"]);
    assert!(!outcome.changed);
    assert_eq!(attrs.object, before);

    // The same for validating webhooks.
    let mut v = validating("down.example.com", url_config(&pki.ca_pem, addr, "/v"));
    let err = Dispatcher::default()
        .validate(&[vconfig("down", vec![v.clone()])], &create_pod(), None)
        .await
        .expect_err("fails closed");
    assert!(matches!(err, AdmissionError::CallFailed { .. }));
    v.failure_policy = Some("Ignore".into());
    Dispatcher::default()
        .validate(&[vconfig("down", vec![v])], &create_pod(), None)
        .await
        .expect("fails open");
}

#[tokio::test]
async fn slow_webhook_times_out() {
    let pki = pki();
    let server = serve(&pki, Duration::from_secs(4), allow()).await;
    let mut hook = validating("slow.example.com", url_config(&pki.ca_pem, server.addr, "/"));
    hook.timeout_seconds = Some(1);
    let start = Instant::now();
    let err = Dispatcher::default()
        .validate(&[vconfig("slow", vec![hook.clone()])], &create_pod(), None)
        .await
        .expect_err("timed out");
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert_eq!(
        err.to_string(),
        format!(
            "failed calling webhook \"slow.example.com\": failed to call webhook: Post \"https://{}/?timeout=1s\": \
             context deadline exceeded",
            server.addr
        )
    );
    hook.failure_policy = Some("Ignore".into());
    let outcome = Dispatcher::default()
        .validate(&[vconfig("slow", vec![hook])], &create_pod(), None)
        .await
        .expect("ignored");
    assert_eq!(outcome.failed_open, ["slow.example.com"]);
}

#[tokio::test]
async fn wrong_ca_bundle_fails_tls_verification() {
    let pki = pki();
    let server = serve(&pki, Duration::ZERO, allow()).await;
    // Another CA with the same name (a regenerated CA) and one with another name.
    for other in [self::pki(), pki_named("some other CA")] {
        let hook = mutating("tls.example.com", url_config(&other.ca_pem, server.addr, "/"));
        let err = Dispatcher::default()
            .mutate(&[mconfig("tls", vec![hook])], &mut create_pod(), None)
            .await
            .expect_err("untrusted");
        assert!(
            err.to_string()
                .ends_with("tls: failed to verify certificate: x509: certificate signed by unknown authority"),
            "{err}"
        );
        assert_eq!(err.code(), 500);
    }
    // No caBundle and no default roots: nothing is trusted.
    let mut hook = mutating("tls.example.com", url_config(&pki.ca_pem, server.addr, "/"));
    hook.client_config.ca_bundle = None;
    let err = Dispatcher::default()
        .mutate(&[mconfig("tls", vec![hook])], &mut create_pod(), None)
        .await;
    assert!(matches!(err, Err(AdmissionError::CallFailed { .. })), "{err:?}");
    assert_eq!(server.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn reinvocation_if_needed() {
    let pki = pki();
    // "a-first" runs first and adds `first`; "b-second" then adds `second`.
    let first = serve(
        &pki,
        Duration::ZERO,
        Arc::new(|req| {
            if req["object"]["metadata"]["labels"]["first"].is_null() {
                patch_response(json!([{"op": "add", "path": "/metadata/labels/first", "value": "1"}]))
            } else {
                json!({"allowed": true})
            }
        }),
    )
    .await;
    let second = serve(
        &pki,
        Duration::ZERO,
        Arc::new(|req| {
            if req["object"]["metadata"]["labels"]["second"].is_null() {
                patch_response(json!([{"op": "add", "path": "/metadata/labels/second", "value": "2"}]))
            } else {
                json!({"allowed": true})
            }
        }),
    )
    .await;
    let mut a = mutating("first.example.com", url_config(&pki.ca_pem, first.addr, "/"));
    let b = mutating("second.example.com", url_config(&pki.ca_pem, second.addr, "/"));

    // Never: each webhook runs once.
    let configs = [
        mconfig("b-second", vec![b.clone()]),
        mconfig("a-first", vec![a.clone()]),
    ];
    let mut attrs = create_pod();
    let outcome = Dispatcher::default()
        .mutate(&configs, &mut attrs, None)
        .await
        .expect("admitted");
    assert!(outcome.changed);
    assert_eq!(outcome.called, ["first.example.com", "second.example.com"]);

    // IfNeeded: "first" is called again because "second" changed the object
    // after it, and then sees the label "second".
    a.reinvocation_policy = Some("IfNeeded".into());
    let configs = [mconfig("b-second", vec![b]), mconfig("a-first", vec![a])];
    let mut attrs = create_pod();
    let outcome = Dispatcher::default()
        .mutate(&configs, &mut attrs, None)
        .await
        .expect("admitted");
    assert_eq!(
        outcome.called,
        ["first.example.com", "second.example.com", "first.example.com"]
    );
    let seen = first.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2]["object"]["metadata"]["labels"]["second"], "2");
    assert_eq!(
        attrs.object.as_ref().expect("object")["metadata"]["labels"],
        json!({"app": "web", "first": "1", "second": "2"})
    );
}

#[tokio::test]
async fn service_reference_through_resolver() {
    let pki = pki();
    let server = serve(&pki, Duration::ZERO, allow()).await;
    let mut table = HashMap::new();
    table.insert(("sys".to_string(), "hook".to_string(), 8443), server.addr);
    let dispatcher = Dispatcher::new(Arc::new(StaticResolver(table)));
    let config = WebhookClientConfig {
        url: None,
        ca_bundle: Some(ByteString(pki.ca_pem.as_bytes().to_vec())),
        service: Some(ServiceReference {
            namespace: "sys".into(),
            name: "hook".into(),
            path: Some("/check".into()),
            port: Some(8443),
        }),
    };
    let outcome = dispatcher
        .validate(
            &[vconfig("svc", vec![validating("svc.example.com", config.clone())])],
            &create_pod(),
            None,
        )
        .await
        .expect("allowed");
    assert_eq!(outcome.called, ["svc.example.com"]);
    assert_eq!(server.seen.lock().expect("lock")[0]["__path"], "/check?timeout=10s");

    // An unknown service is a call failure.
    let mut missing = config;
    if let Some(s) = missing.service.as_mut() {
        s.name = "missing".into();
    }
    let err = dispatcher
        .validate(
            &[vconfig("svc", vec![validating("svc.example.com", missing)])],
            &create_pod(),
            None,
        )
        .await
        .expect_err("no such service");
    assert!(
        err.to_string()
            .contains("Post \"https://missing.sys.svc:8443/check?timeout=10s\""),
        "{err}"
    );
}

#[tokio::test]
async fn dry_run_requires_side_effect_free_webhooks() {
    let pki = pki();
    let server = serve(&pki, Duration::ZERO, allow()).await;
    let mut hook = validating("effects.example.com", url_config(&pki.ca_pem, server.addr, "/"));
    hook.side_effects = "Some".into();
    let mut attrs = create_pod();
    attrs.dry_run = true;
    let err = Dispatcher::default()
        .validate(&[vconfig("fx", vec![hook.clone()])], &attrs, None)
        .await
        .expect_err("dry run unsupported");
    assert_eq!(
        err.to_string(),
        "admission webhook \"effects.example.com\" does not support dry run"
    );
    assert_eq!(err.code(), 400);
    // Ignore does not apply to this refusal.
    hook.failure_policy = Some("Ignore".into());
    assert!(Dispatcher::default()
        .validate(&[vconfig("fx", vec![hook.clone()])], &attrs, None)
        .await
        .is_err());
    assert_eq!(server.calls.load(Ordering::SeqCst), 0);
    hook.side_effects = "NoneOnDryRun".into();
    Dispatcher::default()
        .validate(&[vconfig("fx", vec![hook])], &attrs, None)
        .await
        .expect("allowed");
    assert_eq!(server.seen.lock().expect("lock")[0]["dryRun"], true);
}

#[tokio::test]
async fn mismatched_response_uid_is_a_call_failure() {
    let pki = pki();
    let server = serve(
        &pki,
        Duration::ZERO,
        Arc::new(|_| json!({"uid": "not-the-uid", "allowed": true})),
    )
    .await;
    let hook = validating("uid.example.com", url_config(&pki.ca_pem, server.addr, "/"));
    let err = Dispatcher::default()
        .validate(&[vconfig("uid", vec![hook])], &create_pod(), None)
        .await
        .expect_err("bad uid");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "failed calling webhook \"uid.example.com\": received invalid webhook response: expected response.uid="
        ),
        "{text}"
    );
    assert!(text.ends_with(", got \"not-the-uid\""), "{text}");
}
