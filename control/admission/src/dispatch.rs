//! Running the matching webhooks of a request: mutating in order with
//! reinvocation, validating in parallel, failure policies and dry run.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use rustls::RootCertStore;
use serde_json::Value;
use tracing::Instrument as _;

use crate::client::{self, ServiceResolver, StaticResolver};
use crate::error::AdmissionError;
use crate::matching::{self, AdmissionAttributes, Hook, HookKind, Invocation, ResourceEquivalence};
use crate::review::{self, ResponseStatus, ReviewResponse};
use crate::selector::Labels;

/// What admission produced besides allowing the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionOutcome {
    /// A mutating webhook changed the object (`attrs.object` holds the result).
    pub changed: bool,
    /// Warnings to return to the client (`Warning: 299 - "<text>"` headers).
    pub warnings: Vec<String>,
    /// Audit annotations, keyed `<webhook name>/<key>`.
    pub audit_annotations: BTreeMap<String, String>,
    /// Webhooks whose call failed but whose failurePolicy is Ignore.
    pub failed_open: Vec<String>,
    /// Names of the webhooks that were called, in call order (reinvocations repeat).
    pub called: Vec<String>,
}

/// Calls admission webhooks. Cheap to clone; share one per API server.
#[derive(Clone)]
pub struct Dispatcher {
    resolver: Arc<dyn ServiceResolver>,
    equivalence: Option<Arc<dyn ResourceEquivalence>>,
    default_roots: Arc<RootCertStore>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Dispatcher::new(Arc::new(StaticResolver::default()))
    }
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("default_roots", &self.default_roots.len())
            .finish_non_exhaustive()
    }
}

/// Why one call did not produce a usable response.
enum CallError {
    /// Counts against failurePolicy; the text follows `failed calling webhook "<name>": `.
    Call(String),
    /// Rejects regardless of failurePolicy.
    Fatal(AdmissionError),
}

impl Dispatcher {
    /// A dispatcher resolving `clientConfig.service` through `resolver`.
    pub fn new(resolver: Arc<dyn ServiceResolver>) -> Self {
        Dispatcher {
            resolver,
            equivalence: None,
            default_roots: Arc::new(RootCertStore::empty()),
        }
    }

    /// Enables `matchPolicy: Equivalent` matching through `equivalence`.
    pub fn with_equivalence(mut self, equivalence: Arc<dyn ResourceEquivalence>) -> Self {
        self.equivalence = Some(equivalence);
        self
    }

    /// Roots used for webhooks without a `caBundle` (empty by default, so such
    /// webhooks fail TLS verification unless the caller provides system roots).
    pub fn with_default_roots(mut self, roots: RootCertStore) -> Self {
        self.default_roots = Arc::new(roots);
        self
    }

    /// Runs the mutating webhooks of `configs` that match the request, applying
    /// their patches to `attrs.object`. `namespace_labels` are the labels of
    /// the request's namespace (`None` if there is none).
    pub async fn mutate(
        &self,
        configs: &[MutatingWebhookConfiguration],
        attrs: &mut AdmissionAttributes,
        namespace_labels: Option<&Labels>,
    ) -> Result<AdmissionOutcome, AdmissionError> {
        let hooks = matching::mutating_hooks(configs);
        let mut outcome = AdmissionOutcome::default();
        // Reinvocation bookkeeping, as Kubernetes keeps it: IfNeeded webhooks
        // called before a change are reinvoked (once) after the first round.
        let mut previously_invoked: HashSet<String> = HashSet::new();
        let mut to_reinvoke: HashSet<String> = HashSet::new();
        let mut any_change = false;
        for round in 0..2 {
            if round == 1 && (!any_change || to_reinvoke.is_empty()) {
                break;
            }
            for hook in &hooks {
                let equivalence = self.equivalence.as_deref();
                let Some(invocation) = matching::should_call(hook, attrs, namespace_labels, equivalence)? else {
                    continue;
                };
                let key = hook.key();
                if round == 1 && !to_reinvoke.contains(&key) {
                    continue;
                }
                let changed = self.mutate_one(hook, &invocation, attrs, round, &mut outcome).await?;
                if changed {
                    any_change = true;
                    outcome.changed = true;
                    to_reinvoke.extend(previously_invoked.drain());
                }
                if hook.reinvoke_if_needed {
                    previously_invoked.insert(key);
                }
            }
        }
        Ok(outcome)
    }

