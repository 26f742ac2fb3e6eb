//! The files of configMap, secret, downwardAPI and projected volumes, as the
//! kubelet computes them before handing them to the [`super::atomic_writer`].
//!
//! * configMap / secret: every key (or the `items` with their `path` and
//!   `mode`), `defaultMode` 0644; a missing object is an error unless
//!   `optional`, an item naming a missing key too (`configmap references
//!   non-existent config key: k`).
//! * downwardAPI: `fieldRef` on `metadata.name`, `namespace`, `uid`,
//!   `labels`, `annotations` (the whole map as sorted `key="value"` lines,
//!   values quoted as Go's `%q`) or one `metadata.labels['k']` /
//!   `metadata.annotations['k']`; `resourceFieldRef` (with `containerName`)
//!   through [`crate::env::resource_value`] (limits default to the node's
//!   allocatable, `divisor` rounds up).
//! * projected: the sources above merged (`defaultMode` for the whole
//!   volume, `mode` per item); `serviceAccountToken` through
//!   [`super::sa_token`] (the file at the source's `path` with the volume's
//!   `defaultMode`; 0600 when it has an owner (its `user`, the volume's
//!   `defaultUser`, or the `runAsUser` all containers share) or the pod an
//!   `fsGroup`, as the kubelet);
//!   `clusterTrustBundle` and `podCertificate` sources are refused (this
//!   cluster issues no such credentials yet).
//!
//! Whether every object read was `immutable` is reported, so that the
//! refresh loop need not read them again.

use super::atomic_writer::{FileProjection, Payload};
use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, ResourceFieldSelector, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// Why a volume's files could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Reading an object failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// What the kubelet would say (`configmap "x" not found`, ...).
    #[error("{0}")]
    Setup(String),
}

impl From<super::objects::ReadError> for ProjectionError {
    fn from(e: super::objects::ReadError) -> Self {
        match e {
            super::objects::ReadError::Api(e) => Self::Api(e),
            e @ super::objects::ReadError::NotSynced(_) => Self::Setup(e.to_string()),
        }
    }
}

/// A volume's files, and whether all objects they came from are immutable.
pub struct Projected {
    /// The files.
    pub payload: Payload,
    /// Every ConfigMap or Secret read was `immutable: true` and there is no downward API part.
    pub immutable: bool,
}

/// A volume's `defaultMode` (0644 when unset) and `defaultUser`.
#[derive(Debug, Clone, Copy)]
struct Defaults {
    mode: i32,
    user: Option<i64>,
}

/// What the projection needs besides the Pod.
pub struct Inputs<'a> {
    /// API client.
    pub client: &'a kube::Client,
    /// The node's allocatable resources (resourceFieldRef limits default to it).
    pub allocatable: Option<&'a BTreeMap<String, Quantity>>,
    /// The node's service account tokens.
    pub tokens: &'a super::sa_token::TokenManager,
    /// The watched ConfigMaps and Secrets the node's pods use.
    pub objects: &'a super::objects::Objects,
}

/// Whether `volume` is one of the kinds this module projects.
pub fn is_projected_kind(volume: &Volume) -> bool {
    volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
}

/// The files of `volume` (one of [`is_projected_kind`]).
pub async fn payload(inputs: &Inputs<'_>, pod: &Pod, volume: &Volume) -> Result<Projected, ProjectionError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = Projected {
        payload: Payload::new(),
        immutable: true,
    };
    let defaults = |mode: Option<i32>, user: Option<i64>| Defaults {
        mode: mode.unwrap_or(0o644),
        user,
    };
    if let Some(source) = &volume.config_map {
        let owner = defaults(source.default_mode, source.default_user);
        config_map(
            inputs,
            namespace,
            &source.name,
            source.items.as_deref(),
            source.optional,
            owner,
            &mut out,
        )
        .await?;
    } else if let Some(source) = &volume.secret {
        let owner = defaults(source.default_mode, source.default_user);
        let name = source.secret_name.as_deref().unwrap_or_default();
        secret(
            inputs,
            namespace,
            name,
            source.items.as_deref(),
            source.optional,
            owner,
            &mut out,
        )
        .await?;
    } else if let Some(source) = &volume.downward_api {
        let owner = defaults(source.default_mode, source.default_user);
        downward(inputs, pod, source.items.as_deref().unwrap_or(&[]), owner, &mut out)?;
    } else if let Some(source) = &volume.projected {
        let owner = defaults(source.default_mode, source.default_user);
        for s in source.sources.as_deref().unwrap_or(&[]) {
            if let Some(c) = &s.config_map {
                config_map(
                    inputs,
                    namespace,
                    &c.name,
                    c.items.as_deref(),
                    c.optional,
                    owner,
                    &mut out,
                )
                .await?;
            }
            if let Some(c) = &s.secret {
                secret(
                    inputs,
                    namespace,
                    &c.name,
                    c.items.as_deref(),
                    c.optional,
                    owner,
                    &mut out,
                )
                .await?;
            }
            if let Some(d) = &s.downward_api {
                downward(inputs, pod, d.items.as_deref().unwrap_or(&[]), owner, &mut out)?;
            }
            if let Some(t) = &s.service_account_token {
                let token = inputs
                    .tokens
                    .token(inputs.client, pod, t)
                    .await
                    .map_err(ProjectionError::Setup)?;
                let user = t.user.or(owner.user).or_else(|| fs_user(pod));
                let has_fs_group = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.security_context.as_ref())
                    .is_some_and(|c| c.fs_group.is_some());
                let mode = if user.is_some() || has_fs_group {
                    0o600
                } else {
                    owner.mode
                };
                out.immutable = false;
                insert(&mut out, &t.path, token.into_bytes(), mode, user)?;
            }
            if s.cluster_trust_bundle.is_some() {
                return Err(ProjectionError::Setup(
                    "clusterTrustBundle projections are not supported by this node".into(),
                ));
            }
            if s.pod_certificate.is_some() {
                return Err(ProjectionError::Setup(
                    "podCertificate projections are not supported by this node".into(),
                ));
            }
        }
    }
    Ok(out)
}

