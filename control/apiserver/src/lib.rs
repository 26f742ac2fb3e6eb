//! The Kubernetes-compatible API server on etcd.
//!
//! Only this crate talks to etcd; every other component talks to it over
//! the Kubernetes REST API.

pub mod resources;
