//! Errors of the Service proxy.

use sluice_datapath::DatapathError;

/// Why the proxy stopped or a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A thread panicked while holding the datapath lock; its state is unknown.
    #[error("the datapath lock is poisoned (a holder panicked)")]
    DatapathPoisoned,
    /// The datapath refused some frontends (each is retried on the next reconcile).
    #[error("{failed} frontend(s) could not be programmed; first: {first}")]
    Program {
        /// How many frontends failed in this reconcile.
        failed: usize,
        /// The first failure.
        first: DatapathError,
    },
    /// A watch stream ended before the caches were filled, so there is no desired state.
    #[error("the {0} watch ended before its first list completed")]
    WatchEnded(&'static str),
}