async fn config_map(
    inputs: &Inputs<'_>,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    owner: Defaults,
    out: &mut Projected,
) -> Result<(), ProjectionError> {
    let Some(cm) = inputs.objects.config_maps.get(inputs.client, namespace, name).await? else {
        return if optional.unwrap_or(false) {
            Ok(())
        } else {
            Err(ProjectionError::Setup(format!("configmap {name:?} not found")))
        };
    };
    out.immutable &= cm.immutable.unwrap_or(false);
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    data.extend(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
    add_keys(
        &data,
        items,
        owner,
        optional,
        "configmap references non-existent config key",
        out,
    )
}

async fn secret(
    inputs: &Inputs<'_>,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    owner: Defaults,
    out: &mut Projected,
) -> Result<(), ProjectionError> {
    let Some(secret) = inputs.objects.secrets.get(inputs.client, namespace, name).await? else {
        return if optional.unwrap_or(false) {
            Ok(())
        } else {
            Err(ProjectionError::Setup(format!("secret {name:?} not found")))
        };
    };
    out.immutable &= secret.immutable.unwrap_or(false);
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    data.extend(
        secret
            .string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
    );
    add_keys(&data, items, owner, optional, "references non-existent secret key", out)
}

/// Add `data` (all keys, or `items`) to the payload.
fn add_keys(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    owner: Defaults,
    optional: Option<bool>,
    missing_key: &str,
    out: &mut Projected,
) -> Result<(), ProjectionError> {
    match items {
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(bytes) => {
                        insert(
                            out,
                            &item.path,
                            bytes.clone(),
                            item.mode.unwrap_or(owner.mode),
                            item.user.or(owner.user),
                        )?;
                    }
                    None if optional.unwrap_or(false) => {}
                    None => return Err(ProjectionError::Setup(format!("{missing_key}: {}", item.key))),
                }
            }
        }
        None => {
            for (key, bytes) in data {
                insert(out, key, bytes.clone(), owner.mode, owner.user)?;
            }
        }
    }
    Ok(())
}

fn insert(out: &mut Projected, path: &str, data: Vec<u8>, mode: i32, user: Option<i64>) -> Result<(), ProjectionError> {
    super::atomic_writer::validate_path(path).map_err(ProjectionError::Setup)?;
    let user = user
        .map(|u| u32::try_from(u).map_err(|_| ProjectionError::Setup(format!("user {u} of {path:?} is out of range"))))
        .transpose()?;
    out.payload.insert(
        path.to_string(),
        FileProjection {
            data,
            mode: mode as u32 & 0o7777,
            user,
        },
    );
    Ok(())
}

fn downward(
    inputs: &Inputs<'_>,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    owner: Defaults,
    out: &mut Projected,
) -> Result<(), ProjectionError> {
    out.immutable = false;
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            field_value(pod, &field.field_path).ok_or_else(|| {
                ProjectionError::Setup(format!(
                    "unsupported fieldPath {:?} in a downwardAPI volume",
                    field.field_path
                ))
            })?
        } else if let Some(resource) = &item.resource_field_ref {
            resource_value(inputs, pod, resource)?
        } else {
            continue;
        };
        insert(
            out,
            &item.path,
            value.into_bytes(),
            item.mode.unwrap_or(owner.mode),
            item.user.or(owner.user),
        )?;
    }
    Ok(())
}

fn resource_value(inputs: &Inputs<'_>, pod: &Pod, selector: &ResourceFieldSelector) -> Result<String, ProjectionError> {
    let name = selector.container_name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let container = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .find(|c| c.name == name)
        .ok_or_else(|| ProjectionError::Setup(format!("resourceFieldRef: container {name:?} not found in the pod")))?;
    crate::env::resource_value(container, inputs.allocatable, selector)
        .map_err(|e| ProjectionError::Setup(format!("resourceFieldRef {:?}: {e}", selector.resource)))
}

