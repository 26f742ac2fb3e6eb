//! CertificateSigningRequests (certificates.k8s.io/v1): cluster-scoped
//! requests for a certificate from a named signer, approved or denied
//! through `/approval` and issued through `/status`.
//!
//! As Kubernetes' CSR strategy: on create the server sets `spec.username`
//! and `spec.groups` from the requesting user and clears `spec.uid` and
//! `spec.extra` (whatever the client sent; Sluice's users carry neither
//! here) and drops the status; the spec never changes
//! afterwards (a main-resource update changing it is a 422 here, where
//! Kubernetes silently keeps the old spec). `/approval` takes only the
//! conditions, `/status` everything but the `Approved`/`Denied`
//! conditions; each needs the `approve` or `sign` verb on the `signers`
//! resource named after `spec.signerName` (or `<domain>/*`), as Kubernetes'
//! `CertificateApproval`/`CertificateSigning` admission plugins check
//! (`registry::certificates`). Validation follows Kubernetes':
//! a PEM `CERTIFICATE REQUEST`, a qualified signer name, known and unique
//! usages, `expirationSeconds` of at least 600, Approved and Denied
//! mutually exclusive and never removed, a certificate never replaced.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::strategy::{openapi_ref, NameRule};
use crate::kinds::table::{age, col, human_duration, name, s, Column, AGE, NAME};
use crate::kinds::{status, table, Resource, Strategy, Subresource};
use crate::status::{ApiResult, FieldError};

/// The `CertificateSigningRequest` resource.
pub static RESOURCE: Resource = Resource {
    group: "certificates.k8s.io",
    version: "v1",
    kind: "CertificateSigningRequest",
    plural: "certificatesigningrequests",
    singular: "certificatesigningrequest",
    namespaced: false,
    short_names: &["csr"],
    categories: &[],
    subresources: &[
        APPROVAL,
        status("CertificateSigningRequest", "certificates.k8s.io", "v1"),
    ],
    field_labels: Some(&["metadata.name", "spec.signerName"]),
};

/// `certificatesigningrequests/approval`: conditions only.
const APPROVAL: Subresource = Subresource {
    name: "approval",
    kind: "CertificateSigningRequest",
    kind_group: "certificates.k8s.io",
    kind_version: "v1",
    verbs: &["get", "patch", "update"],
    model: None,
};

