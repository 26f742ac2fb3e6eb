//! The ServiceAccount admission step (Kubernetes' `ServiceAccount` plugin),
//! run on pod create before the Priority step and the mutating webhooks:
//!
//! - `spec.serviceAccountName` defaults to `default` (or the deprecated
//!   `spec.serviceAccount` when only that is given); `serviceAccount`
//!   mirrors it, as the v1 conversion does;
//! - the ServiceAccount must exist, else 403 `error looking up service
//!   account <ns>/<name>: serviceaccount "<name>" not found`; the `default`
//!   account is looked for ten times over about two seconds, since its
//!   controller creates it just after the namespace;
//! - unless `automountServiceAccountToken` is false on the pod or, when the
//!   pod does not say, on the ServiceAccount, the projected volume
//!   `kube-api-access-<5 random characters>` (a bound token of 3607 s, the
//!   `kube-root-ca.crt` ConfigMap's `ca.crt`, the namespace from the
//!   downward API, mode 0644) is added and mounted read-only at
//!   `/var/run/secrets/kubernetes.io/serviceaccount` in every init and app
//!   container that mounts nothing there already (a pod that already has a
//!   `kube-api-access-*` volume keeps it);
//! - a pod without `imagePullSecrets` gets the ServiceAccount's.
//!
//! Mirror pods (`kubernetes.io/config.mirror`) are left alone. The step is
//! on unless `--disable-admission-plugins` names `ServiceAccount` (see
//! [`set_enabled`]), as in Kubernetes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};

use crate::kinds;
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult};
use crate::storage::store;

/// The account a pod that names none runs as.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where the token volume is mounted.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token volume's name prefix.
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";
/// The lifetime the kubelet asks for (extended by TokenRequest).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The ConfigMap with the cluster CA every namespace gets.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Tries at the `default` account before giving up.
const DEFAULT_ACCOUNT_ATTEMPTS: usize = 10;

/// The admission plugin's name in `--disable-admission-plugins`.
pub const PLUGIN_NAME: &str = "ServiceAccount";

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the step on or off for this process (`--disable-admission-plugins`).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Five characters from Kubernetes' `utilrand` alphabet (no vowels, no
/// look-alikes).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The account a pod runs as, once defaulted (both fields set).
pub fn default_account(pod: &mut Value) -> String {
    let get = |k: &str| {
        pod.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let name = get("serviceAccountName")
        .or_else(|| get("serviceAccount"))
        .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("serviceAccountName".into(), json!(name));
        spec.insert("serviceAccount".into(), json!(name));
    }
    name
}

/// Whether a token is mounted: the pod's field, else the account's, else yes.
pub fn automounts(pod: &Value, sa: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| sa.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true)
}

/// The projected token volume named `name`.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        },
    })
}

/// Mounts the token volume in every container lacking a mount at
/// [`TOKEN_MOUNT_PATH`], adding the volume (named with `suffix`) when one
/// is used and the pod has none.
pub fn mount_token(pod: &mut Value, suffix: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        })
        .map(str::to_string);
    let name = existing
        .clone()
        .unwrap_or_else(|| format!("{TOKEN_VOLUME_PREFIX}{suffix}"));
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut() {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else { continue };
            if mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH))
            {
                continue;
            }
            mounts.push(mount.clone());
            needed = true;
        }
    }
    if needed && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Some(v) = volumes.as_array_mut() {
            v.push(token_volume(&name));
        }
    }
}

/// The account's `imagePullSecrets` for a pod that has none.
pub fn pull_secrets(pod: &mut Value, sa: &Value) {
    let has = pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let from_sa = sa
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    if let (false, Some(secrets), Some(spec)) = (has, from_sa, pod.get_mut("spec").and_then(Value::as_object_mut)) {
        let secrets: Vec<Value> = secrets
            .iter()
            .filter_map(|s| s.get("name").and_then(Value::as_str))
            .map(|n| json!({"name": n}))
            .collect();
        spec.insert("imagePullSecrets".into(), json!(secrets));
    }
}

