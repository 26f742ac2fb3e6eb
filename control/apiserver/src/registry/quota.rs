//! The `ResourceQuota` admission step, the last of the validating steps as
//! in Kubernetes (`plugin/pkg/admission/resourcequota`).
//!
//! On create (and on updates of Services and PersistentVolumeClaims, which
//! may change what they use) the namespace's quotas are read from etcd.
//! A quota applies when its `status.hard` (what the `resourcequota`
//! controller last observed; a quota the controller has not seen yet is not
//! enforced) names a resource the object is charged for and its scopes
//! select the object. For each applicable quota:
//!
//! - a pod must state every request/limit the quota limits
//!   (`failed quota: q: must specify limits.cpu for: c; ...`);
//! - `status.used` must know every limited resource (`status unknown for
//!   quota: q, resources: ...`);
//! - `used + requested` may not pass `hard` (`exceeded quota: q,
//!   requested: pods=1, used: pods=2, limited: pods=2`).
//!
//! Failures are 403s with Kubernetes' words. When every quota admits the
//! object, each is charged: its `status.used` is written back under the
//! revision it was read at (optimistic concurrency, as Kubernetes'
//! `UpdateStatus`); a lost race re-reads and re-checks. The controller later
//! recomputes `status.used` from what exists (releasing what was charged
//! for objects that were then not stored). Dry runs check without charging.
//! The counting is `sluice_kube::resource_quota`, shared with the controller.

use serde_json::Value;
use sluice_kube::resource_quota::{
    add, exceeded, mask, matches_scopes, matching_resources, parse_list, pod_constraints, pretty, to_json, usage,
    ResourceList,
};

use crate::kinds::{self, persistentvolumeclaim, pod, resourcequota, service};
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult};
use crate::storage::store::{self, Action, Precondition, Write};

/// A quota read from etcd with the revision it was read at.
struct Read {
    object: Value,
    revision: i64,
}

impl Registry {
    /// The quotas of `ns`: admission's read first, etcd's after a charge
    /// lost a race (the quota changed since it was read).
    async fn quotas(&self, ns: &str, after_race: bool) -> ApiResult<Vec<Read>> {
        let prefix = store::collection_prefix(&resourcequota::RESOURCE, Some(ns));
        let quotas = if after_race {
            self.store.list(&prefix).await?
        } else {
            self.admission_list(&resourcequota::RESOURCE, &prefix).await?
        };
        Ok(quotas
            .into_iter()
            .map(|s| Read {
                object: s.object,
                revision: s.revision,
            })
            .collect())
    }

    /// The ResourceQuota step for a create of `obj` in `ns`.
    pub(super) async fn admit_quota_create(
        &self,
        r: &kinds::Resource,
        ns: Option<&str>,
        obj: &Value,
        dry_run: bool,
    ) -> ApiResult<()> {
        let Some(ns) = ns else { return Ok(()) };
        self.admit_quota(r, ns, None, obj, dry_run).await
    }

    /// The ResourceQuota step for an update of a Service or a claim.
    pub(super) async fn admit_quota_update(
        &self,
        r: &kinds::Resource,
        ns: Option<&str>,
        old: &Value,
        new: &Value,
        dry_run: bool,
    ) -> ApiResult<()> {
        let Some(ns) = ns else { return Ok(()) };
        if *r != service::RESOURCE && *r != persistentvolumeclaim::RESOURCE {
            return Ok(());
        }
        self.admit_quota(r, ns, Some(old), new, dry_run).await
    }

    async fn admit_quota(
        &self,
        r: &kinds::Resource,
        ns: &str,
        old: Option<&Value>,
        obj: &Value,
        dry_run: bool,
    ) -> ApiResult<()> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut charged: Vec<String> = Vec::new();
        for attempt in 0..8 {
            let quotas = self.quotas(ns, attempt > 0).await?;
            if quotas.is_empty() {
                return Ok(());
            }
            let now = chrono::Utc::now().timestamp();
            let plan = plan(r, &quotas, old, obj, now).map_err(|why| ApiError::forbidden(r, &name, why))?;
            if dry_run {
                return Ok(());
            }
            let mut lost_race = false;
            for (i, used) in plan {
                let q = &quotas[i];
                let qname = q
                    .object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if charged.contains(&qname) {
                    continue;
                }
                let mut updated = q.object.clone();
                updated["status"]["used"] = to_json(&used);
                let key = store::object_key(&resourcequota::RESOURCE, Some(ns), &qname);
                let w = Write {
                    action: Action::put(&key, &updated, None)?,
                    key,
                    precondition: Precondition::Revision(q.revision),
                    claim: Vec::new(),
                    release: Vec::new(),
                };
                match self.store.write(w).await? {
                    Ok(_) => charged.push(qname),
                    Err(_) => {
                        lost_race = true;
                        break;
                    }
                }
            }
            if !lost_race {
                return Ok(());
            }
        }
        Err(ApiError::internal("resource quota evaluation timed out"))
    }
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

