//! ReplicationController controller: the ReplicaSet controller's logic
//! ([`crate::replicaset`]) on core/v1 ReplicationControllers, as Kubernetes
//! runs its ReplicaSet controller on them. Only how an RC reads is here: its
//! `spec.selector` map is a label selector of `matchLabels` alone.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::replicaset::{conditions_json, run_for, ReplicaStatus, Replicated};
use crate::Context;

impl Replicated for ReplicationController {
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn label_selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: self.spec.as_ref().and_then(|s| s.selector.clone()),
            match_expressions: None,
        }
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn current_status(&self) -> ReplicaStatus {
        let s = self.status.clone().unwrap_or_default();
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled: s.fully_labeled_replicas.unwrap_or(0),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: conditions_json(&s.conditions),
        }
    }
}

/// Subscribes the ReplicationController controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let informer = &ctx.informers.replicationcontrollers;
    run_for(ctx.clone(), "replicationcontroller", informer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ReplicationControllerSpec;
    use std::collections::BTreeMap;

    #[test]
    fn the_map_selector_is_match_labels_and_pods_are_owned_by_the_rc() {
        let rc = ReplicationController {
            metadata: kube::api::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            spec: Some(ReplicationControllerSpec {
                selector: Some(BTreeMap::from([("app".into(), "web".into())])),
                template: Some(PodTemplateSpec {
                    metadata: Some(kube::api::ObjectMeta {
                        labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        };
        assert_eq!(rc.replicas(), 1, "an unset count is Kubernetes' default");
        let sel = crate::pods::selector(Some(&rc.label_selector()), "default/web").unwrap();
        assert!(crate::pods::selects(
            &sel,
            &BTreeMap::from([("app".into(), "web".into())])
        ));
        assert!(!crate::pods::selects(
            &sel,
            &BTreeMap::from([("app".into(), "db".into())])
        ));
        let pod = crate::replicaset::pod_from_template(&rc);
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str()),
            ("v1", "ReplicationController")
        );
        assert_eq!(owner.uid, "u-1");
        assert!(pod.metadata.name.unwrap().starts_with("web-"));
        assert_eq!(pod.metadata.labels.unwrap()["app"], "web");
    }
}
