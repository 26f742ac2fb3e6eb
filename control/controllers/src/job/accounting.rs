//! Pod accounting of a Job, pure: which pods are active, terminating,
//! newly finished, and how `status.uncountedTerminatedPods` moves finished
//! pods into `succeeded`/`failed` exactly once.
//!
//! Kubernetes' tracking with finalizers: every pod carries
//! `batch.kubernetes.io/job-tracking`. A finished pod still holding it is
//! first recorded by uid in `uncountedTerminatedPods` (one status write),
//! then its finalizer is removed, and once the cache shows it without the
//! finalizer (or gone) its uid moves into the counters. A crash between
//! any two steps neither loses nor double-counts a pod.

use crate::cached_pod::CachedPod;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::failure_policy::{self, Action};

/// The finalizer that keeps a Job's pods until the Job counted them.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label with an Indexed Job pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Annotation with how many pods of an index failed before this one.
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";

/// How a pod ended, as the Job sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Phase Succeeded.
    Succeeded,
    /// Phase Failed, or deleted before succeeding (unless the Job replaces
    /// only failed pods, then it must reach Failed).
    Failed,
}

/// The pod's completion index (annotation, else label).
pub fn completion_index(pod: &CachedPod) -> Option<i64> {
    pod.annotations()
        .get(COMPLETION_INDEX)
        .or_else(|| pod.labels().get(COMPLETION_INDEX))
        .and_then(|v| v.parse().ok())
        .filter(|i: &i64| *i >= 0)
}

/// Whether the pod holds the tracking finalizer.
pub fn has_tracking_finalizer(pod: &CachedPod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// How the pod ended, if it did.
pub fn outcome(pod: &CachedPod, only_replace_failed: bool) -> Option<Outcome> {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => Some(Outcome::Succeeded),
        Some("Failed") => Some(Outcome::Failed),
        _ if !only_replace_failed && pod.metadata.deletion_timestamp.is_some() => Some(Outcome::Failed),
        _ => None,
    }
}

/// When the pod's containers finished (latest `finishedAt`).
fn finished_at(pod: &CachedPod) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max()
}

/// Parses `completedIndexes`/`failedIndexes` (`1,3-5`), keeping indexes
/// below `completions`.
pub fn parse_indexes(s: &str, completions: i64) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
            out.extend((a.max(0)..=b.min(completions - 1)).filter(|i| *i < completions));
        }
    }
    out
}

