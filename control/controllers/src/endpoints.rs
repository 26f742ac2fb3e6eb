//! Endpoints controller: the legacy core/v1 Endpoints object of each Service
//! with a selector (same name as the Service), for clients that still read
//! it (`kubectl describe service`). Ready pods go to `addresses`, others to
//! `notReadyAddresses`; pods whose named ports resolve alike share a subset.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use crate::cached_pod::CachedPod;
use crate::endpointslice::{ports_for_pod, selected_pods, service_selector, services_for_pod};
use crate::{pods, runner, Context, Error};

/// Subscribes the Endpoints controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.services.store();
    let own = ctx
        .informers
        .services
        .trigger(|s: &Service| Some(ObjectRef::from_obj(s)));
    let svc_store = store.clone();
    let from_pods = ctx
        .informers
        .pods
        .trigger(move |p: &CachedPod| services_for_pod(&svc_store, p));
    let batch = ctx.config.endpoint_updates_batch_period;
    runner::run_batched(
        "endpoints",
        ctx,
        store,
        vec![own.boxed(), from_pods.boxed()],
        batch,
        reconcile,
    )
}

/// Subsets for the selected pods (terminating pods are left out).
pub fn subsets(svc: &Service, pods: &[Arc<CachedPod>]) -> Vec<EndpointSubset> {
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut groups: BTreeMap<String, EndpointSubset> = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let ports: Vec<EndpointPort> = ports_for_pod(svc, pod)
            .into_iter()
            .map(|p| EndpointPort {
                name: p.name.filter(|n| !n.is_empty()),
                port: p.port.unwrap_or_default(),
                protocol: p.protocol,
                app_protocol: p.app_protocol,
            })
            .collect();
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let subset = groups.entry(key).or_insert_with(|| EndpointSubset {
            ports: Some(ports),
            ..Default::default()
        });
        let address = EndpointAddress {
            ip: pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pods::target_ref(&**pod)),
            hostname: None,
        };
        if pods::is_ready(pod) || publish_not_ready {
            subset.addresses.get_or_insert_with(Vec::new).push(address);
        } else {
            subset.not_ready_addresses.get_or_insert_with(Vec::new).push(address);
        }
    }
    groups.into_values().collect()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(sel) = service_selector(&svc) else {
        return Ok(Action::await_change());
    };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let pods = selected_pods(&ctx.informers.pods.store(), &svc, &sel);
    let subsets = subsets(&svc, &pods);
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let current = api.get_opt(&svc.name_any()).await?;
    let mut labels = svc.labels().clone();
    labels.insert(
        "endpoints.kubernetes.io/managed-by".into(),
        "endpoint-controller".into(),
    );
    let want = |rv: Option<String>| Endpoints {
        metadata: ObjectMeta {
            name: Some(svc.name_any()),
            namespace: Some(ns.clone()),
            labels: Some(labels.clone()),
            resource_version: rv,
            ..Default::default()
        },
        subsets: if subsets.is_empty() {
            None
        } else {
            Some(subsets.clone())
        },
    };
    match current {
        None => match api.create(&PostParams::default(), &want(None)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Ok(Action::requeue(std::time::Duration::from_millis(100)))
            }
            Err(err) => return Err(err.into()),
        },
        Some(cur) => {
            if cur.subsets.clone().unwrap_or_default() != subsets || cur.metadata.labels.as_ref() != Some(&labels) {
                match api
                    .replace(&svc.name_any(), &PostParams::default(), &want(cur.resource_version()))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        return Ok(Action::requeue(std::time::Duration::from_millis(100)))
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        }
    }
    Ok(Action::requeue(ctx.config.resync_period))
}