impl Registry {
    /// The ServiceAccount `name` in `ns`, looked for again a few times when
    /// it is `default` (its controller may not have made it yet).
    async fn service_account(&self, ns: &str, name: &str) -> ApiResult<Option<Value>> {
        let key = store::object_key(&kinds::serviceaccount::RESOURCE, Some(ns), name);
        let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
            DEFAULT_ACCOUNT_ATTEMPTS
        } else {
            1
        };
        for attempt in 0..attempts {
            if attempt > 0 {
                let ms = rand::thread_rng().gen_range(100..200);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if let Some(s) = self.admission_get(&kinds::serviceaccount::RESOURCE, &key).await? {
                return Ok(Some(s.object));
            }
        }
        Ok(None)
    }

    /// The ServiceAccount admission step for a create of `obj` in `ns`;
    /// kinds other than Pod pass unchanged.
    pub(super) async fn admit_service_account_create(
        &self,
        r: &kinds::Resource,
        ns: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<()> {
        if *r != kinds::pod::RESOURCE || !ENABLED.load(Ordering::Relaxed) {
            return Ok(());
        }
        if obj
            .pointer(&format!(
                "/metadata/annotations/{}",
                MIRROR_ANNOTATION.replace('/', "~1")
            ))
            .is_some()
        {
            return Ok(());
        }
        let ns = ns.unwrap_or_default();
        let name = default_account(obj);
        let Some(sa) = self.service_account(ns, &name).await? else {
            let pod_name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .or_else(|| obj.pointer("/metadata/generateName").and_then(Value::as_str))
                .unwrap_or_default()
                .to_string();
            return Err(ApiError::forbidden(
                r,
                &pod_name,
                format!("error looking up service account {ns}/{name}: serviceaccount {name:?} not found"),
            ));
        };
        if automounts(obj, &sa) {
            mount_token(obj, &random_suffix());
        }
        pull_secrets(obj, &sa);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn the_account_defaults_and_both_fields_agree() {
        let mut p = pod(json!({"containers": []}));
        assert_eq!(default_account(&mut p), "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        let mut p = pod(json!({"serviceAccount": "old"}));
        assert_eq!(default_account(&mut p), "old");
        assert_eq!(p["spec"]["serviceAccountName"], "old");
        let mut p = pod(json!({"serviceAccountName": "bot"}));
        assert_eq!(default_account(&mut p), "bot");
        assert_eq!(p["spec"]["serviceAccount"], "bot");
    }

    #[test]
    fn the_pod_wins_over_the_account_on_automount() {
        let sa_off = json!({"automountServiceAccountToken": false});
        assert!(automounts(&pod(json!({})), &json!({})));
        assert!(!automounts(&pod(json!({})), &sa_off));
        assert!(automounts(&pod(json!({"automountServiceAccountToken": true})), &sa_off));
        assert!(!automounts(
            &pod(json!({"automountServiceAccountToken": false})),
            &json!({})
        ));
    }

    #[test]
    fn every_container_mounts_the_token_volume_once() {
        let mut p = pod(json!({
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "own", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }));
        mount_token(&mut p, "x7k2q");
        let mount = json!({"name": "kube-api-access-x7k2q", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(p["spec"]["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"][1], mount);
        assert_eq!(p["spec"]["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1);
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[1], token_volume("kube-api-access-x7k2q"));
        assert_eq!(
            volumes[1]["projected"]["sources"][0],
            json!({"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}})
        );
        assert_eq!(volumes[1]["projected"]["defaultMode"], 420);
        // Admitted again (a pod re-created from a stored one): nothing doubles.
        let before = p.clone();
        mount_token(&mut p, "other");
        assert_eq!(p, before);
    }

    #[test]
    fn no_volume_when_every_container_has_its_own_mount() {
        let mut p =
            pod(json!({"containers": [{"name": "a", "volumeMounts": [{"name": "m", "mountPath": TOKEN_MOUNT_PATH}]}]}));
        mount_token(&mut p, "abcde");
        assert!(p["spec"].get("volumes").is_none());
    }

    #[test]
    fn pull_secrets_come_from_the_account_only_when_the_pod_has_none() {
        let sa = json!({"imagePullSecrets": [{"name": "regcred"}]});
        let mut p = pod(json!({}));
        pull_secrets(&mut p, &sa);
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));
        let mut p = pod(json!({"imagePullSecrets": [{"name": "own"}]}));
        pull_secrets(&mut p, &sa);
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "own"}]));
    }

    #[test]
    fn suffixes_use_kubernetes_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
