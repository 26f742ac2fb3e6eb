//! State shared by every request handler, apart from the server that builds
//! it so handlers, the node proxy and the server do not import each other.

use std::sync::Arc;

use crate::http::auth::{Authorizer, TokenAuthenticator};
use crate::http::node_certs::NodeCertSigner;
use crate::http::node_proxy::{KubeletClient, NodeAccess};
use crate::registry::Registry;

/// State shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    /// The registry (storage + strategies).
    pub registry: Arc<Registry>,
    /// Bearer tokens.
    pub tokens: Arc<TokenAuthenticator>,
    /// Authorization seam.
    pub authorizer: Arc<dyn Authorizer>,
    /// TLS client identity towards node daemons (`pods/log`).
    pub kubelet: Arc<KubeletClient>,
    /// Signs node client certificates for joining nodes.
    pub node_certs: Arc<NodeCertSigner>,
    /// ServiceAccount token issuer and authenticator.
    pub sa_tokens: Arc<crate::http::service_account_token::ServiceAccountTokens>,
    /// Remote APIServices: routing table and transport of the aggregator.
    pub aggregator: Arc<crate::registry::apiservices::ApiServices>,
}

impl NodeAccess for AppState {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn kubelet(&self) -> &KubeletClient {
        &self.kubelet
    }
}