/// Formats indexes as Kubernetes does: ascending, runs of 2+ as `a-b`.
pub fn format_indexes(set: &BTreeSet<i64>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// What a reconcile learns from the Job's pods.
#[derive(Debug, Default)]
pub struct Accounting {
    /// Pods running or pending (not finished, not deleting).
    pub active: Vec<Arc<CachedPod>>,
    /// Pods being deleted that have not reached a terminal phase.
    pub terminating: i32,
    /// Active pods that are Ready.
    pub ready: i32,
    /// Counted succeeded pods plus the uncounted ones.
    pub succeeded: i32,
    /// Counted failed pods plus the uncounted ones.
    pub failed: i32,
    /// The new `status.succeeded` (counted only).
    pub counted_succeeded: i32,
    /// The new `status.failed` (counted only).
    pub counted_failed: i32,
    /// The new `uncountedTerminatedPods.succeeded`.
    pub uncounted_succeeded: Vec<String>,
    /// The new `uncountedTerminatedPods.failed`.
    pub uncounted_failed: Vec<String>,
    /// Pods whose finalizer may go once the status above is written.
    pub release: Vec<Arc<CachedPod>>,
    /// Completed indexes (Indexed Jobs).
    pub completed: BTreeSet<i64>,
    /// Failed indexes (backoffLimitPerIndex).
    pub failed_indexes: BTreeSet<i64>,
    /// A FailJob rule matched: the message.
    pub fail_job: Option<String>,
    /// Pods newly counted as failed in this pass.
    pub new_failures: u32,
    /// Pods newly counted as succeeded in this pass.
    pub new_successes: u32,
    /// When the latest newly failed pod finished.
    pub last_failure: Option<Timestamp>,
    /// Failures per index so far (for the next pod's annotation).
    pub index_failures: BTreeMap<i64, i32>,
}

/// Accounts the pods `owned` by `job` against its status.
pub fn account(job: &Job, owned: &[Arc<CachedPod>], now: Timestamp) -> Accounting {
    let spec = job.spec.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = i64::from(spec.completions.unwrap_or(0));
    let per_index = spec.backoff_limit_per_index;
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut a = Accounting {
        counted_succeeded: status.succeeded.unwrap_or(0),
        counted_failed: status.failed.unwrap_or(0),
        ..Default::default()
    };
    if indexed {
        a.completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""), completions);
        a.failed_indexes = parse_indexes(status.failed_indexes.as_deref().unwrap_or(""), completions);
    }
    let by_uid: BTreeMap<String, &Arc<CachedPod>> = owned.iter().map(|p| (p.uid().unwrap_or_default(), p)).collect();
    // Uncounted uids whose pod no longer holds the finalizer move into the counters.
    let settled = |uid: &String| by_uid.get(uid).is_none_or(|p| !has_tracking_finalizer(p));
    for uid in uncounted.succeeded.iter().flatten() {
        if settled(uid) {
            a.counted_succeeded += 1;
        } else {
            a.uncounted_succeeded.push(uid.clone());
        }
    }
    for uid in uncounted.failed.iter().flatten() {
        if settled(uid) {
            a.counted_failed += 1;
        } else {
            a.uncounted_failed.push(uid.clone());
        }
    }
    for pod in owned {
        let uid = pod.uid().unwrap_or_default();
        let index = completion_index(pod);
        let outcome = outcome(pod, only_failed);
        if outcome == Some(Outcome::Failed) {
            if let Some(i) = index {
                let before: i32 = pod
                    .annotations()
                    .get(INDEX_FAILURE_COUNT)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let e = a.index_failures.entry(i).or_insert(0);
                *e = (*e).max(before + 1);
            }
        }
        match outcome {
            None if pod.metadata.deletion_timestamp.is_some() => a.terminating += 1,
            None => {
                if crate::pods::is_ready(pod) {
                    a.ready += 1;
                }
                a.active.push(pod.clone());
            }
            Some(o) => {
                if pod.metadata.deletion_timestamp.is_some() && !crate::pods::is_terminated(pod) {
                    a.terminating += 1;
                }
                if !has_tracking_finalizer(pod) {
                    continue;
                }
                let recorded = a.uncounted_succeeded.contains(&uid) || a.uncounted_failed.contains(&uid);
                if recorded {
                    a.release.push(pod.clone());
                    continue;
                }
                match o {
                    Outcome::Succeeded => {
                        if indexed {
                            match index {
                                Some(i) if i < completions => {
                                    a.completed.insert(i);
                                }
                                _ => {}
                            }
                        }
                        a.uncounted_succeeded.push(uid);
                        a.new_successes += 1;
                    }
                    Outcome::Failed => {
                        let action = spec
                            .pod_failure_policy
                            .as_ref()
                            .and_then(|p| failure_policy::matching_action(p, pod))
                            .unwrap_or(Action::Count);
                        match action {
                            Action::Ignore => {
                                a.release.push(pod.clone());
                                continue;
                            }
                            Action::FailJob(message) => {
                                a.fail_job.get_or_insert(message);
                            }
                            Action::FailIndex(_) => {
                                if let Some(i) = index {
                                    a.failed_indexes.insert(i);
                                }
                            }
                            Action::Count => {}
                        }
                        if let (Some(limit), Some(i)) = (per_index, index) {
                            if a.index_failures.get(&i).copied().unwrap_or(0) > limit {
                                a.failed_indexes.insert(i);
                            }
                        }
                        a.uncounted_failed.push(uid);
                        a.new_failures += 1;
                        let at = finished_at(pod).unwrap_or(now);
                        a.last_failure = Some(a.last_failure.map_or(at, |l| l.max(at)));
                    }
                }
                a.release.push(pod.clone());
            }
        }
    }
    a.completed.retain(|i| !a.failed_indexes.contains(i));
    a.succeeded = a.counted_succeeded + a.uncounted_succeeded.len() as i32;
    a.failed = a.counted_failed + a.uncounted_failed.len() as i32;
    a
}

/// Indexes that need a new pod: not completed, not failed, not held by an
/// active pod (or by a terminating one when `blocked` says so), lowest first.
pub fn pending_indexes(completions: i64, a: &Accounting, held: &BTreeSet<i64>) -> Vec<i64> {
    (0..completions)
        .filter(|i| !a.completed.contains(i) && !a.failed_indexes.contains(i) && !held.contains(i))
        .collect()
}

