//! The scheduler plugins, one per file, and [`registry`], which builds the default set.
//!
//! Each plugin file holds its `NAME` constant (as in kube-scheduler's configuration),
//! pure predicate/score functions that unit tests call directly, and the thin
//! [`FilterPlugin`](super::FilterPlugin)/[`ScorePlugin`](super::ScorePlugin) impls.

pub mod balanced_allocation;
pub mod default_preemption;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

use super::{Framework, WeightedScore};

/// The default plugin set with kube-scheduler's default order and score weights:
/// filters NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
/// NodeResourcesFit, VolumeBinding, PodTopologySpread, InterPodAffinity; scores TaintToleration ×3,
/// NodeAffinity ×2, NodeResourcesFit (LeastAllocated) ×1, PodTopologySpread ×2,
/// InterPodAffinity ×2, NodeResourcesBalancedAllocation ×1, ImageLocality ×1. DefaultPreemption
/// ([`default_preemption`]) runs when no node fits; VolumeBinding's PreBind
/// ([`volume_binding::pre_bind`]) runs before each binding.
pub fn registry() -> Framework {
    Framework {
        filters: vec![
            Box::new(node_unschedulable::NodeUnschedulable),
            Box::new(node_name::NodeName),
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(node_ports::NodePorts),
            Box::new(node_resources_fit::NodeResourcesFit),
            Box::new(volume_binding::VolumeBinding),
            Box::new(pod_topology_spread::PodTopologySpread::default()),
            Box::new(inter_pod_affinity::InterPodAffinity),
        ],
        scores: vec![
            WeightedScore {
                plugin: Box::new(taint_toleration::TaintToleration),
                weight: 3,
            },
            WeightedScore {
                plugin: Box::new(node_affinity::NodeAffinity),
                weight: 2,
            },
            WeightedScore {
                plugin: Box::new(node_resources_fit::NodeResourcesFit),
                weight: 1,
            },
            WeightedScore {
                plugin: Box::new(pod_topology_spread::PodTopologySpread::default()),
                weight: 2,
            },
            WeightedScore {
                plugin: Box::new(inter_pod_affinity::InterPodAffinity),
                weight: 2,
            },
            WeightedScore {
                plugin: Box::new(balanced_allocation::BalancedAllocation),
                weight: 1,
            },
            WeightedScore {
                plugin: Box::new(image_locality::ImageLocality),
                weight: 1,
            },
        ],
    }
}
