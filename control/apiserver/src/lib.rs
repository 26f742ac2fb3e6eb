//! The Kubernetes-compatible API server on etcd.
//!
//! Only this crate talks to etcd; every other component talks to it over
//! the Kubernetes REST API.
//!
//! Request path: [`server`] (TLS, authentication) → [`handlers`] (HTTP
//! verbs, content types) → [`registry`] (per-kind strategies: defaulting in
//! [`defaults`], validation in [`validation`] and [`schema`], Service
//! allocation in [`allocator`], patches in [`patch`]) → [`store`] (etcd).
//! Watches stream from etcd in [`watch`]. Everything is driven by the
//! resource table in [`resources`].

pub mod allocator;
pub mod auth;
pub mod bootstrap_token;
pub mod defaults;
pub mod discovery;
pub mod handlers;
pub mod negotiation;
pub mod node_certs;
pub mod node_proxy;
pub mod openapi;
pub mod params;
pub mod patch;
pub mod pki;
pub mod pod_support;
pub mod registry;
pub mod request;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod status;
pub mod store;
pub mod table;
pub mod validation;
pub mod watch;
pub mod watch_cache;
pub mod wire;

#[cfg(test)]
mod proptests;
