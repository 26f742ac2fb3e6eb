//! Node IPAM: gives every Node a `spec.podCIDR`/`podCIDRs` carved from
//! `--cluster-cidr` (`--node-cidr-mask-size`, /24 by default).
//!
//! A range is never handed out twice: the allocator's view of what is taken
//! is rebuilt from the CIDRs the cached Nodes have (so restarts and leader
//! changes keep it), and ranges handed out but not yet seen in the cache
//! stay reserved. As Kubernetes' range allocator (its `cidrset`), the
//! ranges are a bitmap and the search for a free one starts after the last
//! one handed out, so giving every node of a large cluster its range costs
//! a few bit tests each, not a pass over every node and every range (at
//! 5,000 nodes that pass, for each node, was most of the controller-
//! manager's CPU for tens of seconds after it started). The view is rebuilt
//! at most every [`REBUILD_EVERY`] (and when no range looks free), which is
//! how ranges of deleted Nodes come back.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::events::EventType;
use crate::{runner, Context, Error};

/// How stale the allocator's view of the cached Nodes' ranges may get.
pub const REBUILD_EVERY: Duration = Duration::from_secs(1);

/// Most ranges one cluster CIDR is cut into (Kubernetes' cidrset: the node
/// mask may be at most 16 bits longer than the cluster's).
const MAX_SUBNET_BITS: u8 = 16;

/// Calls its argument with each cached Node's name and podCIDR.
pub type Nodes<'a> = dyn Fn(&mut dyn FnMut(&str, Option<&str>)) + 'a;

/// Hands out subnets of the cluster CIDR.
pub struct CidrAllocator {
    cluster: Ipv4Net,
    mask: u8,
    count: u32,
    state: Mutex<Ranges>,
}

/// What is taken, and what was handed out but not seen on its Node yet.
struct Ranges {
    taken: Vec<u64>,
    /// Node name -> range handed out and not yet seen on the Node in the cache.
    in_flight: HashMap<String, u32>,
    /// Where the next search starts.
    next: u32,
    rebuilt: Option<Instant>,
}

