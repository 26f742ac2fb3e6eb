//! Rollback support. On Kubernetes (apps/v1) rollback is client-side:
//! `kubectl rollout undo` finds the Deployment's ReplicaSet with the wanted
//! revision (default: the one before the current), copies its template
//! (minus `pod-template-hash`) into the Deployment, and the controller then
//! treats that ReplicaSet as the new one and gives it the next revision
//! (remembering the old number in `revision-history`). This module holds that
//! client-side choice as a pure function so Sluice's own CLI can do the same.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::{revision, POD_TEMPLATE_HASH};
use crate::pods::controller_of;

/// Why no rollback target exists.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RollbackError {
    /// There is only one revision.
    #[error("no rollout history found")]
    NoHistory,
    /// The asked-for revision is not kept.
    #[error("unable to find specified revision {0} in history")]
    RevisionNotFound(i64),
}

/// The template to roll back to: the ReplicaSet with `to_revision`, or with
/// the highest revision below the current one when `to_revision` is 0.
/// `replicasets` may contain others' ReplicaSets; only those controlled by
/// `deployment_uid` count.
pub fn rollback_template(
    replicasets: &[ReplicaSet],
    deployment_uid: &str,
    to_revision: i64,
) -> Result<PodTemplateSpec, RollbackError> {
    let mut owned: Vec<&ReplicaSet> = replicasets
        .iter()
        .filter(|rs| controller_of(*rs).is_some_and(|r| r.uid == deployment_uid))
        .collect();
    owned.sort_by_key(|rs| revision(rs));
    let target = if to_revision == 0 {
        if owned.len() < 2 {
            return Err(RollbackError::NoHistory);
        }
        owned[owned.len() - 2]
    } else {
        owned
            .iter()
            .copied()
            .find(|rs| revision(rs) == to_revision)
            .ok_or(RollbackError::RevisionNotFound(to_revision))?
    };
    let mut template = Some(&target.spec).and_then(|s| s.template.clone()).unwrap_or_default();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use std::collections::BTreeMap;

    fn rs(rev: i64, image: &str) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([(super::super::REVISION.to_string(), rev.to_string())])),
                owner_references: Some(vec![OwnerReference {
                    uid: "d1".into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([
                            ("app".to_string(), "web".to_string()),
                            (POD_TEMPLATE_HASH.to_string(), format!("h{rev}")),
                        ])),
                        annotations: Some(BTreeMap::from([("image".to_string(), image.to_string())])),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            },
            status: None,
        }
    }

    #[test]
    fn undo_picks_the_previous_revision_without_its_hash_label() {
        let all = [rs(1, "v1"), rs(3, "v3"), rs(2, "v2")];
        let t = rollback_template(&all, "d1", 0).unwrap();
        let meta = t.metadata.unwrap();
        assert_eq!(meta.annotations.unwrap()["image"], "v2");
        assert!(!meta.labels.unwrap().contains_key(POD_TEMPLATE_HASH));
        assert_eq!(
            rollback_template(&all, "d1", 1)
                .unwrap()
                .metadata
                .unwrap()
                .annotations
                .unwrap()["image"],
            "v1"
        );
        assert_eq!(
            rollback_template(&all, "d1", 7),
            Err(RollbackError::RevisionNotFound(7))
        );
        assert_eq!(rollback_template(&all[..1], "d1", 0), Err(RollbackError::NoHistory));
    }
}
