//! Storage: etcd ([`store`]: keys, guarded transactions, revisions;
//! [`etcd_config`]: the connection's TLS flags) and
//! the shared watch fan-out ([`watch_cache`]). Nothing above this layer
//! builds etcd keys itself.

pub mod encryption;
pub mod etcd_config;
pub mod store;
pub mod watch_cache;
