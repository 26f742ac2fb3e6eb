//! EndpointSlice controller: for every Service with a selector, slices
//! listing the matching pods that have an IP.
//!
//! Slices are labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by`, owned by the Service, hold at
//! most `--max-endpoints-per-slice` endpoints, and group pods whose named
//! target ports resolve to the same numbers. Each endpoint carries its
//! address, nodeName, targetRef and ready/serving/terminating conditions.
//! Changes of one Service within `--endpoint-updates-batch-period` are
//! written once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use crate::cached_pod::CachedPod;
use crate::expectations::Expectations;
use crate::pods::{self, controller_ref};
use crate::{runner, Context, Error};

/// Label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller managing a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`] (Kubernetes' own, so tools recognise it).
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// Subscribes the EndpointSlice controller and returns its loop.
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
    let from_slices = ctx.informers.endpointslices.trigger(|s: &EndpointSlice| {
        let svc = s.labels().get(SERVICE_NAME_LABEL)?;
        (s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY))
            .then(|| ObjectRef::new(svc).within(&s.namespace().unwrap_or_default()))
    });
    let batch = ctx.config.endpoint_updates_batch_period;
    let expectations = Arc::new(Expectations::default());
    runner::run_batched(
        "endpointslice",
        ctx,
        store,
        vec![own.boxed(), from_pods.boxed(), from_slices.boxed()],
        batch,
        move |svc, ctx| reconcile(svc, ctx, expectations.clone()),
    )
}

/// Services in the pod's namespace whose selector matches it.
pub fn services_for_pod(store: &Store<Service>, pod: &CachedPod) -> Vec<ObjectRef<Service>> {
    let ns = pod.namespace();
    store
        .state()
        .iter()
        .filter(|s| s.namespace() == ns)
        .filter(|s| service_selector(s).is_some_and(|sel| sel.matches(pod.labels())))
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

/// The Service's selector, if it has a non-empty one (only those get endpoints).
pub fn service_selector(svc: &Service) -> Option<Selector> {
    let sel = svc.spec.as_ref()?.selector.clone().filter(|s| !s.is_empty())?;
    Some(sel.into_iter().collect())
}

/// Pods selected by the Service that have an IP and have not terminated.
pub fn selected_pods(store: &Store<CachedPod>, svc: &Service, sel: &Selector) -> Vec<Arc<CachedPod>> {
    let ns = svc.namespace();
    let mut pods: Vec<Arc<CachedPod>> = store
        .state()
        .into_iter()
        .filter(|p| p.namespace() == ns && sel.matches(p.labels()))
        .filter(|p| !pods::is_terminated(p))
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.pod_ip.as_ref())
                .is_some_and(|ip| !ip.is_empty())
        })
        .collect();
    pods.sort_by_key(|p| p.name_any());
    pods
}

/// The target port of a service port resolved for one pod (named ports look
/// up the pod's container ports); `None` when a named port is not found.
pub fn resolve_target_port(port: &k8s_openapi::api::core::v1::ServicePort, pod: &CachedPod) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find_map(|cp| {
                    (cp.name.as_deref() == Some(name.as_str())
                        && cp.protocol.clone().unwrap_or_else(|| "TCP".into()) == protocol)
                        .then_some(cp.container_port)
                })
        }
    }
}

/// Endpoint ports of the Service for one pod (ports that do not resolve are left out).
pub fn ports_for_pod(svc: &Service, pod: &CachedPod) -> Vec<EndpointPort> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(resolve_target_port(p, pod)?),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect()
}

/// The endpoint of one pod.
pub fn endpoint_for_pod(svc: &Service, pod: &CachedPod) -> Endpoint {
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let serving = pods::is_ready(pod) || publish_not_ready;
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(serving && !terminating),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: endpoint_hostname(svc, pod),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(pods::target_ref(pod)),
        zone: None,
        hints: None,
        deprecated_topology: None,
    }
}

/// The endpoint's `hostname`, as Kubernetes sets it: the pod's
/// `spec.hostname` when its `spec.subdomain` names this Service (cluster DNS
/// then answers `<hostname>.<service>.<ns>.svc.<domain>`).
pub fn endpoint_hostname(svc: &Service, pod: &CachedPod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_ns = svc.metadata.namespace == pod.metadata.namespace;
    (same_ns && spec.subdomain.is_some() && spec.subdomain == svc.metadata.name).then(|| hostname.to_string())
}

