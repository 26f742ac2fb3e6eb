//! The node's recent data-plane flows: noded is the one consumer of the
//! `flows` ring buffer (a BPF ring buffer has a single consumer position, so
//! a second reader would steal events). A thread drains it, names each flow
//! from the Service proxy's names ([`sluice_proxy::names`]), keeps the last
//! [`CAPACITY`] in memory and hands new ones to followers. The kubelet port
//! serves them as JSON lines on `GET /dataplane/flows` (`?follow=true`
//! streams), which `ctl dataplane flows` reads.
//!
//! A flow's JSON: `time`, `node`, `verdict`, `reason`, `protocol`, `hook`
//! (`from-pod`, `external` or `socket`), `source` and `destination` (`ip`,
//! `port`, and `pod` when named), `service` (`type`, and `namespace`,
//! `name`, `port` when named; absent for a flow no Service balanced),
//! `backend` (forwarded Service flows), and `masquerade` (`ip`, `port`: the
//! node's address a pod flow leaving the cluster was translated to). A
//! socket-level flow's client is a process of this node whose address is
//! often not known yet (`0.0.0.0`): its `source` says `"node": <this node>`.

use super::observed;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use sluice_datapath::flows::{FlowHook, FlowReader, FlowRecord};
use sluice_datapath::inspect::monotonic_ns;
use sluice_datapath::{Protocol, ServiceKind};
use sluice_proxy::names::ServiceNames;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Flows kept in memory.
pub const CAPACITY: usize = 4096;

/// One flow as served: its record, wall-clock time and names.
#[derive(Clone, Debug)]
pub struct FlowEntry {
    /// Position in the node's flow sequence (1, 2, ...).
    pub seq: u64,
    /// The JSON served for it.
    pub json: Value,
}

/// The last flows and the followers' channel.
pub struct FlowLog {
    recent: Mutex<(u64, VecDeque<FlowEntry>)>,
    tx: broadcast::Sender<FlowEntry>,
}

impl Default for FlowLog {
    fn default() -> Self {
        FlowLog {
            recent: Mutex::new((0, VecDeque::with_capacity(CAPACITY))),
            tx: broadcast::channel(1024).0,
        }
    }
}

impl FlowLog {
    /// Add a flow (as JSON); the oldest is forgotten beyond [`CAPACITY`].
    pub fn push(&self, json: Value) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.0 += 1;
        let entry = FlowEntry { seq: recent.0, json };
        if recent.1.len() == CAPACITY {
            recent.1.pop_front();
        }
        recent.1.push_back(entry.clone());
        let _ = self.tx.send(entry);
    }

    /// The kept flows, oldest first, and a receiver of the flows after them.
    pub fn snapshot_and_follow(&self) -> (Vec<FlowEntry>, broadcast::Receiver<FlowEntry>) {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // Subscribed under the lock: nothing pushed after the copy is missed.
        (recent.1.iter().cloned().collect(), self.tx.subscribe())
    }
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

fn kind(k: ServiceKind) -> &'static str {
    match k {
        ServiceKind::ClusterIp => "ClusterIP",
        ServiceKind::NodePort => "NodePort",
        ServiceKind::External => "External",
        ServiceKind::HostPort => "HostPort",
    }
}

/// The JSON of one flow seen on `node` at wall-clock `time`.
pub fn flow_json(r: &FlowRecord, time: Timestamp, node: &str, names: &ServiceNames) -> Value {
    let pod = |ip: &std::net::Ipv4Addr| names.pod(ip).map(|p| json!({"namespace": p.namespace, "name": p.name}));
    let mut v = json!({
        "time": time.to_string(),
        "node": node,
        "verdict": r.verdict.as_str(),
        "reason": r.reason_name(),
        "protocol": proto(r.proto),
        "hook": r.hook.as_str(),
        "source": {"ip": r.source.ip().to_string(), "port": r.source.port()},
        "destination": {"ip": r.destination.ip().to_string(), "port": r.destination.port()},
    });
    if let Some(p) = pod(r.source.ip()) {
        v["source"]["pod"] = p;
    } else if r.hook == FlowHook::Socket {
        // The socket-level programs run for this node's processes (their
        // address unknown at connect time): the node is the client.
        v["source"]["node"] = json!(node);
    }
    if let Some(f) = &r.frontend {
        let mut service = json!({"type": kind(f.kind)});
        if let Some(s) = names.service(f) {
            service["namespace"] = json!(s.namespace);
            service["name"] = json!(s.name);
            service["port"] = json!(s.port);
        }
        v["service"] = service;
    }
    if let Some(b) = &r.backend {
        v["backend"] = json!({"ip": b.ip().to_string(), "port": b.port()});
        if let Some(p) = pod(b.ip()) {
            v["backend"]["pod"] = p;
        }
    }
    if let Some(m) = &r.masquerade {
        v["masquerade"] = json!({"ip": m.ip().to_string(), "port": m.port()});
    }
    v
}

/// Wall-clock time of a `CLOCK_MONOTONIC` instant, given both clocks read now.
pub fn wall_time(event_ns: u64, mono_now_ns: u64, wall_now: Timestamp) -> Timestamp {
    let ago = mono_now_ns.saturating_sub(event_ns).min(i64::MAX as u64) as i64;
    wall_now
        .checked_sub(SignedDuration::from_nanos(ago))
        .unwrap_or(wall_now)
}