    async fn mutate_one(
        &self,
        hook: &Hook,
        invocation: &Invocation,
        attrs: &mut AdmissionAttributes,
        round: usize,
        outcome: &mut AdmissionOutcome,
    ) -> Result<bool, AdmissionError> {
        let converted = invocation.kind != attrs.kind;
        let (object, old_object) = self.versioned(attrs, invocation)?;
        outcome.called.push(hook.name.clone());
        let response = match self
            .call(hook, attrs, invocation, object.as_ref(), old_object.as_ref(), round)
            .await
        {
            Ok(r) => r,
            Err(CallError::Fatal(e)) => return Err(e),
            Err(CallError::Call(reason)) => return fail(hook, reason, outcome).map(|()| false),
        };
        record(hook, &response, outcome);
        if !response.allowed {
            return Err(denied(&hook.name, response.status.as_ref()));
        }
        let Some(patch) = response.patch.filter(|p| !p.0.is_empty()) else {
            return Ok(false);
        };
        let Some(mut patched) = object.clone() else {
            return Err(AdmissionError::Internal(format!(
                "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
                hook.name
            )));
        };
        json_patch::patch(&mut patched, &patch).map_err(|e| AdmissionError::Internal(e.to_string()))?;
        if Some(&patched) == object.as_ref() {
            return Ok(false);
        }
        let back = if converted {
            self.convert(&patched, &attrs.kind)?
        } else {
            patched
        };
        attrs.object = Some(back);
        Ok(true)
    }

    /// Runs the validating webhooks of `configs` that match the request, in
    /// parallel. Any denial, or any failure of a webhook with failurePolicy
    /// Fail, rejects; the first such in webhook order is returned.
    pub async fn validate(
        &self,
        configs: &[ValidatingWebhookConfiguration],
        attrs: &AdmissionAttributes,
        namespace_labels: Option<&Labels>,
    ) -> Result<AdmissionOutcome, AdmissionError> {
        let hooks = matching::validating_hooks(configs);
        let mut calls = Vec::new();
        for hook in &hooks {
            let equivalence = self.equivalence.as_deref();
            if let Some(invocation) = matching::should_call(hook, attrs, namespace_labels, equivalence)? {
                calls.push((hook, invocation));
            }
        }
        let results = futures::future::join_all(calls.iter().map(|(hook, invocation)| async move {
            let (object, old_object) = self.versioned(attrs, invocation).map_err(CallError::Fatal)?;
            self.call(hook, attrs, invocation, object.as_ref(), old_object.as_ref(), 0)
                .await
        }))
        .await;
        let mut outcome = AdmissionOutcome::default();
        let mut first_error = None;
        for ((hook, _), result) in calls.iter().zip(results) {
            outcome.called.push(hook.name.clone());
            let err = match result {
                Ok(response) => {
                    record(hook, &response, &mut outcome);
                    if response.allowed {
                        continue;
                    }
                    denied(&hook.name, response.status.as_ref())
                }
                Err(CallError::Fatal(e)) => e,
                Err(CallError::Call(reason)) => match fail(hook, reason, &mut outcome) {
                    Ok(()) => continue,
                    Err(e) => e,
                },
            };
            first_error.get_or_insert(err);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(outcome),
        }
    }

    fn convert(&self, object: &Value, to: &matching::GroupVersionKind) -> Result<Value, AdmissionError> {
        let eq = self.equivalence.as_deref().ok_or_else(|| {
            AdmissionError::Internal(format!(
                "no conversion to {}/{}, Kind={}",
                to.group, to.version, to.kind
            ))
        })?;
        eq.convert(object, to).map_err(AdmissionError::Internal)
    }

    /// The object and old object as the webhook sees them (converted for
    /// equivalent-resource invocations).
    fn versioned(
        &self,
        attrs: &AdmissionAttributes,
        invocation: &Invocation,
    ) -> Result<(Option<Value>, Option<Value>), AdmissionError> {
        if invocation.kind == attrs.kind {
            return Ok((attrs.object.clone(), attrs.old_object.clone()));
        }
        let object = attrs
            .object
            .as_ref()
            .map(|o| self.convert(o, &invocation.kind))
            .transpose()?;
        let old = attrs
            .old_object
            .as_ref()
            .map(|o| self.convert(o, &invocation.kind))
            .transpose()?;
        Ok((object, old))
    }