/// Desired slice contents: (addressType, ports, endpoints ≤ `max` each).
pub fn desired_slices(
    svc: &Service,
    pods: &[Arc<CachedPod>],
    max: usize,
) -> Vec<(String, Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<(String, String), (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in pods {
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
        let ports = ports_for_pod(svc, pod);
        let key = (family.to_string(), serde_json::to_string(&ports).unwrap_or_default());
        groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(endpoint_for_pod(svc, pod));
    }
    let mut out = Vec::new();
    for ((family, _), (ports, endpoints)) in groups {
        for chunk in endpoints.chunks(max.max(1)) {
            out.push((family.clone(), ports.clone(), chunk.to_vec()));
        }
    }
    out
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>, expectations: Arc<Expectations>) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let key = pods::key_of(&*svc);
    let Some(sel) = service_selector(&svc) else {
        return Ok(Action::await_change());
    };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let slice_store = ctx.informers.endpointslices.store();
    let exists = |n: &str| slice_store.get(&ObjectRef::new(n).within(&ns)).is_some();
    if !expectations.satisfied(&key, exists, exists) {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let pods = selected_pods(&ctx.informers.pods.store(), &svc, &sel);
    let desired = desired_slices(&svc, &pods, ctx.config.max_endpoints_per_slice);
    let mut existing: Vec<Arc<EndpointSlice>> = slice_store
        .state()
        .into_iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| s.labels().get(SERVICE_NAME_LABEL) == Some(&svc.name_any()))
        .filter(|s| s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY))
        .collect();
    existing.sort_by_key(|s| s.name_any());
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let mut labels = svc.labels().clone();
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());

    // Keep slices with the right address type, reuse them in order, create the rest.
    let mut reuse = existing.iter();
    for (family, ports, endpoints) in &desired {
        let want = |name: String, rv: Option<String>| EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![controller_ref(&*svc)]),
                resource_version: rv,
                ..Default::default()
            },
            address_type: family.clone(),
            endpoints: Some(endpoints.clone()),
            ports: Some(ports.clone()),
        };
        match reuse.next() {
            Some(cur) if cur.address_type == *family => {
                let same = cur.endpoints.as_ref() == Some(endpoints)
                    && cur.ports.clone().unwrap_or_default() == *ports
                    && cur.metadata.labels.as_ref() == Some(&labels);
                if !same {
                    let slice = want(cur.name_any(), cur.resource_version());
                    match api.replace(&cur.name_any(), &PostParams::default(), &slice).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                            return Ok(Action::requeue(Duration::from_millis(100)))
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
            }
            Some(cur) => {
                delete_slice(&api, &cur.name_any()).await?;
                create_slice(&api, want(slice_name(&svc), None), &key, &expectations).await?;
            }
            None => create_slice(&api, want(slice_name(&svc), None), &key, &expectations).await?,
        }
    }
    for extra in reuse {
        delete_slice(&api, &extra.name_any()).await?;
    }
    Ok(Action::requeue(ctx.config.resync_period))
}

fn slice_name(svc: &Service) -> String {
    let base: String = svc.name_any().chars().take(57).collect();
    format!("{base}-{}", pods::random_suffix())
}

async fn create_slice(
    api: &Api<EndpointSlice>,
    slice: EndpointSlice,
    key: &str,
    expectations: &Expectations,
) -> Result<(), Error> {
    let created = api.create(&PostParams::default(), &slice).await?;
    expectations.expect_create(key, created.name_any());
    Ok(())
}

async fn delete_slice(api: &Api<EndpointSlice>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };

    fn pod(name: &str, ip: &str, ready: bool, http_port: i32) -> Arc<CachedPod> {
        Arc::new(CachedPod::of(&whole_pod(name, ip, ready, http_port)))
    }

    fn whole_pod(name: &str, ip: &str, ready: bool, http_port: i32) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: http_port,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some(ip.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn hostname_only_under_a_matching_subdomain() {
        let with = |hostname: Option<&str>, subdomain: Option<&str>| {
            let mut p = (*pod("p", "10.0.0.1", true, 80)).clone();
            let spec = p.spec.as_mut().unwrap();
            spec.hostname = hostname.map(Into::into);
            spec.subdomain = subdomain.map(Into::into);
            endpoint_for_pod(&svc(), &p).hostname
        };
        assert_eq!(with(Some("web-0"), Some("web")), Some("web-0".into()));
        assert_eq!(with(Some("web-0"), Some("other")), None);
        assert_eq!(with(Some("web-0"), None), None);
        assert_eq!(with(None, Some("web")), None);
    }

    fn svc() -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "web".into())])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::String("http".into())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn named_ports_resolve_per_pod_and_group_slices() {
        let pods = vec![
            pod("a", "10.0.0.1", true, 8080),
            pod("b", "10.0.0.2", false, 8080),
            pod("c", "10.0.0.3", true, 9090),
        ];
        let slices = desired_slices(&svc(), &pods, 100);
        assert_eq!(slices.len(), 2);
        let ports: Vec<i32> = slices.iter().map(|(_, p, _)| p[0].port.unwrap()).collect();
        assert_eq!(ports, [8080, 9090]);
        let b = &slices[0].2[1];
        assert_eq!(b.addresses, ["10.0.0.2"]);
        assert_eq!(b.conditions.as_ref().unwrap().ready, Some(false));
        assert_eq!(b.node_name.as_deref(), Some("n1"));
        assert_eq!(b.target_ref.as_ref().unwrap().name.as_deref(), Some("b"));
    }

    #[test]
    fn at_most_max_endpoints_per_slice() {
        let pods: Vec<_> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                    true,
                    8080,
                )
            })
            .collect();
        let slices = desired_slices(&svc(), &pods, 100);
        let sizes: Vec<usize> = slices.iter().map(|(_, _, e)| e.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
    }
}