/// Kubernetes' pod-failure back-off: 10 s doubling per consecutive failure,
/// at most 6 minutes.
pub fn backoff_delay(failures: u32) -> std::time::Duration {
    if failures == 0 {
        return std::time::Duration::ZERO;
    }
    let secs = 10u64.saturating_mul(1u64 << (failures - 1).min(16));
    std::time::Duration::from_secs(secs.min(360))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobSpec, JobStatus, UncountedTerminatedPods};
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(uid: &str, phase: &str, finalizer: bool, index: Option<i64>) -> Arc<CachedPod> {
        Arc::new(CachedPod::of(&whole_pod(uid, phase, finalizer, index)))
    }

    fn whole_pod(uid: &str, phase: &str, finalizer: bool, index: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("p-{uid}")),
                uid: Some(uid.into()),
                finalizers: finalizer.then(|| vec![TRACKING_FINALIZER.to_string()]),
                annotations: index.map(|i| [(COMPLETION_INDEX.to_string(), i.to_string())].into()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    fn job(indexed: bool, status: JobStatus) -> Job {
        Job {
            metadata: ObjectMeta::default(),
            spec: Some(JobSpec {
                completions: Some(5),
                parallelism: Some(2),
                completion_mode: Some(if indexed { "Indexed" } else { "NonIndexed" }.into()),
                ..Default::default()
            }),
            status: Some(status),
        }
    }

    #[test]
    fn finished_pods_are_counted_exactly_once_through_uncounted() {
        let now = Timestamp::now();
        // Pass 1: a succeeded and a failed pod with finalizers, one running.
        let pods = vec![
            pod("s1", "Succeeded", true, None),
            pod("f1", "Failed", true, None),
            pod("r1", "Running", true, None),
        ];
        let a = account(&job(false, JobStatus::default()), &pods, now);
        assert_eq!((a.succeeded, a.failed, a.active.len()), (1, 1, 1));
        assert_eq!((a.counted_succeeded, a.counted_failed), (0, 0));
        assert_eq!(a.uncounted_succeeded, ["s1"]);
        assert_eq!(a.uncounted_failed, ["f1"]);
        assert_eq!(a.release.len(), 2);
        assert_eq!(a.new_failures, 1);
        // Pass 2 on the written status, finalizers not yet removed: nothing new.
        let written = JobStatus {
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                succeeded: Some(vec!["s1".into()]),
                failed: Some(vec!["f1".into()]),
            }),
            ..Default::default()
        };
        let a = account(&job(false, written.clone()), &pods, now);
        assert_eq!((a.succeeded, a.failed, a.new_failures, a.new_successes), (1, 1, 0, 0));
        assert_eq!(a.release.len(), 2);
        // Pass 3: finalizers gone (f1's pod deleted): uids move into the counters.
        let pods = vec![pod("s1", "Succeeded", false, None), pod("r1", "Running", true, None)];
        let a = account(&job(false, written), &pods, now);
        assert_eq!((a.counted_succeeded, a.counted_failed), (1, 1));
        assert!(a.uncounted_succeeded.is_empty() && a.uncounted_failed.is_empty());
        assert_eq!((a.succeeded, a.failed), (1, 1));
    }

    #[test]
    fn indexed_jobs_record_completed_indexes() {
        let now = Timestamp::now();
        let pods = vec![
            pod("a", "Succeeded", true, Some(0)),
            pod("b", "Succeeded", true, Some(3)),
            pod("c", "Running", true, Some(1)),
        ];
        let status = JobStatus {
            completed_indexes: Some("2".into()),
            ..Default::default()
        };
        let a = account(&job(true, status), &pods, now);
        assert_eq!(format_indexes(&a.completed), "0,2-3");
        let held: BTreeSet<i64> = a.active.iter().filter_map(|p| completion_index(p)).collect();
        assert_eq!(pending_indexes(5, &a, &held), [4]);
    }

    #[test]
    fn deleted_pods_count_as_failed_unless_only_failed_pods_are_replaced() {
        let mut p = (*pod("d", "Running", true, None)).clone();
        p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert_eq!(outcome(&p, false), Some(Outcome::Failed));
        assert_eq!(outcome(&p, true), None);
    }

    #[test]
    fn index_lists_and_backoff() {
        let set = parse_indexes("0,2-4,9", 5);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 2, 3, 4]);
        assert_eq!(format_indexes(&set), "0,2-4");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(backoff_delay(1).as_secs(), 10);
        assert_eq!(backoff_delay(3).as_secs(), 40);
        assert_eq!(backoff_delay(10).as_secs(), 360);
    }
}