/// The user that owns a pod's token files: the effective `runAsUser`
/// shared by every container (the kubelet's `FsUserFrom`), else none.
fn fs_user(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let pod_user = spec.security_context.as_ref().and_then(|c| c.run_as_user);
    let own = |sc: Option<&k8s_openapi::api::core::v1::SecurityContext>| sc.and_then(|s| s.run_as_user);
    let users = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| own(c.security_context.as_ref()))
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| own(c.security_context.as_ref())),
        );
    let mut user = None;
    for uid in users {
        let uid = uid.or(pod_user)?;
        match user {
            Some(u) if u != uid => return None,
            _ => user = Some(uid),
        }
    }
    user
}

/// The value of a downwardAPI volume's `fieldRef` (metadata only, as the kubelet's volume plugin).
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let map = |m: &Option<BTreeMap<String, String>>| format_map(m.as_ref());
    let one = |m: &Option<BTreeMap<String, String>>, key: &str| m.as_ref().and_then(|m| m.get(key).cloned());
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => map(&meta.labels),
        "metadata.annotations" => map(&meta.annotations),
        _ => {
            if let Some(key) = path
                .strip_prefix("metadata.labels['")
                .and_then(|k| k.strip_suffix("']"))
            {
                one(&meta.labels, key).unwrap_or_default()
            } else if let Some(key) = path
                .strip_prefix("metadata.annotations['")
                .and_then(|k| k.strip_suffix("']"))
            {
                one(&meta.annotations, key).unwrap_or_default()
            } else {
                return None;
            }
        }
    })
}

/// A map as the downward API writes it: `key="value"` lines, sorted, no final newline.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A string quoted as Go's `%q` for the characters that matter here.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const D644: Defaults = Defaults {
        mode: 0o644,
        user: None,
    };

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1",
                "labels": {"zone": "a", "app": "web"}, "annotations": {"note": "say \"hi\""}},
            "spec": {"containers": [{"name": "main", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn metadata_fields_and_maps_are_written_like_the_kubelet() {
        let pod = pod();
        assert_eq!(field_value(&pod, "metadata.name").unwrap(), "web");
        assert_eq!(field_value(&pod, "metadata.labels").unwrap(), "app=\"web\"\nzone=\"a\"");
        assert_eq!(
            field_value(&pod, "metadata.annotations").unwrap(),
            "note=\"say \\\"hi\\\"\""
        );
        assert_eq!(field_value(&pod, "metadata.labels['zone']").unwrap(), "a");
        assert!(field_value(&pod, "status.podIP").is_none());
    }

    #[tokio::test]
    async fn downward_items_with_modes_and_divisors() {
        let pod = pod();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "cpu", "mode": 0o400, "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu", "divisor": "1m"}},
            {"path": "mem/mi", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "1Mi"}}
        ]))
        .unwrap();
        let client = sluice_tests_free_client();
        let tokens = super::super::sa_token::TokenManager::default();
        let objects = super::super::objects::Objects::default();
        let inputs = Inputs {
            client: &client,
            allocatable: None,
            tokens: &tokens,
            objects: &objects,
        };
        let mut out = Projected {
            payload: Payload::new(),
            immutable: true,
        };
        downward(&inputs, &pod, &items, D644, &mut out).unwrap();
        assert_eq!(out.payload["name"].data, b"web");
        assert_eq!(out.payload["cpu"].data, b"250");
        assert_eq!(out.payload["cpu"].mode, 0o400);
        assert_eq!(out.payload["mem/mi"].data, b"64");
        assert!(!out.immutable);
    }

    /// A client that is never used to connect (the downward API reads only the Pod).
    fn sluice_tests_free_client() -> kube::Client {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    #[test]
    fn token_files_belong_to_the_single_run_as_user() {
        let mut pod = pod();
        assert_eq!(fs_user(&pod), None);
        pod.spec.as_mut().unwrap().security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
            run_as_user: Some(1000),
            ..Default::default()
        });
        assert_eq!(fs_user(&pod), Some(1000));
        pod.spec.as_mut().unwrap().containers[0].security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
            run_as_user: Some(7),
            ..Default::default()
        });
        assert_eq!(fs_user(&pod), Some(7));
        let mut second = pod.spec.as_ref().unwrap().containers[0].clone();
        second.security_context = None;
        pod.spec.as_mut().unwrap().containers.push(second);
        assert_eq!(fs_user(&pod), None, "two users: no owner");
    }

    #[test]
    fn items_need_their_keys_unless_optional() {
        let data = BTreeMap::from([("a".to_string(), b"1".to_vec())]);
        let items = [KeyToPath {
            key: "b".into(),
            path: "b".into(),
            ..Default::default()
        }];
        let mut out = Projected {
            payload: Payload::new(),
            immutable: true,
        };
        let err = add_keys(
            &data,
            Some(&items),
            D644,
            None,
            "configmap references non-existent config key",
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "configmap references non-existent config key: b");
        add_keys(&data, Some(&items), D644, Some(true), "x", &mut out).unwrap();
        add_keys(
            &data,
            None,
            Defaults {
                mode: 0o600,
                user: None,
            },
            None,
            "x",
            &mut out,
        )
        .unwrap();
        assert_eq!(out.payload["a"].mode, 0o600);
    }
}