    async fn call(
        &self,
        hook: &Hook,
        attrs: &AdmissionAttributes,
        invocation: &Invocation,
        object: Option<&Value>,
        old_object: Option<&Value>,
        round: usize,
    ) -> Result<ReviewResponse, CallError> {
        if hook.match_conditions > 0 {
            return Err(CallError::Fatal(AdmissionError::Internal(format!(
                "webhook {:?}: matchConditions are not supported",
                hook.name
            ))));
        }
        if attrs.dry_run {
            match hook.side_effects.as_str() {
                "None" | "NoneOnDryRun" => {}
                "" => return Err(CallError::Call("Webhook SideEffects is nil".to_owned())),
                _ => {
                    return Err(CallError::Fatal(AdmissionError::DryRunUnsupported {
                        webhook: hook.name.clone(),
                    }))
                }
            }
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!(
            "admission_webhook",
            webhook = %hook.name,
            configuration = %hook.configuration,
            mutating = hook.kind == HookKind::Mutating,
            round,
            operation = %attrs.operation,
            resource = %invocation.resource.resource,
            uid = %uid,
        );
        async move {
            let endpoint = client::endpoint(&hook.client_config, hook.timeout_seconds)
                .map_err(|e| CallError::Call(format!("could not get REST client: {e}")))?;
            let ca = hook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice());
            let tls = client::tls_config(ca, &self.default_roots)
                .map_err(|e| CallError::Call(format!("could not get REST client: {e}")))?;
            let review = review::build_review(&uid, attrs, invocation, object, old_object);
            let body = serde_json::to_vec(&review)
                .map_err(|e| CallError::Call(format!("could not create admission objects: {e}")))?;
            let started = std::time::Instant::now();
            let timeout = Duration::from_secs(hook.timeout_seconds);
            let result = client::post(&endpoint, tls, self.resolver.as_ref(), timeout, body).await;
            let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let bytes = result.map_err(|cause| {
                tracing::warn!(elapsed_ms, %cause, "webhook call failed");
                CallError::Call(format!("failed to call webhook: {cause}"))
            })?;
            let response = review::parse_response(&uid, hook.kind == HookKind::Mutating, &bytes)
                .map_err(|e| CallError::Call(format!("received invalid webhook response: {e}")))?;
            tracing::debug!(
                elapsed_ms,
                allowed = response.allowed,
                patched = response.patch.is_some(),
                "webhook answered"
            );
            Ok(response)
        }
        .instrument(span)
        .await
    }
}

/// Applies failurePolicy to a failed call: `Ok` if ignored.
fn fail(hook: &Hook, reason: String, outcome: &mut AdmissionOutcome) -> Result<(), AdmissionError> {
    if hook.fail_closed {
        tracing::warn!(webhook = %hook.name, %reason, "failed calling webhook, failing closed");
        Err(AdmissionError::CallFailed {
            webhook: hook.name.clone(),
            reason,
        })
    } else {
        tracing::warn!(webhook = %hook.name, %reason, "failed calling webhook, failing open");
        outcome.failed_open.push(hook.name.clone());
        Ok(())
    }
}

fn record(hook: &Hook, response: &ReviewResponse, outcome: &mut AdmissionOutcome) {
    outcome.warnings.extend(response.warnings.iter().cloned());
    for (k, v) in &response.audit_annotations {
        outcome
            .audit_annotations
            .insert(format!("{}/{k}", hook.name), v.clone());
    }
}

/// The error for `allowed: false`, worded as Kubernetes words it.
pub fn denied(webhook: &str, status: Option<&ResponseStatus>) -> AdmissionError {
    let default = ResponseStatus::default();
    let status = status.unwrap_or(&default);
    let code = match status.code.and_then(|c| u16::try_from(c).ok()) {
        None | Some(0) => 403,
        Some(c) if !(400..=599).contains(&c) => 400,
        Some(c) => c,
    };
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let message = match (status.message.as_deref(), status.reason.as_deref()) {
        (Some(m), _) if !m.is_empty() => format!("{denied_by}: {m}"),
        (_, Some(r)) if !r.is_empty() => format!("{denied_by}: {r}"),
        _ => format!("{denied_by} without explanation"),
    };
    let reason = match status.reason.as_deref() {
        Some(r) if !r.is_empty() => r.to_owned(),
        _ if code == 500 => "InternalError".to_owned(),
        _ => "Forbidden".to_owned(),
    };
    AdmissionError::Denied {
        webhook: webhook.to_owned(),
        code,
        reason,
        message,
        details: status.details.clone().map(Box::new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_wording() {
        let s = ResponseStatus {
            message: Some("no privileged pods".into()),
            ..Default::default()
        };
        let e = denied("deny.example.com", Some(&s));
        assert_eq!(
            e.to_string(),
            "admission webhook \"deny.example.com\" denied the request: no privileged pods"
        );
        let st = e.to_status();
        assert_eq!(st.code, Some(403));
        assert_eq!(st.reason.as_deref(), Some("Forbidden"));
        assert_eq!(st.status.as_deref(), Some("Failure"));

        let s = ResponseStatus {
            code: Some(422),
            reason: Some("Invalid".into()),
            ..Default::default()
        };
        let e = denied("v", Some(&s));
        assert_eq!(e.to_string(), "admission webhook \"v\" denied the request: Invalid");
        assert_eq!((e.code(), e.to_status().reason.as_deref()), (422, Some("Invalid")));

        let e = denied("v", None);
        assert_eq!(
            e.to_string(),
            "admission webhook \"v\" denied the request without explanation"
        );
        assert_eq!(e.code(), 403);

        // A rejection never carries a success code.
        let s = ResponseStatus {
            code: Some(200),
            ..Default::default()
        };
        assert_eq!(denied("v", Some(&s)).code(), 400);
        let s = ResponseStatus {
            code: Some(500),
            ..Default::default()
        };
        assert_eq!(
            denied("v", Some(&s)).to_status().reason.as_deref(),
            Some("InternalError")
        );
    }
}
