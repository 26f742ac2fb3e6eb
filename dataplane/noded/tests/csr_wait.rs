//! noded's certificate requests wait for a decision: a request the API
//! server leaves Pending (here an administrator's node client request, which
//! goes to the controllers; none run here, the test plays them) is watched
//! until it is approved and signed, and a denied one ends with an error
//! naming the reason and message.
//!
//! Run `cargo build -p sluice-apiserver` first (same target dir).

use std::time::Duration;

use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use sluice_noded::bootstrap::request_certificate;
use sluice_tests::ControlPlane;

const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

fn node_request(node: &str) -> String {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let key = rcgen::KeyPair::generate().unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// Starts a request in the background; returns its task.
fn submit(client: &kube::Client, prefix: &str, node: &str) -> tokio::task::JoinHandle<Result<String, String>> {
    let (client, prefix, pem) = (client.clone(), prefix.to_string(), node_request(node));
    tokio::spawn(async move {
        request_certificate(
            &client,
            &prefix,
            &pem,
            SIGNER,
            &["digital signature", "client auth"],
            Duration::from_secs(60),
        )
        .await
        .expect("the API server takes the request")
    })
}

/// The pending request whose name starts with `prefix`.
async fn pending(api: &Api<CertificateSigningRequest>, prefix: &str) -> CertificateSigningRequest {
    for _ in 0..100 {
        let list = api.list(&Default::default()).await.expect("list CSRs");
        if let Some(csr) = list.items.into_iter().find(|c| c.name_any().starts_with(prefix)) {
            assert!(csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_none());
            return csr;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no CSR named {prefix}*");
}

async fn decide(api: &Api<CertificateSigningRequest>, csr: &CertificateSigningRequest, kind: &str, reason: &str) {
    let mut next = csr.clone();
    next.status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: kind.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(format!("{reason} by the test")),
            ..Default::default()
        });
    api.replace_subresource("approval", &csr.name_any(), &PostParams::default(), &next)
        .await
        .expect("approval written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_request_is_watched_until_issued_or_denied() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());

    // Approved, then signed: the waiting request returns the certificate.
    let waiting = submit(&client, "wait-issued-", "n7");
    let csr = pending(&api, "wait-issued-").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "returned before a decision");
    decide(&api, &csr, "Approved", "TestApprove").await;
    let approved = api.get(&csr.name_any()).await.expect("get");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["n7".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    let mut signed = approved.clone();
    signed.status.get_or_insert_with(Default::default).certificate =
        Some(k8s_openapi::ByteString(cert.clone().into_bytes()));
    api.replace_status(&csr.name_any(), &PostParams::default(), &signed)
        .await
        .expect("certificate written");
    let got = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the wait ends once the certificate is written")
        .expect("task");
    assert_eq!(got, Ok(cert));

    // Denied: a clear error.
    let waiting = submit(&client, "wait-denied-", "n8");
    let csr = pending(&api, "wait-denied-").await;
    decide(&api, &csr, "Denied", "TestDeny").await;
    let got = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the wait ends once the request is denied")
        .expect("task");
    let err = got.expect_err("a denied request gives no certificate");
    assert_eq!(
        err,
        format!(
            "certificate signing request {} was denied: TestDeny: TestDeny by the test",
            csr.name_any()
        )
    );
}
