//! The registry's side of CertificateSigningRequests: what needs the
//! requesting user or the RBAC policy, which the kind (`kinds::certificatesigningrequest`)
//! may not reach.
//!
//! - On create, `spec.username`, `spec.uid`, `spec.groups` and `spec.extra`
//!   come from the requesting user, whatever the client sent (Kubernetes'
//!   CSR strategy `PrepareForCreate`): [`stamp_requester`].
//! - `/approval` takes only the conditions, `/status` everything but the
//!   `Approved`/`Denied` conditions; each needs the `approve` or `sign` verb
//!   on the `signers` resource named after `spec.signerName` (or
//!   `<domain>/*`), as Kubernetes' `CertificateApproval`/`CertificateSigning`
//!   admission plugins check: [`subresource_write`].

use serde_json::{json, Value};

use crate::kinds::certificatesigningrequest as csr;
use crate::kinds::Resource;
use crate::registry::admission::requesting_user;
use crate::registry::rbac::{Attributes, MASTERS};
use crate::registry::{name_of, Registry};
use crate::status::{ApiError, ApiResult, FieldError};

/// Sets a new request's `spec.username`/`spec.groups` from the requesting
/// user and clears `spec.uid`/`spec.extra` (Sluice's users carry neither);
/// other kinds are left alone. A write the server makes itself has no user:
/// the fields are cleared.
pub(super) fn stamp_requester(r: &Resource, obj: &mut Value) {
    if *r != csr::RESOURCE {
        return;
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for k in ["username", "uid", "groups", "extra"] {
        spec.remove(k);
    }
    if let Some(user) = requesting_user() {
        spec.insert("username".into(), json!(user.name));
        if !user.groups.is_empty() {
            spec.insert("groups".into(), json!(user.groups));
        }
    }
}

/// Whether the requesting user holds `verb` on the `signers` resource named
/// `signer` (or `<domain>/*`), as Kubernetes' certificates admission asks.
fn may(reg: &Registry, verb: &str, signer: &str) -> Result<(), String> {
    let Some(user) = requesting_user() else {
        return Ok(());
    };
    if user.in_group(MASTERS) {
        return Ok(());
    }
    let snapshot = reg.rbac.snapshot();
    let wildcard = signer.split_once('/').map(|(d, _)| format!("{d}/*"));
    let names = std::iter::once(signer.to_string()).chain(wildcard);
    for n in names {
        let a = Attributes::resource(verb, "certificates.k8s.io", "signers", None, Some(&n));
        if snapshot.authorize(&user, &a).is_ok() {
            return Ok(());
        }
    }
    Err(user.name)
}

/// Kubernetes' admission 403: `user not permitted to approve requests with signerName ...`.
fn forbidden(cur: &Value, verb: &str, signer: &str, user: &str) -> ApiError {
    tracing::info!(user, verb, signer, "certificate signing request write refused");
    ApiError::forbidden(
        &csr::RESOURCE,
        name_of(cur),
        format!("user not permitted to {verb} requests with signerName {signer:?}"),
    )
}

/// A write through `/approval`: the proposed conditions on the current
/// object (spec and certificate kept), if the user may approve for the
/// request's signer.
pub fn approval_write(reg: &Registry, cur: &Value, proposed: &Value) -> ApiResult<Value> {
    let mut new = cur.clone();
    new["status"]["conditions"] = proposed.pointer("/status/conditions").cloned().unwrap_or(json!([]));
    if let Some(rv) = proposed.pointer("/metadata/resourceVersion") {
        new["metadata"]["resourceVersion"] = rv.clone();
    }
    let changed = csr::conditions(cur) != csr::conditions(&new);
    if changed {
        let signer = csr::signer_of(cur);
        may(reg, "approve", signer).map_err(|u| forbidden(cur, "approve", signer, &u))?;
    }
    csr::stamp_conditions(cur, &mut new);
    Ok(new)
}

/// A write through `/status`: the proposed status with the current
/// `Approved`/`Denied` conditions (changing them is a 422: they change only
/// through `/approval`), if the user may sign for the request's signer when
/// the certificate changes.
pub fn status_write(reg: &Registry, cur: &Value, proposed: &Value) -> ApiResult<Value> {
    let mut new = cur.clone();
    new["status"] = proposed.get("status").cloned().unwrap_or(json!({}));
    if let Some(rv) = proposed.pointer("/metadata/resourceVersion") {
        new["metadata"]["resourceVersion"] = rv.clone();
    }
    let approval = |o: &Value| -> Vec<Value> {
        csr::conditions(o)
            .into_iter()
            .filter(|c| matches!(c.get("type").and_then(Value::as_str), Some("Approved" | "Denied")))
            .map(|mut c| {
                if let Some(m) = c.as_object_mut() {
                    m.remove("lastUpdateTime");
                    m.remove("lastTransitionTime");
                }
                c
            })
            .collect()
    };
    if approval(cur) != approval(&new) {
        return Err(ApiError::invalid(
            &csr::RESOURCE,
            name_of(cur),
            vec![FieldError::forbidden(
                "status.conditions",
                "Approved and Denied conditions are set through the approval subresource",
            )],
        ));
    }
    let cert = |o: &Value| o.pointer("/status/certificate").cloned();
    if cert(cur) != cert(&new) {
        let signer = csr::signer_of(cur);
        may(reg, "sign", signer).map_err(|u| forbidden(cur, "sign", signer, &u))?;
    }
    csr::stamp_conditions(cur, &mut new);
    Ok(new)
}

/// A write through `sub` (`approval` or `status`): [`approval_write`] or [`status_write`].
pub fn subresource_write(reg: &Registry, sub: &str, cur: &Value, proposed: &Value) -> ApiResult<Value> {
    if sub == "approval" {
        approval_write(reg, cur, proposed)
    } else {
        status_write(reg, cur, proposed)
    }
}
