//! Which flows a reader wants: by namespace, Service, pod and verdict, over
//! a flow as the node daemon serves it (JSON with `verdict`, `service`,
//! `source.pod` and `backend.pod`). One filter for both ends: the node
//! daemon applies it before sending (`GET /dataplane/flows?verdict=...`),
//! and `ctl dataplane flows` again after it filled in the pod names the
//! node could not know.
//!
//! A node names the pods it knows; a side with an address but no pod name
//! could be any pod, so on the node ([`Unnamed::MayMatch`]) such a flow
//! passes a pod or namespace filter for the reader to decide. A side the
//! node says is itself (`"node"`: the client of a socket-level flow) is no
//! pod. A flow no Service balanced (a masqueraded one) has no `service`: a
//! Service filter never matches it.

use crate::flows::FlowVerdict;
use serde_json::Value;

/// Which flows to show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// Only flows touching this namespace (Service, source pod or backend pod).
    pub namespace: Option<String>,
    /// Only flows of this Service (`namespace/name`).
    pub service: Option<String>,
    /// Only flows from or to this pod (`name` or `namespace/name`).
    pub pod: Option<String>,
    /// Only flows with this verdict.
    pub verdict: Option<FlowVerdict>,
}

/// What a side with an address but no pod name means to a pod or namespace filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unnamed {
    /// It is no pod (the reader has every name).
    NoPod,
    /// It may be any pod (the node, which names only the pods it knows).
    MayMatch,
}