/// Key usages Kubernetes accepts in `spec.usages`.
pub const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The shortest `spec.expirationSeconds` accepted (10 minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

/// How `CertificateSigningRequest` objects behave.
pub struct CertificateSigningRequests;

impl Strategy for CertificateSigningRequests {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::certificates::v1::CertificateSigningRequest>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::certificates::v1::CertificateSigningRequest>(generator)
    }

    fn verbs(&self) -> &'static [&'static str] {
        crate::kinds::STANDARD_VERBS
    }

    fn name_rule(&self) -> NameRule {
        crate::meta::names::check_dns1123_subdomain
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        // spec.username/uid/groups/extra are set from the requesting user by
        // the registry (`registry::certificates::stamp_requester`).
        if !obj["spec"].is_object() {
            obj["spec"] = json!({});
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_spec(obj);
        errs.extend(validate_status(obj));
        errs
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if old.get("spec") != new.get("spec") {
            errs.push(FieldError::invalid(
                "spec",
                new.get("spec").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        errs.extend(validate_status_change(old, new));
        errs
    }

    fn validate_status_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        validate_status_change(old, new)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

// ---- Validation ----

fn validate_spec(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    match spec.get("request").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        None => errs.push(FieldError::required("spec.request", "")),
        Some(b64) => {
            if let Err(e) = parse_request(b64) {
                errs.push(FieldError::invalid("spec.request", &json!("<request data>"), e));
            }
        }
    }
    match spec.get("signerName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        None => errs.push(FieldError::required("spec.signerName", "")),
        Some(signer) => {
            if let Err(e) = check_signer_name(signer) {
                errs.push(FieldError::invalid("spec.signerName", &json!(signer), e));
            }
        }
    }
    let usages = spec
        .get("usages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if usages.is_empty() {
        errs.push(FieldError::required("spec.usages", "usages must be provided"));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, u) in usages.iter().enumerate() {
        let text = u.as_str().unwrap_or_default();
        if !USAGES.contains(&text) {
            errs.push(FieldError::not_supported(format!("spec.usages[{i}]"), u, USAGES));
        } else if !seen.insert(text) {
            errs.push(FieldError::duplicate(format!("spec.usages[{i}]"), u));
        }
    }
    if let Some(secs) = spec.get("expirationSeconds").and_then(Value::as_i64) {
        if secs < MIN_EXPIRATION_SECONDS {
            errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                &json!(secs),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    errs
}

/// The DER of a base64 PEM certificate request, its signature checked.
pub fn parse_request(b64: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::prelude::FromDer;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| "must be a base64-encoded PEM certificate request".to_string())?;
    let der = rustls_pemfile::csr(&mut pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| "PEM block type must be CERTIFICATE REQUEST".to_string())?;
    let (_, csr) = X509CertificationRequest::from_der(der.as_ref()).map_err(|e| format!("x509: {e}"))?;
    csr.verify_signature()
        .map_err(|e| format!("x509: certificate request signature: {e}"))?;
    Ok(der.as_ref().to_vec())
}

/// Kubernetes' signer name rule: `<fully qualified domain>/<path>`.
fn check_signer_name(signer: &str) -> Result<(), String> {
    const FORM: &str = "must be a fully qualified domain and path of the form 'example.com/signer-name'";
    let Some((domain, path)) = signer.split_once('/') else {
        return Err(FORM.into());
    };
    if path.is_empty() || domain.split('.').count() < 2 {
        return Err(FORM.into());
    }
    crate::meta::names::check_dns1123_subdomain(domain).map_err(|e| format!("{FORM}: {e}"))?;
    if signer.len() > 571 {
        return Err("must be no more than 571 characters".into());
    }
    if path.split('/').any(|p| p.is_empty()) {
        return Err(FORM.into());
    }
    Ok(())
}

pub(crate) fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn has_condition(obj: &Value, kind: &str) -> bool {
    conditions(obj)
        .iter()
        .any(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn validate_status(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, c) in conditions(obj).iter().enumerate() {
        let kind = c.get("type").and_then(Value::as_str).unwrap_or_default();
        let path = format!("status.conditions[{i}]");
        if kind.is_empty() {
            errs.push(FieldError::required(format!("{path}.type"), ""));
        }
        match c.get("status").and_then(Value::as_str).unwrap_or_default() {
            "True" | "False" | "Unknown" => {}
            "" => errs.push(FieldError::required(format!("{path}.status"), "")),
            other => errs.push(FieldError::not_supported(
                format!("{path}.status"),
                &json!(other),
                &["False", "True", "Unknown"],
            )),
        }
        if matches!(kind, "Approved" | "Denied" | "Failed") && !seen.insert(kind.to_string()) {
            errs.push(FieldError::duplicate(format!("{path}.type"), &json!(kind)));
        }
    }
    if seen.contains("Approved") && seen.contains("Denied") {
        errs.push(FieldError::invalid(
            "status.conditions",
            &json!(conditions(obj)),
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    if let Some(cert) = obj
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        use base64::Engine;
        let ok = base64::engine::general_purpose::STANDARD
            .decode(cert)
            .ok()
            .map(|pem| {
                rustls_pemfile::certs(&mut pem.as_slice())
                    .filter_map(Result::ok)
                    .count()
            })
            .is_some_and(|n| n > 0);
        if !ok {
            errs.push(FieldError::invalid(
                "status.certificate",
                &json!("<certificate data>"),
                "must contain at least one CERTIFICATE PEM block",
            ));
        }
    }
    errs
}

fn validate_status_change(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = validate_status(new);
    for kind in ["Approved", "Denied"] {
        if has_condition(old, kind) && !has_condition(new, kind) {
            errs.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type {kind:?}"),
            ));
        }
    }
    let old_cert = old
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let new_cert = new
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !old_cert.is_empty() && old_cert != new_cert {
        errs.push(FieldError::forbidden(
            "status.certificate",
            "updates may not modify existing certificate content",
        ));
    }
    errs
}

// ---- Helpers of the subresource writes (`registry::certificates`) ----

/// The request's `spec.signerName`.
pub(crate) fn signer_of(obj: &Value) -> &str {
    obj.pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Now, as condition timestamps are written.
pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Fills `lastUpdateTime`/`lastTransitionTime` of new conditions (Kubernetes'
/// `populateConditionTimestamps`).
pub(crate) fn stamp_conditions(old: &Value, new: &mut Value) {
    let olds = conditions(old);
    let Some(list) = new.pointer_mut("/status/conditions").and_then(Value::as_array_mut) else {
        return;
    };
    let t = now();
    for c in list.iter_mut() {
        let prior = olds.iter().find(|o| o.get("type") == c.get("type"));
        let Some(m) = c.as_object_mut() else { continue };
        if m.get("lastUpdateTime").is_none_or(Value::is_null) {
            m.insert("lastUpdateTime".into(), json!(t));
        }
        if m.get("lastTransitionTime").is_none_or(Value::is_null) {
            let same = prior.is_some_and(|p| p.get("status") == m.get("status"));
            let v = match prior.and_then(|p| p.get("lastTransitionTime")).filter(|_| same) {
                Some(v) => v.clone(),
                None => json!(t),
            };
            m.insert("lastTransitionTime".into(), v);
        }
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col("SignerName", "string", 0, "The name of the signer."),
    col("Requestor", "string", 0, "The user who made the request."),
    col(
        "RequestedDuration",
        "string",
        0,
        "The requested validity of the certificate.",
    ),
    col(
        "Condition",
        "string",
        0,
        "The approval state and whether a certificate was issued.",
    ),
];

/// What `kubectl get csr` shows under CONDITION (Kubernetes' `extractCSRStatus`).
pub fn condition_word(csr: &Value) -> String {
    let mut out = if has_condition(csr, "Denied") {
        "Denied".to_string()
    } else if has_condition(csr, "Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has_condition(csr, "Failed") {
        out.push_str(",Failed");
    }
    if !s(csr, &["status", "certificate"]).is_empty() {
        out.push_str(",Issued");
    }
    out
}

fn row(csr: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let duration = csr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .map(|secs| human_duration(chrono::Duration::seconds(secs)))
        .unwrap_or_else(|| "<none>".into());
    vec![
        name(csr),
        age(csr, now),
        json!(s(csr, &["spec", "signerName"])),
        json!(s(csr, &["spec", "username"])),
        json!(duration),
        json!(condition_word(csr)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_b64() -> String {
        use base64::Engine;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    fn csr(spec: Value) -> Value {
        json!({"metadata": {"name": "a"}, "spec": spec})
    }

    #[test]
    fn a_valid_request_passes_and_bad_fields_are_named() {
        let good = csr(
            json!({"request": request_b64(), "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"], "expirationSeconds": 600}),
        );
        assert!(CertificateSigningRequests.validate(&good).is_empty());
        let bad = csr(
            json!({"request": "bm90IGEgY3Ny", "signerName": "nodomain", "usages": ["client auth", "client auth", "flying"], "expirationSeconds": 599}),
        );
        let fields: Vec<String> = CertificateSigningRequests
            .validate(&bad)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.request",
                "spec.signerName",
                "spec.usages[1]",
                "spec.usages[2]",
                "spec.expirationSeconds"
            ]
        );
        let missing: Vec<String> = CertificateSigningRequests
            .validate(&csr(json!({})))
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(missing, ["spec.request", "spec.signerName", "spec.usages"]);
    }

    #[test]
    fn approval_state_is_printed_as_kubectl_does() {
        let with = |conds: Value, cert: &str| json!({"status": {"conditions": conds, "certificate": cert}});
        assert_eq!(condition_word(&json!({})), "Pending");
        assert_eq!(
            condition_word(&with(json!([{"type": "Approved", "status": "True"}]), "Y2VydA==")),
            "Approved,Issued"
        );
        assert_eq!(
            condition_word(&with(json!([{"type": "Denied", "status": "True"}]), "")),
            "Denied"
        );
        assert_eq!(
            condition_word(&with(
                json!([{"type": "Approved", "status": "True"}, {"type": "Failed", "status": "True"}]),
                ""
            )),
            "Approved,Failed"
        );
    }

    #[test]
    fn approval_is_never_removed_and_a_certificate_never_replaced() {
        let old = json!({"status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "YQ=="}});
        let new = json!({"status": {"conditions": [], "certificate": "Yg=="}});
        let fields: Vec<String> = validate_status_change(&old, &new)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert!(fields.contains(&"status.conditions".to_string()));
        assert!(fields.contains(&"status.certificate".to_string()));
        let both = json!({"status": {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}});
        assert!(validate_status(&both)
            .iter()
            .any(|e| e.message.contains("mutually exclusive")));
    }
}
