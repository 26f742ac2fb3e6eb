//! Sluice's controller-manager: the control loops that turn declared objects
//! (Deployments, ReplicaSets, ReplicationControllers, Services, Namespaces, Nodes) into the objects and
//! state they imply.
//!
//! Every controller reads the cluster only through the shared [`informer`]
//! caches (watches on the API server, never etcd), is woken through a work
//! queue keyed by object (kube-runtime's `Controller`, which never reconciles
//! the same key twice at once), reconciles idempotently and records Events.
//! Controllers are registered in one descriptor list, [`CONTROLLERS`]; the
//! binary runs them only while it holds the leader Lease (`sluice_kube::leader_election`).

pub mod attach_detach;
pub mod cached_pod;
pub mod clusterrole_aggregation;
pub mod config;
pub mod context;
pub mod controller_revision;
pub mod cronjob;
pub mod csr_approving;
pub mod csr_signing;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod expectations;
pub mod garbage_collector;
pub mod horizontal_pod_autoscaler;
pub mod informer;
pub mod job;
pub mod local_path_provisioner;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod persistentvolume;
pub mod pod_gc;
pub mod pods;
pub mod replicaset;
pub mod replicationcontroller;
pub mod resourcequota;
pub mod root_ca_publisher;
pub mod runner;
pub mod service_lb;
pub mod serviceaccount;
pub mod statefulset;
pub mod status;
pub mod ttl_after_finished;
pub mod workqueue_metrics;

use std::sync::Arc;

use futures::future::BoxFuture;

pub use config::ControllerManagerConfig;
pub use context::Context;

/// Errors a reconcile can end with; the work queue retries the key with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// An object in the cache could not be interpreted (bad selector, bad quantity ...).
    #[error("invalid object {object}: {reason}")]
    Invalid {
        /// `namespace/name` of the object.
        object: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result of one reconcile.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One controller as the manager knows it: a name (for `--controllers` and
/// logs) and a function that subscribes it to the informers and returns its
/// run loop.
///
/// `init` must subscribe synchronously before returning, because the
/// informers start only after every controller has been initialised: that way
/// no controller misses the initial list.
pub struct ControllerDescriptor {
    /// Name as used by `--controllers` and in logs, e.g. `replicaset`.
    pub name: &'static str,
    /// Subscribes the controller and returns its (never-ending) run loop.
    pub init: fn(Arc<Context>) -> BoxFuture<'static, ()>,
}

/// Every controller the manager can run, in start order.
pub const CONTROLLERS: &[ControllerDescriptor] = &[
    ControllerDescriptor {
        name: "replicaset",
        init: replicaset::init,
    },
    ControllerDescriptor {
        name: "replicationcontroller",
        init: replicationcontroller::init,
    },
    ControllerDescriptor {
        name: "deployment",
        init: deployment::init,
    },
    ControllerDescriptor {
        name: "job",
        init: job::init,
    },
    ControllerDescriptor {
        name: "cronjob",
        init: cronjob::init,
    },
    ControllerDescriptor {
        name: "ttl-after-finished",
        init: ttl_after_finished::init,
    },
    ControllerDescriptor {
        name: "daemonset",
        init: daemonset::init,
    },
    ControllerDescriptor {
        name: "statefulset",
        init: statefulset::init,
    },
    ControllerDescriptor {
        name: "disruption",
        init: disruption::init,
    },
    ControllerDescriptor {
        name: "endpointslice",
        init: endpointslice::init,
    },
    ControllerDescriptor {
        name: "endpoints",
        init: endpoints::init,
    },
    ControllerDescriptor {
        name: "namespace",
        init: namespace::init,
    },
    ControllerDescriptor {
        name: "garbage-collector",
        init: garbage_collector::init,
    },
    ControllerDescriptor {
        name: "node-ipam",
        init: node_ipam::init,
    },
    ControllerDescriptor {
        name: "node-lifecycle",
        init: node_lifecycle::init,
    },
    ControllerDescriptor {
        name: "pod-gc",
        init: pod_gc::init,
    },
    ControllerDescriptor {
        name: "service-lb",
        init: service_lb::init,
    },
    ControllerDescriptor {
        name: "clusterrole-aggregation",
        init: clusterrole_aggregation::init,
    },
    ControllerDescriptor {
        name: "local-path-provisioner",
        init: local_path_provisioner::init,
    },
    ControllerDescriptor {
        name: "persistentvolume-binder",
        init: persistentvolume::init,
    },
    ControllerDescriptor {
        name: "attach-detach",
        init: attach_detach::init,
    },
    ControllerDescriptor {
        name: "resourcequota",
        init: resourcequota::init,
    },
    ControllerDescriptor {
        name: serviceaccount::NAME,
        init: serviceaccount::init,
    },
    ControllerDescriptor {
        name: root_ca_publisher::NAME,
        init: root_ca_publisher::init,
    },
    ControllerDescriptor {
        name: csr_signing::NAME,
        init: csr_signing::init,
    },
    ControllerDescriptor {
        name: csr_approving::NAME,
        init: csr_approving::init,
    },
    ControllerDescriptor {
        name: horizontal_pod_autoscaler::NAME,
        init: horizontal_pod_autoscaler::init,
    },
];