impl Ranges {
    fn is_taken(&self, i: u32) -> bool {
        self.taken[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn take(&mut self, i: u32) {
        self.taken[(i / 64) as usize] |= 1 << (i % 64);
    }
}

impl CidrAllocator {
    /// An allocator of `/mask` subnets of `cluster`.
    pub fn new(cluster: Ipv4Net, mask: u8) -> Result<Self, Error> {
        let cluster = cluster.trunc();
        let invalid = |reason: String| Error::Invalid {
            object: format!("--cluster-cidr {cluster} --node-cidr-mask-size {mask}"),
            reason,
        };
        if mask < cluster.prefix_len() || mask > 32 {
            return Err(invalid(format!(
                "the node mask must be between the cluster mask ({}) and 32",
                cluster.prefix_len()
            )));
        }
        if mask - cluster.prefix_len() > MAX_SUBNET_BITS {
            return Err(invalid(format!(
                "the node mask may be at most {MAX_SUBNET_BITS} bits longer than the cluster mask"
            )));
        }
        let count = 1u32 << (mask - cluster.prefix_len());
        Ok(Self {
            cluster,
            mask,
            count,
            state: Mutex::new(Ranges {
                taken: vec![0; count.div_ceil(64) as usize],
                in_flight: HashMap::new(),
                next: 0,
                rebuilt: None,
            }),
        })
    }

    /// The number of the range `cidr` is, if it is one of ours.
    fn index(&self, cidr: &str) -> Option<u32> {
        let net: Ipv4Net = cidr.parse().ok()?;
        if net.prefix_len() != self.mask || !self.cluster.contains(&net) {
            return None;
        }
        let offset = u32::from(net.network()) - u32::from(self.cluster.network());
        Some(offset >> (32 - u32::from(self.mask)))
    }

    fn range(&self, i: u32) -> Ipv4Net {
        let base = u32::from(self.cluster.network()) + (i << (32 - u32::from(self.mask)));
        Ipv4Net::new(Ipv4Addr::from(base), self.mask).unwrap_or(self.cluster)
    }

    /// Take what the cached Nodes hold (`nodes`: name and podCIDR) and what
    /// is still in flight; reservations their Node now shows are settled,
    /// those of Nodes no longer cached dropped.
    fn rebuild(&self, r: &mut Ranges, nodes: &Nodes<'_>, now: Instant) {
        r.taken.iter_mut().for_each(|w| *w = 0);
        let mut waiting = std::collections::HashSet::new();
        nodes(&mut |name, cidr| match cidr {
            Some(cidr) => {
                r.in_flight.remove(name);
                if let Some(i) = self.index(cidr) {
                    r.take(i);
                }
            }
            None if r.in_flight.contains_key(name) => {
                waiting.insert(name.to_string());
            }
            None => {}
        });
        // A reservation whose Node is gone is dropped.
        r.in_flight.retain(|name, _| waiting.contains(name));
        let reserved: Vec<u32> = r.in_flight.values().copied().collect();
        reserved.into_iter().for_each(|i| r.take(i));
        r.rebuilt = Some(now);
    }

    /// A free subnet reserved for `node`: the one already reserved for it,
    /// or the next one not taken. `nodes` lists the cached Nodes (name,
    /// podCIDR); it is read only when the view is rebuilt.
    pub fn allocate(&self, node: &str, nodes: &Nodes<'_>, now: Instant) -> Option<Ipv4Net> {
        let mut r = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let stale = r.rebuilt.is_none_or(|at| now.duration_since(at) >= REBUILD_EVERY);
        if stale {
            self.rebuild(&mut r, nodes, now);
        }
        if let Some(range) = self.hand_out(&mut r, node) {
            return Some(range);
        }
        if stale {
            return None;
        }
        // Deleted Nodes' ranges come back with a rebuild.
        self.rebuild(&mut r, nodes, now);
        self.hand_out(&mut r, node)
    }

    /// The range reserved for `node`, or the next free one, reserved for it.
    fn hand_out(&self, r: &mut Ranges, node: &str) -> Option<Ipv4Net> {
        if let Some(i) = r.in_flight.get(node) {
            return Some(self.range(*i));
        }
        let i = self.next_free(r)?;
        r.take(i);
        r.in_flight.insert(node.to_string(), i);
        r.next = (i + 1) % self.count;
        Some(self.range(i))
    }

    fn next_free(&self, r: &Ranges) -> Option<u32> {
        (0..self.count)
            .map(|k| (r.next + k) % self.count)
            .find(|i| !r.is_taken(*i))
    }
}

/// Subscribes the node IPAM controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.nodes.store();
    let own = ctx.informers.nodes.trigger(|n: &Node| Some(ObjectRef::from_obj(n)));
    let allocator = match CidrAllocator::new(ctx.config.cluster_cidr, ctx.config.node_cidr_mask_size) {
        Ok(a) => Arc::new(a),
        Err(err) => {
            tracing::error!(error = %err, "node IPAM disabled");
            return Box::pin(futures::future::pending());
        }
    };
    runner::run("node-ipam", ctx, store, vec![own.boxed()], move |node, ctx| {
        reconcile(node, ctx, allocator.clone())
    })
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>, allocator: Arc<CidrAllocator>) -> Result<Action, Error> {
    let has_cidr = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some_and(|c| !c.is_empty());
    if has_cidr || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let store = ctx.informers.nodes.store();
    let name = node.name_any();
    let cached = |visit: &mut dyn FnMut(&str, Option<&str>)| {
        for n in store.state() {
            let cidr = n
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_deref())
                .filter(|c| !c.is_empty());
            visit(n.metadata.name.as_deref().unwrap_or_default(), cidr);
        }
    };
    let Some(cidr) = allocator.allocate(&name, &cached, Instant::now()) else {
        ctx.recorder.record(
            &*node,
            EventType::Warning,
            "CIDRNotAvailable",
            "No pod CIDR left in the cluster CIDR".into(),
        );
        return Ok(Action::requeue(std::time::Duration::from_secs(30)));
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    ctx.recorder.record(
        &*node,
        EventType::Normal,
        "CIDRAssignmentSucceeded",
        format!("Assigned pod CIDR {cidr}"),
    );
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A cache of (name, podCIDR) that counts how often it is read.
    struct Cache {
        nodes: std::cell::RefCell<Vec<(String, Option<String>)>>,
        reads: Cell<usize>,
    }

    impl Cache {
        fn new(nodes: &[(&str, Option<&str>)]) -> Self {
            Cache {
                nodes: std::cell::RefCell::new(
                    nodes
                        .iter()
                        .map(|(n, c)| (n.to_string(), c.map(str::to_string)))
                        .collect(),
                ),
                reads: Cell::new(0),
            }
        }

        fn visit(&self, f: &mut dyn FnMut(&str, Option<&str>)) {
            self.reads.set(self.reads.get() + 1);
            for (n, c) in self.nodes.borrow().iter() {
                f(n, c.as_deref());
            }
        }

        fn set(&self, node: &str, cidr: Option<&str>) {
            let mut nodes = self.nodes.borrow_mut();
            nodes.retain(|(n, _)| n != node);
            nodes.push((node.to_string(), cidr.map(str::to_string)));
        }

        fn remove(&self, node: &str) {
            self.nodes.borrow_mut().retain(|(n, _)| n != node);
        }
    }

    fn allocate(a: &CidrAllocator, node: &str, cache: &Cache, at: Instant) -> Option<String> {
        a.allocate(node, &|f: &mut dyn FnMut(&str, Option<&str>)| cache.visit(f), at)
            .map(|c| c.to_string())
    }

    #[test]
    fn never_hands_out_a_range_twice() {
        let a = CidrAllocator::new("10.244.0.0/16".parse().unwrap(), 24).unwrap();
        let cache = Cache::new(&[("n0", Some("10.244.0.0/24")), ("n1", None), ("n2", None)]);
        let t = Instant::now();
        assert_eq!(allocate(&a, "n1", &cache, t).as_deref(), Some("10.244.1.0/24"));
        // The cache has not seen n1's CIDR yet: n2 gets another one, n1 the same again.
        assert_eq!(allocate(&a, "n2", &cache, t).as_deref(), Some("10.244.2.0/24"));
        assert_eq!(allocate(&a, "n1", &cache, t).as_deref(), Some("10.244.1.0/24"));
        // Also after a rebuild that still does not show it.
        let later = t + REBUILD_EVERY;
        assert_eq!(allocate(&a, "n1", &cache, later).as_deref(), Some("10.244.1.0/24"));
        // Once the cache shows it, the reservation is settled and the range stays taken.
        cache.set("n1", Some("10.244.1.0/24"));
        cache.set("n3", None);
        let later = later + REBUILD_EVERY;
        assert_eq!(allocate(&a, "n3", &cache, later).as_deref(), Some("10.244.3.0/24"));

        let small = CidrAllocator::new("10.0.0.0/23".parse().unwrap(), 24).unwrap();
        let full = Cache::new(&[("a", Some("10.0.0.0/24")), ("b", Some("10.0.1.0/24")), ("c", None)]);
        assert_eq!(allocate(&small, "c", &full, t), None);
    }

    #[test]
    fn a_deleted_nodes_range_comes_back_once_no_other_is_free() {
        let a = CidrAllocator::new("10.0.0.0/23".parse().unwrap(), 24).unwrap();
        let cache = Cache::new(&[("a", Some("10.0.0.0/24")), ("b", Some("10.0.1.0/24"))]);
        let t = Instant::now();
        cache.set("c", None);
        assert_eq!(allocate(&a, "c", &cache, t), None);
        // `a` goes within the same second: the full view is read again.
        cache.remove("a");
        assert_eq!(allocate(&a, "c", &cache, t).as_deref(), Some("10.0.0.0/24"));
    }

    #[test]
    fn the_search_goes_on_after_the_last_range_handed_out() {
        let a = CidrAllocator::new("10.244.0.0/16".parse().unwrap(), 24).unwrap();
        let cache = Cache::new(&[("a", None), ("b", None)]);
        let t = Instant::now();
        assert_eq!(allocate(&a, "a", &cache, t).as_deref(), Some("10.244.0.0/24"));
        // `a` was deleted before its range was written: its reservation goes
        // with the next rebuild, but the next node still gets the next range.
        cache.remove("a");
        let later = t + REBUILD_EVERY;
        assert_eq!(allocate(&a, "b", &cache, later).as_deref(), Some("10.244.1.0/24"));
    }

    #[test]
    fn a_large_cluster_is_read_once_per_rebuild_not_once_per_node() {
        let a = CidrAllocator::new("10.0.0.0/8".parse().unwrap(), 24).unwrap();
        let names: Vec<String> = (0..5000).map(|i| format!("node-{i}")).collect();
        let cache = Cache::new(&names.iter().map(|n| (n.as_str(), None)).collect::<Vec<_>>());
        let t = Instant::now();
        let mut given = std::collections::HashSet::new();
        for n in &names {
            assert!(given.insert(allocate(&a, n, &cache, t).expect("a range")));
        }
        assert_eq!(cache.reads.get(), 1);
        assert!(given.contains("10.0.19.0/24") && given.contains("10.0.136.0/24"));
    }

    #[test]
    fn ranges_not_of_the_cluster_are_not_counted_and_bad_masks_are_refused() {
        let a = CidrAllocator::new("10.244.0.0/16".parse().unwrap(), 24).unwrap();
        let cache = Cache::new(&[("x", Some("192.168.0.0/24")), ("y", Some("10.244.0.0/25")), ("n", None)]);
        assert_eq!(
            allocate(&a, "n", &cache, Instant::now()).as_deref(),
            Some("10.244.0.0/24")
        );
        assert!(CidrAllocator::new("10.244.0.0/16".parse().unwrap(), 8).is_err());
        assert!(CidrAllocator::new("10.0.0.0/8".parse().unwrap(), 28).is_err());
        assert!(CidrAllocator::new("10.0.0.0/8".parse().unwrap(), 33).is_err());
    }
}