impl FlowFilter {
    /// The filter as query parameters (`namespace=..&verdict=..`), empty without criteria.
    pub fn to_query(&self) -> String {
        let pairs: Vec<(&str, String)> = [
            ("namespace", self.namespace.clone()),
            ("service", self.service.clone()),
            ("pod", self.pod.clone()),
            ("verdict", self.verdict.map(|v| v.as_str().to_ascii_lowercase())),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    /// Take this filter's parameter `key=value`; false when `key` is none of them.
    pub fn take_param(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "namespace" | "service" | "pod" | "verdict" if value.is_empty() => return Err(format!("empty {key}")),
            "namespace" => self.namespace = Some(value.to_string()),
            "service" if !value.contains('/') => return Err(format!("invalid service {value:?}: namespace/name")),
            "service" => self.service = Some(value.to_string()),
            "pod" => self.pod = Some(value.to_string()),
            "verdict" => {
                self.verdict = Some(
                    FlowVerdict::parse(value)
                        .ok_or_else(|| format!("invalid verdict {value:?}: forwarded, dropped or rejected"))?,
                )
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The `namespace` and `name` of a side's pod, if named.
pub fn pod_of(side: &Value) -> Option<(&str, &str)> {
    let p = side.get("pod")?;
    Some((p.get("namespace")?.as_str()?, p.get("name")?.as_str()?))
}

/// A side with an address but no pod name, that may still be a pod (not the node itself).
fn unnamed(side: &Value) -> bool {
    side.get("ip").is_some() && side.get("pod").is_none() && side.get("node").is_none()
}

/// The `namespace` and `name` of a flow's Service, if named.
pub fn service_of(flow: &Value) -> Option<(&str, &str)> {
    let s = flow.get("service")?;
    Some((s.get("namespace")?.as_str()?, s.get("name")?.as_str()?))
}

/// Whether `flow` passes `filter`, a side without pod name taken as `unnamed` says.
pub fn matches(flow: &Value, filter: &FlowFilter, unnamed_side: Unnamed) -> bool {
    if let Some(v) = filter.verdict {
        if flow.get("verdict").and_then(Value::as_str) != Some(v.as_str()) {
            return false;
        }
    }
    let sides = [&flow["source"], &flow["backend"]];
    let pods: Vec<(&str, &str)> = sides.into_iter().filter_map(pod_of).collect();
    let may_be_any = unnamed_side == Unnamed::MayMatch && sides.into_iter().any(unnamed);
    if let Some(ns) = &filter.namespace {
        let touches = service_of(flow).is_some_and(|(n, _)| n == ns) || pods.iter().any(|(n, _)| n == ns);
        if !touches && !may_be_any {
            return false;
        }
    }
    if let Some(want) = &filter.service {
        if service_of(flow).is_none_or(|(ns, name)| format!("{ns}/{name}") != *want) {
            return false;
        }
    }
    if let Some(want) = &filter.pod {
        let hit = pods.iter().any(|(ns, name)| {
            if want.contains('/') {
                format!("{ns}/{name}") == *want
            } else {
                name == want
            }
        });
        if !hit && !may_be_any {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A forwarded flow from an unnamed client to pod default/web-1.
    fn forwarded() -> Value {
        json!({
            "verdict": "FORWARDED", "reason": "NewFlow",
            "source": {"ip": "10.0.0.9", "port": 40000},
            "service": {"type": "ClusterIP", "namespace": "default", "name": "web", "port": 80},
            "backend": {"ip": "10.252.0.5", "port": 8080, "pod": {"namespace": "default", "name": "web-1"}},
        })
    }

    /// A rejected flow from pod shop/client to Service shop/empty.
    fn rejected() -> Value {
        json!({
            "verdict": "REJECTED", "reason": "NoBackendReject",
            "source": {"ip": "10.252.1.7", "port": 41000, "pod": {"namespace": "shop", "name": "client"}},
            "service": {"type": "ClusterIP", "namespace": "shop", "name": "empty", "port": 80},
        })
    }

    fn only(filter: FlowFilter, unnamed: Unnamed) -> Vec<&'static str> {
        [("NewFlow", forwarded()), ("NoBackendReject", rejected())]
            .into_iter()
            .filter(|(_, f)| matches(f, &filter, unnamed))
            .map(|(r, _)| r)
            .collect()
    }

    /// A socket-level flow from the node itself to pod default/web-1.
    fn socket() -> Value {
        json!({
            "verdict": "FORWARDED", "reason": "SocketLb", "hook": "socket",
            "source": {"ip": "0.0.0.0", "port": 0, "node": "node-1"},
            "service": {"type": "ClusterIP", "namespace": "default", "name": "web", "port": 80},
            "backend": {"ip": "10.252.0.5", "port": 8080, "pod": {"namespace": "default", "name": "web-1"}},
        })
    }

    /// Pod shop/client's flow to an address outside the cluster, masqueraded.
    fn masqueraded() -> Value {
        json!({
            "verdict": "FORWARDED", "reason": "Masquerade", "hook": "from-pod",
            "source": {"ip": "10.252.1.7", "port": 41000, "pod": {"namespace": "shop", "name": "client"}},
            "destination": {"ip": "192.0.2.80", "port": 443},
            "masquerade": {"ip": "10.0.0.2", "port": 41000},
        })
    }

    #[test]
    fn filters_by_namespace_service_pod_and_verdict() {
        let none = Unnamed::NoPod;
        assert_eq!(only(FlowFilter::default(), none), ["NewFlow", "NoBackendReject"]);
        let ns = |n: &str| FlowFilter {
            namespace: Some(n.into()),
            ..Default::default()
        };
        assert_eq!(only(ns("shop"), none), ["NoBackendReject"]);
        assert_eq!(only(ns("default"), none), ["NewFlow"]);
        let service = FlowFilter {
            service: Some("default/web".into()),
            ..Default::default()
        };
        assert_eq!(only(service, none), ["NewFlow"]);
        for pod in ["web-1", "default/web-1"] {
            let f = FlowFilter {
                pod: Some(pod.into()),
                ..Default::default()
            };
            assert_eq!(only(f, none), ["NewFlow"], "{pod}");
        }
        let other = FlowFilter {
            pod: Some("other/web-1".into()),
            ..Default::default()
        };
        assert_eq!(only(other, none), Vec::<&str>::new());
        let rejected = FlowFilter {
            verdict: Some(FlowVerdict::Rejected),
            ..Default::default()
        };
        assert_eq!(only(rejected, none), ["NoBackendReject"]);
    }

    #[test]
    fn on_the_node_an_unnamed_side_may_be_the_pod_asked_for() {
        // The forwarded flow's client has no name: it may be shop/client.
        let client = FlowFilter {
            pod: Some("shop/client".into()),
            ..Default::default()
        };
        assert_eq!(only(client.clone(), Unnamed::MayMatch), ["NewFlow", "NoBackendReject"]);
        assert_eq!(only(client, Unnamed::NoPod), ["NoBackendReject"]);
        // Service and verdict are decided on the node all the same.
        let service = FlowFilter {
            service: Some("shop/empty".into()),
            pod: Some("client".into()),
            ..Default::default()
        };
        assert_eq!(only(service, Unnamed::MayMatch), ["NoBackendReject"]);
    }

    #[test]
    fn the_node_as_client_is_no_pod_and_a_masqueraded_flow_has_no_service() {
        let pass = |f: &Value, filter: FlowFilter| matches(f, &filter, Unnamed::MayMatch);
        let pod = |p: &str| FlowFilter {
            pod: Some(p.into()),
            ..Default::default()
        };
        // On the node, the socket flow's client is known to be the node:
        // only its backend pod decides a pod filter.
        assert!(!pass(&socket(), pod("shop/client")));
        assert!(pass(&socket(), pod("web-1")));
        let ns = |n: &str| FlowFilter {
            namespace: Some(n.into()),
            ..Default::default()
        };
        assert!(!pass(&socket(), ns("shop")));
        // The masqueraded flow: its pod and namespace, never a Service.
        assert!(pass(&masqueraded(), pod("shop/client")));
        assert!(pass(&masqueraded(), ns("shop")));
        assert!(!pass(&masqueraded(), ns("default")));
        let service = FlowFilter {
            service: Some("shop/client".into()),
            ..Default::default()
        };
        assert!(!pass(&masqueraded(), service));
        let forwarded = FlowFilter {
            verdict: Some(FlowVerdict::Forwarded),
            ..Default::default()
        };
        assert!(pass(&masqueraded(), forwarded.clone()) && pass(&socket(), forwarded));
    }

    #[test]
    fn a_filter_travels_as_query_parameters() {
        let filter = FlowFilter {
            namespace: Some("shop".into()),
            service: Some("shop/web".into()),
            pod: Some("web-1".into()),
            verdict: Some(FlowVerdict::Dropped),
        };
        let query = filter.to_query();
        assert_eq!(query, "namespace=shop&service=shop%2Fweb&pod=web-1&verdict=dropped");
        let mut back = FlowFilter::default();
        for (k, v) in serde_urlencoded::from_str::<Vec<(String, String)>>(&query).unwrap() {
            assert_eq!(back.take_param(&k, &v), Ok(true), "{k}");
        }
        assert_eq!(back, filter);
        assert_eq!(FlowFilter::default().to_query(), "");
        let mut f = FlowFilter::default();
        assert_eq!(f.take_param("follow", "true"), Ok(false));
        assert!(f
            .take_param("verdict", "lost")
            .unwrap_err()
            .contains("forwarded, dropped or rejected"));
        assert!(f.take_param("service", "web").unwrap_err().contains("namespace/name"));
        assert!(f.take_param("pod", "").is_err());
    }
}
