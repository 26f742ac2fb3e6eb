//! The Kubernetes-compatible API server on etcd.
//!
//! Only this crate talks to etcd; every other component talks to it over
//! the Kubernetes REST API.
//!
//! The folders are the layers, and each only uses the ones below it:
//! - [`http`]: TLS, authentication, routing, verbs, content negotiation,
//!   watches, the node proxy;
//! - [`discovery`]: discovery documents and OpenAPI, derived from the
//!   served kinds;
//! - [`registry`]: the generic create/read/update/delete of any kind
//!   (patches, selectors, typed decoding, Service allocation), driven by
//!   each kind's strategy;
//! - [`kinds`]: what each kind is (names, scope, subresources, defaults,
//!   validation, columns), one file per kind, and the catalog of what is
//!   served (built-in kinds plus CustomResourceDefinitions);
//! - [`storage`]: etcd and the shared watch cache.
//!
//! [`status`] (the `Status` error shape), [`pki`] and [`metrics`] (the
//! Prometheus metrics every layer records into) are used by every layer.
//! [`fuzz`] holds the fuzz targets of the authentication path; like the
//! tests, it sits above the layers.

pub mod discovery;
pub mod fuzz;
pub mod http;
pub mod kinds;
pub mod meta;
pub mod metrics;
pub mod pki;
pub mod registry;
pub mod status;
pub mod storage;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tidy;
