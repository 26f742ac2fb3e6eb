//! ComponentStatuses (core/v1, deprecated in Kubernetes 1.19 but still
//! served and used by `kubectl get cs`): read-only objects computed on each
//! read, never stored. `etcd-0` is healthy when etcd answers; the scheduler
//! and the controller manager are healthy while their leader Lease in
//! `kube-system` is renewed (Sluice's components have no health port the
//! API server probes, as Kubernetes' do; the Lease is their heartbeat).

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::strategy::{openapi_ref, Computed};
use crate::kinds::table::{self, col, name, Column, NAME};
use crate::kinds::{lease, Resource, Strategy};
use crate::status::ApiResult;
use crate::storage::store::{self, Store};

/// The `ComponentStatus` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ComponentStatus",
    plural: "componentstatuses",
    singular: "componentstatus",
    namespaced: false,
    short_names: &["cs"],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// The components reported besides etcd, with their leader Lease.
const COMPONENTS: &[(&str, &str)] = &[
    ("scheduler", "sluice-scheduler"),
    ("controller-manager", "sluice-controller-manager"),
];

/// How ComponentStatuses behave.
pub struct ComponentStatuses;

fn status(name: &str, healthy: bool, message: &str, error: &str) -> Value {
    let mut cond = json!({"type": "Healthy", "status": if healthy { "True" } else { "False" }});
    if !message.is_empty() {
        cond["message"] = json!(message);
    }
    if !error.is_empty() {
        cond["error"] = json!(error);
    }
    json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "conditions": [cond],
    })
}

/// Whether a leader Lease was renewed within its duration at `now`.
fn lease_health(lease: Option<&Value>, now: DateTime<Utc>) -> Result<(), String> {
    let Some(l) = lease else {
        return Err("no leader Lease: the component is not running".into());
    };
    let renewed = l
        .pointer("/spec/renewTime")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or("the leader Lease was never renewed")?;
    let duration = l.pointer("/spec/leaseDurationSeconds").and_then(Value::as_i64).unwrap_or(15);
    if now.signed_duration_since(renewed.with_timezone(&Utc)).num_seconds() > duration {
        return Err(format!("the leader Lease was last renewed at {}", renewed.to_rfc3339()));
    }
    Ok(())
}

impl Computed for ComponentStatuses {
    fn list<'a>(&'a self, store: &'a Store) -> Pin<Box<dyn Future<Output = ApiResult<Vec<Value>>> + Send + 'a>> {
        Box::pin(async move {
            let mut items = vec![match store.current_revision().await {
                Ok(_) => status("etcd-0", true, "ok", ""),
                Err(e) => status("etcd-0", false, "", &e.message),
            }];
            let now = Utc::now();
            for (component, lease_name) in COMPONENTS {
                let key = store::object_key(&lease::RESOURCE, Some("kube-system"), lease_name);
                let lease = store.get(&key).await?.map(|s| s.object);
                items.push(match lease_health(lease.as_ref(), now) {
                    Ok(()) => status(component, true, "ok", ""),
                    Err(e) => status(component, false, "", &e),
                });
            }
            Ok(items)
        })
    }
}

impl Strategy for ComponentStatuses {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::ComponentStatus>(generator)
    }

    fn deprecation(&self) -> Option<String> {
        Some("v1 ComponentStatus is deprecated in v1.19+".into())
    }

    fn verbs(&self) -> &'static [&'static str] {
        &["get", "list"]
    }

    fn computed(&self) -> Option<&dyn Computed> {
        Some(self)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
        let cond = obj.pointer("/conditions/0").cloned().unwrap_or(Value::Null);
        let healthy = cond["status"] == "True";
        let text = |k: &str| cond.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        vec![
            name(obj),
            json!(if healthy { "Healthy" } else { "Unhealthy" }),
            json!(text("message")),
            json!(text("error")),
        ]
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", 0, "Status of the component conditions"),
    col("Message", "string", 0, "Message of the component conditions"),
    col("Error", "string", 0, "Error of the component conditions"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_renewed_within_their_duration_are_healthy() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:20Z").unwrap().with_timezone(&Utc);
        let lease = |t: &str| json!({"spec": {"renewTime": t, "leaseDurationSeconds": 15}});
        assert!(lease_health(Some(&lease("2026-01-01T12:00:10.000000Z")), now).is_ok());
        assert!(lease_health(Some(&lease("2026-01-01T11:59:00.000000Z")), now).is_err());
        assert!(lease_health(None, now).is_err());
        let row = ComponentStatuses.cells(&status("etcd-0", true, "ok", ""), now);
        assert_eq!(row, vec![json!("etcd-0"), json!("Healthy"), json!("ok"), json!("")]);
    }
}