fn nonzero(list: ResourceList) -> ResourceList {
    list.into_iter().filter(|(_, a)| a.milli != 0).collect()
}

/// What to charge: the index of each applicable quota and its new
/// `status.used`; `Err` the reason the object is refused.
fn plan(
    r: &kinds::Resource,
    quotas: &[Read],
    old: Option<&Value>,
    obj: &Value,
    now: i64,
) -> Result<Vec<(usize, ResourceList)>, String> {
    let (group, plural) = (r.group, r.plural);
    let mut applicable = Vec::new();
    for (i, q) in quotas.iter().enumerate() {
        let hard = parse_list(q.object.pointer("/status/hard"));
        let restricted = matching_resources(group, plural, hard.keys());
        if restricted.is_empty() || !matches_scopes(&q.object, group, plural, obj) {
            continue;
        }
        let qname = name_of(&q.object);
        if *r == pod::RESOURCE {
            pod_constraints(&restricted, obj).map_err(|e| format!("failed quota: {qname}: {e}"))?;
        }
        let used = parse_list(q.object.pointer("/status/used"));
        if restricted.iter().any(|n| !used.contains_key(n)) {
            let mut names = restricted.clone();
            names.sort();
            return Err(format!(
                "status unknown for quota: {qname}, resources: {}",
                names.join(",")
            ));
        }
        applicable.push((i, hard, used));
    }
    if applicable.is_empty() {
        return Ok(Vec::new());
    }
    let mut delta = nonzero(usage(group, plural, obj, now));
    if let Some(old) = old {
        let before = usage(group, plural, old, now);
        delta = nonzero(
            delta
                .into_iter()
                .map(|(k, a)| {
                    let b = before.get(&k).map_or(0, |b| b.milli);
                    (
                        k,
                        sluice_kube::resource_quota::Amount {
                            milli: (a.milli - b).max(0),
                            ..a
                        },
                    )
                })
                .collect(),
        );
    }
    if delta.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (i, hard, used) in applicable {
        let requested = mask(&delta, hard.keys());
        if requested.is_empty() {
            continue;
        }
        let new_used = add(&used, &requested);
        let over = exceeded(&mask(&new_used, requested.keys()), &hard);
        if !over.is_empty() {
            return Err(format!(
                "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                name_of(&quotas[i].object),
                pretty(&mask(&requested, over.iter())),
                pretty(&mask(&used, over.iter())),
                pretty(&mask(&hard, over.iter())),
            ));
        }
        out.push((i, new_used));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quota(name: &str, hard: Value, used: Value) -> Read {
        Read {
            object: json!({"metadata": {"name": name}, "spec": {"hard": hard.clone()}, "status": {"hard": hard, "used": used}}),
            revision: 1,
        }
    }

    #[test]
    fn refuses_what_exceeds_with_kubernetes_words() {
        let q = [quota("q", json!({"pods": "2"}), json!({"pods": "2"}))];
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            plan(&pod::RESOURCE, &q, None, &p, 0).err(),
            Some("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2".to_string())
        );
        let q = [quota("q", json!({"pods": "3"}), json!({"pods": "2"}))];
        let charged = plan(&pod::RESOURCE, &q, None, &p, 0).expect("admitted");
        assert_eq!(pretty(&charged[0].1), "pods=3");
    }

    #[test]
    fn compute_quota_needs_requests_and_status() {
        let q = [quota(
            "compute",
            json!({"requests.cpu": "1", "limits.memory": "1Gi"}),
            json!({"requests.cpu": "0", "limits.memory": "0"}),
        )];
        let p = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            plan(&pod::RESOURCE, &q, None, &p, 0).err(),
            Some("failed quota: compute: must specify limits.memory for: c; requests.cpu for: c".to_string())
        );
        let unknown = [quota("q", json!({"services": "1"}), json!({}))];
        assert_eq!(
            plan(&service::RESOURCE, &unknown, None, &json!({"spec": {}}), 0).err(),
            Some("status unknown for quota: q, resources: services".to_string())
        );
        // Not observed by the controller yet: not enforced.
        let fresh = [Read {
            object: json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "0"}}}),
            revision: 1,
        }];
        assert!(plan(&pod::RESOURCE, &fresh, None, &p, 0).expect("ok").is_empty());
    }

    #[test]
    fn updates_charge_the_difference() {
        let q = [quota(
            "q",
            json!({"services.nodeports": "1"}),
            json!({"services.nodeports": "1"}),
        )];
        let old = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let same = old.clone();
        assert!(plan(&service::RESOURCE, &q, Some(&old), &same, 0)
            .expect("ok")
            .is_empty());
        let more = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}});
        assert!(plan(&service::RESOURCE, &q, Some(&old), &more, 0).is_err());
    }
}
