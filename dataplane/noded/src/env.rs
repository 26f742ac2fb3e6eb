//! Container environment: Service variables, literal values, field references, ConfigMap and Secret keys.
//!
//! Resolved once per container start, in spec order (the Service variables
//! of [`crate::service_env`] first, then `envFrom`, then `env`, later entries
//! win, as in Kubernetes); `$(VAR)` references to
//! earlier variables are expanded. A missing non-optional ConfigMap/Secret
//! key is an error the pod worker reports as `CreateContainerConfigError`.

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::Api;
use std::collections::BTreeMap;

/// Why an environment could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Resolve the environment of `container` in `pod` (`pod_ip` for `status.podIP`).
pub async fn resolve(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut env: Vec<(String, String)> = service_variables(client, pod, &namespace).await?;
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    for from in container.env_from.as_deref().unwrap_or(&[]) {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(source) = &from.config_map_ref {
            match config_maps
                .get_opt(&source.name)
                .await
                .map_err(|e| EnvError(e.to_string()))?
            {
                Some(cm) => cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), v)),
                None if source.optional.unwrap_or(false) => {}
                None => return Err(EnvError(format!("configmap {:?} not found", source.name))),
            }
        }
        if let Some(source) = &from.secret_ref {
            match secrets
                .get_opt(&source.name)
                .await
                .map_err(|e| EnvError(e.to_string()))?
            {
                Some(secret) => secret.data.unwrap_or_default().into_iter().for_each(|(k, v)| {
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
                field_value(pod, &field.field_path, pod_ip)
                    .ok_or_else(|| EnvError(format!("env {}: unsupported fieldRef {}", var.name, field.field_path)))?
            } else if let Some(key) = &from.config_map_key_ref {
                let cm = config_maps
                    .get_opt(&key.name)
                    .await
                    .map_err(|e| EnvError(e.to_string()))?;
                match cm.and_then(|cm| cm.data).and_then(|mut d| d.remove(&key.key)) {
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
                let secret = secrets.get_opt(&key.name).await.map_err(|e| EnvError(e.to_string()))?;
                match secret.and_then(|s| s.data).and_then(|mut d| d.remove(&key.key)) {
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
async fn service_variables(
    client: &kube::Client,
    pod: &Pod,
    namespace: &str,
) -> Result<Vec<(String, String)>, EnvError> {
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let err = |e: kube::Error| EnvError(format!("listing services: {e}"));
    let mut services = Vec::new();
    if links {
        services = Api::<Service>::namespaced(client.clone(), namespace)
            .list(&Default::default())
            .await
            .map_err(err)?
            .items;
    }
    if !links || namespace != "default" {
        let api = Api::<Service>::namespaced(client.clone(), "default");
        services.extend(api.get_opt("kubernetes").await.map_err(err)?);
    }
    Ok(crate::service_env::service_env(&services, namespace, links))
}

/// The downward-API value of `path`, if supported.
fn field_value(pod: &Pod, path: &str, pod_ip: &str) -> Option<String> {
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
        "status.podIP" => pod_ip.to_string(),
        "status.hostIP" => pod.status.as_ref().and_then(|s| s.host_ip.clone()).unwrap_or_default(),
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
        assert_eq!(field_value(&pod, "metadata.name", "").as_deref(), Some("p"));
        assert_eq!(field_value(&pod, "metadata.labels['app']", "").as_deref(), Some("web"));
        assert_eq!(
            field_value(&pod, "status.podIP", "10.0.0.9").as_deref(),
            Some("10.0.0.9")
        );
        assert_eq!(field_value(&pod, "spec.nope", ""), None);
    }
}
