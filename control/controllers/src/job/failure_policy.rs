//! `spec.podFailurePolicy`: which rule a failed pod matches (Kubernetes'
//! `matchPodFailurePolicy`). Rules are tried in order; the first whose
//! exit codes (of a container that terminated with a non-zero code, init
//! containers included, optionally only `containerName`) or pod conditions
//! match decides the action.

use crate::cached_pod::CachedPod;
use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyRule};
use kube::ResourceExt;

/// What a matched rule says to do with a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fail the whole Job, with the message for its condition.
    FailJob(String),
    /// Fail the pod's index (backoffLimitPerIndex), with the message.
    FailIndex(String),
    /// Do not count the failure.
    Ignore,
    /// Count it towards backoffLimit (the default without a match).
    Count,
}

/// The action of the first rule `pod` matches, if any.
pub fn matching_action(policy: &PodFailurePolicy, pod: &CachedPod) -> Option<Action> {
    for (index, rule) in policy.rules.iter().enumerate() {
        if let Some(what) = matches(rule, pod) {
            let message = format!("{what} matching {} rule at index {index}", rule.action);
            return Some(match rule.action.as_str() {
                "FailJob" => Action::FailJob(message),
                "FailIndex" => Action::FailIndex(message),
                "Ignore" => Action::Ignore,
                _ => Action::Count,
            });
        }
    }
    None
}

/// Why `rule` matches `pod` (the start of the condition message), if it does.
fn matches(rule: &PodFailurePolicyRule, pod: &CachedPod) -> Option<String> {
    let pod_name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    if let Some(codes) = &rule.on_exit_codes {
        let status = pod.status.as_ref()?;
        let all = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for cs in all {
            if codes.container_name.as_ref().is_some_and(|n| n != &cs.name) {
                continue;
            }
            let Some(code) = cs
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code)
            else {
                continue;
            };
            if code == 0 {
                continue;
            }
            let listed = codes.values.contains(&code);
            let hit = match codes.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if hit {
                return Some(format!(
                    "Container {} for pod {pod_name} failed with exit code {code}",
                    cs.name
                ));
            }
        }
        return None;
    }
    if let Some(patterns) = &rule.on_pod_conditions {
        let conditions = pod.status.as_ref()?.conditions.as_ref()?;
        for p in patterns {
            let want = p.status.as_deref().unwrap_or("True");
            if conditions.iter().any(|c| c.type_ == p.type_ && c.status == want) {
                return Some(format!("Pod {pod_name} has condition {}", p.type_));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern};
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn failed_pod(codes: &[(&str, i32)], conditions: &[&str]) -> CachedPod {
        CachedPod::of(&whole_failed_pod(codes, conditions))
    }

    fn whole_failed_pod(codes: &[(&str, i32)], conditions: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(
                    codes
                        .iter()
                        .map(|(n, c)| ContainerStatus {
                            name: (*n).into(),
                            state: Some(ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: *c,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|t| PodCondition {
                            type_: (*t).into(),
                            status: "True".into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    fn exit_rule(action: &str, op: &str, values: &[i32], container: Option<&str>) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: container.map(Into::into),
                operator: op.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let policy = PodFailurePolicy {
            rules: vec![
                PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_exit_codes: None,
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: Some("True".into()),
                    }]),
                },
                exit_rule("FailJob", "In", &[42], None),
                exit_rule("Count", "NotIn", &[42], None),
            ],
        };
        assert_eq!(
            matching_action(&policy, &failed_pod(&[("main", 42)], &[])),
            Some(Action::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into()
            ))
        );
        assert_eq!(
            matching_action(&policy, &failed_pod(&[("main", 42)], &["DisruptionTarget"])),
            Some(Action::Ignore)
        );
        assert_eq!(
            matching_action(&policy, &failed_pod(&[("main", 1)], &[])),
            Some(Action::Count)
        );
        // Exit code 0 never matches, even NotIn.
        assert_eq!(matching_action(&policy, &failed_pod(&[("main", 0)], &[])), None);
    }

    #[test]
    fn container_name_restricts_the_rule() {
        let policy = PodFailurePolicy {
            rules: vec![exit_rule("FailIndex", "In", &[3], Some("side"))],
        };
        assert_eq!(matching_action(&policy, &failed_pod(&[("main", 3)], &[])), None);
        assert!(matches!(
            matching_action(&policy, &failed_pod(&[("main", 1), ("side", 3)], &[])),
            Some(Action::FailIndex(_))
        ));
    }
}
