//! Sluice's scheduler: binds pods that have no node to nodes that fit.
//!
//! Data flow: [`informers`] (list+watch nodes and pods via the API server) feed the
//! [`cache`] (nodes with bound and assumed usage; each placed pod as a compact
//! [`placed_pod`], found by label through [`label_index`]) and the [`queue`] (pending pods with
//! back-off); [`scheduler`] pops a pod, runs the [`framework`] plugins through
//! [`algorithm`], assumes the pod on the chosen node and binds it with [`binder`];
//! failures are reported by [`events`]. `sluice_kube::leader_election` makes sure
//! only one scheduler acts. Quantities are parsed in [`resources`]; [`metrics`]
//! holds kube-scheduler's Prometheus series.

pub mod algorithm;
pub mod binder;
pub mod cache;
pub mod events;
pub mod framework;
pub mod informers;
pub mod label_index;
pub mod metrics;
pub mod placed_pod;
pub mod queue;
pub mod resources;
pub mod scheduler;
