//! Endpoints (core/v1): written by the endpoints controller.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, arr, col, i, name, s, Column, AGE, NAME};
use crate::kinds::{table, Resource, Strategy};
use crate::status::ApiResult;

/// The `Endpoints` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Endpoints",
    plural: "endpoints",
    singular: "endpoints",
    namespaced: true,
    short_names: &["ep"],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `Endpoints` objects behave.
pub struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::Endpoints>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::Endpoints>(generator)
    }

    fn validate(&self, obj: &Value) -> Vec<crate::status::FieldError> {
        special_addresses(obj)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

/// Endpoint addresses may not be special IPs (Kubernetes' `ValidateNonSpecialIP`).
fn special_addresses(ep: &Value) -> Vec<crate::status::FieldError> {
    use crate::status::FieldError;
    let mut errs = Vec::new();
    for (i, subset) in arr(ep, &["subsets"]).iter().enumerate() {
        for list in ["addresses", "notReadyAddresses"] {
            for (j, addr) in arr(subset, &[list]).iter().enumerate() {
                let field = format!("subsets[{i}].{list}[{j}].ip");
                let text = s(addr, &["ip"]);
                let value = json!(text);
                let Ok(ip) = text.parse::<std::net::IpAddr>() else {
                    errs.push(FieldError::invalid(field, &value, "must be a valid IP address"));
                    continue;
                };
                let (link_local, link_local_multicast) = match ip {
                    std::net::IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
                    std::net::IpAddr::V6(v6) => (
                        (v6.segments()[0] & 0xffc0) == 0xfe80,
                        (v6.segments()[0] & 0xff0f) == 0xff02,
                    ),
                };
                if ip.is_unspecified() {
                    errs.push(FieldError::invalid(
                        field.clone(),
                        &value,
                        format!("may not be unspecified ({text})"),
                    ));
                }
                if ip.is_loopback() {
                    errs.push(FieldError::invalid(
                        field.clone(),
                        &value,
                        "may not be in the loopback range (127.0.0.0/8, ::1/128)",
                    ));
                }
                if link_local {
                    errs.push(FieldError::invalid(
                        field.clone(),
                        &value,
                        "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                    ));
                }
                if link_local_multicast {
                    errs.push(FieldError::invalid(
                        field,
                        &value,
                        "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
                    ));
                }
            }
        }
    }
    errs
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("Endpoints", "string", 0, "Endpoints of the service: ip:port."),
    AGE,
];

/// The ENDPOINTS column: the first three `ip:port` pairs, then `+ N more...`.
fn endpoints_string(ep: &Value) -> String {
    let mut all: Vec<String> = Vec::new();
    for subset in arr(ep, &["subsets"]) {
        let ports = arr(subset, &["ports"]);
        for addr in arr(subset, &["addresses"]) {
            let ip = s(addr, &["ip"]);
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            for p in ports {
                all.push(format!("{ip}:{}", i(p, &["port"])));
            }
        }
    }
    if all.is_empty() {
        return "<none>".to_string();
    }
    let shown = all.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if all.len() > 3 {
        format!("{shown} + {} more...", all.len() - 3)
    } else {
        shown
    }
}

fn row(ep: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(ep), json!(endpoints_string(ep)), age(ep, now)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_column_shows_three_then_counts() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}], "ports": [{"port": 80}]}]});
        assert_eq!(endpoints_string(&ep), "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more...");
        assert_eq!(endpoints_string(&json!({})), "<none>");
    }
}
