//! The registration an administrator applies with Kubernetes'
//! metrics-server manifest, made here by the server itself at start
//! (server-side apply, field manager `metrics-server`, so it is idempotent
//! and a restart updates the address, port and CA):
//!
//! - Service `kube-system/metrics-server` without a selector, port 443
//!   (`https`) to the serving port;
//! - EndpointSlice `kube-system/metrics-server` (label
//!   `kubernetes.io/service-name`, managed by `metrics-server.sluice.dev`, so
//!   the EndpointSlice controller leaves it alone) with the advertised
//!   address, ready: the API server's aggregator dials that endpoint;
//! - APIService `v1beta1.metrics.k8s.io` for that Service with `caBundle`
//!   the serving CA (verified, not `insecureSkipTLSVerify`), group priority
//!   100 and version priority 100 as Kubernetes' manifest.
//!
//! The RBAC that goes with it (the server's own read access and
//! `system:aggregated-metrics-reader`) is in the API server's bootstrap
//! policy.

use std::net::IpAddr;

use anyhow::{Context, Result};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

/// Namespace of the Service.
pub const NAMESPACE: &str = "kube-system";
/// Name of the Service and EndpointSlice.
pub const NAME: &str = "metrics-server";
/// Name of the APIService.
pub const APISERVICE: &str = "v1beta1.metrics.k8s.io";
/// The host name the aggregator verifies the serving certificate for.
pub const SERVICE_HOST: &str = "metrics-server.kube-system.svc";
const FIELD_MANAGER: &str = "metrics-server";

/// The three objects, for `address:port` and the serving CA.
pub fn objects(address: IpAddr, port: u16, ca_pem: &str) -> (Value, Value, Value) {
    let labels = json!({"k8s-app": "metrics-server"});
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    let family = if address.is_ipv4() { "IPv4" } else { "IPv6" };
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {
            "k8s-app": "metrics-server",
            "kubernetes.io/service-name": NAME,
            "endpointslice.kubernetes.io/managed-by": "metrics-server.sluice.dev",
        }},
        "addressType": family,
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
    });
    let apiservice = json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": APISERVICE, "labels": labels},
        "spec": {
            "group": crate::api::GROUP, "version": crate::api::VERSION,
            "service": {"name": NAME, "namespace": NAMESPACE, "port": 443},
            "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
            "groupPriorityMinimum": 100, "versionPriority": 100,
        },
    });
    (service, slice, apiservice)
}

/// Apply the registration.
pub async fn ensure(client: &kube::Client, address: IpAddr, port: u16, ca_pem: &str) -> Result<()> {
    let (service, slice, apiservice) = objects(address, port, ca_pem);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .patch(NAME, &pp, &Patch::Apply(&service))
        .await
        .context("applying Service kube-system/metrics-server")?;
    Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE)
        .patch(NAME, &pp, &Patch::Apply(&slice))
        .await
        .context("applying EndpointSlice kube-system/metrics-server")?;
    Api::<APIService>::all(client.clone())
        .patch(APISERVICE, &pp, &Patch::Apply(&apiservice))
        .await
        .context("applying APIService v1beta1.metrics.k8s.io")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registration_points_at_the_serving_address() {
        let (svc, slice, api) = objects("127.0.0.1".parse().unwrap(), 4443, "PEM");
        assert!(svc["spec"].get("selector").is_none());
        assert_eq!(svc["spec"]["ports"][0]["port"], 443);
        assert_eq!(
            slice["ports"][0],
            json!({"name": "https", "port": 4443, "protocol": "TCP"})
        );
        assert_eq!(slice["endpoints"][0]["addresses"][0], "127.0.0.1");
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "metrics-server"
        );
        assert_eq!(api["spec"]["caBundle"], "UEVN");
        assert_eq!(api["spec"]["service"]["port"], 443);
    }
}