/// Start the thread that drains the ring buffer under `pin_root` into the node's [`FlowLog`].
pub fn start_reader(pin_root: PathBuf, node: String) {
    let mut reader = match FlowReader::open(&pin_root) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "no flow events: the flows ring buffer cannot be read");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("datapath-flows".into())
        .spawn(move || {
            let mut batch = Vec::new();
            loop {
                reader.wait(250);
                reader.drain(&mut batch);
                if batch.is_empty() {
                    continue;
                }
                let (mono, wall) = (monotonic_ns(), Timestamp::now());
                let names = observed().names.get();
                for r in batch.drain(..) {
                    observed()
                        .flows
                        .push(flow_json(&r, wall_time(r.time_ns, mono, wall), &node, &names));
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no flow events: the reader thread did not start");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_datapath::flows::FlowVerdict;
    use sluice_datapath::{Event, Frontend};

    #[test]
    fn flows_are_kept_up_to_capacity_and_followed_in_order() {
        let log = FlowLog::default();
        for i in 0..(CAPACITY + 3) {
            log.push(json!({"i": i}));
        }
        let (kept, mut rx) = log.snapshot_and_follow();
        assert_eq!(kept.len(), CAPACITY);
        assert_eq!(kept[0].json["i"], 3);
        assert_eq!(kept.last().map(|e| e.seq), Some(CAPACITY as u64 + 3));
        log.push(json!({"i": "next"}));
        let next = rx.try_recv().expect("followed");
        assert_eq!((next.seq, next.json["i"].as_str()), (CAPACITY as u64 + 4, Some("next")));
    }

    #[test]
    fn a_flow_is_served_with_its_service_and_wall_time() {
        let r = FlowRecord {
            time_ns: 1_000_000_000,
            source: "10.0.0.9:40000".parse().unwrap(),
            destination: "10.0.0.2:30080".parse().unwrap(),
            frontend: Some(Frontend::node_port(30080, Protocol::Tcp)),
            backend: None,
            service_id: 1,
            backend_id: 0,
            proto: Protocol::Tcp,
            verdict: FlowVerdict::Rejected,
            reason: Event::NoBackendReject,
            hook: FlowHook::External,
            masquerade: None,
        };
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let t = wall_time(r.time_ns, 3_500_000_000, now);
        assert_eq!(t.to_string(), "2027-01-15T07:59:57.5Z");
        let v = flow_json(&r, t, "node-1", &ServiceNames::default());
        assert_eq!(v["verdict"], "REJECTED");
        assert_eq!(v["reason"], "NoBackendReject");
        assert_eq!(v["service"]["type"], "NodePort");
        assert_eq!(v["destination"]["port"], 30080);
        assert!(v.get("backend").is_none());
        assert_eq!(v["node"], "node-1");
        assert_eq!(v["hook"], "external");
        assert!(v.get("masquerade").is_none());
        assert!(
            v["source"].get("node").is_none(),
            "an outside client is no node process"
        );
    }

    fn at() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn a_socket_flow_comes_from_the_node() {
        let r = FlowRecord {
            time_ns: 0,
            source: "0.0.0.0:0".parse().unwrap(),
            destination: "10.96.0.10:53".parse().unwrap(),
            frontend: Some(Frontend::udp("10.96.0.10".parse().unwrap(), 53)),
            backend: Some("10.244.1.5:5353".parse().unwrap()),
            service_id: 4,
            backend_id: 9,
            proto: Protocol::Udp,
            verdict: FlowVerdict::Forwarded,
            reason: Event::SocketLb,
            hook: FlowHook::Socket,
            masquerade: None,
        };
        let v = flow_json(&r, at(), "node-1", &ServiceNames::default());
        assert_eq!(v["hook"], "socket");
        assert_eq!(v["reason"], "SocketLb");
        assert_eq!(v["source"], json!({"ip": "0.0.0.0", "port": 0, "node": "node-1"}));
        assert_eq!(v["service"]["type"], "ClusterIP");
        assert_eq!(v["backend"], json!({"ip": "10.244.1.5", "port": 5353}));
        assert!(v.get("masquerade").is_none());
    }

    #[test]
    fn a_masqueraded_flow_has_no_service_and_names_the_node_address() {
        let r = FlowRecord {
            time_ns: 0,
            source: "10.244.0.3:41000".parse().unwrap(),
            destination: "192.0.2.80:443".parse().unwrap(),
            frontend: None,
            backend: None,
            service_id: 0,
            backend_id: 0,
            proto: Protocol::Tcp,
            verdict: FlowVerdict::Forwarded,
            reason: Event::Masquerade,
            hook: FlowHook::FromPod,
            masquerade: Some("10.0.0.2:41000".parse().unwrap()),
        };
        let v = flow_json(&r, at(), "node-1", &ServiceNames::default());
        assert_eq!(v["hook"], "from-pod");
        assert_eq!(v["reason"], "Masquerade");
        assert_eq!(v["masquerade"], json!({"ip": "10.0.0.2", "port": 41000}));
        assert_eq!(v["destination"], json!({"ip": "192.0.2.80", "port": 443}));
        assert_eq!(v["source"], json!({"ip": "10.244.0.3", "port": 41000}));
        assert!(v.get("service").is_none() && v.get("backend").is_none());
    }
}
