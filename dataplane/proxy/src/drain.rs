//! Zero-loss endpoint removal on a pod's own node.
//!
//! In Kubernetes a deleted pod's containers get SIGTERM while every node's
//! proxy still sends it new connections, until the EndpointSlice change has
//! travelled through the API server to each node: those connections fail,
//! unless the user adds a `preStop: sleep`. Sluice's node daemon is both
//! kubelet and proxy, so on the pod's node the order is fixed here:
//!
//! 1. the proxy sees this node's pod with a `deletionTimestamp` and marks
//!    its address terminating in every frontend (established flows keep
//!    going, new flows go elsewhere) — before the EndpointSlice changes;
//! 2. once that revision is in the maps it publishes the pod's uid as
//!    drained ([`Drains`]), with whether the pod was a backend at all;
//! 3. the pod worker waits for that, then (for a backend) waits the node's
//!    endpoint drain delay so the other nodes see the slice's `terminating`
//!    too, and only then runs preStop hooks and sends SIGTERM.
//!
//! An address is drained only while no live pod of the node holds it (a
//! new pod may get the address of one whose object is still being deleted).

use k8s_openapi::api::core::v1::Pod;
use sluice_datapath::{Frontend, ServiceSpec};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Pods of this node in graceful deletion whose addresses are out of the
/// maps for new flows: uid → whether the pod was a backend of any frontend.
pub type Drained = BTreeMap<String, bool>;

/// The proxy's side: publishes what it has drained after each applied revision.
#[derive(Clone, Debug)]
pub struct DrainPublisher(Arc<watch::Sender<Drained>>);

/// The pod worker's side: waits until a pod is drained.
#[derive(Clone, Debug)]
pub struct Drains(watch::Receiver<Drained>);

/// A connected publisher and receiver.
pub fn channel() -> (DrainPublisher, Drains) {
    let (tx, rx) = watch::channel(Drained::new());
    (DrainPublisher(Arc::new(tx)), Drains(rx))
}

impl DrainPublisher {
    /// Publish the pods drained by the revision just applied.
    pub fn publish(&self, drained: Drained) {
        self.0.send_if_modified(|old| {
            let changed = *old != drained;
            *old = drained;
            changed
        });
    }
}

impl Drains {
    /// Wait until pod `uid` is drained; `Some(was_backend)`, or `None` after
    /// `timeout` (the proxy is not running or cannot program the maps).
    pub async fn wait_for(&self, uid: &str, timeout: Duration) -> Option<bool> {
        let mut rx = self.0.clone();
        let wait = async {
            rx.wait_for(|d| d.contains_key(uid))
                .await
                .ok()
                .and_then(|d| d.get(uid).copied())
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

/// The addresses to drain: those of this node's pods in graceful deletion
/// that no other (live) pod of the node holds, with the pods' uids.
pub fn draining_addresses(pods: &[&Pod]) -> HashMap<Ipv4Addr, String> {
    let ip_of = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    };
    let deleting = |p: &Pod| p.metadata.deletion_timestamp.is_some();
    let live: HashSet<Ipv4Addr> = pods.iter().filter(|p| !deleting(p)).filter_map(|p| ip_of(p)).collect();
    pods.iter()
        .filter(|p| deleting(p))
        .filter_map(|p| Some((ip_of(p)?, p.metadata.uid.clone()?)))
        .filter(|(ip, _)| !live.contains(ip))
        .collect()
}

/// Mark the draining addresses terminating in every frontend; returns every
/// draining pod with whether it is a backend of any frontend (other nodes
/// may still send it new flows).
pub fn apply(desired: &mut HashMap<Frontend, ServiceSpec>, draining: &HashMap<Ipv4Addr, String>) -> Drained {
    let mut drained: Drained = draining.values().map(|uid| (uid.clone(), false)).collect();
    for spec in desired.values_mut() {
        for b in &mut spec.backends {
            if let Some(uid) = draining.get(&b.ip) {
                b.terminating = true;
                drained.insert(uid.clone(), true);
            }
        }
    }
    drained
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_datapath::{Backend, Protocol};

    fn pod(uid: &str, ip: &str, deleting: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": uid, "uid": uid,
                "deletionTimestamp": if deleting { Some("2026-12-01T00:00:00Z") } else { None },
            },
            "status": {"podIP": ip},
        }))
        .unwrap()
    }

    #[test]
    fn deleting_pods_are_drained_unless_a_live_pod_holds_the_address() {
        let pods = [
            pod("old", "10.244.0.5", true),
            pod("web", "10.244.0.6", false),
            pod("reused-old", "10.244.0.7", true),
            pod("reused-new", "10.244.0.7", false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let draining = draining_addresses(&refs);
        assert_eq!(draining.len(), 1);
        assert_eq!(draining[&"10.244.0.5".parse().unwrap()], "old");
    }

    #[test]
    fn a_drained_backend_turns_terminating_in_every_frontend() {
        let a: Ipv4Addr = "10.244.0.5".parse().unwrap();
        let b: Ipv4Addr = "10.244.0.6".parse().unwrap();
        let backends = vec![Backend::new(a, 8080).local(), Backend::new(b, 8080)];
        let mut desired = HashMap::new();
        for spec in [
            ServiceSpec::cluster_ip(Frontend::tcp("10.96.0.10".parse().unwrap(), 80), backends.clone()),
            ServiceSpec::node_port(30080, Protocol::Tcp, backends),
        ] {
            desired.insert(spec.frontend, spec);
        }
        let draining = HashMap::from([
            (a, "uid-a".to_string()),
            ("10.244.0.9".parse().unwrap(), "uid-x".into()),
        ]);
        let drained = apply(&mut desired, &draining);
        assert_eq!(
            drained,
            Drained::from([("uid-a".into(), true), ("uid-x".into(), false)])
        );
        for spec in desired.values() {
            let by_ip: HashMap<Ipv4Addr, bool> = spec.backends.iter().map(|x| (x.ip, x.terminating)).collect();
            assert_eq!(by_ip, HashMap::from([(a, true), (b, false)]));
        }
    }

    #[tokio::test]
    async fn the_pod_worker_waits_for_the_published_revision() {
        let (tx, drains) = channel();
        assert_eq!(drains.wait_for("uid-a", Duration::from_millis(20)).await, None);
        let waiter = tokio::spawn({
            let drains = drains.clone();
            async move { drains.wait_for("uid-a", Duration::from_secs(5)).await }
        });
        tx.publish(Drained::from([("uid-a".into(), true)]));
        assert_eq!(waiter.await.unwrap(), Some(true));
    }
}
