//! A pod's lifecycle as controllers and the scheduler read it (Kubernetes'
//! `podutil`): active or terminated, its conditions, readiness and
//! availability under `minReadySeconds`.

use k8s_openapi::api::core::v1::{Pod, PodCondition, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// What the rules here (and [`crate::storage::claim_names`]) read of a
/// pod: a whole [`Pod`], or a cache's compact copy of one (the
/// controller-manager's), which then follows the same rules.
pub trait PodParts {
    /// Its metadata.
    fn metadata(&self) -> &ObjectMeta;
    /// Its `status.phase`, if it has one.
    fn phase(&self) -> Option<&str>;
    /// Its `status.conditions`.
    fn conditions(&self) -> &[PodCondition];
    /// Its volumes.
    fn volumes(&self) -> &[Volume];
}

/// Implements [`PodParts`] for a pod type shaped as a `Pod` where the
/// rules read it: `metadata`, `status: Option<_>` with `phase` and
/// `conditions` (of `PodCondition`s), `spec: Option<_>` with `volumes`. A
/// `Pod`, and a cache's compact copy of one (the controller-manager's).
#[macro_export]
macro_rules! pod_parts {
    ($pod:ty) => {
        impl $crate::pods::PodParts for $pod {
            fn metadata(&self) -> &::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn phase(&self) -> Option<&str> {
                self.status.as_ref()?.phase.as_deref()
            }
            fn conditions(&self) -> &[::k8s_openapi::api::core::v1::PodCondition] {
                self.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_deref())
                    .unwrap_or_default()
            }
            fn volumes(&self) -> &[::k8s_openapi::api::core::v1::Volume] {
                self.spec
                    .as_ref()
                    .and_then(|s| s.volumes.as_deref())
                    .unwrap_or_default()
            }
        }
    };
}

crate::pod_parts!(Pod);

impl<T: PodParts + ?Sized> PodParts for &T {
    fn metadata(&self) -> &ObjectMeta {
        (**self).metadata()
    }
    fn phase(&self) -> Option<&str> {
        (**self).phase()
    }
    fn conditions(&self) -> &[PodCondition] {
        (**self).conditions()
    }
    fn volumes(&self) -> &[Volume] {
        (**self).volumes()
    }
}

impl<T: PodParts + ?Sized> PodParts for std::sync::Arc<T> {
    fn metadata(&self) -> &ObjectMeta {
        (**self).metadata()
    }
    fn phase(&self) -> Option<&str> {
        (**self).phase()
    }
    fn conditions(&self) -> &[PodCondition] {
        (**self).conditions()
    }
    fn volumes(&self) -> &[Volume] {
        (**self).volumes()
    }
}

/// Makes a cache's compact copy of a pod (a struct with a `metadata:
/// ObjectMeta` field, such as the controller-manager's cached pod or the
/// scheduler's placed pod) a core/v1 Pod to kube: what the kube runtime's
/// stores key it by, and what events and object references name it as.
/// The crate using it depends on `kube` and `k8s-openapi`, as every Sluice
/// component does.
#[macro_export]
macro_rules! pod_resource {
    ($compact:ty) => {
        impl ::kube::Resource for $compact {
            type DynamicType = ();
            type Scope = ::k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> ::std::borrow::Cow<'_, str> {
                "Pod".into()
            }
            fn group(_: &()) -> ::std::borrow::Cow<'_, str> {
                "".into()
            }
            fn version(_: &()) -> ::std::borrow::Cow<'_, str> {
                "v1".into()
            }
            fn plural(_: &()) -> ::std::borrow::Cow<'_, str> {
                "pods".into()
            }
            fn meta(&self) -> &::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// Whether the pod still counts towards its controller's replicas: not
/// terminated and not being deleted.
pub fn is_active(pod: &impl PodParts) -> bool {
    !is_terminated(pod) && pod.metadata().deletion_timestamp.is_none()
}

/// Whether the pod has terminated (Succeeded or Failed).
pub fn is_terminated(pod: &impl PodParts) -> bool {
    matches!(pod.phase(), Some("Succeeded") | Some("Failed"))
}

/// The pod's condition of type `type_`, if it has one.
pub fn condition<'a>(pod: &'a impl PodParts, type_: &str) -> Option<&'a PodCondition> {
    pod.conditions().iter().find(|c| c.type_ == type_)
}

/// The pod's Ready condition, if it is True: when it last changed.
pub fn ready_since(pod: &impl PodParts) -> Option<Option<Timestamp>> {
    let cond = condition(pod, "Ready").filter(|c| c.status == "True")?;
    Some(cond.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod is Ready.
pub fn is_ready(pod: &impl PodParts) -> bool {
    ready_since(pod).is_some()
}

/// Availability of a pod under `minReadySeconds`: `Ok(())` when available,
/// `Err(Some(wait))` when ready but not yet for long enough, `Err(None)` when not ready.
pub fn availability(pod: &impl PodParts, min_ready_seconds: i32, now: Timestamp) -> Result<(), Option<Duration>> {
    let Some(since) = ready_since(pod) else {
        return Err(None);
    };
    if min_ready_seconds <= 0 {
        return Ok(());
    }
    let Some(since) = since else { return Ok(()) };
    let ready_for = now.as_millisecond() - since.as_millisecond();
    let needed = i64::from(min_ready_seconds) * 1000;
    if ready_for >= needed {
        Ok(())
    } else {
        Err(Some(Duration::from_millis((needed - ready_for) as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// A fixed instant (`Timestamp::now` needs jiff's `std`, which only the
    /// `client` feature brings in).
    fn fixed_now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("a valid instant")
    }

    fn pod(phase: &str, ready_since: Option<Timestamp>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_since.map(|since| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(since)),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now = fixed_now();
        let pod = pod("Running", Some(now - k8s_openapi::jiff::SignedDuration::from_secs(3)));
        assert_eq!(availability(&pod, 0, now), Ok(()));
        assert_eq!(availability(&pod, 2, now), Ok(()));
        match availability(&pod, 10, now) {
            Err(Some(wait)) => assert!(wait.as_secs() >= 6 && wait.as_secs() <= 7, "{wait:?}"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(availability(&Pod::default(), 0, now), Err(None));
    }

    #[test]
    fn terminated_and_deleted_pods_are_not_active() {
        assert!(is_active(&pod("Running", None)));
        assert!(!is_ready(&pod("Running", None)));
        assert!(is_ready(&pod("Running", Some(fixed_now()))));
        for phase in ["Succeeded", "Failed"] {
            assert!(is_terminated(&pod(phase, None)) && !is_active(&pod(phase, None)));
        }
        let mut deleting = pod("Running", None);
        deleting.metadata.deletion_timestamp = Some(Time(fixed_now()));
        assert!(!is_active(&deleting) && !is_terminated(&deleting));
    }
}
