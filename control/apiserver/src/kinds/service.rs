//! Services (core/v1): named by DNS-1035 labels; ClusterIPs and NodePorts are
//! allocated in the same etcd transaction as the object (see
//! [`crate::registry::allocator`]) and may not change once set;
//! `status.loadBalancer` is always present.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::{openapi_ref, NameRule, StorageHooks};
use crate::kinds::table::{age, arr, col, get, i, map_selector_string, name, or_none, s, Column, AGE, NAME};
use crate::kinds::validation::{check_labels, check_port, check_protocol, Errors};
use crate::kinds::{status, table, Resource, Strategy};
use crate::meta::names::{check_dns1035_label, check_dns1123_label};
use crate::status::{ApiResult, FieldError};

/// The `Service` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Service",
    plural: "services",
    singular: "service",
    namespaced: true,
    short_names: &["svc"],
    categories: &["all"],
    subresources: &[status("Service", "", "v1")],
    field_labels: Some(&["metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"]),
};

/// How `Service` objects behave.
pub struct Services;

impl Strategy for Services {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::Service>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::Service>(generator)
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj_mut(obj, "spec") else { return };
        default(spec, "type", json!("ClusterIP"));
        let ty = spec.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
        if ty != "ExternalName" {
            default(spec, "sessionAffinity", json!("None"));
            default(spec, "internalTrafficPolicy", json!("Cluster"));
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            default(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        if ty == "LoadBalancer" {
            default(spec, "allocateLoadBalancerNodePorts", json!(true));
        }
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                default(p, "protocol", json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    default(p, "targetPort", port);
                }
            }
        }
    }

    fn empty_status(&self, obj: &mut Value) {
        if let Some(status) = obj_mut(obj, "status") {
            default(status, "loadBalancer", json!({}));
        }
    }

    fn name_rule(&self) -> NameRule {
        check_dns1035_label
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Errors::default();
        validate_service(&mut errs, obj.get("spec"));
        errs.0
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let ip = |v: &Value| {
            v.pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let ty = |v: &Value| {
            v.pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string()
        };
        let (old_ip, new_ip) = (ip(old), ip(new));
        if !old_ip.is_empty() && old_ip != new_ip && ty(old) != "ExternalName" && ty(new) != "ExternalName" {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                &Value::String(new_ip),
                "may not change once set",
            ));
        }
        errs
    }

    fn storage(&self) -> StorageHooks {
        StorageHooks {
            allocates_service_addresses: true,
            ..Default::default()
        }
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

fn validate_service(errs: &mut Errors, spec: Option<&Value>) {
    let Some(spec) = spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        errs.push(FieldError::not_supported(
            "spec.type",
            spec.get("type").unwrap_or(&Value::Null),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = spec.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
    if ports.is_empty() && ty != "ExternalName" && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let local = spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
    if let Some(hc) = spec.get("healthCheckNodePort").filter(|v| v.as_i64().is_some_and(|p| p != 0)) {
        if !(ty == "LoadBalancer" && local) {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    }
    if spec.get("allocateLoadBalancerNodePorts").is_some_and(|v| !v.is_null()) && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if headless && matches!(ty, "NodePort" | "LoadBalancer") {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            &Value::String("None".into()),
            format!("may not be set to 'None' for {ty} services"),
        ));
    }
    let mut names = Vec::new();
    let mut seen = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        }
        if !name.is_empty() {
            if let Err(e) = check_dns1123_label(name) {
                errs.push(FieldError::invalid(
                    format!("{path}.name"),
                    &Value::String(name.into()),
                    e,
                ));
            }
            if names.contains(&name) {
                errs.push(FieldError::duplicate(
                    format!("{path}.name"),
                    &Value::String(name.into()),
                ));
            }
            names.push(name);
        }
        check_port(errs, p.get("port"), &format!("{path}.port"), true);
        check_protocol(errs, p.get("protocol"), &format!("{path}.protocol"));
        match p.get("targetPort") {
            Some(Value::Number(n)) if !(1..=65535).contains(&n.as_i64().unwrap_or(0)) => {
                errs.push(FieldError::invalid(
                    format!("{path}.targetPort"),
                    &Value::Number(n.clone()),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            Some(Value::String(s))
                if (s.is_empty()
                    || s.len() > 15
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')) =>
            {
                errs.push(FieldError::invalid(
                    format!("{path}.targetPort"),
                    &Value::String(s.clone()),
                    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), at most 15 characters",
                ));
            }
            _ => {}
        }
        if let Some(np) = p.get("nodePort") {
            if np.as_i64() != Some(0) && (ty == "ClusterIP" || ty == "ExternalName") {
                errs.push(FieldError::forbidden(
                    format!("{path}.nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            }
        }
        let key = (
            p.get("port").and_then(Value::as_i64),
            p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string(),
        );
        if seen.contains(&key) {
            errs.push(FieldError::duplicate(
                path.to_string(),
                &serde_json::json!({"port": key.0, "protocol": key.1}),
            ));
        }
        seen.push(key);
    }
    if let Some(sel) = spec.get("selector") {
        check_labels(errs, Some(sel), "spec.selector");
    }
    if let Some(sa) = spec.get("sessionAffinity") {
        if !matches!(sa.as_str(), Some("None" | "ClientIP")) {
            errs.push(FieldError::not_supported(
                "spec.sessionAffinity",
                sa,
                &["ClientIP", "None"],
            ));
        }
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", 0, "The type of the service."),
    col("Cluster-IP", "string", 0, "The cluster IP of the service."),
    col("External-IP", "string", 0, "The external IP of the service."),
    col(
        "Port(s)",
        "string",
        0,
        "The ports of the service: port[:nodePort]/protocol.",
    ),
    AGE,
    col("Selector", "string", 1, "The label selector of the service."),
];

fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = arr(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match s(svc, &["spec", "type"]) {
        "ExternalName" => s(svc, &["spec", "externalName"]).to_string(),
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(svc, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|i| {
                    let ip = s(i, &["ip"]);
                    if ip.is_empty() {
                        s(i, &["hostname"]).to_string()
                    } else {
                        ip.to_string()
                    }
                })
                .filter(|x| !x.is_empty())
                .collect();
            ips.extend(external.iter().map(|s| s.to_string()));
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            }
        }
        _ => or_none(external.join(",")),
    }
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = arr(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let protocol = match s(p, &["protocol"]) {
                "" => "TCP",
                other => other,
            };
            let node_port = i(p, &["nodePort"]);
            if node_port > 0 {
                format!("{}:{node_port}/{protocol}", i(p, &["port"]))
            } else {
                format!("{}/{protocol}", i(p, &["port"]))
            }
        })
        .collect();
    or_none(ports.join(","))
}

fn row(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ty = match s(svc, &["spec", "type"]) {
        "" => "ClusterIP",
        other => other,
    };
    vec![
        name(svc),
        json!(ty),
        json!(or_none(s(svc, &["spec", "clusterIP"]).to_string())),
        json!(service_external_ip(svc)),
        json!(service_ports(svc)),
        age(svc, now),
        json!(or_none(map_selector_string(
            get(svc, &["spec", "selector"]).and_then(Value::as_object)
        ))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_load_balancers_and_no_ports() {
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.11"}});
        assert_eq!(service_external_ip(&lb), "<pending>");
        assert_eq!(service_ports(&lb), "<none>");
    }

    #[test]
    fn load_balancer_only_fields_are_refused_elsewhere() {
        let lines = |spec: Value| -> Vec<String> {
            let mut errs = Errors::default();
            validate_service(&mut errs, Some(&spec));
            errs.0.iter().map(FieldError::to_line).collect()
        };
        assert_eq!(
            lines(json!({"type": "NodePort", "externalTrafficPolicy": "Local", "healthCheckNodePort": 32000,
                "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]})),
            [
                "spec.healthCheckNodePort: Invalid value: 32000: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'",
            ]
        );
        assert!(lines(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 32000,
            "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}))
        .is_empty());
        let mut lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        Services.default(&mut lb);
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], json!(true));
    }
}
