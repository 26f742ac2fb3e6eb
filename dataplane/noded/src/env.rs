//! Container environment: Service variables, literal values, field references, ConfigMap and Secret keys.
//!
//! Resolved once per container start, in spec order (the Service variables
//! of [`crate::service_env`] first, then `envFrom`, then `env`, later entries
//! win, as in Kubernetes); `$(VAR)` references to
//! earlier variables are expanded. A missing non-optional ConfigMap/Secret
//! key is an error the pod worker reports as `CreateContainerConfigError`.
//! ConfigMaps and Secrets are read from the node's watches of the objects
//! its pods use ([`crate::volumes::objects`]), as the kubelet's managers.
//!
//! The downward API: `fieldRef` on the paths Kubernetes allows in env
//! (`status.podIPs`/`status.hostIPs` are comma-separated lists), and
//! `resourceFieldRef` as the kubelet computes it ([`resource_value`]): a
//! container without a cpu/memory/ephemeral-storage limit is given the
//! node's allocatable amount, and the value divided by `divisor` (default 1)
//! is rounded up.

use crate::service_env::Services;
use crate::volumes::objects::Objects;
use k8s_openapi::api::core::v1::{Container, Node, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;
use sluice_kube::quantity::{parse_milli, parse_value};
use std::collections::BTreeMap;

/// Why an environment could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Resolve the environment of `container` in `pod` (`pod_ip` for
/// `status.podIP`; the Service variables from `services`).
pub async fn resolve(
    client: &kube::Client,
    services: &Services,
    objects: &Objects,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let mut env: Vec<(String, String)> = service_variables(services, pod, &namespace).await?;
    let mut node: Option<Node> = None;
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    for from in container.env_from.as_deref().unwrap_or(&[]) {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(source) = &from.config_map_ref {
            match objects
                .config_maps
                .get(client, &namespace, &source.name)
                .await
                .map_err(|e| EnvError(e.to_string()))?
            {
                Some(cm) => cm
                    .data
                    .iter()
                    .flatten()
                    .for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), v.clone())),
                None if source.optional.unwrap_or(false) => {}
                None => return Err(EnvError(format!("configmap {:?} not found", source.name))),
            }
        }
        if let Some(source) = &from.secret_ref {
            match objects
                .secrets
                .get(client, &namespace, &source.name)
                .await
                .map_err(|e| EnvError(e.to_string()))?
            {
                Some(secret) => secret.data.iter().flatten().for_each(|(k, v)| {
                    set(
                        &mut env,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v.0).into_owned(),
                    )
                }),
                None if source.optional.unwrap_or(false) => {}
                None => return Err(EnvError(format!("secret {:?} not found", source.name))),
            }
        }
    }
    for var in container.env.as_deref().unwrap_or(&[]) {
        let value = if let Some(value) = &var.value {
            expand(value, &env)
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                let needs_node = field.field_path.starts_with("status.hostIP")
                    && pod.status.as_ref().and_then(|s| s.host_ip.as_ref()).is_none();
                let host_ips = if needs_node {
                    node_addresses(node_of(client, pod, &mut node).await?)
                } else {
                    status_host_ips(pod)
                };
                field_value(pod, &field.field_path, pod_ip, &host_ips)
                    .ok_or_else(|| EnvError(format!("env {}: unsupported fieldRef {}", var.name, field.field_path)))?
            } else if let Some(selector) = &from.resource_field_ref {
                let allocatable = node_of(client, pod, &mut node)
                    .await?
                    .status
                    .as_ref()
                    .and_then(|s| s.allocatable.as_ref());
                let target = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
                    None => Some(container),
                    Some(name) => pod.spec.as_ref().and_then(|s| {
                        s.containers
                            .iter()
                            .chain(s.init_containers.iter().flatten())
                            .find(|c| c.name == name)
                    }),
                };
                let target = target.ok_or_else(|| {
                    EnvError(format!(
                        "env {}: container {:?} not found",
                        var.name,
                        selector.container_name.as_deref().unwrap_or_default()
                    ))
                })?;
                resource_value(target, allocatable, selector).map_err(|e| EnvError(format!("env {}: {e}", var.name)))?
            } else if let Some(key) = &from.config_map_key_ref {
                let cm = objects
                    .config_maps
                    .get(client, &namespace, &key.name)
                    .await
                    .map_err(|e| EnvError(e.to_string()))?;
                match cm.and_then(|cm| cm.data.as_ref()?.get(&key.key).cloned()) {
                    Some(v) => v,
                    None if key.optional.unwrap_or(false) => continue,
                    None => {
                        return Err(EnvError(format!(
                            "env {}: key {:?} of configmap {:?} not found",
                            var.name, key.key, key.name
                        )))
                    }
                }
            } else if let Some(key) = &from.secret_key_ref {
                let secret = objects
                    .secrets
                    .get(client, &namespace, &key.name)
                    .await
                    .map_err(|e| EnvError(e.to_string()))?;
                match secret.and_then(|s| s.data.as_ref()?.get(&key.key).cloned()) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if key.optional.unwrap_or(false) => continue,
                    None => {
                        return Err(EnvError(format!(
                            "env {}: key {:?} of secret {:?} not found",
                            var.name, key.key, key.name
                        )))
                    }
                }
            } else {
                return Err(EnvError(format!("env {}: unsupported valueFrom", var.name)));
            }
        } else {
            String::new()
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// The Service variables of the pod's namespace (`enableServiceLinks`,
/// default true) and of `default/kubernetes`.
async fn service_variables(services: &Services, pod: &Pod, namespace: &str) -> Result<Vec<(String, String)>, EnvError> {
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let all = services.all().await.map_err(|e| EnvError(e.to_string()))?;
    Ok(crate::service_env::service_env(
        all.iter().map(|s| &**s),
        namespace,
        links,
    ))
}

/// This pod's Node, fetched once per environment (for its allocatable resources and addresses).
async fn node_of<'a>(client: &kube::Client, pod: &Pod, cache: &'a mut Option<Node>) -> Result<&'a Node, EnvError> {
    if cache.is_none() {
        let name = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let node = Api::<Node>::all(client.clone())
            .get(&name)
            .await
            .map_err(|e| EnvError(format!("getting node {name:?}: {e}")))?;
        *cache = Some(node);
    }
    cache.as_ref().ok_or_else(|| EnvError("node not available".into()))
}

