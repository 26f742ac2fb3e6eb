//! What every controller shares: the API client, the informer caches, the
//! event recorder and the configuration.

use kube::Client;

use crate::config::ControllerManagerConfig;
use crate::events::EventRecorder;
use crate::informer::Informers;

/// Shared state handed to every reconcile.
pub struct Context {
    /// Client of the API server.
    pub client: Client,
    /// Shared caches (read these instead of listing).
    pub informers: Informers,
    /// Writes core/v1 Events.
    pub recorder: EventRecorder,
    /// Flags.
    pub config: ControllerManagerConfig,
}

impl Context {
    /// Builds the context; informers are created but not started.
    pub fn new(client: Client, config: ControllerManagerConfig) -> Self {
        Self {
            informers: Informers::new(&client),
            recorder: EventRecorder::new(client.clone(), "sluice-controller-manager"),
            client,
            config,
        }
    }
}
