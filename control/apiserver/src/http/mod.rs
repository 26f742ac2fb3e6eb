//! The HTTP layer: TLS and authentication ([`server`], [`auth`],
//! [`bootstrap_token`], [`service_account_token`]), authorization ([`authz`]) and the access reviews
//! ([`reviews`]), ServiceAccount tokens and OIDC discovery
//! ([`token_request`]), routing and verbs ([`request`], [`handlers`],
//! [`params`]), content negotiation and encodings ([`negotiation`],
//! [`wire`]), watches ([`watch`]), the node-facing endpoints
//! ([`node_proxy`], [`kubelet_client`], [`node_certs`]), and the proxy to aggregated API
//! servers ([`aggregator`]).

pub mod aggregator;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod bootstrap_token;
pub mod dashboard;
pub mod handlers;
pub mod kubelet_client;
pub mod metrics;
pub mod negotiation;
pub mod node_authorizer;
pub mod node_certs;
pub mod node_proxy;
pub mod params;
pub mod request;
pub mod reviews;
pub mod server;
pub mod service_account_token;
pub mod state;
pub mod token_request;
pub mod watch;
pub mod wire;
