//! Admission webhooks for the Sluice API server, following Kubernetes'
//! `MutatingWebhookConfiguration` / `ValidatingWebhookConfiguration` semantics.
//!
//! * [`matching`]: which webhooks apply to a request (rules, scope, namespace
//!   and object selectors, `matchPolicy: Equivalent`), in Kubernetes' order.
//! * [`selector`]: label selector evaluation.
//! * [`review`]: the `admission.k8s.io/v1` `AdmissionReview` request and response.
//! * [`client`]: posting a review over HTTPS (caBundle, service resolution, timeout).
//! * [`Dispatcher`]: mutating (ordered, patched, reinvoked) and validating
//!   (parallel) admission with failurePolicy and dry-run handling.
//! * [`validation`]: checks of webhook configurations (422 field errors),
//!   including the refusal of the unsupported `matchConditions`.
//!
//! Errors are [`AdmissionError`]s; [`AdmissionError::to_status`] gives the
//! `metav1.Status` Kubernetes would return.
//!
//! Known gaps: `matchConditions` (CEL) are refused, not evaluated; only
//! `admissionReviewVersions` v1 is spoken; one HTTP/1.1 connection per call
//! (no pooling, no HTTP/2); webhooks are not re-called after in-tree mutation
//! (there is none in Sluice); audit annotations for patches/failed-open are
//! reported in [`AdmissionOutcome`] rather than written to an audit log.

pub mod client;
mod dispatch;
mod error;
pub mod matching;
pub mod review;
pub mod selector;
pub mod validation;

pub use client::{ServiceResolver, StaticResolver};
pub use dispatch::{denied, AdmissionOutcome, Dispatcher};
pub use error::{AdmissionError, FieldError};
pub use matching::{AdmissionAttributes, GroupVersionKind, GroupVersionResource, Operation, ResourceEquivalence};
pub use selector::Labels;
