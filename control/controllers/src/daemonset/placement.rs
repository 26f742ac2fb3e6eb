//! Which nodes run a DaemonSet's pod, and the pod each one gets (pure).
//!
//! Kubernetes' `NodeShouldRunDaemonPod`: the pod as it would be created for
//! the node (the template plus the tolerations every daemon pod gets) must
//! match the node's name, `nodeSelector` and required node affinity, and
//! tolerate its NoSchedule/NoExecute taints; a pod already there keeps
//! running while it tolerates the NoExecute ones. The predicates are the
//! scheduler's own, so both agree on what fits.

use crate::cached_pod::CachedPod;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use sluice_kube::tolerations::first_untolerated;
use sluice_scheduler::framework::plugins::node_affinity::required_matches;

use crate::controller_revision::CONTROLLER_REVISION_HASH;
use crate::pods::{controller_ref, random_suffix};

/// The taints every daemon pod tolerates (Kubernetes'
/// `AddOrUpdateDaemonPodTolerations`): key and effect.
const DAEMON_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// Tolerated as well by daemon pods on the host network.
const NETWORK_UNAVAILABLE: (&str, &str) = ("node.kubernetes.io/network-unavailable", "NoSchedule");

/// Adds the tolerations Kubernetes gives every daemon pod (those missing).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let wanted = DAEMON_TOLERATIONS
        .iter()
        .chain(host_network.then_some(&NETWORK_UNAVAILABLE));
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let present = list.iter().any(|t| {
            t.key.as_deref() == Some(key)
                && t.effect.as_deref() == Some(effect)
                && t.operator.as_deref() == Some("Exists")
        });
        if !present {
            list.push(Toleration {
                key: Some((*key).into()),
                operator: Some("Exists".into()),
                effect: Some((*effect).into()),
                ..Default::default()
            });
        }
    }
}

/// Pins the pod to `node` the way Kubernetes does: its required node
/// affinity becomes the single term `matchFields metadata.name In [node]`
/// (the other terms were checked by [`fit`] already); preferred terms stay.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// The node a daemon pod is meant for: its `nodeName`, else the node its
/// required affinity pins it to.
pub fn target_node(pod: &CachedPod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|r| {
            (r.key == "metadata.name" && r.operator == "In")
                .then(|| r.values.as_ref().filter(|v| v.len() == 1).map(|v| v[0].clone()))
                .flatten()
        })
    })
}

/// Whether a node should run the daemon pod, and whether a pod already on
/// it may keep running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// A pod should be created or kept here.
    pub should_run: bool,
    /// A pod already here may stay (only NoExecute taints evict it).
    pub should_continue_running: bool,
}

/// Kubernetes' `NodeShouldRunDaemonPod` for `template` on `node`.
pub fn fit(template: &PodTemplateSpec, node: &Node) -> Fit {
    const NO: Fit = Fit {
        should_run: false,
        should_continue_running: false,
    };
    let mut spec = template.spec.clone().unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    let name = node.name_any();
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != name) {
        return NO;
    }
    if !required_matches(&spec, node.metadata.labels.as_ref(), &name) {
        return NO;
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    if first_untolerated(&taints, &tolerations).is_none() {
        return Fit {
            should_run: true,
            should_continue_running: true,
        };
    }
    let no_execute: Vec<_> = taints.into_iter().filter(|t| t.effect == "NoExecute").collect();
    Fit {
        should_run: false,
        should_continue_running: first_untolerated(&no_execute, &tolerations).is_none(),
    }
}

/// A new daemon pod for `node`: the template with the revision's hash
/// label, the daemon tolerations and the node pin, owned by `ds`.
pub fn pod_for_node(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds.spec.template.clone();
    let meta = template.metadata.unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels.unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH.into(), hash.into());
    let mut spec = template.spec.unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    pin_to_node(&mut spec, node);
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{}-{}", ds.name_any(), random_suffix())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use serde_json::json;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: (*k).into(),
                            effect: (*e).into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn template(spec: serde_json::Value) -> PodTemplateSpec {
        serde_json::from_value(json!({"spec": spec})).expect("template")
    }

    const RUN: Fit = Fit {
        should_run: true,
        should_continue_running: true,
    };
    const STAY: Fit = Fit {
        should_run: false,
        should_continue_running: true,
    };
    const NO: Fit = Fit {
        should_run: false,
        should_continue_running: false,
    };

    #[test]
    fn node_selector_and_affinity_choose_nodes() {
        let t = template(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert_eq!(fit(&t, &node("a", &[("disk", "ssd")], &[])), RUN);
        assert_eq!(fit(&t, &node("b", &[("disk", "hdd")], &[])), NO);
        let t = template(
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}),
        );
        assert_eq!(fit(&t, &node("a", &[("zone", "z1")], &[])), RUN);
        assert_eq!(fit(&t, &node("a", &[("zone", "z2")], &[])), NO);
        let t = template(json!({"containers": [], "nodeName": "a"}));
        assert_eq!(fit(&t, &node("b", &[], &[])), NO);
    }

    #[test]
    fn taints_need_tolerations_except_the_automatic_ones() {
        let plain = template(json!({"containers": []}));
        for automatic in [
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ] {
            assert_eq!(fit(&plain, &node("a", &[], &[automatic])), RUN, "{automatic:?}");
        }
        let unavailable = ("node.kubernetes.io/network-unavailable", "NoSchedule");
        assert_eq!(fit(&plain, &node("a", &[], &[unavailable])), STAY);
        let host = template(json!({"containers": [], "hostNetwork": true}));
        assert_eq!(fit(&host, &node("a", &[], &[unavailable])), RUN);
        assert_eq!(fit(&plain, &node("a", &[], &[("dedicated", "NoSchedule")])), STAY);
        assert_eq!(fit(&plain, &node("a", &[], &[("dedicated", "NoExecute")])), NO);
        let tolerant = template(json!({"containers": [], "tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert_eq!(fit(&tolerant, &node("a", &[], &[("dedicated", "NoExecute")])), RUN);
    }

    #[test]
    fn pods_are_pinned_by_match_fields_and_found_again() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "ns", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}],
                       "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                           {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}}},
        }))
        .expect("ds");
        let pod = pod_for_node(&ds, "node-3", "h1");
        assert_eq!(target_node(&CachedPod::of(&pod)).as_deref(), Some("node-3"));
        assert!(pod.name_any().starts_with("agent-"));
        assert_eq!(pod.labels()[CONTROLLER_REVISION_HASH], "h1");
        let v = serde_json::to_value(&pod).expect("json");
        assert_eq!(
            v["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-3"]}]}]})
        );
        assert_eq!(v["spec"]["tolerations"].as_array().map(Vec::len), Some(6));
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
        let mut bound = pod.clone();
        bound.spec.as_mut().expect("spec").node_name = Some("node-4".into());
        assert_eq!(target_node(&CachedPod::of(&bound)).as_deref(), Some("node-4"));
    }
}
