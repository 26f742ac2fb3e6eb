//! Kubernetes helpers shared by every Sluice binary that needs them: one
//! implementation of each concept, so the scheduler, the controllers and the
//! node agree (issue 12: quantities were parsed in three places and
//! disagreed).
//!
//! - [`quantity`]: `resource.Quantity` strings as integers, as Go's
//!   `MilliValue`/`Value` compute them;
//! - [`pods`]: a pod's lifecycle (active, terminated, conditions, readiness,
//!   availability under `minReadySeconds`);
//! - [`qos`]: a pod's QoS class from its containers' requests and limits;
//! - [`tolerations`]: whether a pod's tolerations tolerate a node's taints;
//! - [`node_selector`]: whether a node satisfies node selector terms (pod
//!   and volume node affinity);
//! - [`local_path`]: the names `local-path` volumes are built on (class,
//!   provisioner, annotations, volume and directory names);
//! - [`strconv`]: Go's `strconv.ParseBool`, as query parameters are read.
//!
//! With the `client` feature, for the binaries that talk to the API server:
//!
//! - `client`: an API client from `--kubeconfig` or the environment;
//! - `events`: core/v1 Events, written in the background, repeats counted;
//! - `leader_election`: Lease-based leader election and its
//!   `--leader-elect*` flag group;
//! - `logging`: the process's tracing subscriber;
//! - `node_lease`: a node's heartbeat Lease;
//! - `owners`: owner references (the controller of an object, a controller's reference);
//! - `storage`: which PersistentVolume a claim binds to, and the claims a
//!   pod uses (label selectors through kube's `Selector`).
//! - `resource_quota`: what objects use under a ResourceQuota, scopes and
//!   quantities printed as Kubernetes does (admission and controller alike).
//!
//! With the `serving` feature (the scheduler and the controller-manager):
//! `secure_serving`, a component's secure port (`/metrics`, `/healthz`,
//! `/livez`, `/readyz`) with delegated authentication (client certificates,
//! TokenReview) and authorization (SubjectAccessReview).
//!
//! Dependency rule: this crate depends on no other Sluice crate, and its
//! default build does no I/O, so any crate may use it.

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod events;
#[cfg(feature = "client")]
pub mod leader_election;
pub mod local_path;
#[cfg(feature = "client")]
pub mod logging;
#[cfg(feature = "client")]
pub mod node_lease;
pub mod node_selector;
#[cfg(feature = "client")]
pub mod owners;
pub mod pods;
pub mod qos;
pub mod quantity;
#[cfg(feature = "client")]
pub mod resource_quota;
#[cfg(feature = "serving")]
pub mod secure_serving;
#[cfg(feature = "client")]
pub mod storage;
pub mod strconv;
pub mod tolerations;