/// The node's InternalIP addresses (the pod's host IPs).
fn node_addresses(node: &Node) -> Vec<String> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .collect()
}

/// The host IPs the pod's status shows.
fn status_host_ips(pod: &Pod) -> Vec<String> {
    let status = pod.status.as_ref();
    let listed: Vec<String> = status
        .and_then(|s| s.host_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|h| h.ip.clone())
        .collect();
    if listed.is_empty() {
        status.and_then(|s| s.host_ip.clone()).into_iter().collect()
    } else {
        listed
    }
}

/// Why a `resourceFieldRef` has no value.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResourceFieldError {
    /// Not one of `limits.*` / `requests.*` of cpu, memory, ephemeral-storage.
    #[error("unsupported container resource : {0}")]
    Unsupported(String),
    /// The container's quantity or the divisor does not parse.
    #[error(transparent)]
    Quantity(#[from] sluice_kube::quantity::QuantityError),
}

/// The `resourceFieldRef` value of `container` as the kubelet computes it:
/// limits default to the node's `allocatable` (cpu, memory,
/// ephemeral-storage), requests to zero; the amount divided by the divisor
/// (unset or zero: 1) and rounded up, cpu compared in millicores, the
/// others in whole units.
pub fn resource_value(
    container: &Container,
    allocatable: Option<&BTreeMap<String, Quantity>>,
    selector: &ResourceFieldSelector,
) -> Result<String, ResourceFieldError> {
    let unsupported = || ResourceFieldError::Unsupported(selector.resource.clone());
    let (kind, name) = selector.resource.split_once('.').ok_or_else(unsupported)?;
    if !["cpu", "memory", "ephemeral-storage"].contains(&name) {
        return Err(unsupported());
    }
    let resources = container.resources.as_ref();
    let own = |list: Option<&BTreeMap<String, Quantity>>| {
        list.and_then(|l| l.get(name))
            .map(|q| q.0.clone())
            .filter(|q| parse_milli(q) != Ok(0))
    };
    let amount = match kind {
        "limits" => own(resources.and_then(|r| r.limits.as_ref()))
            .or_else(|| allocatable.and_then(|a| a.get(name)).map(|q| q.0.clone())),
        "requests" => own(resources.and_then(|r| r.requests.as_ref())),
        _ => return Err(unsupported()),
    }
    .unwrap_or_else(|| "0".into());
    let divisor = selector
        .divisor
        .as_ref()
        .map(|d| d.0.clone())
        .filter(|d| parse_milli(d) != Ok(0))
        .unwrap_or_else(|| "1".into());
    let (value, per) = if name == "cpu" {
        (parse_milli(&amount)?, parse_milli(&divisor)?)
    } else {
        (parse_value(&amount)?, parse_value(&divisor)?)
    };
    let per = per.max(1);
    Ok(value
        .div_euclid(per)
        .saturating_add(i64::from(value.rem_euclid(per) != 0))
        .to_string())
}

