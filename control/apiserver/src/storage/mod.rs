//! Storage: etcd ([`store`]: keys, guarded transactions, revisions) and
//! the shared watch fan-out ([`watch_cache`]). Nothing above this layer
//! builds etcd keys itself.

pub mod encryption;
pub mod store;
pub mod watch_cache;