/// The downward-API value of `path`, if supported.
fn field_value(pod: &Pod, path: &str, pod_ip: &str, host_ips: &[String]) -> Option<String> {
    let meta = &pod.metadata;
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" => host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => host_ips.join(","),
        _ => {
            let labels = |m: &Option<BTreeMap<String, String>>, key: &str| m.as_ref().and_then(|m| m.get(key).cloned());
            if let Some(key) = path
                .strip_prefix("metadata.labels['")
                .and_then(|k| k.strip_suffix("']"))
            {
                labels(&meta.labels, key).unwrap_or_default()
            } else if let Some(key) = path
                .strip_prefix("metadata.annotations['")
                .and_then(|k| k.strip_suffix("']"))
            {
                labels(&meta.annotations, key).unwrap_or_default()
            } else {
                return None;
            }
        }
    })
}

/// Expand `$(NAME)` with earlier variables; `$$(NAME)` escapes; unknown names stay as written.
pub fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let (true, Some(end)) = (tail.starts_with("$("), tail.find(')')) {
            let name = &tail[2..end];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..=end]),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_and_escape_like_kubernetes() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &env), "x-$(B)-$(A)-$");
    }

    #[test]
    fn downward_api_fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": []}
        }))
        .unwrap();
        assert_eq!(field_value(&pod, "metadata.name", "", &[]).as_deref(), Some("p"));
        assert_eq!(
            field_value(&pod, "metadata.labels['app']", "", &[]).as_deref(),
            Some("web")
        );
        assert_eq!(
            field_value(&pod, "status.podIP", "10.0.0.9", &[]).as_deref(),
            Some("10.0.0.9")
        );
        assert_eq!(
            field_value(&pod, "status.podIPs", "10.0.0.9", &[]).as_deref(),
            Some("10.0.0.9")
        );
        let hosts = ["192.0.2.1".to_string(), "2001:db8::1".to_string()];
        assert_eq!(
            field_value(&pod, "status.hostIPs", "", &hosts).as_deref(),
            Some("192.0.2.1,2001:db8::1")
        );
        assert_eq!(
            field_value(&pod, "status.hostIP", "", &hosts).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(field_value(&pod, "spec.nope", "", &[]), None);
    }

    #[test]
    fn resource_field_refs_round_up_and_default_limits_to_allocatable() {
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c", "resources": {
            "limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"cpu": "100m", "memory": "1000"}}}))
        .unwrap();
        let allocatable = BTreeMap::from([
            ("cpu".to_string(), Quantity("1900m".into())),
            ("memory".to_string(), Quantity("2Gi".into())),
        ]);
        let value = |resource: &str, divisor: Option<&str>| {
            let selector = ResourceFieldSelector {
                resource: resource.into(),
                divisor: divisor.map(|d| Quantity(d.into())),
                container_name: None,
            };
            resource_value(&c, Some(&allocatable), &selector)
        };
        let ok = |s: &str| Ok(s.to_string());
        assert_eq!(value("limits.cpu", None), ok("1"), "250m rounds up to one core");
        assert_eq!(value("limits.cpu", Some("1m")), ok("250"));
        assert_eq!(value("limits.cpu", Some("0")), ok("1"), "a zero divisor counts as 1");
        assert_eq!(value("requests.cpu", Some("1m")), ok("100"));
        assert_eq!(value("limits.memory", None), ok("67108864"));
        assert_eq!(value("limits.memory", Some("1Mi")), ok("64"));
        assert_eq!(
            value("requests.memory", Some("1Ki")),
            ok("1"),
            "1000 bytes round up to 1Ki"
        );
        assert_eq!(value("requests.ephemeral-storage", None), ok("0"));
        let bare = Container::default();
        let selector = |r: &str, d: &str| ResourceFieldSelector {
            resource: r.into(),
            divisor: Some(Quantity(d.into())),
            container_name: None,
        };
        assert_eq!(
            resource_value(&bare, Some(&allocatable), &selector("limits.cpu", "1m")),
            ok("1900")
        );
        assert_eq!(
            resource_value(&bare, Some(&allocatable), &selector("limits.memory", "1Mi")),
            ok("2048")
        );
        assert_eq!(resource_value(&bare, None, &selector("limits.memory", "1")), ok("0"));
        assert_eq!(
            value("limits.gpu", None),
            Err(ResourceFieldError::Unsupported("limits.gpu".into()))
        );
    }
}
